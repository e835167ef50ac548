//! `superstep serve`: the HTTP API and the web page, until SIGTERM or SIGINT.

use super::store::StoreArgs;
use super::worker::{check_lease_ttl, default_cache_dir, default_name};
use super::{EXIT_OK, say};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use superstep::checkpoint::is_postgres_url;
use superstep::error::Result;
use superstep::server::{Backend, ServeConfig, Server};
use superstep::worker::WorkerConfig;

/// `superstep serve`.
#[derive(Args)]
pub(super) struct ServeArgs {
    /// The directory whose workflow manifests may be run (searched a few levels deep);
    /// requests name them by path without `.toml`, e.g. `plan_review`.
    #[arg(long, value_name = "DIR")]
    workflows: PathBuf,
    /// The address to listen on; port 0 takes any free port.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDRESS")]
    listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// How many runs execute at once in this process. With a file store, default four
    /// per core; with a database, default 4, and 0 serves the API only (other hosts'
    /// workers run the runs).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// With a database: how long this process's claim on a run lasts without renewal.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lease_ttl: Duration,
}

/// Serves until SIGTERM or SIGINT.
pub(super) fn serve(args: ServeArgs) -> Result<u8> {
    let backend = if is_postgres_url(&args.store.location) {
        let url = super::db::postgres_url(&args.store.location)?;
        check_lease_ttl(args.lease_ttl)?;
        let concurrency = args.workers.unwrap_or(4);
        let worker = (concurrency > 0).then(|| WorkerConfig {
            concurrency,
            lease_ttl: args.lease_ttl,
            name: format!("serve-{}", default_name()),
            cache_dir: default_cache_dir(),
        });
        Backend::Queue { url, worker }
    } else {
        Backend::Local {
            store: args.store.open()?,
            threads: args.workers.unwrap_or(0),
        }
    };
    let config = ServeConfig {
        listen: args.listen,
        workflows: args.workflows,
        backend,
    };
    let server = Server::bind(config)?;
    for (file, error) in server.catalog().errors() {
        eprintln!("warning: {file} cannot be run: {error}");
    }
    let workflows = server.catalog().list().len();
    say!(
        "superstep serve: {workflows} workflow(s) from {}; checkpoints in {}",
        server.catalog().dir().display(),
        superstep::db::without_password(&args.store.location)
    )?;
    say!("open {}", server.page_url()?)?;
    server.serve_until(stop_signal())?;
    eprintln!("superstep serve: stopped");
    Ok(EXIT_OK)
}

/// Completes on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    match (terminate, interrupt) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
