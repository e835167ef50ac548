//! Bad manifests, bad checkpoints, failing executors and limits: each gets its exit
//! code and a message naming the problem, and no checkpoint is lost or changed.

use crate::common::*;
use serde_json::json;

const TWO: &str = r#"
[workflow]
name = "two"
start = "a"

[[executors]]
id = "a"
component = "@test-guests@/probe.wasm"

[[executors]]
id = "b"
component = "@test-guests@/probe.wasm"

[[edges]]
from = "a"
to = "b"
"#;

#[track_caller]
fn assert_refused(ws: &Workspace, manifest: &str, text: &str, expected: &str) {
    let path = ws.manifest(manifest, text);
    for command in ["validate", "run"] {
        let mut args = vec![command, path.to_str().unwrap()];
        if command == "run" {
            args.extend(["--input", "1"]);
        }
        let run = ws.superstep(&args);
        run.assert_code(2);
        assert!(
            run.stderr.contains(expected),
            "{command}: expected {expected:?} in:\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(manifest) || run.stderr.contains("executor '"),
            "{}",
            run.stderr
        );
    }
    assert!(
        !ws.path().join("checkpoints").exists(),
        "nothing may be written"
    );
}

#[test]
fn bad_manifests_are_refused_with_exit_code_2() {
    let ws = Workspace::new();
    assert_refused(
        &ws,
        "edge.toml",
        &TWO.replace("to = \"b\"", "to = \"c\""),
        "edges[0].to: unknown executor 'c'",
    );
    assert_refused(
        &ws,
        "start.toml",
        &TWO.replace("start = \"a\"\n", ""),
        "workflow.start: missing",
    );
    assert_refused(
        &ws,
        "dup.toml",
        &TWO.replace("id = \"b\"", "id = \"a\""),
        "executors[1].id: duplicate executor id 'a'",
    );
    assert_refused(
        &ws,
        "syntax.toml",
        "[workflow\nname=",
        "syntax.toml: TOML parse error",
    );
    assert_refused(
        &ws,
        "missing.toml",
        &TWO.replace(
            "@test-guests@/probe.wasm\"\n\n[[edges]]",
            "@components@/absent.wasm\"\n\n[[edges]]",
        ),
        "missing.toml: executors[1] ('b').component: cannot read component",
    );

    // A core module is not a component; an empty component does not export the world.
    std::fs::write(ws.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(ws.path().join("empty.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
    let dir = ws.path().to_str().unwrap().to_string();
    for (file, detail) in [
        (
            "core.wasm",
            "attempted to parse a wasm module with a component parser",
        ),
        ("empty.wasm", "no export `"),
    ] {
        let text = TWO.replacen("@test-guests@/probe.wasm", &format!("{dir}/{file}"), 1);
        let refused = format!(
            "{file}.toml: executors[0] ('a').component: {dir}/{file} does not implement the superstep:workflow/executor@0.1.0 world of this host: "
        );
        assert_refused(&ws, &format!("{file}.toml"), &text, &refused);
        assert_refused(&ws, &format!("{file}.toml"), &text, detail);
    }

    let nothing = ws.superstep(&["validate", "no-such.toml"]);
    nothing.assert_code(2);
    assert!(
        nothing
            .stderr
            .contains("no-such.toml: cannot read manifest")
    );
}

#[test]
fn valid_manifest_validates() {
    let ws = Workspace::new();
    let path = ws.manifest("two.toml", TWO);
    let run = ws.superstep(&["validate", path.to_str().unwrap()]);
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("workflow 'two' is valid: 2 executors, 1 edges, start 'a'"),
        "{}",
        run.stdout
    );
}

#[test]
fn input_must_be_json() {
    let ws = Workspace::new();
    let path = ws.manifest("two.toml", TWO);
    let run = ws.superstep(&["run", path.to_str().unwrap(), "--input", "hello"]);
    run.assert_code(2).assert_stderr("--input: not JSON");
    assert!(run.stderr.contains("--input '\"hello\"'"), "{}", run.stderr);
    let missing = ws.superstep(&["run", path.to_str().unwrap(), "--input-file", "absent.json"]);
    missing
        .assert_code(2)
        .assert_stderr("--input-file absent.json");
    let neither = ws.superstep(&["run", path.to_str().unwrap()]);
    neither.assert_code(2);
}

#[test]
fn bad_checkpoint_files_are_refused_and_nothing_changes() {
    let ws = Workspace::new();
    ws.run_pipeline("\"hello world\"");
    let names: Vec<String> = ws.checkpoint_files("checkpoints").into_keys().collect();
    let first = ws.path().join("checkpoints").join(&names[0]);
    let good = std::fs::read_to_string(&first).unwrap();

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "not JSON",
            "this is not json".to_string(),
            "not a superstep checkpoint (not valid JSON",
        ),
        (
            "truncated",
            good[..good.len() / 2].to_string(),
            "truncated checkpoint file",
        ),
        (
            "wrong version",
            good.replacen("\"format_version\": 2", "\"format_version\": 99", 1),
            "checkpoint format version 99 is not supported",
        ),
        (
            "tampered",
            good.replacen("\"count\":1", "\"count\":7", 1),
            "checksum mismatch",
        ),
        (
            "foreign JSON",
            "{\"hello\": 1}".to_string(),
            "not a superstep checkpoint (no \"format\"",
        ),
    ];
    for (what, text, expected) in cases {
        std::fs::write(&first, &text).unwrap();
        let before = ws.checkpoint_files("checkpoints");
        let run = ws.superstep(&["resume", first.to_str().unwrap()]);
        run.assert_code(2);
        assert!(
            run.stderr.contains(expected),
            "{what}: expected {expected:?} in {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&names[0]),
            "{what}: the message names the file: {}",
            run.stderr
        );
        assert_eq!(
            ws.checkpoint_files("checkpoints"),
            before,
            "{what}: the directory changed"
        );

        let listed = ws.superstep(&["checkpoints", "list"]);
        listed.assert_code(0);
        assert!(
            listed.stdout.contains("DAMAGED"),
            "{what}: {}",
            listed.stdout
        );
        ws.superstep(&["checkpoints", "show", first.to_str().unwrap()])
            .assert_code(2);
    }
    std::fs::write(&first, &good).unwrap();

    let unknown = ws.superstep(&["resume", "0000ffff"]);
    unknown
        .assert_code(2)
        .assert_stderr("no checkpoint '0000ffff' in checkpoints");
    let escape = ws.superstep(&["resume", "../no/such/file"]);
    escape
        .assert_code(2)
        .assert_stderr("is neither a checkpoint file nor a checkpoint id");
    let foreign = ws.superstep(&["resume", "/etc/passwd"]);
    foreign
        .assert_code(2)
        .assert_stderr("/etc/passwd: not a superstep checkpoint");
}

