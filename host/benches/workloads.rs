//! The benchmark workloads of `bench/WORKLOADS.md` (W1 pipeline, W2 ring, W3
//! fan-out/fan-in, W4 big state, W5 cold resume, W6 many runs in one process, W2 on
//! the PostgreSQL store, W6 over the server's HTTP API), run against this build, and
//! the three-language pipeline (`languages`, which runs the bench again as
//! `languages-calls` for the per-call figures of each compile tier).
//!
//! `cargo bench -p superstep --bench workloads [-- w1 w3 postgres serve languages ...]`
//! runs them (W1 to W6, `postgres`, which starts its own PostgreSQL server from
//! scripts/install-postgres, and `serve`, the server over loopback HTTP, by default; `languages` only when named, since it needs the guest
//! tools of scripts/install-guest-tools); `SUPERSTEP_BENCH_SAMPLES` sets the samples per figure (default 5, at least
//! 5 for a reported figure) and `SUPERSTEP_BENCH_DIR` where checkpoints go (default: a
//! temp dir under the system's). Every workload checks its final output and refuses to
//! report a figure otherwise.

use anyhow::{Context as _, Result, bail, ensure};
use bytes::Bytes;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use superstep::checkpoint::FileStore;
use superstep::{
    CheckpointStore, Durability, Event, EventSink, Manifest, Message, Outcome, Runner,
    RunnerLimits, Runtime, Workflow,
};

/// The PostgreSQL server the tests start, started the same way here.
#[path = "../../tests/e2e/postgres_server.rs"]
#[allow(dead_code, reason = "the tests' helpers that the bench has no use for")]
mod postgres_server;

/// The workloads on PostgreSQL: W2, W6 with workers, W7.
#[path = "workloads/postgres.rs"]
mod postgres;

/// The server's workloads: W6 over HTTP, paused runs.
#[path = "workloads/serve.rs"]
mod serve;

fn main() -> Result<()> {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.to_lowercase())
        .collect();
    let run = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    let samples: usize = std::env::var("SUPERSTEP_BENCH_SAMPLES")
        .ok()
        .map(|n| n.parse().context("SUPERSTEP_BENCH_SAMPLES"))
        .transpose()?
        .unwrap_or(5);
    let base = match std::env::var_os("SUPERSTEP_BENCH_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir(),
    };
    std::fs::create_dir_all(&base)?;
    let scratch = tempfile::tempdir_in(&base)?;
    let bench = Bench {
        samples,
        dir: scratch.path().to_path_buf(),
        components: components()?,
    };
    if !wanted.iter().any(|w| w == LANGUAGE_CALLS) {
        println!("superstep workloads, {samples} samples per figure");
        println!("machine: {}", machine(&bench.dir));
        println!();
    }
    if run("w1") {
        bench.w1()?;
    }
    if run("w2") {
        bench.w2()?;
    }
    if run("w3") {
        bench.w3()?;
    }
    if run("w4") {
        bench.w4()?;
    }
    if run("w5") {
        bench.w5()?;
    }
    if run("w6") {
        bench.w6()?;
    }
    if run("postgres") {
        bench.postgres()?;
    } else if run("w7") {
        bench.takeover()?;
    }
    if run("serve") {
        bench.serve()?;
    }
    if wanted.iter().any(|w| w == "languages") {
        bench.languages()?;
    }
    if wanted.iter().any(|w| w == LANGUAGE_CALLS) {
        bench.language_calls(&std::env::var(TIER_ENV).unwrap_or_default())?;
    }
    Ok(())
}

struct Bench {
    samples: usize,
    dir: PathBuf,
    components: PathBuf,
}

/// Median, min and max of some samples.
fn report(what: &str, unit: &str, mut values: Vec<f64>) {
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    println!(
        "{what:<50} {:>10} {unit:<12} (min {}, max {}, n={})",
        format_value(median),
        format_value(values[0]),
        format_value(values[values.len() - 1]),
        values.len()
    );
}

