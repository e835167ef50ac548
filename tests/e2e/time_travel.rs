//! Time travel: `checkpoints fork` writes a checkpoint with edited states, shared
//! values or queued messages, which `resume` carries on from; refusals write nothing.

use crate::common::*;
use serde_json::{Value, json};

/// The id of the one checkpoint at `superstep` in `./checkpoints`.
fn checkpoint_at(ws: &Workspace, superstep: u64) -> String {
    let found: Vec<Value> = checkpoint_paths(&ws.path().join("checkpoints"))
        .iter()
        .map(|path| read_checkpoint(path))
        .filter(|c| c["superstep"] == superstep)
        .collect();
    assert_eq!(found.len(), 1, "one checkpoint at superstep {superstep}");
    found[0]["checkpoint_id"].as_str().unwrap().to_string()
}

/// `checkpoints fork` with `args` after the checkpoint; it must succeed. The new id.
fn fork(ws: &Workspace, checkpoint: &str, args: &[&str]) -> String {
    let mut all = vec!["checkpoints", "fork", checkpoint];
    all.extend_from_slice(args);
    let forked = ws.superstep(&all);
    forked.assert_code(0);
    let id = forked.stdout.trim().to_string();
    assert!(
        forked
            .stderr
            .starts_with(&format!("forked checkpoint {checkpoint} into {id}")),
        "{}",
        forked.stderr
    );
    id
}

