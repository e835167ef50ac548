//! Runs in PostgreSQL driven by `superstep worker` processes: submitted runs spread over
//! workers and end as they end alone; a worker killed mid-superstep is taken over
//! within its lease; a stopped worker's late writes are refused; a paused run answered
//! on another worker; a graceful stop gives runs back; bad input refused.

use crate::common::*;
use crate::postgres_server::Postgres;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use superstep::{Event, MemoryStore, Message, Runtime, Workflow};

/// A `superstep worker` process, its stderr lines readable as they come.
pub(crate) struct WorkerProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl WorkerProcess {
    pub(crate) fn start(ws: &Workspace, url: &str, name: &str, args: &[&str]) -> WorkerProcess {
        WorkerProcess::start_with_env(ws, url, name, args, &[])
    }

    /// [`WorkerProcess::start`] with `env` set.
    pub(crate) fn start_with_env(
        ws: &Workspace,
        url: &str,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        let cache = ws.path().join(format!("cache-{name}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_superstep"))
            .args(["worker", "--store", url, "--name", name, "--cache-dir"])
            .arg(&cache)
            .args(args)
            .envs(env.iter().copied())
            .env(superstep::COMPILE_CACHE_ENV, test_compile_cache())
            .current_dir(ws.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a worker");
        let (line, lines) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for text in stderr.lines().map_while(Result::ok) {
                if line.send(text).is_err() {
                    return;
                }
            }
        });
        let worker = WorkerProcess { child, lines };
        worker.wait_for("started");
        worker
    }

    /// The next stderr line that contains `text` (within two minutes).
    pub(crate) fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("the worker never said '{text}'"),
            }
        }
    }

    pub(crate) fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the process to exit; its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        self.child.wait().unwrap().code()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A migrated database of the shared server.
pub(crate) fn database(ws: &Workspace) -> String {
    let url = Postgres::shared().database();
    ws.superstep(&["db", "migrate", "--store", &url])
        .assert_code(0);
    url
}

pub(crate) fn submit(
    ws: &Workspace,
    url: &str,
    manifest: &Path,
    input: &str,
    kind: &str,
) -> String {
    let manifest = manifest.to_str().unwrap();
    let submitted = ws.superstep(&[
        "submit",
        manifest,
        "--input",
        input,
        "--input-kind",
        kind,
        "--store",
        url,
    ]);
    submitted.assert_code(0);
    submitted.stdout.trim().to_string()
}

/// `runs wait`: the run's exit code once it stops.
pub(crate) fn wait(ws: &Workspace, url: &str, run: &str) -> i32 {
    let waited = ws.superstep(&["runs", "wait", run, "--timeout", "120s", "--store", url]);
    waited.code
}

/// `runs show` as JSON.
pub(crate) fn show(ws: &Workspace, url: &str, run: &str) -> Value {
    let shown = ws.superstep(&["runs", "show", run, "--store", url]);
    shown.assert_code(0);
    serde_json::from_str(&shown.stdout).unwrap()
}