fn format_value(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// Counts messages routed: the run's input plus everything queued at each barrier.
#[derive(Default)]
struct Counter {
    routed: AtomicUsize,
}

impl EventSink for Counter {
    fn emit(&self, event: &Event) {
        if let Event::SuperstepCompleted { queued, .. } = event {
            self.routed.fetch_add(*queued, Ordering::Relaxed);
        }
    }
}

fn quiet() -> Arc<dyn EventSink> {
    Arc::new(|_: &Event| {})
}

fn json_input(kind: &str, body: &str) -> Message {
    Message {
        kind: kind.into(),
        body: Bytes::from(body.to_string()),
    }
}

/// `runs` runs of the pipeline workflow, run `n` on `"hello world <n>"`, `in_flight` at a
/// time, through `runner` if given, each checked to end with its own input reversed;
/// returns each one's time from start to completion in ms.
fn many_runs(
    workflow: &Workflow,
    store: &Arc<dyn CheckpointStore>,
    runner: Option<&Runner>,
    runs: usize,
    in_flight: usize,
) -> Result<Vec<f64>> {
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(runs));
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..in_flight)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= runs {
                            return Ok(());
                        }
                        let text = format!("hello world {n}");
                        let reversed: String = text.chars().rev().collect();
                        let started = Instant::now();
                        let input = json_input("input", &format!("\"{text}\""));
                        let mut run = match runner {
                            Some(runner) => runner.start(workflow, input, quiet())?,
                            None => workflow.start(input, store.clone(), quiet())?,
                        };
                        complete(&mut run, &format!("\"{reversed}\""))?;
                        let ms = started.elapsed().as_secs_f64() * 1e3;
                        latencies.lock().unwrap().push(ms);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a run thread panicked")?;
        }
        Ok(())
    })?;
    Ok(latencies.into_inner().unwrap())
}

/// How W6 runs its runs.
#[derive(Debug, Clone, Copy)]
enum Way {
    /// `Runner::spawn`, the runner bounding the runs in flight.
    Spawned,
    /// A thread per run in flight, each run through one `Runner`.
    Threads,
    /// A thread per run in flight, each run with its own writer.
    WriterPerRun,
}

/// `runs` runs of the pipeline workflow spawned at once on a runner that drives
/// `in_flight` at a time, each checked as [`many_runs`] checks them; returns each one's
/// time to its completion in ms, from its start (`run_started`), or with `from_spawn`
/// from when it was spawned.
fn spawned_runs(
    workflow: &Workflow,
    store: &Arc<dyn CheckpointStore>,
    runs: usize,
    in_flight: usize,
    from_spawn: bool,
) -> Result<Vec<f64>> {
    let limits = RunnerLimits {
        max_runs: in_flight,
        ..RunnerLimits::default()
    };
    let runner = Runner::with_limits(store.clone(), limits)?;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(runs)));
    let handles: Vec<_> = (0..runs)
        .map(|n| {
            let text = format!("hello world {n}");
            let input = json_input("input", &format!("\"{text}\""));
            let spawned = from_spawn.then(Instant::now);
            let (latencies, started) = (latencies.clone(), Mutex::new(spawned));
            let timer = move |event: &Event| match event {
                Event::RunStarted { .. } if !from_spawn => {
                    *started.lock().unwrap() = Some(Instant::now())
                }
                Event::RunCompleted { .. } => {
                    let since = started.lock().unwrap().expect("started first");
                    latencies
                        .lock()
                        .unwrap()
                        .push(since.elapsed().as_secs_f64() * 1e3);
                }
                _ => {}
            };
            let reversed: String = text.chars().rev().collect();
            (reversed, runner.spawn(workflow, input, Arc::new(timer)))
        })
        .collect();
    for (reversed, handle) in handles {
        let stopped = handle.wait()?;
        let outcome = stopped.outcome?;
        ensure!(
            outcome == Outcome::Completed,
            "the run ended with {outcome:?}"
        );
        let last = stopped.run.outputs().last().context("no output")?;
        let body = std::str::from_utf8(&last.message.body)?;
        ensure!(
            body == format!("\"{reversed}\""),
            "output {body}: no figure"
        );
    }
    Ok(std::mem::take(&mut *latencies.lock().unwrap()))
}

/// Runs to completion and checks the single output's body.
fn complete(run: &mut superstep::Run, expected: &str) -> Result<()> {
    let outcome = run.run()?;
    ensure!(
        outcome == Outcome::Completed,
        "the run ended with {outcome:?}"
    );
    let outputs = run.outputs();
    let last = outputs.last().context("no output")?;
    let body = std::str::from_utf8(&last.message.body)?;
    ensure!(
        body == expected,
        "output {body}, expected {expected}: no figure"
    );
    Ok(())
}

