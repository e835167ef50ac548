//! Many runs at once through one `Runner`: their checkpoints made durable together by
//! one writer, each run ending exactly as it ends alone, its events its own, and a
//! failed save failing only the runs whose checkpoints it held.

use crate::common::*;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use superstep::checkpoint::{Listed, journal::JournalRecord};
use superstep::error::host;
use superstep::{
    Checkpoint, CheckpointStore, Event, EventSink, FileStore, MemoryStore, Message, Outcome,
    Runner, Runtime, Workflow,
};

/// The three workflows the runs are made of.
struct Workflows {
    pipeline: Workflow,
    plan_review: Workflow,
    ring: Workflow,
}

impl Workflows {
    fn load(ws: &Workspace) -> Workflows {
        let load = |path: &std::path::Path| {
            let manifest = superstep::Manifest::load(path).unwrap();
            Workflow::load(Runtime::new(2, false).unwrap(), manifest).unwrap()
        };
        Workflows {
            pipeline: load(&ws.pipeline()),
            plan_review: load(&ws.plan_review()),
            ring: load(&ws.ring(4, 12, &[])),
        }
    }
}

/// How a run ended: its outputs and states, as JSON where they are.
#[derive(Debug, PartialEq)]
struct Ending {
    outcome: String,
    outputs: Vec<String>,
    states: BTreeMap<String, String>,
}

/// How a run is run: spawned on a runner, or alone with a store of its own on the
/// caller's thread.
enum Via<'a> {
    Runner(&'a Runner),
    Alone,
}

impl Via<'_> {
    /// Runs `workflow` on `input` until it stops; a paused run is answered with
    /// approval once and goes on.
    fn run(
        &self,
        workflow: &Workflow,
        input: Message,
        sink: Arc<dyn EventSink>,
    ) -> superstep::Result<(superstep::Run, Outcome)> {
        let approval = || Message {
            kind: "response".into(),
            body: Bytes::from_static(b"{\"approved\": true}"),
        };
        match self {
            Via::Runner(runner) => {
                let mut stopped = runner.spawn(workflow, input, sink).wait()?;
                if let Ok(Outcome::Paused { pending }) = &stopped.outcome {
                    stopped.run.respond(&pending[0], approval())?;
                    stopped = runner.spawn_run(stopped.run).wait()?;
                }
                Ok((stopped.run, stopped.outcome?))
            }
            Via::Alone => {
                let mut run = workflow.start(input, Arc::new(MemoryStore::new()), sink)?;
                let mut outcome = run.run()?;
                if let Outcome::Paused { pending } = &outcome {
                    run.respond(&pending[0], approval())?;
                    outcome = run.run()?;
                }
                Ok((run, outcome))
            }
        }
    }
}

impl Workflows {
    /// Run `n`: a pipeline, a plan review (answered once), or a ring, by `n % 3`.
    fn job(&self, n: usize) -> (&Workflow, Message) {
        let message = |kind: &str, body: String| Message {
            kind: kind.into(),
            body: Bytes::from(body),
        };
        match n % 3 {
            0 => (&self.pipeline, message("input", format!("\"hello {n}\""))),
            1 => (&self.plan_review, message("task", format!("\"task {n}\""))),
            _ => (
                &self.ring,
                message("token", format!("{{\"hops\": {}}}", n % 5)),
            ),
        }
    }
}

/// Runs run `n` (see [`Workflows::job`]) `via` a runner or alone, to its end, and says
/// how it ended; `sink` gets its events.
fn run_one(
    workflows: &Workflows,
    n: usize,
    sink: Arc<dyn EventSink>,
    via: &Via,
) -> superstep::Result<Ending> {
    let (workflow, input) = workflows.job(n);
    let (run, outcome) = via.run(workflow, input, sink)?;
    Ok(ending(&run, &outcome))
}

/// How `run` ended with `outcome`.
fn ending(run: &superstep::Run, outcome: &Outcome) -> Ending {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    Ending {
        outcome: format!("{outcome:?}"),
        outputs: run
            .outputs()
            .iter()
            .map(|o| text(&o.message.body))
            .collect(),
        states: run
            .states()
            .into_iter()
            .map(|(id, state)| (id.to_string(), text(state)))
            .collect(),
    }
}

