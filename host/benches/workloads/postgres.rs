//! The workloads on PostgreSQL, against a server this bench starts on the scratch
//! filesystem (`scripts/install-postgres`): W2 with its checkpoints in the database,
//! W6 drained by two in-process workers of four runs each (beside the same runs on a
//! file store in one runner of eight), and W7, takeovers after SIGKILL of the
//! `superstep worker` process that owns the ring.

use super::postgres_server::Postgres;
use super::{Bench, complete, json_input, quiet, repo, report, spawned_runs};
use anyhow::{Context as _, Result, ensure};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use superstep::checkpoint::{CheckpointStore, FileStore, PostgresStore};
use superstep::queue::RunQueue;
use superstep::worker::{Worker, WorkerConfig};
use superstep::{Event, EventSink, Manifest};

impl Bench {
    /// W2, W6 and W7 on PostgreSQL.
    pub(super) fn postgres(&self) -> Result<()> {
        let server = self.server()?;
        self.w2_postgres(&server)?;
        self.w6_postgres(&server)?;
        self.w7(&server)
    }

    /// W7 alone.
    pub(super) fn takeover(&self) -> Result<()> {
        self.w7(&self.server()?)
    }

    /// A server with its data in the scratch directory.
    fn server(&self) -> Result<Postgres> {
        // The server runs as the `postgres` user when this runs as root: it must reach
        // its directory.
        std::fs::set_permissions(
            &self.dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        Ok(Postgres::start(&self.dir))
    }

    /// W2: the ring's checkpoints committed to the server (synchronous commit), each
    /// sample into a database of its own.
    fn w2_postgres(&self, server: &Postgres) -> Result<()> {
        let workflow = self.workflow(&repo().join("guest-examples/ring.toml"), 0)?;
        let mut rates = Vec::new();
        for _ in 0..self.samples {
            let store = Arc::new(PostgresStore::connect(&migrated(server)?)?);
            let input = json_input("token", "{\"hops\":0}");
            let started = Instant::now();
            let mut run = workflow.start(input, store, quiet())?;
            complete(&mut run, "{\"hops\":2000}")?;
            rates.push(2000.0 / started.elapsed().as_secs_f64());
        }
        report("W2 ring, durable, PostgreSQL store", "supersteps/s", rates);
        Ok(())
    }

    /// W6: 1,000 pipeline runs submitted, then drained by two workers of four runs
    /// each; from the workers' start to the last completion, and each run's time from
    /// its submission to its completion (the database's clock). Beside it, the same
    /// runs spawned at once on one runner of eight over a file store.
    fn w6_postgres(&self, server: &Postgres) -> Result<()> {
        let manifest = Manifest::load(&repo().join("guest-examples/pipeline.toml"))?;
        let (mut rates, mut p50, mut p99) = (Vec::new(), Vec::new(), Vec::new());
        for sample in 0..self.samples {
            let url = migrated(server)?;
            let queue = RunQueue::connect(&url)?;
            for n in 0..1000 {
                queue.submit(
                    &manifest,
                    json_input("input", &format!("\"hello world {n}\"")),
                )?;
            }
            let completed = Arc::new(AtomicUsize::new(0));
            let (done, finished) = mpsc::channel();
            let started = Instant::now();
            let workers: Vec<_> = (0..2)
                .map(|w| {
                    let config = WorkerConfig {
                        concurrency: 4,
                        lease_ttl: Duration::from_secs(10),
                        name: format!("bench-{sample}-{w}"),
                        cache_dir: self.dir.join("worker-cache"),
                    };
                    let (completed, done) =
                        (completed.clone(), std::sync::Mutex::new(done.clone()));
                    let count: Arc<dyn EventSink> = Arc::new(move |event: &Event| {
                        if let Event::RunCompleted { .. } = event
                            && completed.fetch_add(1, Ordering::SeqCst) + 1 == 1000
                        {
                            let _ = done.lock().unwrap().send(());
                        }
                    });
                    let worker = Worker::connect(&url, config, count, Arc::new(|_: &str| {}))?;
                    let stopper = worker.stopper();
                    Ok((stopper, std::thread::spawn(move || worker.run())))
                })
                .collect::<Result<_>>()?;
            finished
                .recv_timeout(Duration::from_secs(600))
                .context("the workers did not drain the runs")?;
            rates.push(1000.0 / started.elapsed().as_secs_f64());
            for (stopper, thread) in workers {
                stopper.stop();
                thread.join().expect("a worker panicked")?;
            }
            let (median, tail) = submit_to_completion(server, &url)?;
            p50.push(median);
            p99.push(tail);
        }
        let what = "W6 many runs, PostgreSQL, 2 workers of 4";
        report(what, "runs/s", rates);
        report(&format!("{what}, p50 submit to completion"), "ms", p50);
        report(&format!("{what}, p99 submit to completion"), "ms", p99);

        let workflow = self.workflow(&repo().join("guest-examples/pipeline.toml"), 0)?;
        let (mut rates, mut p50, mut p99) = (Vec::new(), Vec::new(), Vec::new());
        for sample in 0..self.samples {
            let dir = self.fresh_dir(&format!("w6-file-8-{sample}"))?;
            let store: Arc<dyn CheckpointStore> = Arc::new(FileStore::new(dir));
            let started = Instant::now();
            let mut latencies = spawned_runs(&workflow, &store, 1000, 8, true)?;
            rates.push(1000.0 / started.elapsed().as_secs_f64());
            latencies.sort_by(f64::total_cmp);
            p50.push(latencies[latencies.len() / 2]);
            p99.push(latencies[latencies.len() * 99 / 100]);
        }
        let what = "W6 many runs, file store, one runner of 8";
        report(what, "runs/s", rates);
        report(&format!("{what}, p50 spawn to completion"), "ms", p50);
        report(&format!("{what}, p99 spawn to completion"), "ms", p99);
        Ok(())
    }

    /// W7: the ring run by one of two `superstep worker` processes with 2 s leases; the
    /// owner killed with SIGKILL shortly after the run's first superstep in its hands,
    /// and a new worker started, 20 times (or until the run completes); the time from
    /// each kill to the first superstep the next owner completes.
    fn w7(&self, server: &Postgres) -> Result<()> {
        let url = migrated(server)?;
        let manifest = Manifest::load(&repo().join("guest-examples/ring.toml"))?;
        let queue = Arc::new(RunQueue::connect(&url)?);
        let run = queue.submit(&manifest, json_input("token", "{\"hops\":0}"))?;
        let (changed, changes) = mpsc::channel();
        let changed = std::sync::Mutex::new(changed);
        queue.watch(move |_| {
            let _ = changed.lock().unwrap().send(());
        });
        let spawn = |name: String| -> Result<Child> {
            Ok(Command::new(env!("CARGO_BIN_EXE_superstep"))
                .args([
                    "worker",
                    "--store",
                    &url,
                    "--concurrency",
                    "1",
                    "--lease-ttl",
                    "2s",
                ])
                .args(["--name", &name, "--cache-dir"])
                .arg(self.dir.join("worker-cache"))
                .env(superstep::COMPILE_CACHE_ENV, self.dir.join("compile-cache"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?)
        };
        let mut workers: Vec<(String, Child)> = Vec::new();
        for w in 0..2 {
            let name = format!("w7-{w}");
            workers.push((name.clone(), spawn(name)?));
        }
        let mut takeovers = Vec::new();
        let mut seed = std::process::id() as u64;
        // The run in an owner's hands: a superstep completed at its epoch.
        let mut current = wait_for_progress(&queue, &run, &changes, 0)?;
        for kill in 0..20 {
            let Some((owner, epoch)) = current else {
                break; // completed
            };
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            std::thread::sleep(Duration::from_millis(seed >> 59)); // 0-31 ms: a random superstep
            let at = workers
                .iter()
                .position(|(name, _)| *name == owner)
                .context("owner")?;
            let (_, mut child) = workers.remove(at);
            child.kill()?; // SIGKILL
            let killed = Instant::now();
            child.wait()?;
            let name = format!("w7-r{kill}");
            workers.push((name.clone(), spawn(name)?));
            current = wait_for_progress(&queue, &run, &changes, epoch)?;
            if current.is_some() {
                takeovers.push(killed.elapsed().as_secs_f64() * 1e3);
            }
        }
        while !queue.get(&run)?.status.is_final() {
            let _ = changes.recv_timeout(Duration::from_secs(1));
        }
        for (_, mut child) in workers {
            child.kill()?;
            child.wait()?;
        }
        check_ring(&url, &run)?;
        ensure!(takeovers.len() >= 5, "only {} takeovers", takeovers.len());
        let kills = takeovers.len();
        takeovers.sort_by(f64::total_cmp);
        let max = takeovers[kills - 1];
        println!(
            "{:<50} {:>10.0} ms           (max {max:.0}, n={kills} kills)",
            "W7 takeover after SIGKILL, 2 s lease, median",
            takeovers[kills / 2]
        );
        Ok(())
    }
}

/// A new, migrated database of `server`.
fn migrated(server: &Postgres) -> Result<String> {
    let url = server.database();
    superstep::db::migrate(&url)?;
    Ok(url)
}

/// The median and 99th percentile, in ms, of the time from submission to completion
/// of the completed runs.
fn submit_to_completion(server: &Postgres, url: &str) -> Result<(f64, f64)> {
    let row = server.query(
        url,
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - submitted_at)),
                percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - submitted_at))
         FROM superstep_runs WHERE status = 'completed'",
    );
    let (p50, p99) = row.split_once('|').context("two percentiles")?;
    Ok((p50.parse::<f64>()? * 1e3, p99.parse::<f64>()? * 1e3))
}

