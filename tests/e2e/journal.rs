//! The superstep journal: a host killed mid-superstep does not pay twice for the
//! executors that had finished.

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// `src` fans out to two fast executors and a slow one; all three report to `sink`,
/// which yields what it gets. The slow one finishes only once the workspace's gate is
/// open (`Workspace::set_gate`).
const FAN_OUT: &str = r#"
[workflow]
name = "fan-out"
start = "src"

[[executors]]
id = "src"
component = "@components@/probe.wasm"
config = { forward = [{ kind = "work" }] }

[[executors]]
id = "fast1"
component = "@components@/probe.wasm"
config = { forward = [{ kind = "done" }], set_shared = "fast1" }

[[executors]]
id = "fast2"
component = "@components@/probe.wasm"
config = { forward = [{ kind = "done" }] }

[[executors]]
id = "slow"
component = "@components@/probe.wasm"
dirs = [{ host = "gate", guest = "/gate" }]
config = { forward = [{ kind = "done" }], wait_for = "/gate/open" }

[[executors]]
id = "sink"
component = "@components@/probe.wasm"
config = { yield = true, read_shared = ["fast1"] }

[[edges]]
from = "src"
to = "fast1"
[[edges]]
from = "src"
to = "fast2"
[[edges]]
from = "src"
to = "slow"
[[edges]]
from = "fast1"
to = "sink"
[[edges]]
from = "fast2"
to = "sink"
[[edges]]
from = "slow"
to = "sink"
"#;

fn invoked(events: &[Value], executor: &str) -> usize {
    events
        .iter()
        .filter(|e| e["event"] == "executor_invoked" && e["executor"] == executor)
        .count()
}