/// A sink that keeps the run ids its events name.
fn run_ids() -> (Arc<Mutex<Vec<String>>>, Arc<dyn EventSink>) {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let kept = ids.clone();
    let sink = move |event: &Event| {
        let id = match event {
            Event::RunStarted { run_id, .. }
            | Event::RunCompleted { run_id, .. }
            | Event::RunPaused { run_id, .. }
            | Event::RunFailed { run_id, .. } => run_id.clone(),
            _ => return,
        };
        kept.lock().unwrap().push(id);
    };
    (ids, Arc::new(sink))
}

#[test]
fn two_hundred_runs_at_once_end_as_each_ends_alone() {
    let ws = Workspace::new();
    let workflows = Workflows::load(&ws);
    let store: Arc<dyn CheckpointStore> = Arc::new(FileStore::new(ws.path().join("shared")));
    let runner = Runner::new(store.clone()).unwrap();
    // All spawned at once, then each waited for (and a paused one answered).
    let spawned: Vec<_> = (0..200)
        .map(|n| {
            let (ids, sink) = run_ids();
            let (workflow, input) = workflows.job(n);
            (n, ids, runner.spawn(workflow, input, sink))
        })
        .collect();
    let mut endings = BTreeMap::new();
    for (n, ids, handle) in spawned {
        let mut stopped = handle.wait().unwrap();
        if let Ok(Outcome::Paused { pending }) = &stopped.outcome {
            let approval = Message {
                kind: "response".into(),
                body: Bytes::from_static(b"{\"approved\": true}"),
            };
            stopped.run.respond(&pending[0], approval).unwrap();
            stopped = runner.spawn_run(stopped.run).wait().unwrap();
        }
        let outcome = stopped.outcome.unwrap();
        let ids = ids.lock().unwrap().clone();
        assert!(
            ids.len() >= 2 && ids.iter().all(|id| id == &ids[0]),
            "run {n}: {ids:?}"
        );
        endings.insert(n, (ending(&stopped.run, &outcome), ids[0].clone()));
    }
    for (n, (ending, _)) in &endings {
        let expected = run_one(&workflows, *n, Arc::new(|_: &Event| {}), &Via::Alone).unwrap();
        assert_eq!(ending, &expected, "run {n}");
    }
    // Every checkpoint in the store is whole, and each run's last one is complete.
    let listing = store.list().unwrap();
    assert!(listing.iter().all(|l| l.summary.is_ok()));
    for (_, run_id) in endings.values() {
        let latest = store.latest(Some(run_id)).unwrap().unwrap();
        assert_eq!(latest.status, superstep::Status::Completed, "run {run_id}");
    }
}

/// A memory store that calls `before_save` before each save: it may hold the save, or
/// refuse it.
struct HookedStore {
    inner: MemoryStore,
    before_save: Box<BeforeSave>,
}

/// What a [`HookedStore`] calls before each save.
type BeforeSave = dyn Fn(&Checkpoint) -> superstep::Result<()> + Send + Sync;

impl HookedStore {
    fn new(
        before_save: impl Fn(&Checkpoint) -> superstep::Result<()> + Send + Sync + 'static,
    ) -> HookedStore {
        HookedStore {
            inner: MemoryStore::new(),
            before_save: Box::new(before_save),
        }
    }
}

impl CheckpointStore for HookedStore {
    fn save(&self, checkpoint: &Checkpoint) -> superstep::Result<String> {
        (self.before_save)(checkpoint)?;
        self.inner.save(checkpoint)
    }
    fn load(&self, id: &str) -> superstep::Result<Checkpoint> {
        self.inner.load(id)
    }
    fn list(&self) -> superstep::Result<Vec<Listed>> {
        self.inner.list()
    }
    fn delete(&self, id: &str) -> superstep::Result<()> {
        self.inner.delete(id)
    }
    fn append_journal(&self, base: &str, records: &[JournalRecord]) -> superstep::Result<()> {
        self.inner.append_journal(base, records)
    }
    fn read_journal(&self, base: &str) -> superstep::Result<Vec<JournalRecord>> {
        self.inner.read_journal(base)
    }
    fn remove_journal(&self, base: &str) -> superstep::Result<()> {
        self.inner.remove_journal(base)
    }
}

