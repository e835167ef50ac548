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
struct WorkerProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl WorkerProcess {
    fn start(ws: &Workspace, url: &str, name: &str, args: &[&str]) -> WorkerProcess {
        let cache = ws.path().join(format!("cache-{name}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_superstep"))
            .args(["worker", "--store", url, "--name", name, "--cache-dir"])
            .arg(&cache)
            .args(args)
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
    fn wait_for(&self, text: &str) -> String {
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

    fn signal(&self, signal: i32) {
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
fn database(ws: &Workspace) -> String {
    let url = Postgres::shared().database();
    ws.superstep(&["db", "migrate", "--store", &url])
        .assert_code(0);
    url
}

fn submit(ws: &Workspace, url: &str, manifest: &Path, input: &str, kind: &str) -> String {
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
fn wait(ws: &Workspace, url: &str, run: &str) -> i32 {
    let waited = ws.superstep(&["runs", "wait", run, "--timeout", "120s", "--store", url]);
    waited.code
}

/// `runs show` as JSON.
fn show(ws: &Workspace, url: &str, run: &str) -> Value {
    let shown = ws.superstep(&["runs", "show", run, "--store", url]);
    shown.assert_code(0);
    serde_json::from_str(&shown.stdout).unwrap()
}

/// The output bodies `runs show` reports, as JSON.
fn outputs(shown: &Value) -> Vec<Value> {
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