/// Outputs, states and shared state of a directory's final checkpoint.
fn final_state(ws: &Workspace, dir: &str) -> (Value, Value, Value) {
    let last = latest_checkpoint(&ws.path().join(dir));
    assert_eq!(last["status"], "completed");
    let outputs: Vec<Value> = last["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["body"].clone())
        .collect();
    (
        Value::from(outputs),
        last["executors"].clone(),
        last["shared_state"].clone(),
    )
}

#[test]
fn a_killed_superstep_resumes_without_invoking_finished_executors_again() {
    let ws = Workspace::new();
    let manifest = ws.manifest("fan_out.toml", FAN_OUT);
    let manifest = manifest.to_str().unwrap();
    let run_args = |dir: &str| {
        let args = ["run", manifest, "--input", "\"go\"", "--threads", "4"];
        let mut args: Vec<String> = args.map(String::from).to_vec();
        args.extend(["--checkpoint-dir", dir, "--events", "jsonl"].map(String::from));
        args
    };

    ws.set_gate(true);
    let uninterrupted = ws.superstep(
        &run_args("reference")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    uninterrupted.assert_code(0);
    assert_eq!(uninterrupted.outputs().len(), 3);

    // Kill the host once both fast executors have reported completion of superstep 1
    // and the slow one has started: it waits at the closed gate. The reports come as
    // soon as the results are journaled, while the superstep still runs.
    ws.set_gate(false);
    let mut child = Command::new(env!("CARGO_BIN_EXE_superstep"))
        .env(superstep::compile_cache::CACHE_ENV, test_compile_cache())
        .args(run_args("crashed"))
        .current_dir(ws.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first: Vec<Value> = Vec::new();
    let mut killed = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
        first.push(event);
        let fast_done = first
            .iter()
            .filter(|e| {
                e["event"] == "executor_completed"
                    && e["superstep"] == 1
                    && e["executor"].as_str().unwrap().starts_with("fast")
            })
            .count();
        if fast_done == 2 && invoked(&first, "slow") == 1 {
            child.kill().unwrap(); // SIGKILL
            killed = true;
            break;
        }
    }
    child.wait().unwrap();
    assert!(killed, "the run ended before it could be killed: {first:?}");
    assert!(
        first
            .iter()
            .all(|e| e["event"] != "superstep_completed" || e["superstep"] == 0)
    );

    let dir = ws.path().join("crashed");
    let base = latest_checkpoint(&dir);
    assert_eq!(base["superstep"], 1);
    let base_id = base["checkpoint_id"].as_str().unwrap().to_string();
    let journal = dir.join(format!("{base_id}.journal"));
    let journaled = std::fs::read(&journal).unwrap();
    assert_eq!(journaled.iter().filter(|&&b| b == b'\n').count(), 2);

    // A damaged record before the end is refused, and nothing changes.
    let mut damaged = journaled.clone();
    damaged[10] ^= 0x20;
    std::fs::write(&journal, &damaged).unwrap();
    let before = ws.checkpoint_files("crashed");
    let resume = |extra: &[&str]| {
        let mut args = vec![
            "resume",
            &base_id,
            "--checkpoint-dir",
            "crashed",
            "--events",
            "jsonl",
        ];
        args.extend_from_slice(extra);
        ws.superstep(&args)
    };
    resume(&[])
        .assert_code(2)
        .assert_stderr("line 1: damaged journal record before the end of the journal");
    assert_eq!(ws.checkpoint_files("crashed"), before);

    // A record cut short at the tail (the host died while appending) is left out.
    ws.set_gate(true);
    let mut cut = journaled.clone();
    cut.extend_from_slice(&journaled[..40]);
    std::fs::write(&journal, &cut).unwrap();
    let second = resume(&["--threads", "4"]);
    second.assert_code(0);
    let second = second.events();
    let skipped: Vec<&str> = second
        .iter()
        .filter(|e| e["event"] == "executor_skipped")
        .map(|e| e["executor"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["fast1", "fast2"]);
    let all: Vec<Value> = first.iter().chain(&second).cloned().collect();
    assert_eq!(invoked(&all, "fast1"), 1, "fast1 ran once in all");
    assert_eq!(invoked(&all, "fast2"), 1, "fast2 ran once in all");
    assert_eq!(invoked(&second, "slow"), 1, "the slow one runs again");
    assert!(
        !journal.exists(),
        "the barrier's checkpoint retires the journal"
    );

    assert_eq!(final_state(&ws, "crashed"), final_state(&ws, "reference"));
}

#[test]
fn a_superstep_that_ends_within_the_window_needs_no_journal() {
    let ws = Workspace::new();
    // The fan-out with its gate open: all finish at once. "At once" means within the
    // superstep's first 10 ms, which a loaded machine can stretch by descheduling a
    // worker: a few attempts get one where the scheduler kept out of the way.
    ws.set_gate(true);
    let manifest = ws.manifest("quick.toml", FAN_OUT);
    let mut failures = Vec::new();
    for attempt in 0..5 {
        let dir = format!("attempt-{attempt}");
        match quick_superstep_attempt(&ws, &manifest, &dir) {
            Ok(()) => return,
            Err(why) => failures.push(why),
        }
    }
    panic!("every attempt journaled: {failures:#?}");
}

/// One run of the quick fan-out: the error says how it fell short of a superstep that
/// needed no journal.
fn quick_superstep_attempt(ws: &Workspace, manifest: &Path, dir: &str) -> Result<(), String> {
    let run = ws.superstep(&[
        "run",
        manifest.to_str().unwrap(),
        "--input",
        "\"go\"",
        "--checkpoint-dir",
        dir,
        "--events",
        "jsonl",
    ]);
    run.assert_code(0);
    let events = run.events();
    let position = |name: &str, executor: &str| {
        events
            .iter()
            .position(|e| e["event"] == name && e["superstep"] == 1 && e["executor"] == executor)
            .unwrap_or_else(|| panic!("no {name} of {executor} in superstep 1"))
    };
    // Completion is reported once the results are durable: here, by the checkpoint.
    let saved = events
        .iter()
        .position(|e| e["event"] == "checkpoint_saved" && e["superstep"] == 2)
        .unwrap();
    for executor in ["fast1", "fast2", "slow"] {
        let completed = events
            .iter()
            .filter(|e| e["event"] == "executor_completed" && e["executor"] == executor)
            .count();
        assert_eq!(completed, 1, "{executor} is reported complete once");
        assert!(position("executor_invoked", executor) < saved);
        if position("executor_completed", executor) < saved {
            return Err(format!("{executor} was journaled before the barrier"));
        }
    }
    let journals = std::fs::read_dir(ws.path().join(dir))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "journal")
        })
        .count();
    assert_eq!(journals, 0, "a barrier leaves no journal behind");
    Ok(())
}
