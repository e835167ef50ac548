//! The text pipeline end to end, and resume from every one of its checkpoints.

use crate::common::*;
use serde_json::{Value, json};

#[test]
fn pipeline_runs_to_dlrow_olleh_with_a_checkpoint_per_superstep() {
    let ws = Workspace::new();
    let run = ws.run_pipeline("\"hello world\"");
    assert_eq!(run.outputs(), vec![json!("dlrow olleh")]);

    // lower read what upper wrote to shared state, one barrier later.
    let logs = run.events_named("log");
    assert!(
        logs.iter().any(|e| e["executor"] == "lower"
            && e["text"]
                == "shared state: original_input='hello world', upper_output='HELLO WORLD'"),
        "{logs:?}"
    );

    let saved = run.events_named("checkpoint_saved");
    assert_eq!(saved.len(), 4);
    let files = ws.checkpoint_files("checkpoints");
    assert_eq!(files.len(), 4, "{:?}", files.keys());
    for (i, event) in saved.iter().enumerate() {
        assert_eq!(event["superstep"], i as u64 + 1);
        let name = format!("{}.json", event["checkpoint_id"].as_str().unwrap());
        assert!(files.contains_key(&name));
        let started = &run.events_named("superstep_started")[i];
        let parent = if i == 0 {
            Value::Null
        } else {
            saved[i - 1]["checkpoint_id"].clone()
        };
        assert_eq!(started["from_checkpoint"], parent);
        assert_eq!(event["parent_id"], parent);
    }

    let last = latest_checkpoint(&ws.path().join("checkpoints"));
    assert_eq!(last["status"], "completed");
    assert_eq!(
        states(&last),
        [
            (
                "finalize",
                json!({"count": 1, "last_output": "dlrow olleh", "final": true})
            ),
            (
                "lower",
                json!({"count": 1, "last_input": "DLROW OLLEH", "last_output": "dlrow olleh"})
            ),
            (
                "reverse",
                json!({"count": 1, "last_input": "HELLO WORLD", "last_output": "DLROW OLLEH"})
            ),
            (
                "upper",
                json!({"count": 1, "last_input": "hello world", "last_output": "HELLO WORLD"})
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    );
    assert_eq!(
        last["shared_state"],
        json!({"original_input": {"json": "hello world"}, "upper_output": {"json": "HELLO WORLD"}})
    );
    assert_eq!(last["queued"], json!({}));
    assert_eq!(last["outputs"][0]["body"], json!({"json": "dlrow olleh"}));
}

#[test]
fn human_mode_prints_the_output_on_stdout() {
    let ws = Workspace::new();
    let manifest = ws.pipeline();
    let run = ws.superstep(&[
        "run",
        manifest.to_str().unwrap(),
        "--input",
        "\"hello world\"",
    ]);
    run.assert_code(0);
    assert_eq!(run.stdout, "\"dlrow olleh\"\n");
    assert!(
        run.stderr.contains("run completed after 4 supersteps"),
        "{}",
        run.stderr
    );
}

#[test]
fn resuming_any_checkpoint_in_a_fresh_process_ends_like_the_uninterrupted_run() {
    let ws = Workspace::new();
    ws.run_pipeline("\"hello world\"");
    assert_every_checkpoint_resumes_like_the_run(&ws);
}

#[test]
fn checkpoints_list_and_show_describe_the_run() {
    let ws = Workspace::new();
    ws.run_pipeline("\"hello world\"");
    let list = ws.superstep(&["checkpoints", "list", "--json"]);
    list.assert_code(0);
    let rows: Vec<Value> = list
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    let supersteps: Vec<u64> = rows
        .iter()
        .map(|r| r["superstep"].as_u64().unwrap())
        .collect();
    assert_eq!(supersteps, vec![4, 3, 2, 1], "newest first");
    assert_eq!(rows[3]["queued"], 1);
    assert_eq!(rows[0]["status"], "completed");
    assert_eq!(rows[0]["queued"], 0);
    assert_eq!(
        rows[0]["shared_state"],
        json!(["original_input", "upper_output"])
    );
    assert_eq!(
        rows[0]["executors"],
        json!(["finalize", "lower", "reverse", "upper"])
    );

    let table = ws.superstep(&["checkpoints", "list"]);
    table.assert_code(0);
    assert!(table.stdout.starts_with("CHECKPOINT"));
    assert_eq!(table.stdout.lines().count(), 5);

    let id = rows[2]["checkpoint_id"].as_str().unwrap();
    let show = ws.superstep(&["checkpoints", "show", &id[..32]]);
    show.assert_code(0);
    let shown: Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(shown["checkpoint_id"], id);
    assert_eq!(
        shown["executors"]["reverse"]["state"]["json"],
        json!({"count": 1, "last_input": "HELLO WORLD", "last_output": "DLROW OLLEH"})
    );
    assert_eq!(shown["queued"]["lower"][0]["body"]["json"], "DLROW OLLEH");
    assert!(
        show.stdout
            .contains("\n      \"state\": {\n        \"json\": {\n"),
        "states are indented JSON"
    );

    let elsewhere = ws.superstep(&["checkpoints", "list", "--dir", "nowhere"]);
    elsewhere.assert_code(0);
    assert!(elsewhere.stdout.contains("no checkpoints in nowhere"));
}

#[test]
fn checkpoint_dir_option_moves_the_checkpoints() {
    let ws = Workspace::new();
    let manifest = ws.pipeline();
    ws.superstep(&[
        "run",
        manifest.to_str().unwrap(),
        "--input",
        "\"ab\"",
        "--checkpoint-dir",
        "elsewhere/cps",
    ])
    .assert_code(0);
    assert_eq!(ws.checkpoint_files("elsewhere/cps").len(), 4);
    assert!(!ws.path().join("checkpoints").exists());
    let list = ws.superstep(&["checkpoints", "list", "--dir", "elsewhere/cps", "--json"]);
    assert_eq!(list.stdout.lines().count(), 4);
}

#[test]
fn durability_exit_writes_one_checkpoint_and_off_writes_none() {
    let ws = Workspace::new();
    let manifest = ws.pipeline();
    let run = |durability: &str, dir: &str| {
        let run = ws.superstep(&[
            "run",
            manifest.to_str().unwrap(),
            "--input",
            "\"hello world\"",
            "--durability",
            durability,
            "--checkpoint-dir",
            dir,
            "--events",
            "jsonl",
        ]);
        run.assert_code(0);
        assert_eq!(run.outputs(), vec![serde_json::json!("dlrow olleh")]);
        run
    };
    run("superstep", "every");
    run("exit", "once");
    run("off", "never");
    let every = latest_checkpoint(&ws.path().join("every"));
    let once = checkpoint_paths(&ws.path().join("once"));
    assert_eq!(once.len(), 1);
    let once = read_checkpoint(&once[0]);
    assert_eq!(once["parent_id"], serde_json::Value::Null);
    assert_eq!(once["status"], "completed");
    assert_eq!(states(&once), states(&every));
    assert_eq!(once["shared_state"], every["shared_state"]);
    assert_eq!(once["outputs"], every["outputs"]);
    assert!(!ws.path().join("never").exists());
}