/// The output bodies `runs show` reports, as JSON.
pub(crate) fn outputs(shown: &Value) -> Vec<Value> {
    shown["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["body"].clone())
        .collect()
}

/// The outputs of `manifest` run alone on `input`, as JSON.
fn alone(manifest: &Path, input: &str, kind: &str) -> Vec<Value> {
    let loaded = superstep::Manifest::load(manifest).unwrap();
    let workflow = Workflow::load(Runtime::new(1, false).unwrap(), loaded).unwrap();
    let input = Message {
        kind: kind.into(),
        body: input.as_bytes().to_vec().into(),
    };
    let quiet: Arc<dyn superstep::EventSink> = Arc::new(|_: &Event| {});
    let mut run = workflow
        .start(input, Arc::new(MemoryStore::new()), quiet)
        .unwrap();
    run.run().unwrap();
    run.outputs()
        .iter()
        .map(|o| serde_json::from_slice(&o.message.body).unwrap())
        .collect()
}

/// `src` sends to three probes, which all report to `sink`, which yields what it gets.
/// With a gate, `slow` finishes only once the workspace's gate is open.
fn fan_out(ws: &Workspace, gated: bool) -> PathBuf {
    let slow = match gated {
        true => {
            "dirs = [{ host = \"gate\", guest = \"/gate\" }]\nconfig = { forward = [{ kind = \"done\" }], wait_for = \"/gate/open\" }"
        }
        false => "config = { forward = [{ kind = \"done\" }] }",
    };
    if gated {
        ws.set_gate(false);
    }
    let mut text = String::from(
        "[workflow]\nname = \"fan-out\"\nstart = \"src\"\n\n[[executors]]\nid = \"src\"\ncomponent = \"@test-guests@/probe.wasm\"\nconfig = { forward = [{ kind = \"work\" }] }\n",
    );
    for fast in ["fast1", "fast2"] {
        text += &format!(
            "\n[[executors]]\nid = \"{fast}\"\ncomponent = \"@test-guests@/probe.wasm\"\nconfig = {{ forward = [{{ kind = \"done\" }}] }}\n"
        );
    }
    text += &format!(
        "\n[[executors]]\nid = \"slow\"\ncomponent = \"@test-guests@/probe.wasm\"\n{slow}\n"
    );
    text += "\n[[executors]]\nid = \"sink\"\ncomponent = \"@test-guests@/probe.wasm\"\nconfig = { yield = true }\n";
    for to in ["fast1", "fast2", "slow"] {
        text += &format!(
            "\n[[edges]]\nfrom = \"src\"\nto = \"{to}\"\n\n[[edges]]\nfrom = \"{to}\"\nto = \"sink\"\n"
        );
    }
    ws.manifest(if gated { "gated.toml" } else { "fan_out.toml" }, &text)
}

#[test]
fn three_workers_run_fifty_submitted_runs_each_once() {
    let ws = Workspace::new();
    let url = database(&ws);
    let server = Postgres::shared();
    let ring = ws.ring(4, 12, &[]);
    let (pipeline, fan_out) = (ws.pipeline(), fan_out(&ws, false));
    let job = |n: usize| -> (PathBuf, String, &str) {
        match n % 3 {
            0 => (pipeline.clone(), format!("\"hello {n}\""), "input"),
            1 => (ring.clone(), format!("{{\"hops\": {}}}", n % 5), "token"),
            _ => (fan_out.clone(), format!("{{\"n\": {n}}}"), "input"),
        }
    };
    let runs: Vec<(usize, String)> = (0..50)
        .map(|n| {
            let (manifest, input, kind) = job(n);
            (n, submit(&ws, &url, &manifest, &input, kind))
        })
        .collect();
    let mut workers: Vec<WorkerProcess> = ["w1", "w2", "w3"]
        .into_iter()
        .map(|name| {
            WorkerProcess::start(
                &ws,
                &url,
                name,
                &["--concurrency", "4", "--lease-ttl", "2s"],
            )
        })
        .collect();
    for (n, run) in &runs {
        assert_eq!(wait(&ws, &url, run), 0, "run {n}");
        let (manifest, input, kind) = job(*n);
        assert_eq!(
            outputs(&show(&ws, &url, run)),
            alone(&manifest, &input, kind),
            "run {n}"
        );
    }
    // Each run claimed once (epoch 1), its events numbered without a gap, all of that
    // epoch; the work spread over more than one worker.
    assert_eq!(
        server.query(&url, "SELECT count(*) FROM superstep_runs WHERE epoch <> 1"),
        "0"
    );
    assert_eq!(
        server.query(
            &url,
            "SELECT count(*) FROM (SELECT run_id FROM superstep_events GROUP BY run_id
             HAVING count(*) <> max(seq) + 1 OR min(seq) <> 0 OR max(epoch) <> 1) AS gaps"
        ),
        "0"
    );
    let owners: usize = server
        .query(&url, "SELECT count(DISTINCT owner) FROM superstep_runs")
        .parse()
        .unwrap();
    assert!(owners >= 2, "one worker ran everything");
    for worker in &mut workers {
        worker.signal(libc::SIGTERM);
        assert_eq!(worker.exit_code(), Some(0));
    }
}

