//! The superstep journal: a host killed mid-superstep does not pay twice for the
//! executors that had finished.

use crate::common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
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
component = "@test-guests@/probe.wasm"
config = { forward = [{ kind = "work" }] }

[[executors]]
id = "fast1"
component = "@test-guests@/probe.wasm"
config = { forward = [{ kind = "done" }], set_shared = "fast1" }

[[executors]]
id = "fast2"
component = "@test-guests@/probe.wasm"
config = { forward = [{ kind = "done" }] }

[[executors]]
id = "slow"
component = "@test-guests@/probe.wasm"
dirs = [{ host = "gate", guest = "/gate" }]
config = { forward = [{ kind = "done" }], wait_for = "/gate/open" }

[[executors]]
id = "sink"
component = "@test-guests@/probe.wasm"
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

/// How many of the fast executors have reported completing superstep 1.
fn completed_fast(events: &[Value]) -> usize {
    events
        .iter()
        .filter(|e| {
            e["event"] == "executor_completed"
                && e["superstep"] == 1
                && e["executor"].as_str().unwrap().starts_with("fast")
        })
        .count()
}

/// Runs the binary with JSON Lines events and kills it (SIGKILL) as soon as the events
/// so far satisfy `until`; returns those events.
fn kill_when(ws: &Workspace, args: &[String], until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_superstep"))
        .env(superstep::COMPILE_CACHE_ENV, test_compile_cache())
        .args(args)
        .current_dir(ws.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut events: Vec<Value> = Vec::new();
    let mut killed = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        events.push(serde_json::from_str(&line.unwrap()).unwrap());
        if until(&events) {
            child.kill().unwrap();
            killed = true;
            break;
        }
    }
    child.wait().unwrap();
    assert!(
        killed,
        "the run ended before it could be killed: {events:?}"
    );
    events
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
    let first = kill_when(&ws, &run_args("crashed"), |events| {
        completed_fast(events) == 2 && invoked(events, "slow") == 1
    });
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

/// The arguments that run the fan-out into `dir` with JSON Lines events.
fn fan_out_args(manifest: &Path, dir: &str) -> Vec<String> {
    let manifest = manifest.to_str().unwrap();
    let args = ["run", manifest, "--input", "\"go\"", "--threads", "4"];
    let mut args: Vec<String> = args.map(String::from).to_vec();
    args.extend(["--checkpoint-dir", dir, "--events", "jsonl"].map(String::from));
    args
}

/// The fan-out run into `dir`, killed in superstep 1 once both fast executors are
/// journaled: its events, the base checkpoint's id and the journal's path.
fn crashed_fan_out(ws: &Workspace, manifest: &Path, dir: &str) -> (Vec<Value>, String, PathBuf) {
    ws.set_gate(false);
    let events = kill_when(ws, &fan_out_args(manifest, dir), |events| {
        completed_fast(events) == 2 && invoked(events, "slow") == 1
    });
    let base = latest_checkpoint(&ws.path().join(dir));
    let base_id = base["checkpoint_id"].as_str().unwrap().to_string();
    let journal = ws.path().join(dir).join(format!("{base_id}.journal"));
    (events, base_id, journal)
}

/// Copies every file of directory `from` into a new directory `to` (both in `ws`).
fn copy_dir(ws: &Workspace, from: &str, to: &str) {
    std::fs::create_dir(ws.path().join(to)).unwrap();
    for (name, bytes) in ws.checkpoint_files(from) {
        let path = ws.path().join(to).join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

#[test]
fn a_journal_cut_inside_its_last_record_survives_a_second_crash() {
    let ws = Workspace::new();
    let manifest = ws.manifest("fan_out.toml", FAN_OUT);
    ws.set_gate(true);
    let reference = fan_out_args(&manifest, "reference");
    ws.superstep(&reference.iter().map(String::as_str).collect::<Vec<_>>())
        .assert_code(0);
    let (first, base_id, journal) = crashed_fan_out(&ws, &manifest, "crashed");
    let whole = std::fs::read(&journal).unwrap();
    let first_len = whole.iter().position(|&b| b == b'\n').unwrap() + 1;
    let cut_record: Value = serde_json::from_slice(&whole[first_len..]).unwrap();
    let cut_executor = cut_record["record"]["executor"]
        .as_str()
        .unwrap()
        .to_string();
    let last_len = whole.len() - first_len;
    // Cut inside the last record at its start, middle and end (the store's unit test
    // tries every offset).
    for cut in [1, last_len / 2, last_len - 1] {
        let dir = format!("double-{cut}");
        copy_dir(&ws, "crashed", &dir);
        let journal = ws.path().join(&dir).join(journal.file_name().unwrap());
        std::fs::write(&journal, &whole[..first_len + cut]).unwrap();
        let resume: Vec<String> = ["resume", &base_id, "--checkpoint-dir", &dir]
            .into_iter()
            .chain(["--events", "jsonl", "--threads", "4"])
            .map(String::from)
            .collect();
        // The second attempt journals the executor whose record was cut, and dies too.
        ws.set_gate(false);
        let second = kill_when(&ws, &resume, |events| {
            events.iter().any(|e| {
                e["event"] == "executor_completed" && e["executor"] == cut_executor.as_str()
            }) && invoked(events, "slow") == 1
        });
        ws.set_gate(true);
        let third = ws.superstep(&resume.iter().map(String::as_str).collect::<Vec<_>>());
        third.assert_code(0);
        let third = third.events();
        let all: Vec<Value> = first.iter().chain(&second).chain(&third).cloned().collect();
        for executor in ["fast1", "fast2"] {
            let expected = if executor == cut_executor { 2 } else { 1 };
            assert_eq!(invoked(&all, executor), expected, "cut {cut}: {executor}");
            assert_eq!(
                invoked(&third, executor),
                0,
                "cut {cut}: {executor} replayed"
            );
        }
        assert_eq!(
            final_state(&ws, &dir),
            final_state(&ws, "reference"),
            "cut {cut}"
        );
    }
}

/// An edit of a journal record.
type RecordEdit = dyn Fn(&mut Value);

#[test]
fn a_journaled_send_that_no_edge_carries_is_refused() {
    let ws = Workspace::new();
    let manifest = ws.manifest("fan_out.toml", FAN_OUT);
    let (_, base_id, journal) = crashed_fan_out(&ws, &manifest, "crashed");
    let text = std::fs::read_to_string(&journal).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Re-checksummed, as someone who edits the journal on purpose would.
    let forged = |line: &mut Value, edit: &dyn Fn(&mut Value)| {
        edit(&mut line["record"]);
        let record = serde_json::to_string(&line["record"]).unwrap();
        let checksum = superstep::hash::sha256_hex(record.as_bytes());
        format!("{{\"checksum\":\"{checksum}\",\"record\":{record}}}\n")
    };
    let cases: [(&str, &RecordEdit); 3] = [
        ("sends[0]: no edge from", &|r| {
            r["sends"][0]["to"] = json!("src")
        }),
        ("sends[0]: no executor 'nobody' in this workflow", &|r| {
            r["sends"][0]["to"] = json!("nobody")
        }),
        (
            "requests[0]: request id 'x:1:1' is not the one the host gives",
            &|r| r["requests"] = json!([["x:1:1", {"kind": "k", "body": {"json": 1}}]]),
        ),
    ];
    let before = ws.checkpoint_files("crashed");
    for (expected, edit) in cases {
        let mut line = lines[0].clone();
        let mut bytes = forged(&mut line, edit);
        bytes += text.lines().nth(1).unwrap();
        bytes.push('\n');
        std::fs::write(&journal, bytes).unwrap();
        ws.superstep(&["resume", &base_id, "--checkpoint-dir", "crashed"])
            .assert_code(2)
            .assert_stderr(expected);
        let mut after = ws.checkpoint_files("crashed");
        after.retain(|name, _| !name.ends_with(".journal"));
        let mut expected_files = before.clone();
        expected_files.retain(|name, _| !name.ends_with(".journal"));
        assert_eq!(after, expected_files, "nothing written");
    }
}
