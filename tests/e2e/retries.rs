//! Retries: a failed call is tried again on a fresh instance restored to the state
//! before its superstep, as the executor's retry policy says, each attempt an event;
//! the run fails only when the attempts are spent. (The agent executor retried against
//! a chat server that fails twice is in `agents`.)

use crate::common::*;
use serde_json::json;

/// `src` sends `go` to `trapper`, an adversary that traps on every message and whose
/// `retry` table is `retry`.
pub(crate) fn trapping(ws: &Workspace, retry: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[workflow]
name = "retries"
start = "src"

[[executors]]
id = "src"
component = "@test-guests@/probe.wasm"
config = {{ forward = [{{ kind = "go" }}] }}

[[executors]]
id = "trapper"
component = "@test-guests@/adversary.wasm"
config = {{ trap = "unreachable" }}
{retry}

[[edges]]
from = "src"
to = "trapper"
"#
    );
    ws.manifest("retries.toml", &text)
}

fn run(ws: &Workspace, manifest: &std::path::Path) -> Run {
    let manifest = manifest.to_str().unwrap();
    ws.superstep(&["run", manifest, "--input", "\"x\"", "--events", "jsonl"])
}

#[test]
fn a_trap_is_retried_until_the_attempts_are_spent() {
    let ws = Workspace::new();
    let manifest = trapping(
        &ws,
        "retry = { max_attempts = 3, initial_backoff_ms = 5, multiplier = 3.0 }",
    );
    let failed = run(&ws, &manifest);
    failed.assert_code(1);
    let retrying = failed.events_named("executor_retrying");
    assert_eq!(retrying.len(), 2, "{}", failed.stdout);
    for (n, event) in retrying.iter().enumerate() {
        assert_eq!(event["superstep"], 1);
        assert_eq!(event["executor"], "trapper");
        assert_eq!(event["attempt"], n + 1);
        assert_eq!(event["max_attempts"], 3);
        assert_eq!(event["failure"], "trap");
        assert_eq!(event["backoff_ms"], [5, 15][n]);
        assert!(event.get("http_status").is_none());
        let reason = event["reason"].as_str().unwrap();
        assert!(
            reason.contains("handle trapped: wasm trap: wasm `unreachable` instruction executed"),
            "{reason}"
        );
    }
    let failures = failed.events_named("executor_failed");
    assert_eq!(failures.len(), 1);
    let reason = failures[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("attempt 3 of 3: message 1 of 1 (kind 'go' from 'src'): handle trapped"),
        "{reason}"
    );
    assert!(
        failed.events_named("run_failed")[0]["reason"]
            .as_str()
            .unwrap()
            .contains("executor 'trapper': attempt 3 of 3: ")
    );
    // The last good barrier stays the latest checkpoint, and resumes to the same end.
    let latest = latest_checkpoint(&ws.path().join("checkpoints"));
    assert_eq!(latest["superstep"], 1);
    assert_eq!(
        states(&latest)["trapper"],
        json!({"handled": 0, "padding": ""})
    );
}

#[test]
fn only_the_failures_a_policy_names_are_retried() {
    // Retrying errors and timeouts only, a trap fails the run at once.
    let ws = Workspace::new();
    let manifest = trapping(
        &ws,
        "[executors.retry]\nmax_attempts = 5\non = [\"error\", \"timeout\"]",
    );
    let failed = run(&ws, &manifest);
    failed.assert_code(1);
    assert!(failed.events_named("executor_retrying").is_empty());
    let reason = failed.events_named("executor_failed")[0]["reason"].clone();
    assert!(!reason.as_str().unwrap().contains("attempt"), "{reason}");

    // A workflow-wide policy applies to every executor; the human display says so.
    let ws = Workspace::new();
    let text = std::fs::read_to_string(trapping(&ws, "")).unwrap().replace(
        "start = \"src\"\n",
        "start = \"src\"\n\n[workflow.retry]\nmax_attempts = 2\ninitial_backoff_ms = 1\n",
    );
    let manifest = ws.manifest("workflow_retry.toml", &text);
    let failed = ws.superstep(&["run", manifest.to_str().unwrap(), "--input", "\"x\""]);
    failed.assert_code(1);
    assert!(
        failed.stderr.contains(
            "  trapper attempt 1 of 2 failed, retrying in 1 ms: message 1 of 1 (kind 'go' from 'src'): handle trapped: wasm trap"
        ),
        "{}",
        failed.stderr
    );
    assert!(
        failed
            .stderr
            .contains("  trapper FAILED: attempt 2 of 2: message 1 of 1"),
        "{}",
        failed.stderr
    );
}