impl Bench {
    fn workflow(&self, manifest: &Path, threads: usize) -> Result<Workflow> {
        let manifest = Manifest::load(manifest)?;
        Ok(Workflow::load(Runtime::new(threads, false)?, manifest)?)
    }

    /// A new, empty directory `name` in the scratch directory. Nothing is deleted while
    /// the bench measures (the scratch directory goes at exit): on ext4 without a journal,
    /// every file created within a minute of many deletions scans past the freed inodes,
    /// which made a figure measured after a mass deletion up to a third slower.
    fn fresh_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.dir.join(name);
        std::fs::create_dir(&dir).with_context(|| format!("{}", dir.display()))?;
        Ok(dir)
    }

    fn manifest(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        let text = text.replace("@components@", self.components.to_str().unwrap());
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// W1: 200 sequential runs of the text pipeline, durable checkpoints.
    fn w1(&self) -> Result<()> {
        let workflow = self.workflow(&repo().join("guest-examples/pipeline.toml"), 0)?;
        let (mut rates, mut per_superstep) = (Vec::new(), Vec::new());
        for sample in 0..self.samples {
            let store = Arc::new(FileStore::new(self.fresh_dir(&format!("w1-{sample}"))?));
            let started = Instant::now();
            for _ in 0..200 {
                let input = json_input("input", "\"hello world\"");
                let mut run = workflow.start(input, store.clone(), quiet())?;
                complete(&mut run, "\"dlrow olleh\"")?;
            }
            let elapsed = started.elapsed().as_secs_f64();
            rates.push(200.0 / elapsed);
            per_superstep.push(elapsed / 800.0 * 1e6);
        }
        report("W1 pipeline, durable", "runs/s", rates);
        report("W1 pipeline, durable, per superstep", "us", per_superstep);
        Ok(())
    }

    /// W6: 1,000 W1 runs, each on its own input, 32 in flight: spawned on a `Runner`
    /// (one checkpoint writer for all, runs on a few threads), on 32 threads through a
    /// `Runner`, and for comparison 32 and one at a time each with its own writer; in
    /// one process through the library, durable, into one file store.
    fn w6(&self) -> Result<()> {
        let workflow = self.workflow(&repo().join("guest-examples/pipeline.toml"), 0)?;
        let ways = [
            (32, Way::Spawned),
            (32, Way::Threads),
            (32, Way::WriterPerRun),
            (1, Way::WriterPerRun),
        ];
        for (in_flight, way) in ways {
            let (mut rates, mut p50, mut p99) = (Vec::new(), Vec::new(), Vec::new());
            for sample in 0..self.samples {
                let dir = self.fresh_dir(&format!("w6-{in_flight}-{way:?}-{sample}"))?;
                let store: Arc<dyn CheckpointStore> = Arc::new(FileStore::new(dir));
                let started = Instant::now();
                let mut latencies = match way {
                    Way::Spawned => spawned_runs(&workflow, &store, 1000, in_flight, false)?,
                    Way::Threads => {
                        let runner = Runner::new(store.clone())?;
                        many_runs(&workflow, &store, Some(&runner), 1000, in_flight)?
                    }
                    Way::WriterPerRun => many_runs(&workflow, &store, None, 1000, in_flight)?,
                };
                rates.push(1000.0 / started.elapsed().as_secs_f64());
                latencies.sort_by(f64::total_cmp);
                p50.push(latencies[latencies.len() / 2]);
                p99.push(latencies[latencies.len() * 99 / 100]);
            }
            let how = match way {
                Way::Spawned => "spawned on one runner",
                Way::Threads => "a thread each, one writer",
                Way::WriterPerRun => "a thread and a writer each",
            };
            let what = format!("W6 many runs, durable, {in_flight} in flight, {how}");
            report(&what, "runs/s", rates);
            report(&format!("{what}, p50"), "ms", p50);
            report(&format!("{what}, p99"), "ms", p99);
        }
        Ok(())
    }

    /// W2: a token around 8 stations for 2,000 supersteps.
    fn w2(&self) -> Result<()> {
        let workflow = self.workflow(&repo().join("guest-examples/ring.toml"), 0)?;
        for (label, durability) in [
            (
                "W2 ring, durable checkpoint per superstep",
                Durability::Superstep,
            ),
            ("W2 ring, checkpointing off", Durability::Off),
        ] {
            let mut rates = Vec::new();
            for sample in 0..self.samples {
                let dir = self.fresh_dir(&format!("w2-{durability:?}-{sample}"))?;
                let store = Arc::new(FileStore::new(dir));
                let input = json_input("token", "{\"hops\":0}");
                let started = Instant::now();
                let mut run = workflow.start(input, store, quiet())?;
                run.set_durability(durability);
                complete(&mut run, "{\"hops\":2000}")?;
                rates.push(2000.0 / started.elapsed().as_secs_f64());
            }
            report(label, "supersteps/s", rates);
        }
        Ok(())
    }

    /// W3: dispatch -> 64 workers -> gather, 50 rounds.
    fn w3(&self) -> Result<()> {
        let mut text = String::from(
            "[workflow]\nname = \"fan-out\"\nstart = \"dispatch\"\nmax_supersteps = 200\n\n\
             [[executors]]\nid = \"dispatch\"\ncomponent = \"@components@/fanout.wasm\"\nconfig = { role = \"dispatch\" }\n\n\
             [[executors]]\nid = \"gather\"\ncomponent = \"@components@/fanout.wasm\"\nconfig = { role = \"gather\", workers = 64, rounds = 50 }\n\n\
             [[edges]]\nfrom = \"gather\"\nto = \"dispatch\"\n",
        );
        for w in 0..64 {
            text += &format!(
                "\n[[executors]]\nid = \"worker-{w:02}\"\ncomponent = \"@components@/fanout.wasm\"\nconfig = {{ role = \"worker\" }}\n\
                 \n[[edges]]\nfrom = \"dispatch\"\nto = \"worker-{w:02}\"\n\
                 \n[[edges]]\nfrom = \"worker-{w:02}\"\nto = \"gather\"\n"
            );
        }
        let manifest = self.manifest("w3.toml", &text)?;
        let expected = (0..50u64)
            .map(|r| (r * 1000..r * 1000 + 1000).sum::<u64>())
            .sum::<u64>()
            * 64;
        let mut off_rates = Vec::new();
        for (threads, durability) in [
            (2, Durability::Superstep),
            (1, Durability::Off),
            (2, Durability::Off),
        ] {
            let workflow = self.workflow(&manifest, threads)?;
            let (mut messages, mut rounds) = (Vec::new(), Vec::new());
            for sample in 0..self.samples {
                let dir = self.fresh_dir(&format!("w3-{durability:?}-{threads}-{sample}"))?;
                let store = Arc::new(FileStore::new(dir));
                let counter = Arc::new(Counter::default());
                let started = Instant::now();
                let mut run =
                    workflow.start(json_input("round", "{\"round\":0}"), store, counter.clone())?;
                run.set_durability(durability);
                complete(&mut run, &expected.to_string())?;
                let elapsed = started.elapsed().as_secs_f64();
                let routed = counter.routed.load(Ordering::Relaxed) + 1;
                messages.push(routed as f64 / elapsed);
                rounds.push(50.0 / elapsed);
            }
            let mode = match durability {
                Durability::Superstep => "durable",
                _ => "checkpointing off",
            };
            if durability == Durability::Off {
                off_rates.push(median(&messages));
            }
            report(
                &format!("W3 fan-out/fan-in, {mode}, {threads} thread(s)"),
                "messages/s",
                messages,
            );
            report(
                &format!("W3 fan-out/fan-in, {mode}, {threads} thread(s)"),
                "rounds/s",
                rounds,
            );
        }
        println!(
            "{:<50} {:>10.2} x",
            "W3 scaling 1 -> 2 threads (checkpointing off)",
            off_rates[1] / off_rates[0]
        );
        Ok(())
    }

    /// W4: 8 executors with 8 MiB states each, one superstep, one durable checkpoint.
    fn w4(&self) -> Result<()> {
        let mut text = String::from(
            "[workflow]\nname = \"big-state\"\nstart = \"start\"\n\n\
             [[executors]]\nid = \"start\"\ncomponent = \"@components@/upper.wasm\"\n",
        );
        for b in 0..8 {
            text += &format!(
                "\n[[executors]]\nid = \"big-{b}\"\ncomponent = \"@components@/bigstate.wasm\"\nconfig = {{ bytes = 8388608 }}\n\
                 \n[[edges]]\nfrom = \"start\"\nto = \"big-{b}\"\n"
            );
        }
        let manifest = self.manifest("w4.toml", &text)?;
        let workflow = self.workflow(&manifest, 0)?;
        let run_dir = self.fresh_dir("w4-run")?;
        let store = Arc::new(FileStore::new(&run_dir));
        let mut run = workflow.start(json_input("input", "\"go\""), store.clone(), quiet())?;
        ensure!(run.run()? == Outcome::Completed, "W4 did not complete");
        let last = run.last_checkpoint().context("no checkpoint")?.to_string();
        let checkpoint = store.load(&last)?;
        let state_bytes: usize = run
            .states()
            .iter()
            .filter(|(id, _)| id.starts_with("big-"))
            .map(|(_, state)| state.len())
            .sum();
        ensure!(
            state_bytes == 64 << 20,
            "W4 states hold {state_bytes} bytes"
        );
        let mib = state_bytes as f64 / (1 << 20) as f64;

        let (mut write, mut raw, mut size, mut resume) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for sample in 0..self.samples {
            let dir = self.fresh_dir(&format!("w4-{sample}"))?;
            let started = Instant::now();
            FileStore::new(&dir).save(&checkpoint)?;
            write.push(mib / started.elapsed().as_secs_f64());
            size.push(dir_size(&dir)? as f64 / (64u64 << 20) as f64);

            raw.push(mib / raw_disk_write(&dir.join("raw.bin"), 64 << 20)?.as_secs_f64());

            let file = FileStore::new(&dir).path_of(&checkpoint.checkpoint_id);
            let started = Instant::now();
            let read = superstep::checkpoint::read_file(&file, None)?;
            let resumed = workflow.resume(read, false, store.clone(), quiet())?;
            resume.push(started.elapsed().as_secs_f64() * 1e3);
            ensure!(
                resumed.states() == run.states(),
                "W4 resume restored other states"
            );
        }
        let ratio = median(&write) / median(&raw);
        report("W4 big state, checkpoint write", "MiB/s", write);
        report("W4 raw disk write+fsync, same directory", "MiB/s", raw);
        println!("{:<50} {:>10.2} x", "W4 checkpoint write / raw disk", ratio);
        report("W4 checkpoint size on disk / 64 MiB", "x", size);
        report("W4 resume (read, verify, restore)", "ms", resume);
        Ok(())
    }

    /// W5: process start to the first superstep completed after resuming W1 from its
    /// second checkpoint, with a cold and a warm compile cache.
    fn w5(&self) -> Result<()> {
        let dir = self.fresh_dir("w5")?;
        let workflow = self.workflow(&repo().join("guest-examples/pipeline.toml"), 0)?;
        let store = Arc::new(FileStore::new(&dir));
        let mut run = workflow.start(
            json_input("input", "\"hello world\""),
            store.clone(),
            quiet(),
        )?;
        complete(&mut run, "\"dlrow olleh\"")?;
        let mut listing = store.list()?;
        listing.sort_by_key(|l| l.summary.as_ref().map(|s| s.superstep).unwrap_or_default());
        let second = listing
            .iter()
            .filter_map(|l| l.summary.as_ref().ok())
            .find(|s| s.superstep == 2)
            .context("no second checkpoint")?
            .checkpoint_id
            .clone();
        let file = store.path_of(&second);
        let warm_cache = self.fresh_dir("w5-cache-warm")?;
        first_superstep_after_resume(&file, &warm_cache, &self.fresh_dir("w5-out")?)?;
        for (label, warm) in [
            ("W5 cold resume, compile cache cold", false),
            ("W5 cold resume, compile cache warm", true),
        ] {
            let mut times = Vec::new();
            for sample in 0..self.samples {
                let cache = if warm {
                    warm_cache.clone()
                } else {
                    self.fresh_dir(&format!("w5-cache-cold-{sample}"))?
                };
                let out = self.fresh_dir(&format!("w5-out-{warm}-{sample}"))?;
                times.push(first_superstep_after_resume(&file, &cache, &out)?.as_secs_f64() * 1e3);
            }
            report(label, "ms", times);
        }
        Ok(())
    }
}