#[test]
fn an_edited_plan_is_the_one_carried_out() {
    let ws = Workspace::new();
    ws.paused_plan_review(&[]);
    let at = checkpoint_at(&ws, 1);

    let plan = json!({
        "task": "launch the beta",
        "round": 1,
        "plan": ["research launch the beta", "write a rollback plan", "review launch the beta"],
        "feedback": [],
        "awaiting": "planner:0:1",
    });
    let edited = fork(&ws, &at, &["--state", &format!("planner={plan}")]);
    let checkpoint = read_checkpoint(&ws.path().join(format!("checkpoints/{edited}.json")));
    assert_eq!(checkpoint["parent_id"], at.as_str());
    assert_eq!(checkpoint["superstep"], 1);
    assert_eq!(checkpoint["status"], "awaiting-input");
    assert_eq!(states(&checkpoint)["planner"], plan);
    assert_eq!(
        checkpoint["edit"]["changes"],
        json!([{"change": "state", "executor": "planner"}])
    );
    assert!(checkpoint["edit"]["edited_at"].is_string());

    // The tree shows the fork beside the checkpoint it came from.
    let tree = ws.superstep(&["checkpoints", "list", "--tree"]);
    tree.assert_code(0);
    let line = tree.stdout.lines().find(|l| l.contains(&edited)).unwrap();
    assert!(
        line.ends_with("awaiting-input (1 pending)  forked: state of 'planner' replaced"),
        "{}",
        tree.stdout
    );

    // Approved, the edited plan is carried out; the original still pauses as before.
    let approve = ["--respond", r#"planner:0:1={"approved": true}"#];
    let done = ws.superstep(&[&["resume", edited.as_str()][..], &approve[..]].concat());
    done.assert_code(0);
    let output: Value = serde_json::from_str(done.stdout.trim()).unwrap();
    assert_eq!(
        output["results"],
        json!([
            "done: research launch the beta",
            "done: write a rollback plan",
            "done: review launch the beta"
        ])
    );
    let original = ws.superstep(&[&["resume", at.as_str()][..], &approve[..]].concat());
    original.assert_code(0);
    assert!(
        original.stdout.contains("done: draft launch the beta"),
        "{}",
        original.stdout
    );
}

#[test]
fn a_queued_message_is_replaced_and_the_run_goes_on_from_it() {
    let ws = Workspace::new();
    // In a signed store: the fork is signed like every checkpoint.
    let key = [("SUPERSTEP_CHECKPOINT_KEY", "k1:0123456789abcdef0123")];
    let manifest = ws.pipeline();
    let run = ws.superstep_env(
        &key,
        &[
            "run",
            manifest.to_str().unwrap(),
            "--input",
            "\"hello world\"",
        ],
    );
    run.assert_code(0);
    let at = checkpoint_at(&ws, 2);
    let args = [
        "checkpoints",
        "fork",
        &at,
        "--drop-queued",
        "lower",
        "--queue",
        "lower=\"GOODBYE\"",
        "--shared",
        "note={\"by\": \"hand\"}",
    ];
    let forked = ws.superstep_env(&key, &args);
    forked.assert_code(0);
    let edited = forked.stdout.trim().to_string();
    let file = ws.path().join(format!("checkpoints/{edited}.json"));
    let checkpoint = read_checkpoint(&file);
    assert_eq!(
        checkpoint["queued"]["lower"],
        json!([{"source": "reverse", "kind": "text", "body": {"json": "GOODBYE"}}])
    );
    assert_eq!(
        checkpoint["shared_state"]["note"],
        json!({"json": {"by": "hand"}})
    );
    let raw: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(
        raw["signature"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:k1:")
    );

    let diff = ws.superstep_env(&key, &["checkpoints", "show", &at, "--diff", &edited]);
    diff.assert_code(0);
    assert!(diff.stdout.contains("lower"), "{}", diff.stdout);
    assert!(diff.stdout.contains("note"), "{}", diff.stdout);

    let resumed = ws.superstep_env(&key, &["resume", &edited]);
    resumed.assert_code(0);
    assert_eq!(resumed.stdout, "\"goodbye\"\n");
}

#[test]
fn refused_forks_write_nothing() {
    let ws = Workspace::new();
    ws.paused_plan_review(&[]);
    let at = checkpoint_at(&ws, 1);
    let before = ws.checkpoint_files("checkpoints");
    let cases: [(&[&str], &str); 9] = [
        (&["--state", "plannr={}"], "--state plannr: checkpoint "),
        (&["--state", "plannr={}"], "(did you mean 'planner'?)"),
        (
            &["--state", "planner=plan"],
            "--state planner: not JSON (expected value at line 1 column 1); to pass a string, quote it: planner='\"plan\"'",
        ),
        (
            &["--queue", "report:plan=[]"],
            "--queue report:plan: no edge into 'report' carries kind 'plan' (they carry results)",
        ),
        (&["--drop-queued", "nobody"], "has no executor 'nobody'"),
        (
            &["--queue", "worker:=[]"],
            "--queue worker:: the kind is empty",
        ),
        (
            &["--state", "planner={}", "--state", "planner=[]"],
            "--state planner: given twice",
        ),
        (
            &["--shared", "k=@missing.json"],
            "--shared k: missing.json: ",
        ),
        (
            &[],
            "nothing to change: give --state, --shared, --drop-queued or --queue",
        ),
    ];
    for (args, expected) in cases {
        let refused = ws.superstep(&[&["checkpoints", "fork", at.as_str()][..], args].concat());
        refused.assert_code(2);
        assert!(
            refused.stderr.contains(expected),
            "{args:?}: {}",
            refused.stderr
        );
        assert!(refused.stdout.is_empty(), "{args:?}: {}", refused.stdout);
    }
    assert_eq!(ws.checkpoint_files("checkpoints"), before);

    // A manifest of another graph is refused too.
    let other = ws.pipeline();
    let refused = ws.superstep(&[
        "checkpoints",
        "fork",
        &at,
        "--manifest",
        other.to_str().unwrap(),
        "--shared",
        "k=1",
    ]);
    refused.assert_code(2);
    assert!(
        refused
            .stderr
            .contains("was taken with another workflow graph than"),
        "{}",
        refused.stderr
    );
    assert_eq!(ws.checkpoint_files("checkpoints"), before);
}
