//! Human in the loop: requests, pauses, responses from fresh processes, and lineage.

use crate::common::*;
use serde_json::json;

const TASK: &str = "\"launch the beta\"";

/// Starts the plan-review workflow; it must pause for the first review.
fn start(ws: &Workspace) -> Run {
    let manifest = ws.plan_review();
    let run = ws.superstep(&[
        "run",
        manifest.to_str().unwrap(),
        "--input",
        TASK,
        "--events",
        "jsonl",
    ]);
    run.assert_code(3);
    run
}

/// The checkpoint a paused run names in its `run_paused` event.
fn paused_at(run: &Run) -> String {
    let paused = run.events_named("run_paused");
    assert_eq!(paused.len(), 1, "{}", run.stdout);
    paused[0]["checkpoint_id"].as_str().unwrap().to_string()
}

fn resume(ws: &Workspace, checkpoint: &str, extra: &[&str]) -> Run {
    let mut args = vec!["resume", checkpoint, "--events", "jsonl"];
    args.extend_from_slice(extra);
    ws.superstep(&args)
}

#[test]
fn plan_review_pauses_twice_and_completes_from_fresh_processes() {
    let ws = Workspace::new();
    let first = start(&ws);
    let requests = first.events_named("request_info");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["request_id"], "planner:0:1");
    assert_eq!(requests[0]["executor"], "planner");
    assert_eq!(requests[0]["kind"], "plan-review");
    assert_eq!(requests[0]["body"]["json"]["round"], 1);
    let paused = first.events_named("run_paused");
    assert_eq!(paused[0]["pending"], json!(["planner:0:1"]));
    let checkpoint = first.events_named("checkpoint_saved");
    assert_eq!(checkpoint.last().unwrap()["status"], "awaiting-input");
    let file = ws
        .path()
        .join(checkpoint.last().unwrap()["location"].as_str().unwrap());
    let saved = read_checkpoint(&file);
    assert_eq!(saved["status"], "awaiting-input");
    assert_eq!(saved["pending_requests"][0]["request_id"], "planner:0:1");
    assert!(first.outputs().is_empty());

    // Reject with feedback: the planner goes around again and pauses a second time.
    let rejected = resume(
        &ws,
        &paused_at(&first),
        &[
            "--respond",
            r#"planner:0:1={"approved": false, "feedback": "add a rollback plan"}"#,
        ],
    );
    rejected.assert_code(3);
    let again = rejected.events_named("request_info");
    assert_eq!(
        again.len(),
        2,
        "the pending request is announced, then the new one"
    );
    assert_eq!(again[0]["request_id"], "planner:0:1");
    assert_eq!(again[1]["request_id"], "planner:1:1");
    assert_eq!(again[1]["body"]["json"]["round"], 2);
    assert!(
        again[1]["body"]["json"]["plan"]
            .as_array()
            .unwrap()
            .contains(&json!("address: add a rollback plan"))
    );
    let saved = rejected.events_named("checkpoint_saved");
    assert_eq!(
        saved[0]["status"], "running",
        "the response is saved before it is delivered"
    );
    assert_eq!(
        saved[0]["parent_id"].as_str(),
        Some(paused_at(&first).as_str())
    );

    let diff = ws.superstep(&[
        "checkpoints",
        "show",
        &paused_at(&first),
        "--diff",
        &paused_at(&rejected),
    ]);
    diff.assert_code(0);
    assert!(
        diff.stdout
            .contains("pending requests: 1 -> 1\n  - planner:0:1 from planner"),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout
            .contains("  + planner:1:1 from planner (plan-review)"),
        "{}",
        diff.stdout
    );

    // Approve from a file: worker and report finish the run.
    let responses = ws.path().join("responses.json");
    std::fs::write(&responses, r#"{"planner:1:1": {"approved": true}}"#).unwrap();
    let approved = resume(
        &ws,
        &paused_at(&rejected),
        &["--responses", responses.to_str().unwrap()],
    );
    approved.assert_code(0);
    assert_eq!(
        approved.outputs(),
        vec![json!({
            "task": "launch the beta",
            "rounds": 2,
            "results": [
                "done: research launch the beta",
                "done: draft launch the beta",
                "done: address: add a rollback plan",
                "done: review launch the beta"
            ]
        })]
    );
    let last = latest_checkpoint(&ws.path().join("checkpoints"));
    assert_eq!(last["status"], "completed");
    assert_eq!(last["pending_requests"], json!([]));
}