impl Bench {
    /// The three-language pipeline (`polyglot.toml`): process start to exit with a cold
    /// compile cache, with the interpreters' baseline code cached and with optimized code
    /// cached (`superstep compile`); and for each tier, the time of one `handle` call per
    /// language, measured by this bench run again in a process of its own.
    fn languages(&self) -> Result<()> {
        let status = Command::new("bash")
            .arg(repo().join("guest-examples/build-polyglot.sh"))
            .status()?;
        ensure!(status.success(), "guest-examples/build-polyglot.sh failed");
        let polyglot = repo().join("guest-examples/polyglot.toml");
        let mut cold = Vec::new();
        for sample in 0..self.samples {
            let cache = self.fresh_dir(&format!("languages-cache-cold-{sample}"))?;
            let out = self.fresh_dir(&format!("languages-out-cold-{sample}"))?;
            cold.push(run_to_output(&polyglot, &cache, &out)?.as_secs_f64() * 1e3);
        }
        report("languages: run, compile cache cold", "ms", cold);

        let baseline = self.fresh_dir("languages-cache-baseline")?;
        superstep_with_cache(&["validate"], &polyglot, &baseline)?;
        let optimized = self.fresh_dir("languages-cache-optimized")?;
        let started = Instant::now();
        superstep_with_cache(&["compile"], &polyglot, &optimized)?;
        let compile = started.elapsed().as_secs_f64() * 1e3;
        report(
            "languages: superstep compile, cache cold",
            "ms",
            vec![compile],
        );
        for (tier, cache) in [("baseline", &baseline), ("optimized", &optimized)] {
            let mut warm = Vec::new();
            for sample in 0..self.samples {
                let out = self.fresh_dir(&format!("languages-out-{tier}-{sample}"))?;
                warm.push(run_to_output(&polyglot, cache, &out)?.as_secs_f64() * 1e3);
            }
            report(&format!("languages: run, {tier} code cached"), "ms", warm);
            let status = Command::new(std::env::current_exe()?)
                .arg(LANGUAGE_CALLS)
                .env(superstep::COMPILE_CACHE_ENV, cache)
                .env(TIER_ENV, tier)
                .env("SUPERSTEP_BENCH_DIR", &self.dir)
                .status()?;
            ensure!(status.success(), "{LANGUAGE_CALLS} failed");
        }
        Ok(())
    }