#[test]
fn a_failed_save_fails_only_the_runs_whose_checkpoints_it_held() {
    let ws = Workspace::new();
    let workflows = Workflows::load(&ws);
    // The pipeline runs on "hello 3" and "hello 6" cannot save their second checkpoint.
    let doomed = |c: &Checkpoint| {
        c.superstep == 2
            && c.executors.get("upper").is_some_and(|e| {
                e.state.to_text().contains("hello 3") || e.state.to_text().contains("hello 6")
            })
    };
    let store = Arc::new(HookedStore::new(move |checkpoint| {
        match doomed(checkpoint) {
            true => Err(host("No space left on device (injected)")),
            false => Ok(()),
        }
    }));
    let runner = Runner::new(store.clone()).unwrap();
    let outcomes: Vec<(usize, Result<Ending, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..9)
            .map(|n| {
                let (runner, workflows) = (&runner, &workflows);
                scope.spawn(move || {
                    let quiet: Arc<dyn EventSink> = Arc::new(|_: &Event| {});
                    (
                        n,
                        run_one(workflows, n, quiet, &Via::Runner(runner))
                            .map_err(|e| format!("{e:#}")),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (n, outcome) in outcomes {
        match n {
            3 | 6 => {
                let error = outcome.unwrap_err();
                assert!(
                    error.contains("superstep 1: checkpoint not saved"),
                    "run {n}: {error}"
                );
                assert!(error.contains("(injected)"), "run {n}: {error}");
            }
            _ => {
                let ending = outcome.unwrap_or_else(|e| panic!("run {n} failed: {e}"));
                assert_eq!(ending.outcome, "Completed", "run {n}");
            }
        }
    }
}

/// The child process of the SIGKILL test: ring runs spawned on one `Runner`, 32 in
/// flight, into `$SUPERSTEP_MANY_RUNS_DIR`, run `n` from `{"hops": n % 7}`, each
/// announcing `started <n> <run id>` on stdout once it has a run id, until killed.
#[test]
#[ignore = "the child process of sigkill_with_32_runs_in_flight_loses_no_run"]
fn many_runs_child() {
    let (Some(dir), Some(manifest)) = (
        std::env::var_os("SUPERSTEP_MANY_RUNS_DIR"),
        std::env::var_os("SUPERSTEP_MANY_RUNS_MANIFEST"),
    ) else {
        return;
    };
    let manifest = superstep::Manifest::load(std::path::Path::new(&manifest)).unwrap();
    let ring = Workflow::load(Runtime::new(2, false).unwrap(), manifest).unwrap();
    let runner = Runner::new(Arc::new(FileStore::new(dir))).unwrap();
    let mut in_flight = std::collections::VecDeque::new();
    for n in 0.. {
        if in_flight.len() == 32 {
            let handle: superstep::RunHandle = in_flight.pop_front().unwrap();
            assert_eq!(handle.wait().unwrap().outcome.unwrap(), Outcome::Completed);
        }
        let announce = move |event: &Event| {
            if let Event::RunStarted { run_id, .. } = event {
                println!("started {n} {run_id}");
            }
        };
        in_flight.push_back(runner.spawn(&ring, ring_input(n), Arc::new(announce)));
    }
}

fn ring_input(n: usize) -> Message {
    Message {
        kind: "token".into(),
        body: Bytes::from(format!("{{\"hops\": {}}}", n % 7)),
    }
}

#[test]
fn sigkill_with_32_runs_in_flight_loses_no_run() {
    let ws = Workspace::new();
    let manifest = ws.ring(4, 120, &[(1, 70_000)]);
    let dir = ws.path().join("runs");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    // Killed once this many runs have started: by then about 32 are in flight.
    let kill_after = 40 + seed % 60;
    println!("killing after {kill_after} runs started");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "many_runs::many_runs_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("SUPERSTEP_MANY_RUNS_DIR", &dir)
        .env("SUPERSTEP_MANY_RUNS_MANIFEST", &manifest)
        .env(superstep::COMPILE_CACHE_ENV, test_compile_cache())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut started: Vec<(usize, String)> = Vec::new();
    use std::io::BufRead;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let mut words = line.split_whitespace();
        if words.next() == Some("started") {
            let n = words.next().unwrap().parse().unwrap();
            started.push((n, words.next().unwrap().to_string()));
            if started.len() == kill_after {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(
        started.len(),
        kill_after,
        "the child ended before it was killed"
    );

    // No checkpoint is damaged, and every run that saved one goes on from its latest to
    // the end it has alone.
    let store: Arc<dyn CheckpointStore> = Arc::new(FileStore::new(&dir));
    assert!(store.list().unwrap().iter().all(|l| l.summary.is_ok()));
    let ring = {
        let manifest = superstep::Manifest::load(&manifest).unwrap();
        Workflow::load(Runtime::new(2, false).unwrap(), manifest).unwrap()
    };
    let runner = Runner::new(store.clone()).unwrap();
    let quiet = || -> Arc<dyn EventSink> { Arc::new(|_: &Event| {}) };
    let (mut resumed, mut unfinished) = (0, 0);
    for (n, run_id) in &started {
        let Some(latest) = store.latest(Some(run_id)).unwrap() else {
            continue; // killed before its first checkpoint: it never was durable
        };
        let checkpoint = store.load(&latest.checkpoint_id).unwrap();
        let mut run = runner.resume(&ring, checkpoint, false, quiet()).unwrap();
        assert_eq!(run.run().unwrap(), Outcome::Completed, "run {n}");
        let mut alone = ring
            .start(ring_input(*n), Arc::new(MemoryStore::new()), quiet())
            .unwrap();
        assert_eq!(alone.run().unwrap(), Outcome::Completed);
        assert_eq!(run.outputs(), alone.outputs(), "run {n}");
        assert_eq!(run.states(), alone.states(), "run {n}");
        resumed += 1;
        unfinished += usize::from(latest.status != superstep::Status::Completed);
    }
    println!("{resumed} runs resumed, {unfinished} of them cut short by the kill");
    assert!(unfinished > 0, "the kill caught no run in flight");
}

#[test]
fn a_runner_drives_no_more_runs_than_its_limits_allow() {
    let ws = Workspace::new();
    let workflows = Workflows::load(&ws);
    let limits = superstep::RunnerLimits {
        max_runs: 4,
        threads: 2,
        // Less than one checkpoint: each save waits until nothing else is waiting.
        max_bytes_waiting: 1,
    };
    let store = Arc::new(FileStore::new(ws.path().join("bounded")));
    let runner = Runner::with_limits(store, limits).unwrap();
    let (alive, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let handles: Vec<_> = (0..60)
        .map(|n| {
            // Counted from the run's start to its end: while it holds a place.
            let (alive, most) = (alive.clone(), most.clone());
            let sink: Arc<dyn EventSink> = Arc::new(move |event: &Event| match event {
                Event::RunStarted { .. } => {
                    let now = alive.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                }
                Event::RunCompleted { .. } | Event::RunFailed { .. } => {
                    alive.fetch_sub(1, Ordering::SeqCst);
                }
                _ => {}
            });
            let (workflow, input) = workflows.job(n * 3);
            runner.spawn(workflow, input, sink)
        })
        .collect();
    // Collected last: a run that stopped holds no place while it waits to be collected.
    for (n, handle) in handles.into_iter().enumerate().rev() {
        let outcome = handle.wait().unwrap().outcome.unwrap();
        assert_eq!(outcome, Outcome::Completed, "run {n}");
    }
    let most = most.load(Ordering::SeqCst);
    assert!((1..=4).contains(&most), "{most} runs at once");
}

/// A gate that saves wait at until it is opened.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn pass(&self) {
        drop(
            self.opened
                .wait_while(self.open.lock().unwrap(), |open| !*open),
        );
    }
}

#[test]
fn spawned_runs_waiting_for_their_saves_hold_no_thread() {
    let ws = Workspace::new();
    let workflows = Workflows::load(&ws);
    let limits = superstep::RunnerLimits {
        threads: 2,
        ..superstep::RunnerLimits::default()
    };
    let gate = Arc::new(Gate::default());
    let closed = gate.clone();
    let store = Arc::new(HookedStore::new(move |_| {
        closed.pass();
        Ok(())
    }));
    let runner = Runner::with_limits(store, limits).unwrap();
    let (began, beginnings) = std::sync::mpsc::channel();
    let runs = 20;
    // No save can finish, so every run waits for its first checkpoint once it ran its
    // supersteps. Each is spawned once the one before began: were a run waiting for a
    // save to hold one of the two threads, the third could never begin.
    let mut handles = Vec::new();
    for n in 0..runs {
        let began = Mutex::new(began.clone());
        let sink = move |event: &Event| {
            if let Event::SuperstepStarted { superstep: 0, .. } = event {
                began.lock().unwrap().send(()).unwrap();
            }
        };
        let (workflow, input) = workflows.job(n * 3);
        handles.push(runner.spawn(workflow, input, Arc::new(sink)));
        let waited = beginnings.recv_timeout(std::time::Duration::from_secs(120));
        assert!(waited.is_ok(), "only {n} of {runs} runs began");
    }
    gate.open();
    for handle in handles {
        let stopped = handle.wait().unwrap();
        assert_eq!(stopped.outcome.unwrap(), Outcome::Completed);
        assert_eq!(stopped.run.outputs().len(), 1);
    }
}
