//! `superstep worker`: claims runs from the database and runs them until SIGTERM.

use super::EXIT_OK;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use superstep::Event;
use superstep::error::{Result, host};
use superstep::worker::{Worker, WorkerConfig};

/// `superstep worker`.
#[derive(Args)]
pub(super) struct WorkerArgs {
    /// The database: postgres://user@host:port/database.
    #[arg(long = "store", env = "SUPERSTEP_STORE", value_name = "URL")]
    store: String,
    /// Runs driven at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// How long a claim on a run lasts without renewal (renewed every third of it):
    /// after a crash, another worker takes its runs over within this.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lease_ttl: Duration,
    /// The worker's name in the runs it owns; default: <host>:<pid>.
    #[arg(long)]
    name: Option<String>,
    /// Where the components of claimed runs are written; default:
    /// ~/.cache/superstep/worker.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

/// Runs the worker until SIGTERM or SIGINT (then it stops its runs at their next
/// barrier, gives them back and exits; a second signal exits at once).
pub(super) fn worker(args: WorkerArgs) -> Result<u8> {
    let url = super::db::postgres_url(&args.store)?;
    check_lease_ttl(args.lease_ttl)?;
    // Before any thread starts, so that every thread inherits the mask and the signals
    // reach only the thread that waits for them.
    let signals = block_stop_signals()?;
    let config = WorkerConfig {
        concurrency: args.concurrency.max(1),
        lease_ttl: args.lease_ttl,
        name: args.name.unwrap_or_else(default_name),
        cache_dir: args.cache_dir.unwrap_or_else(default_cache_dir),
    };
    let log = Arc::new(|_: &Event| {});
    let notes = Arc::new(|note: &str| eprintln!("{note}"));
    let worker = Worker::connect(&url, config.clone(), log, notes)?;
    let stopper = worker.stopper();
    std::thread::Builder::new()
        .name("superstep-signals".into())
        .spawn(move || {
            loop {
                let mut signal = 0;
                if unsafe { libc::sigwait(&signals, &mut signal) } == 0 {
                    eprintln!("worker: signal {signal}: stopping");
                    stopper.stop();
                }
            }
        })
        .map_err(host)?;
    eprintln!(
        "worker {} started: {} runs at once, leases of {}",
        config.name,
        config.concurrency,
        humantime::format_duration(config.lease_ttl)
    );
    worker.run()?;
    eprintln!("worker {} stopped", config.name);
    Ok(EXIT_OK)
}

/// Blocks SIGTERM and SIGINT in this thread (and the threads it starts); returns them
/// as a set to wait for.
fn block_stop_signals() -> Result<libc::sigset_t> {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        match libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) {
            0 => Ok(set),
            error => Err(host(std::io::Error::from_raw_os_error(error))),
        }
    }
}

/// Refuses a lease too short to renew in time (renewals come every third of it).
pub(super) fn check_lease_ttl(ttl: Duration) -> Result<()> {
    if ttl < Duration::from_millis(300) {
        return Err(superstep::error::invalid(format!(
            "--lease-ttl {}: at least 300ms",
            humantime::format_duration(ttl)
        )));
    }
    Ok(())
}

pub(super) fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}:{}", std::process::id())
}

pub(super) fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("superstep").join("worker")
}