    /// The time of one `handle` call per language (one message on an instance made for
    /// the run; checkpointing off), on the code the compile cache has; `tier` names it.
    fn language_calls(&self, tier: &str) -> Result<()> {
        let polyglot = repo().join("guest-examples/polyglot.toml");
        // The same pipeline with the C `upper`, for the C figure.
        let text = std::fs::read_to_string(&polyglot)?
            .replace("components/", "@components@/")
            .replace("upper_py.wasm", "upper_c.wasm");
        let with_c = self.manifest("languages-c.toml", &text)?;
        let mut calls: Vec<(String, Vec<f64>)> = Vec::new();
        for (manifest, steps) in [
            (
                &polyglot,
                &[
                    ("upper", "Python"),
                    ("reverse", "JavaScript"),
                    ("lower", "Rust"),
                    ("finalize", "Python"),
                ][..],
            ),
            (&with_c, &[("upper", "C")][..]),
        ] {
            let workflow = self.workflow(manifest, 0)?;
            let durations = Arc::new(Mutex::new(Vec::new()));
            let sink = durations.clone();
            let sink = Arc::new(move |event: &Event| {
                if let Event::ExecutorCompleted {
                    executor,
                    duration_us,
                    ..
                } = event
                {
                    sink.lock().unwrap().push((executor.clone(), *duration_us));
                }
            });
            let store = Arc::new(superstep::checkpoint::MemoryStore::default());
            for _ in 0..200 {
                let input = json_input("input", "\"hello world\"");
                let mut run = workflow.start(input, store.clone(), sink.clone())?;
                run.set_durability(Durability::Off);
                complete(&mut run, "\"dlrow olleh\"")?;
            }
            let durations = durations.lock().unwrap();
            for (executor, language) in steps {
                let values = durations
                    .iter()
                    .filter(|(e, _)| e == executor)
                    .map(|(_, us)| *us as f64)
                    .collect();
                calls.push((
                    format!("languages: one call, {executor} ({language}, {tier})"),
                    values,
                ));
            }
        }
        for (label, values) in calls {
            report(&label, "us", values);
        }
        Ok(())
    }
}