#[test]
fn unanswered_requests_stay_pending_and_bad_responses_change_nothing() {
    let ws = Workspace::new();
    let first = start(&ws);
    let checkpoint = paused_at(&first);
    let before = ws.checkpoint_files("checkpoints");

    let unanswered = resume(&ws, &checkpoint, &[]);
    unanswered.assert_code(3);
    assert_eq!(
        unanswered.events_named("request_info")[0]["request_id"],
        "planner:0:1"
    );
    assert_eq!(
        unanswered.events_named("run_paused")[0]["pending"],
        json!(["planner:0:1"])
    );
    assert_eq!(
        ws.checkpoint_files("checkpoints"),
        before,
        "nothing to save"
    );

    let refused: [(&[&str], &str); 5] = [
        (
            &["--respond", "planner:9:1={}"],
            "request 'planner:9:1' is not pending in run",
        ),
        (
            &["--respond", "planner:0:1"],
            "expected <request-id>=<json>",
        ),
        (
            &["--respond", "planner:0:1=yes"],
            "--respond planner:0:1: the response is not JSON",
        ),
        (
            &["--respond", "planner:0:1={}", "--respond", "planner:0:1={}"],
            "request 'planner:0:1' is answered twice",
        ),
        (&["--responses", "missing.json"], "--responses missing.json"),
    ];
    for (args, expected) in refused {
        let run = resume(&ws, &checkpoint, args);
        run.assert_code(2).assert_stderr(expected);
        assert_eq!(ws.checkpoint_files("checkpoints"), before, "{args:?}");
    }

    // Answered on one branch, the request is not pending in that branch's checkpoints.
    let answered = resume(
        &ws,
        &checkpoint,
        &["--respond", r#"planner:0:1={"approved": false}"#],
    );
    answered.assert_code(3);
    let second = paused_at(&answered);
    let before = ws.checkpoint_files("checkpoints");
    resume(
        &ws,
        &second,
        &["--respond", r#"planner:0:1={"approved": true}"#],
    )
    .assert_code(2)
    .assert_stderr("(never asked, or already answered); pending: planner:1:1");
    assert_eq!(ws.checkpoint_files("checkpoints"), before);

    // Without a terminal, --interactive pauses like any run.
    resume(&ws, &second, &["--interactive"]).assert_code(3);
}

#[test]
fn interactive_runs_ask_at_the_prompt_and_go_on() {
    // `script` gives the binary a terminal; its stdin is fed from ours.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("the interactive test needs `script` (util-linux) for a pseudo-terminal");
    }
    let ws = Workspace::new();
    let manifest = ws.plan_review();
    let command = format!(
        "{} run {} --input '{TASK}' --interactive --events quiet",
        env!("CARGO_BIN_EXE_superstep"),
        manifest.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env(superstep::COMPILE_CACHE_ENV, test_compile_cache())
        .current_dir(ws.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        // Not JSON first: the prompt asks again.
        stdin
            .write_all(b"no\n{\"approved\": false, \"feedback\": \"smaller steps\"}\n{\"approved\": true}\n")
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("response to planner:0:1 (JSON)>"),
        "{stdout}"
    );
    assert!(stdout.contains("not JSON"), "{stdout}");
    assert!(
        stdout.contains("response to planner:1:1 (JSON)>"),
        "{stdout}"
    );
    assert!(stdout.contains("done: address: smaller steps"), "{stdout}");
    let last = latest_checkpoint(&ws.path().join("checkpoints"));
    assert_eq!(last["status"], "completed");
}

#[test]
fn lineage_names_parents_and_latest_follows_the_longest_chain() {
    let ws = Workspace::new();
    let first = start(&ws);
    let root = paused_at(&first);
    let rejected = resume(
        &ws,
        &root,
        &["--respond", r#"planner:0:1={"approved": false}"#],
    );
    let approved = resume(
        &ws,
        &paused_at(&rejected),
        &["--respond", r#"planner:1:1={"approved": true}"#],
    );
    approved.assert_code(0);

    // Every superstep names the checkpoint it starts from, every checkpoint its parent.
    let mut previous = Some(root.clone());
    for event in rejected.events().iter().chain(approved.events().iter()) {
        match event["event"].as_str().unwrap() {
            "superstep_started" => {
                assert_eq!(event["from_checkpoint"].as_str(), previous.as_deref())
            }
            "checkpoint_saved" => {
                assert_eq!(event["parent_id"].as_str(), previous.as_deref());
                previous = event["checkpoint_id"].as_str().map(String::from);
            }
            "run_started" => previous = event["resumed_from"].as_str().map(String::from),
            _ => {}
        }
    }
    let deepest = previous.unwrap();

    // A later, shorter branch: approve the first plan straight away.
    let branch = resume(
        &ws,
        &root,
        &["--respond", r#"planner:0:1={"approved": true}"#],
    );
    branch.assert_code(0);
    let newest_file = branch.events_named("checkpoint_saved").last().unwrap()["checkpoint_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(newest_file, deepest);
    let latest = ws.superstep(&["checkpoints", "latest"]);
    latest.assert_code(0);
    assert_eq!(
        latest.stdout.trim(),
        deepest,
        "by lineage, not by file time"
    );
    let run_id = ws.run_id_of(&first.events_named("checkpoint_saved")[0]);
    let by_run = ws.superstep(&["checkpoints", "latest", "--run", &run_id[..20]]);
    assert_eq!(by_run.stdout.trim(), deepest);
    ws.superstep(&["checkpoints", "latest", "--run", "ffff"])
        .assert_code(2)
        .assert_stderr("no checkpoint of run 'ffff'");

    let tree = ws.superstep(&["checkpoints", "list", "--tree"]);
    tree.assert_code(0);
    let lines: Vec<&str> = tree.stdout.lines().collect();
    assert_eq!(lines[0], format!("run {run_id} (plan-review)"));
    assert!(lines[1].starts_with(&format!("{root}  superstep 1  awaiting-input (1 pending)")));
    assert!(lines[2].starts_with("├─ "), "{}", tree.stdout);
    assert!(
        lines.iter().any(|l| l.starts_with("└─ ")),
        "{}",
        tree.stdout
    );
    assert!(
        lines.iter().any(|l| l.starts_with("│  ")),
        "{}",
        tree.stdout
    );
    assert_eq!(lines.len(), 1 + 1 + 6 + 4, "{}", tree.stdout);
}