#[test]
fn a_changed_component_or_graph_is_refused_unless_allowed() {
    let ws = Workspace::new();
    ws.run_pipeline("\"hello world\"");
    let names: Vec<String> = ws.checkpoint_files("checkpoints").into_keys().collect();
    let first = format!("checkpoints/{}", names[0]);
    let text = std::fs::read_to_string(ws.path().join("pipeline.toml")).unwrap();

    // Another component for `reverse`: same graph, different digest.
    std::fs::copy(component("reverse"), ws.path().join("reverse.wasm")).unwrap();
    let mut bytes = std::fs::read(ws.path().join("reverse.wasm")).unwrap();
    // A custom section appended changes the digest and nothing else.
    bytes.extend_from_slice(b"\x00\x0a\x04note12345");
    std::fs::write(ws.path().join("reverse.wasm"), bytes).unwrap();
    let changed = ws.manifest(
        "changed.toml",
        &text.replace(
            &format!("{}/reverse.wasm", components().display()),
            &format!("{}/reverse.wasm", ws.path().display()),
        ),
    );
    let before = ws.checkpoint_files("checkpoints");
    let refused = ws.superstep(&["resume", &first, "--manifest", changed.to_str().unwrap()]);
    refused
        .assert_code(2)
        .assert_stderr("executor 'reverse': its component changed since the checkpoint");
    assert!(refused.stderr.contains("--allow-changed-components"));
    assert_eq!(ws.checkpoint_files("checkpoints"), before);

    // The digests are compared before anything is compiled: a changed file that is not
    // even a component is refused as changed, not as a bad component.
    std::fs::write(ws.path().join("broken.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
    let broken = ws.manifest(
        "broken.toml",
        &text.replace(
            &format!("{}/reverse.wasm", components().display()),
            &format!("{}/broken.wasm", ws.path().display()),
        ),
    );
    ws.superstep(&["resume", &first, "--manifest", broken.to_str().unwrap()])
        .assert_code(2)
        .assert_stderr("executor 'reverse': its component changed since the checkpoint");

    let allowed = ws.superstep(&[
        "resume",
        &first,
        "--manifest",
        changed.to_str().unwrap(),
        "--allow-changed-components",
        "--events",
        "jsonl",
    ]);
    allowed.assert_code(0);
    assert_eq!(allowed.outputs(), vec![json!("dlrow olleh")]);

    // A different graph: an extra executor.
    let bigger = ws.manifest(
        "bigger.toml",
        &format!(
            "{text}\n[[executors]]\nid = \"extra\"\ncomponent = \"{}\"\n",
            test_guest("probe").display()
        ),
    );
    let refused = ws.superstep(&["resume", &first, "--manifest", bigger.to_str().unwrap()]);
    refused
        .assert_code(2)
        .assert_stderr("different workflow graph");
    assert!(
        refused
            .stderr
            .contains("executors not in the checkpoint: extra"),
        "{}",
        refused.stderr
    );
}

const FAILING: &str = r#"
[workflow]
name = "failing"
start = "a"

[[executors]]
id = "a"
component = "@test-guests@/probe.wasm"
[executors.config]
forward = [{ kind = "input" }]

[[executors]]
id = "b"
component = "@test-guests@/probe.wasm"
[executors.config]
fail_on_kind = "input"

[[edges]]
from = "a"
to = "b"
"#;

#[test]
fn a_failing_executor_fails_the_run_and_keeps_the_last_checkpoint() {
    let ws = Workspace::new();
    let path = ws.manifest("failing.toml", FAILING);
    let run = ws.superstep(&[
        "run",
        path.to_str().unwrap(),
        "--input",
        "1",
        "--events",
        "jsonl",
    ]);
    run.assert_code(1);
    let failed = &run.events_named("executor_failed")[0];
    assert_eq!(failed["executor"], "b");
    assert_eq!(failed["superstep"], 1);
    assert_eq!(
        failed["reason"],
        "message 1 of 1 (kind 'input' from 'a'): handle returned an error: refusing a message of kind 'input'"
    );
    let run_failed = &run.events_named("run_failed")[0];
    let saved = run.events_named("checkpoint_saved");
    assert_eq!(saved.len(), 1, "only superstep 0 was checkpointed");
    assert_eq!(run_failed["last_checkpoint"], saved[0]["checkpoint_id"]);
    assert_eq!(ws.checkpoint_files("checkpoints").len(), 1);

    // Fixed manifest: resume the last good checkpoint and complete.
    let fixed = ws.manifest(
        "failing.toml",
        &FAILING.replace("fail_on_kind = \"input\"", "yield = true"),
    );
    let resumed = ws.superstep(&[
        "resume",
        saved[0]["location"].as_str().unwrap(),
        "--manifest",
        fixed.to_str().unwrap(),
        "--events",
        "jsonl",
    ]);
    resumed.assert_code(0);
    assert_eq!(resumed.outputs().len(), 1);
}

#[test]
fn the_superstep_cap_fails_the_run_and_a_raised_cap_resumes_it() {
    let ws = Workspace::new();
    let text = std::fs::read_to_string(repo().join("guest-examples/pipeline.toml"))
        .unwrap()
        .replace("components/", "@components@/")
        .replace("max_supersteps = 10", "max_supersteps = 2");
    let path = ws.manifest("capped.toml", &text);
    let run = ws.superstep(&[
        "run",
        path.to_str().unwrap(),
        "--input",
        "\"hi\"",
        "--events",
        "jsonl",
    ]);
    run.assert_code(1);
    let reason = run.events_named("run_failed")[0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("superstep cap reached: 2 supersteps"),
        "{reason}"
    );
    assert!(reason.contains("workflow.max_supersteps"), "{reason}");
    let saved = run.events_named("checkpoint_saved");
    assert_eq!(saved.len(), 2);

    ws.manifest(
        "capped.toml",
        &text.replace("max_supersteps = 2", "max_supersteps = 4"),
    );
    let resumed = ws.superstep(&[
        "resume",
        saved[1]["location"].as_str().unwrap(),
        "--events",
        "jsonl",
    ]);
    resumed.assert_code(0);
    assert_eq!(resumed.outputs(), vec![json!("ih")]);
}

#[test]
fn guest_stdio_becomes_bounded_log_events() {
    let ws = Workspace::new();
    let text = TWO.replacen(
        "component = \"@test-guests@/probe.wasm\"",
        "component = \"@test-guests@/probe.wasm\"\n[executors.config]\nforward = [{ kind = \"k\" }]\nprint = \"hello from a\"\nprint_bytes = 100000",
        1,
    );
    let path = ws.manifest("stdio.toml", &text);
    let run = ws.superstep(&[
        "run",
        path.to_str().unwrap(),
        "--input",
        "1",
        "--events",
        "jsonl",
    ]);
    run.assert_code(0);
    let logs = run.events_named("log");
    let line = |level: &str, text: &str| {
        logs.iter()
            .any(|e| e["executor"] == "a" && e["level"] == level && e["text"] == text)
    };
    assert!(line("info", "hello from a"), "{logs:?}");
    assert!(line("warn", "on stderr: hello from a"), "{logs:?}");
    let kept = 65536 - "hello from a\n".len();
    let flood = logs
        .iter()
        .find(|e| e["text"].as_str().unwrap().starts_with("xxx"))
        .unwrap();
    assert_eq!(flood["text"].as_str().unwrap().len(), kept);
    assert!(
        line(
            "warn",
            &format!(
                "{} more bytes of stdout dropped (at most 65536 bytes are kept per call)",
                100000 - kept
            )
        ),
        "{logs:?}"
    );
}