/// `languages` runs the bench again with this argument for the per-call figures of one
/// compile cache, named by [`TIER_ENV`].
const LANGUAGE_CALLS: &str = "languages-calls";
const TIER_ENV: &str = "SUPERSTEP_BENCH_TIER";

/// Runs `superstep <command> <manifest>` with the compile cache `cache`; it must succeed.
fn superstep_with_cache(command: &[&str], manifest: &Path, cache: &Path) -> Result<()> {
    let status = Command::new(env!("CARGO_BIN_EXE_superstep"))
        .args(command)
        .arg(manifest)
        .env(superstep::COMPILE_CACHE_ENV, cache)
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "superstep {command:?} failed: {status}");
    Ok(())
}

/// Spawns `superstep run <manifest>` on the text pipeline's input and times it from
/// process start to exit, checking its output.
fn run_to_output(manifest: &Path, cache: &Path, out: &Path) -> Result<Duration> {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_superstep"))
        .arg("run")
        .arg(manifest)
        .args(["--input", "\"hello world\"", "--events", "quiet"])
        .arg("--checkpoint-dir")
        .arg(out)
        .env(superstep::COMPILE_CACHE_ENV, cache)
        .stderr(Stdio::inherit())
        .output()?;
    let elapsed = started.elapsed();
    ensure!(
        output.status.success(),
        "superstep run failed: {}",
        output.status
    );
    ensure!(
        output.stdout == b"\"dlrow olleh\"\n",
        "output {:?}: no figure",
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(elapsed)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Spawns `superstep resume` and times it to its first `superstep_completed` event.
fn first_superstep_after_resume(checkpoint: &Path, cache: &Path, out: &Path) -> Result<Duration> {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_superstep"))
        .arg("resume")
        .arg(checkpoint)
        .arg("--checkpoint-dir")
        .arg(out)
        .args(["--events", "jsonl"])
        .env(superstep::COMPILE_CACHE_ENV, cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut elapsed = None;
    for line in BufReader::new(stdout).lines() {
        if line?.contains("\"event\":\"superstep_completed\"") && elapsed.is_none() {
            elapsed = Some(started.elapsed());
        }
    }
    let status = child.wait()?;
    ensure!(status.success(), "superstep resume failed: {status}");
    elapsed.context("no superstep completed")
}

/// Writes `len` random bytes to `path` and fsyncs it: the raw disk's throughput.
fn raw_disk_write(path: &Path, len: usize) -> Result<Duration> {
    let mut bytes = vec![0u8; len];
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let started = Instant::now();
    let mut file = std::fs::File::create(path)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    let elapsed = started.elapsed();
    std::fs::remove_file(path)?;
    Ok(elapsed)
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The example components, built by `guest-examples/build.sh` when missing.
fn components() -> Result<PathBuf> {
    let dir = repo().join("guest-examples/components");
    let needed = [
        "upper", "reverse", "lower", "finalize", "ring", "fanout", "bigstate",
    ];
    if needed
        .iter()
        .any(|c| !dir.join(format!("{c}.wasm")).exists())
    {
        let status = Command::new("bash")
            .arg(repo().join("guest-examples/build.sh"))
            .status()?;
        if !status.success() {
            bail!("guest-examples/build.sh failed");
        }
    }
    Ok(dir)
}

/// CPU model, cores and the filesystem of the checkpoint directory.
fn machine(dir: &Path) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    // findmnt names ext4 where statfs's magic only says ext2/ext3.
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .arg(dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let fs = output("findmnt", &["-n", "-o", "FSTYPE", "-T"])
        .or_else(|| output("stat", &["-f", "-c", "%T"]))
        .unwrap_or_else(|| "unknown".into());
    format!(
        "{cpu}, {cores} cores; checkpoints on {fs} ({})",
        dir.display()
    )
}