/// Waits until run `run` has completed a superstep at an epoch after `after`; its
/// owner and that epoch, or `None` once the run is over.
fn wait_for_progress(
    queue: &RunQueue,
    run: &str,
    changes: &mpsc::Receiver<()>,
    after: i64,
) -> Result<Option<(String, i64)>> {
    let mut seen = -1;
    loop {
        let record = queue.get(run)?;
        if record.status.is_final() {
            return Ok(None);
        }
        for (seq, epoch, event) in queue.events(run, seen)? {
            seen = seq;
            if epoch > after && event.contains("\"superstep_completed\"") {
                let record = queue.get(run)?;
                ensure!(record.epoch == epoch, "the run moved on by itself");
                return Ok(Some((record.owner.context("an owner")?, epoch)));
            }
        }
        let _ = changes.recv_timeout(Duration::from_secs(1));
    }
}

/// Checks the ring run ended as W2 ends: `{"hops": 2000}`, and each of the 8 stations
/// saw the token 250 times.
fn check_ring(url: &str, run: &str) -> Result<()> {
    let store = PostgresStore::connect(url)?;
    let latest = store.latest(Some(run))?.context("no checkpoint")?;
    let checkpoint = store.load(&latest.checkpoint_id)?;
    let output = checkpoint.outputs.last().context("no output")?;
    let body = output.body.decode().map_err(anyhow::Error::msg)?;
    ensure!(
        &body[..] == b"{\"hops\":2000}",
        "output {body:?}: no figure"
    );
    for (id, executor) in &checkpoint.executors {
        let state: serde_json::Value =
            serde_json::from_slice(&executor.state.decode().map_err(anyhow::Error::msg)?)?;
        ensure!(
            state["seen"] == 250,
            "station {id} saw {}: no figure",
            state["seen"]
        );
    }
    Ok(())
}
