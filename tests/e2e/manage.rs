//! Checkpoint management: list filters, show --state and --diff, prune.

use crate::common::*;
use serde_json::{Value, json};

fn list(ws: &Workspace, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["checkpoints", "list", "--json"];
    args.extend(filters);
    let run = ws.superstep(&args);
    run.assert_code(0);
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn id(event: &Value) -> &str {
    event["checkpoint_id"].as_str().unwrap()
}

#[test]
fn list_filters_by_run_status_and_workflow_newest_first() {
    let ws = Workspace::new();
    let first = ws.run_pipeline("\"one\"").events_named("checkpoint_saved");
    let second = ws.run_pipeline("\"two\"").events_named("checkpoint_saved");
    let (run1, run2) = (ws.run_id_of(&first[0]), ws.run_id_of(&second[0]));

    let all = list(&ws, &[]);
    assert_eq!(all.len(), 8);
    assert_eq!(all[0]["checkpoint_id"], id(&second[3]), "newest first");
    assert_eq!(all[7]["checkpoint_id"], id(&first[0]));

    let only_first = list(&ws, &["--run", &run1[..30]]);
    let ids: Vec<&str> = only_first
        .iter()
        .map(|r| r["checkpoint_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, first.iter().rev().map(id).collect::<Vec<_>>());
    assert!(only_first.iter().all(|r| r["run_id"] == run1.as_str()));

    let completed = list(&ws, &["--status", "completed"]);
    let runs: Vec<&str> = completed
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(runs, vec![run2.as_str(), run1.as_str()]);
    assert_eq!(list(&ws, &["--workflow", "text-pipeline"]).len(), 8);
    assert!(list(&ws, &["--workflow", "other"]).is_empty());
    ws.superstep(&["checkpoints", "list", "--status", "sleeping"])
        .assert_code(2);
}

#[test]
fn show_state_and_diff() {
    let ws = Workspace::new();
    let saved = ws
        .run_pipeline("\"hello world\"")
        .events_named("checkpoint_saved");

    let state = ws.superstep(&["checkpoints", "show", id(&saved[1]), "--state", "reverse"]);
    state.assert_code(0);
    let value: Value = serde_json::from_str(&state.stdout).unwrap();
    assert_eq!(
        value,
        json!({"count": 1, "last_input": "HELLO WORLD", "last_output": "DLROW OLLEH"})
    );
    assert!(
        state.stdout.contains("\n  \"count\": 1"),
        "indented: {}",
        state.stdout
    );

    let unknown = ws.superstep(&["checkpoints", "show", id(&saved[1]), "--state", "nobody"]);
    unknown.assert_code(2);
    assert!(
        unknown
            .stderr
            .contains("has no executor 'nobody' (executors: finalize, lower, reverse, upper)"),
        "{}",
        unknown.stderr
    );
    ws.superstep(&["checkpoints", "show", id(&saved[1]), "--state", "revrese"])
        .assert_code(2)
        .assert_stderr("has no executor 'revrese' (did you mean 'reverse'?)");
    let listed = ws.superstep(&["checkpoints", "list"]);
    let header: Vec<&str> = listed
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let row: Vec<&str> = listed
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header.len(),
        row.len(),
        "a header for every column:\n{}",
        listed.stdout
    );
    assert!(header.contains(&"PENDING"));

    let diff = ws.superstep(&[
        "checkpoints",
        "show",
        id(&saved[0]),
        "--diff",
        id(&saved[1]),
    ]);
    diff.assert_code(0);
    let expected = [
        "superstep: 1 -> 2".to_string(),
        "executor reverse state: changed".to_string(),
        "  - {\"count\":0,\"last_input\":null,\"last_output\":null}".to_string(),
        "  + {\"count\":1,\"last_input\":\"HELLO WORLD\",\"last_output\":\"DLROW OLLEH\"}"
            .to_string(),
        "queued for lower: 0 -> 1 message(s)".to_string(),
        "  + from reverse (text): \"DLROW OLLEH\"".to_string(),
        "queued for reverse: 1 -> 0 message(s)".to_string(),
        "  - from upper (text): \"HELLO WORLD\"".to_string(),
    ];
    let lines: Vec<&str> = diff.stdout.lines().skip(1).collect();
    assert_eq!(lines, expected, "{}", diff.stdout);

    let same = ws.superstep(&[
        "checkpoints",
        "show",
        id(&saved[2]),
        "--diff",
        id(&saved[2]),
    ]);
    same.assert_code(0);
    assert!(same.stdout.contains("no differences in run state"));
}

#[test]
fn prune_keeps_the_newest_of_each_run_and_the_parents_of_kept_ones() {
    let ws = Workspace::new();
    let first = ws.run_pipeline("\"one\"").events_named("checkpoint_saved");
    let second = ws.run_pipeline("\"two\"").events_named("checkpoint_saved");
    // A branch of the first run from its second checkpoint.
    let branch = ws.superstep(&[
        "resume",
        first[1]["location"].as_str().unwrap(),
        "--events",
        "jsonl",
    ]);
    branch.assert_code(0);
    let branch = branch.events_named("checkpoint_saved");
    std::fs::write(ws.path().join("checkpoints/0000-damaged.json"), "{").unwrap();
    let before = ws.checkpoint_files("checkpoints");
    assert_eq!(before.len(), 11);

    let dry = ws.superstep(&["checkpoints", "prune", "--keep-last", "1", "--dry-run"]);
    dry.assert_code(0);
    assert_eq!(
        ws.checkpoint_files("checkpoints"),
        before,
        "a dry run deletes nothing"
    );
    assert!(
        dry.stdout
            .contains("would delete 6 of 11 checkpoint(s), 0 unreferenced blob(s) and 0 leftover temp or journal file(s); 1 damaged file(s) left alone"),
        "{}",
        dry.stdout
    );

    // Only the second run first.
    let run2 = ws.run_id_of(&second[0]);
    ws.superstep(&["checkpoints", "prune", "--keep-last", "1", "--run", &run2])
        .assert_code(0);
    let left = ws.checkpoint_files("checkpoints");
    let has = |e: &Value| left.contains_key(&format!("{}.json", id(e)));
    assert!(
        has(&second[3]) && has(&second[2]),
        "the newest and its parent stay"
    );
    assert!(!has(&second[0]) && !has(&second[1]));
    assert!(first.iter().all(has), "another run is untouched");

    ws.superstep(&["checkpoints", "prune", "--keep-last", "1"])
        .assert_code(0);
    let left = ws.checkpoint_files("checkpoints");
    let has = |e: &Value| left.contains_key(&format!("{}.json", id(e)));
    assert!(
        has(&branch[1]),
        "the newest of the first run (the branch's end) stays"
    );
    assert!(has(&branch[0]), "the parent of a kept checkpoint stays");
    assert!(first.iter().all(|e| !has(e)));
    assert!(
        left.contains_key("0000-damaged.json"),
        "damaged files are left alone"
    );
    assert!(
        left.keys().all(|name| !name.starts_with('.')),
        "no temp files"
    );

    let none = ws.superstep(&["checkpoints", "prune"]);
    none.assert_code(2);
    let old = ws.superstep(&["checkpoints", "prune", "--older-than", "1h"]);
    old.assert_code(0);
    assert!(old.stdout.contains("deleted 0 of"), "{}", old.stdout);
    let young = ws.superstep(&["checkpoints", "prune", "--older-than", "0s"]);
    young.assert_code(0);
    let left = ws.checkpoint_files("checkpoints");
    assert!(
        has(&branch[1]) && left.contains_key(&format!("{}.json", id(&second[3]))),
        "the newest of each run always stays"
    );
}
