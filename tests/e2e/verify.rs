//! Snapshot verification: `checkpoints verify` and `run --verify-snapshots` restore each
//! state into a fresh instance, snapshot it again and compare.

use crate::common::*;

/// Verifies every checkpoint in `./checkpoints`: each must come back faithfully, one
/// line per executor of `executors`.
fn every_checkpoint_verifies(ws: &Workspace, executors: &[&str]) {
    let paths = checkpoint_paths(&ws.path().join("checkpoints"));
    assert!(!paths.is_empty());
    for path in paths {
        let verified = ws.superstep(&["checkpoints", "verify", path.to_str().unwrap()]);
        verified.assert_code(0);
        let lines: Vec<&str> = verified.stdout.lines().collect();
        assert_eq!(lines.len(), executors.len(), "{}", verified.stdout);
        for (line, executor) in lines.iter().zip(executors) {
            let faithful = [": identical", ": equal as JSON (the bytes differ)"];
            assert!(
                line.starts_with(&format!("{executor}: "))
                    && faithful.iter().any(|f| line.ends_with(f)),
                "{}: {line}",
                path.display()
            );
        }
    }
}

#[test]
fn the_example_executors_keep_their_state_through_restore() {
    // Rust: the text pipeline, checked at every barrier too.
    let ws = Workspace::new();
    let manifest = ws.pipeline();
    let manifest = manifest.to_str().unwrap();
    let run = ws.superstep(&["run", manifest, "--input", "\"hi\"", "--verify-snapshots"]);
    run.assert_code(0);
    every_checkpoint_verifies(&ws, &["finalize", "lower", "reverse", "upper"]);

    // Python, JavaScript, Rust, and C in place of the Python upper.
    for swap in [None, Some(("upper_py.wasm", "upper_c.wasm"))] {
        let ws = Workspace::new();
        let mut text = std::fs::read_to_string(ws.polyglot()).unwrap();
        if let Some((from, to)) = swap {
            text = text.replace(from, to);
        }
        let manifest = ws.manifest("languages.toml", &text);
        let manifest = manifest.to_str().unwrap();
        let run = ws.superstep(&["run", manifest, "--input", "\"hi\"", "--verify-snapshots"]);
        run.assert_code(0);
        assert_eq!(run.stdout, "\"ih\"\n");
        every_checkpoint_verifies(&ws, &["finalize", "lower", "reverse", "upper"]);
    }

    // The Python and JavaScript approvers, paused for their requests.
    let ws = Workspace::new();
    let manifest = ws.approvals();
    let manifest = manifest.to_str().unwrap();
    let paused = ws.superstep(&[
        "run",
        manifest,
        "--input",
        "\"ship it\"",
        "--verify-snapshots",
    ]);
    paused.assert_code(3);
    let respond = r#"js:0:1={"approved": true}"#;
    let at = ws.superstep(&["checkpoints", "latest"]);
    let again = ws.superstep(&[
        "resume",
        at.stdout.trim(),
        "--respond",
        respond,
        "--verify-snapshots",
    ]);
    again.assert_code(3);
    every_checkpoint_verifies(&ws, &["done", "js", "py"]);

    // The plan review, paused for its request, and the ring.
    let ws = Workspace::new();
    ws.paused_plan_review(&["--verify-snapshots"]);
    every_checkpoint_verifies(&ws, &["planner", "report", "worker"]);
    let ws = Workspace::new();
    let ring = ws.ring(3, 4, &[(1, 2048)]);
    let mut args = ring_args(&ring);
    args.push("--verify-snapshots".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ws.superstep(&args).assert_code(0);
    every_checkpoint_verifies(&ws, &["n0", "n1", "n2"]);
}

#[test]
fn a_lossy_executor_is_caught_by_verify_and_by_the_run() {
    let ws = Workspace::new();
    let lossy = test_guest("lossy");
    let manifest = ws.manifest(
        "lossy.toml",
        &format!(
            "[workflow]\nname = \"lossy\"\nstart = \"lossy\"\n\n[[executors]]\nid = \"lossy\"\ncomponent = \"{}\"\n",
            lossy.display()
        ),
    );
    let manifest = manifest.to_str().unwrap();
    // Unchecked, the run completes and its checkpoint holds the count.
    let run = ws.superstep(&["run", manifest, "--input", "{\"a\": 1}"]);
    run.assert_code(0);
    assert_eq!(run.stdout, "{\"count\":1}\n");
    let checkpoint = ws.superstep(&["checkpoints", "latest"]);
    let checkpoint = checkpoint.stdout.trim();
    let verified = ws.superstep(&["checkpoints", "verify", checkpoint]);
    verified.assert_code(4);
    assert_eq!(verified.stdout, "lossy: differs: $.count: 1 -> 0\n");

    // Checked at the barrier, the run fails before the state is committed or output.
    let checked = ws.superstep(&[
        "run",
        manifest,
        "--input",
        "{\"a\": 1}",
        "--verify-snapshots",
        "--store",
        "checked",
    ]);
    checked.assert_code(1);
    assert!(checked.stdout.is_empty(), "{}", checked.stdout);
    assert!(
        checked.stderr.contains(
            "executor 'lossy': its snapshot does not come back from restore: differs: $.count: 1 -> 0"
        ),
        "{}",
        checked.stderr
    );

    // A manifest of another graph is refused.
    let other = ws.pipeline();
    let refused = ws.superstep(&[
        "checkpoints",
        "verify",
        checkpoint,
        "--manifest",
        other.to_str().unwrap(),
    ]);
    refused.assert_code(2);
    assert!(refused.stdout.is_empty());
}