/// Follows the events of `run` (`runs events --follow`) until `seen` says so.
pub(crate) fn follow_until(
    ws: &Workspace,
    url: &str,
    run: &str,
    mut seen: impl FnMut(&Value) -> bool,
) {
    let mut follow = Command::new(env!("CARGO_BIN_EXE_superstep"))
        .args(["runs", "events", run, "--follow", "--store", url])
        .current_dir(ws.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut found = false;
    for line in BufReader::new(follow.stdout.take().unwrap()).lines() {
        if seen(&serde_json::from_str(&line.unwrap()).unwrap()) {
            found = true;
            break;
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(found, "the run ended before the event came");
}

/// Follows the events of `run` until the two fast executors of the gated fan-out have
/// completed superstep 1 (their results journaled): the run is mid-superstep, held by
/// the gate.
fn until_fast_ones_journaled(ws: &Workspace, url: &str, run: &str) {
    let mut completed = 0;
    follow_until(ws, url, run, |event| {
        let fast = event["executor"]
            .as_str()
            .is_some_and(|e| e.starts_with("fast"));
        if event["event"] == "executor_completed" && event["superstep"] == 1 && fast {
            completed += 1;
        }
        completed == 2
    });
}

/// A run of the gated fan-out held mid-superstep by a worker: its fast executors
/// journaled, its slow one at the workspace's closed gate.
struct Held {
    /// A new database.
    url: String,
    /// The gated fan-out.
    manifest: PathBuf,
    run: String,
    worker: WorkerProcess,
}

/// Submits the gated fan-out on `input` to a new database, and starts worker `name`
/// (with `args`), which claims it and runs it until the gate holds it.
fn held_mid_superstep(ws: &Workspace, input: &str, name: &str, args: &[&str]) -> Held {
    let url = database(ws);
    let manifest = fan_out(ws, true);
    let run = submit(ws, &url, &manifest, input, "input");
    let worker = WorkerProcess::start(ws, &url, name, args);
    worker.wait_for(&format!("claimed run {run} (epoch 1)"));
    until_fast_ones_journaled(ws, &url, &run);
    Held {
        url,
        manifest,
        run,
        worker,
    }
}

/// How many times each executor was invoked in superstep 1, by the events of `run`.
fn invoked_in_superstep_1(server: &Postgres, url: &str, run: &str, executor: &str) -> usize {
    server
        .query(
            url,
            &format!(
                "SELECT count(*) FROM superstep_events WHERE run_id = '{run}'
                 AND event::jsonb->>'event' = 'executor_invoked'
                 AND event::jsonb->>'executor' = '{executor}'
                 AND (event::jsonb->>'superstep')::int = 1"
            ),
        )
        .parse()
        .unwrap()
}

#[test]
fn a_killed_workers_run_is_taken_over_within_its_lease() {
    let ws = Workspace::new();
    let server = Postgres::shared();
    let ttl = ["--concurrency", "1", "--lease-ttl", "2s"];
    let held = held_mid_superstep(&ws, "{\"n\": 1}", "first", &ttl);
    let (url, manifest, run, first) = (held.url, held.manifest, held.run, held.worker);
    let second = WorkerProcess::start(&ws, &url, "second", &ttl);
    first.signal(libc::SIGKILL);
    let killed = Instant::now();
    ws.set_gate(true);
    second.wait_for(&format!("claimed run {run} (epoch 2)"));
    let takeover = killed.elapsed();
    println!("taken over {} ms after the kill", takeover.as_millis());
    assert!(takeover < Duration::from_secs(4), "took {takeover:?}");
    assert_eq!(wait(&ws, &url, &run), 0);
    assert_eq!(
        outputs(&show(&ws, &url, &run)),
        alone(&manifest, "{\"n\": 1}", "input")
    );
    // The fast executors' results came from the journal: each ran once.
    for fast in ["fast1", "fast2"] {
        assert_eq!(
            invoked_in_superstep_1(server, &url, &run, fast),
            1,
            "{fast}"
        );
    }
    assert_eq!(invoked_in_superstep_1(server, &url, &run, "slow"), 2);
}

#[test]
fn a_stale_worker_writes_nothing_after_a_takeover() {
    let ws = Workspace::new();
    let server = Postgres::shared();
    let ttl = ["--concurrency", "1", "--lease-ttl", "2s"];
    let held = held_mid_superstep(&ws, "{\"n\": 2}", "stale", &ttl);
    let (url, run, stale) = (held.url, held.run, held.worker);
    stale.signal(libc::SIGSTOP);
    let other = WorkerProcess::start(&ws, &url, "other", &ttl);
    other.wait_for(&format!("claimed run {run} (epoch 2)"));
    let checkpoints = || {
        let sql = format!("SELECT count(*) FROM superstep_checkpoints WHERE run_id = '{run}'");
        server.query(&url, &sql)
    };
    let before = checkpoints();
    // Woken, the stale worker finds its lease lost and interrupts its executor, still
    // held at the closed gate; had it finished the superstep, its barrier would be
    // refused.
    stale.signal(libc::SIGCONT);
    stale.wait_for(&format!("lost the lease of run {run}"));
    stale.wait_for(&format!(
        "run {run} was taken over by another worker; abandoned"
    ));
    assert_eq!(before, checkpoints(), "the stale worker saved a checkpoint");
    ws.set_gate(true);
    assert_eq!(wait(&ws, &url, &run), 0);
    assert_eq!(
        server.query(
            &url,
            &format!(
                "SELECT count(*) FROM superstep_events WHERE run_id = '{run}' AND epoch = 1
                 AND seq >= (SELECT min(seq) FROM superstep_events
                             WHERE run_id = '{run}' AND epoch = 2)"
            ),
        ),
        "0",
        "the stale worker stored events after the takeover"
    );
    let shown = show(&ws, &url, &run);
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["owner"], "other");
}

#[test]
fn a_paused_run_is_answered_and_finished_on_another_worker() {
    let ws = Workspace::new();
    let url = database(&ws);
    let plan_review = ws.plan_review();
    let run = submit(&ws, &url, &plan_review, "\"ship it\"", "task");
    let mut first = WorkerProcess::start(&ws, &url, "first", &["--concurrency", "1"]);
    assert_eq!(wait(&ws, &url, &run), 3, "the run should pause for input");
    first.signal(libc::SIGTERM);
    assert_eq!(first.exit_code(), Some(0));
    let shown = show(&ws, &url, &run);
    assert_eq!(shown["status"], "paused");
    assert_eq!(shown["lease_until"], Value::Null);
    let request = shown["pending"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Answers to what is not pending are refused, changing nothing.
    let respond = |answer: &str| ws.superstep(&["respond", &run, answer, "--store", &url]);
    respond("nobody:0:1={\"approved\": true}")
        .assert_code(2)
        .assert_stderr("is not pending");
    respond(&format!("{request}=not json"))
        .assert_code(2)
        .assert_stderr("not JSON");
    ws.superstep(&["respond", "no-such-run", "a=1", "--store", &url])
        .assert_code(2)
        .assert_stderr("no run 'no-such-run'");
    assert_eq!(show(&ws, &url, &run)["status"], "paused");

    respond(&format!("{request}={{\"approved\": true}}")).assert_code(0);
    respond(&format!("{request}={{\"approved\": true}}"))
        .assert_code(2)
        .assert_stderr("already answered");
    let second = WorkerProcess::start(&ws, &url, "second", &["--concurrency", "1"]);
    assert_eq!(wait(&ws, &url, &run), 0);
    let shown = show(&ws, &url, &run);
    assert_eq!(shown["owner"], "second");
    assert!(!outputs(&shown).is_empty());
    respond(&format!("{request}={{\"approved\": true}}"))
        .assert_code(2)
        .assert_stderr(&format!("run {run} is completed: nothing to answer"));
    drop(second);
}

#[test]
fn sigterm_gives_runs_back_at_their_next_barrier() {
    let ws = Workspace::new();
    let held = held_mid_superstep(&ws, "{\"n\": 3}", "first", &["--concurrency", "1"]);
    let (url, manifest, run, mut first) = (held.url, held.manifest, held.run, held.worker);
    first.signal(libc::SIGTERM);
    first.wait_for("stopping");
    // The superstep under way finishes, then the run stops at the barrier.
    ws.set_gate(true);
    first.wait_for(&format!("run {run} queued"));
    assert_eq!(first.exit_code(), Some(0));
    assert_eq!(show(&ws, &url, &run)["status"], "queued");
    let second = WorkerProcess::start(&ws, &url, "second", &["--concurrency", "1"]);
    second.wait_for(&format!("claimed run {run} (epoch 2)"));
    assert_eq!(wait(&ws, &url, &run), 0);
    assert_eq!(
        outputs(&show(&ws, &url, &run)),
        alone(&manifest, "{\"n\": 3}", "input")
    );
}

#[test]
fn queue_commands_refuse_bad_input() {
    let ws = Workspace::new();
    let url = database(&ws);
    let pipeline = ws.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    ws.superstep(&[
        "submit", pipeline, "--input", "\"x\"", "--store", "some/dir",
    ])
    .assert_code(2)
    .assert_stderr("this command needs a PostgreSQL URL");
    ws.superstep(&["submit", pipeline, "--input", "not json", "--store", &url])
        .assert_code(2)
        .assert_stderr("--input: not JSON");
    ws.superstep(&["submit", "missing.toml", "--input", "1", "--store", &url])
        .assert_code(2)
        .assert_stderr("missing.toml");
    ws.superstep(&["runs", "show", "no-such-run", "--store", &url])
        .assert_code(2)
        .assert_stderr("no run 'no-such-run'");
    ws.superstep(&["runs", "list", "--status", "sleeping", "--store", &url])
        .assert_code(2)
        .assert_stderr("--status sleeping");
    ws.superstep(&["worker", "--store", &url, "--lease-ttl", "10ms"])
        .assert_code(2)
        .assert_stderr("at least 300ms");
    assert_eq!(
        Postgres::shared().query(&url, "SELECT count(*) FROM superstep_runs"),
        "0"
    );
    ws.superstep(&["respond", "some-run", "--store", &url])
        .assert_code(2)
        .assert_stderr("no answer given");
    // No worker takes it: waiting gives up after its timeout.
    let run = submit(&ws, &url, &ws.pipeline(), "\"x\"", "input");
    ws.superstep(&["runs", "wait", &run, "--timeout", "1s", "--store", &url])
        .assert_code(2)
        .assert_stderr(&format!("run {run} is still queued after 1s"));
}

#[test]
fn workers_carry_on_when_postgresql_restarts() {
    let ws = Workspace::new();
    // A server of its own, crashed and started again under the workers.
    let base = std::env::temp_dir()
        .join("superstep-tests")
        .join("restarted");
    std::fs::create_dir_all(&base).unwrap();
    let open = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&base, open).unwrap();
    let server = Postgres::start(&base);
    let url = server.database();
    ws.superstep(&["db", "migrate", "--store", &url])
        .assert_code(0);
    let manifest = fan_out(&ws, true);
    let inputs: Vec<String> = (0..4).map(|n| format!("{{\"n\": {n}}}")).collect();
    let runs: Vec<String> = inputs
        .iter()
        .map(|input| submit(&ws, &url, &manifest, input, "input"))
        .collect();
    let ttl = ["--concurrency", "2", "--lease-ttl", "3s"];
    let workers = [
        WorkerProcess::start(&ws, &url, "a", &ttl),
        WorkerProcess::start(&ws, &url, "b", &ttl),
    ];
    for run in &runs {
        until_fast_ones_journaled(&ws, &url, run);
    }
    server.restart();
    ws.set_gate(true);
    for (run, input) in runs.iter().zip(&inputs) {
        assert_eq!(wait(&ws, &url, run), 0, "run {run}");
        let expected = alone(&manifest, input, "input");
        assert_eq!(outputs(&show(&ws, &url, run)), expected, "run {run}");
        // The fast executors' results were not made again (events of the moments the
        // database was away may be missing, never doubled).
        for fast in ["fast1", "fast2"] {
            assert!(
                invoked_in_superstep_1(&server, &url, run, fast) <= 1,
                "{fast}"
            );
        }
    }
    drop(workers);
}

#[test]
fn a_run_whose_component_is_not_one_fails_with_the_reason() {
    let ws = Workspace::new();
    let url = database(&ws);
    std::fs::write(ws.path().join("broken.wasm"), b"not a component").unwrap();
    let manifest = ws.manifest(
        "broken.toml",
        "[workflow]\nname = \"broken\"\nstart = \"a\"\n\n[[executors]]\nid = \"a\"\ncomponent = \"broken.wasm\"\n",
    );
    let run = submit(&ws, &url, &manifest, "1", "input");
    let worker = WorkerProcess::start(&ws, &url, "w", &["--concurrency", "1"]);
    worker.wait_for(&format!("run {run} cannot start"));
    assert_eq!(wait(&ws, &url, &run), 1);
    let shown = show(&ws, &url, &run);
    assert_eq!(shown["status"], "failed");
    let reason = shown["reason"].as_str().unwrap();
    assert!(
        reason.contains("executors[0]") || reason.contains("component"),
        "{reason}"
    );
}
