//! The text pipeline with executors in Python, JavaScript, Rust and C: the same
//! checkpoints as the all-Rust pipeline, resumable from each of them, and resumable
//! with an executor swapped for one in another language.

use crate::common::*;
use serde_json::{Value, json};
use std::path::Path;

/// Runs `manifest` on `input` with JSON Lines events; it must complete.
fn run(ws: &Workspace, manifest: &Path, input: &str) -> Run {
    let run = ws.superstep(&[
        "run",
        manifest.to_str().unwrap(),
        "--input",
        input,
        "--events",
        "jsonl",
    ]);
    run.assert_code(0);
    run
}

/// The checkpoints in `ws/dir`, ordered by superstep (one branch).
fn by_superstep(ws: &Workspace, dir: &str) -> Vec<(String, Value)> {
    let mut all: Vec<(String, Value)> = checkpoint_paths(&ws.path().join(dir))
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            (format!("{dir}/{name}"), read_checkpoint(p))
        })
        .collect();
    all.sort_by_key(|(_, c)| c["superstep"].as_u64().unwrap());
    all
}

/// The all-Rust pipeline manifest with component files renamed per `swaps`.
fn pipeline_with(ws: &Workspace, name: &str, swaps: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(ws.pipeline()).unwrap();
    for (from, to) in swaps {
        text = text.replace(&format!("/{from}.wasm"), &format!("/{to}.wasm"));
    }
    ws.manifest(name, &text)
}

#[test]
fn three_language_pipeline_checkpoints_what_the_rust_one_does() {
    let rust = Workspace::new();
    rust.run_pipeline("\"hello world\"");
    let poly = Workspace::new();
    let manifest = poly.polyglot();
    let run = run(&poly, &manifest, "\"hello world\"");
    assert_eq!(run.outputs(), vec![json!("dlrow olleh")]);
    assert!(
        run.events_named("log")
            .iter()
            .any(|e| e["executor"] == "lower"
                && e["text"]
                    == "shared state: original_input='hello world', upper_output='HELLO WORLD'"),
        "the Rust `lower` reads what the Python `upper` shared"
    );

    let expected = by_superstep(&rust, "checkpoints");
    let actual = by_superstep(&poly, "checkpoints");
    assert_eq!(actual.len(), 4);
    for ((_, r), (_, p)) in expected.iter().zip(&actual) {
        let superstep = &p["superstep"];
        assert_eq!(states(p), states(r), "states after superstep {superstep}");
        assert_eq!(
            p["shared_state"], r["shared_state"],
            "superstep {superstep}"
        );
        assert_eq!(p["queued"], r["queued"], "superstep {superstep}");
        assert_eq!(p["outputs"], r["outputs"], "superstep {superstep}");
    }
    // The checkpoints record the components that ran.
    let (_, last) = &actual[3];
    for (executor, file) in [
        ("upper", "upper_py"),
        ("reverse", "reverse_js"),
        ("lower", "lower"),
        ("finalize", "finalize_py"),
    ] {
        let bytes = std::fs::read(component(file)).unwrap();
        assert_eq!(
            last["executors"][executor]["component"],
            superstep::hash::sha256_hex(&bytes),
            "{executor}"
        );
    }
}

#[test]
fn resuming_any_checkpoint_of_the_three_language_pipeline_ends_like_the_run() {
    let ws = Workspace::new();
    let manifest = ws.polyglot();
    run(&ws, &manifest, "\"hello world\"");
    assert_every_checkpoint_resumes_like_the_run(&ws);
}

#[test]
fn an_executor_resumes_from_a_state_another_language_wrote() {
    let ws = Workspace::new();
    let polyglot = ws.polyglot();
    run(&ws, &polyglot, "\"hello world\"");
    let checkpoints = by_superstep(&ws, "checkpoints");
    let reference = checkpoints[3].1.clone();
    let rust = pipeline_with(&ws, "rust.toml", &[]);
    let c_upper = pipeline_with(&ws, "c-upper.toml", &[("upper", "upper_c")]);

    // After superstep 1 the Python `upper` has its state; after superstep 2 the
    // JavaScript `reverse` too. Resumed in Rust (and `upper` in C), each new instance
    // restores the other language's JSON and carries on to the same end.
    for (manifest, superstep) in [(&rust, 1), (&rust, 2), (&c_upper, 1)] {
        let (path, _) = &checkpoints[superstep - 1];
        let refused = ws.superstep(&["resume", path, "--manifest", manifest.to_str().unwrap()]);
        refused
            .assert_code(2)
            .assert_stderr("its component changed since the checkpoint")
            .assert_stderr("--allow-changed-components");

        let resumed = ws.superstep(&[
            "resume",
            path,
            "--manifest",
            manifest.to_str().unwrap(),
            "--allow-changed-components",
            "--events",
            "jsonl",
        ]);
        resumed.assert_code(0);
        assert_eq!(resumed.outputs(), vec![json!("dlrow olleh")]);
        let saved = resumed.events_named("checkpoint_saved");
        let last = read_checkpoint(
            &ws.path()
                .join(saved.last().unwrap()["location"].as_str().unwrap()),
        );
        assert_eq!(last["status"], "completed");
        assert_eq!(
            states(&last),
            states(&reference),
            "{} from superstep {superstep}",
            manifest.display()
        );
        assert_eq!(last["shared_state"], reference["shared_state"]);
    }

    // And the other way: a checkpoint of the all-Rust pipeline resumed in Python and
    // JavaScript.
    let other = Workspace::new();
    other.run_pipeline("\"hello world\"");
    let (path, _) = &by_superstep(&other, "checkpoints")[1];
    let polyglot = other.polyglot();
    let resumed = other.superstep(&[
        "resume",
        path,
        "--manifest",
        polyglot.to_str().unwrap(),
        "--allow-changed-components",
        "--events",
        "jsonl",
    ]);
    resumed.assert_code(0);
    assert_eq!(resumed.outputs(), vec![json!("dlrow olleh")]);
    let saved = resumed.events_named("checkpoint_saved");
    let last = read_checkpoint(
        &other
            .path()
            .join(saved.last().unwrap()["location"].as_str().unwrap()),
    );
    assert_eq!(states(&last), states(&reference));
}

#[test]
fn a_guest_error_in_any_language_fails_the_executor_with_its_message() {
    let ws = Workspace::new();
    polyglot_components();
    let cases = [
        (
            "upper_py",
            "AttributeError: 'int' object has no attribute 'upper'",
        ),
        ("reverse_js", "TypeError"),
        ("upper_c", "the message body is not a JSON string"),
    ];
    for (file, reason) in cases {
        let manifest = ws.manifest(
            &format!("{file}.toml"),
            &format!(
                "[workflow]\nname = \"one\"\nstart = \"step\"\n\n[[executors]]\nid = \"step\"\ncomponent = \"@components@/{file}.wasm\"\n"
            ),
        );
        let failed = ws.superstep(&[
            "run",
            manifest.to_str().unwrap(),
            "--input",
            "42",
            "--events",
            "jsonl",
        ]);
        failed.assert_code(1);
        let events = failed.events_named("executor_failed");
        assert_eq!(events.len(), 1, "{file}: {}", failed.stdout);
        assert_eq!(events[0]["executor"], "step");
        let text = events[0]["reason"].as_str().unwrap();
        assert!(text.contains(reason), "{file}: {text}");
    }
}

#[test]
fn python_and_javascript_executors_pause_for_input_and_resume_with_the_response() {
    let ws = Workspace::new();
    let manifest = ws.approvals();
    let paused_at = |run: &Run| -> String {
        let saved = run.events_named("checkpoint_saved");
        let last = saved.last().unwrap();
        assert_eq!(last["status"], "awaiting-input");
        last["location"].as_str().unwrap().to_string()
    };

    let first = ws.superstep(&[
        "run",
        manifest.to_str().unwrap(),
        "--input",
        "\"ship it\"",
        "--events",
        "jsonl",
    ]);
    first.assert_code(3);
    let requests = first.events_named("request_info");
    assert_eq!(requests[0]["request_id"], "js:0:1");
    assert_eq!(requests[0]["body"]["json"], json!({"text": "ship it"}));

    // Each response is delivered in a fresh process, restored from the checkpoint.
    let second = ws.superstep(&[
        "resume",
        &paused_at(&first),
        "--respond",
        r#"js:0:1={"approved": true}"#,
        "--events",
        "jsonl",
    ]);
    second.assert_code(3);
    let asked = second.events_named("request_info");
    assert_eq!(asked.last().unwrap()["request_id"], "py:2:1");

    let done = ws.superstep(&[
        "resume",
        &paused_at(&second),
        "--respond",
        r#"py:2:1={"approved": true}"#,
        "--events",
        "jsonl",
    ]);
    done.assert_code(0);
    assert_eq!(done.outputs(), vec![json!("ship it")]);
    let last = latest_checkpoint(&ws.path().join("checkpoints"));
    let approved = json!({"pending": {}, "approved": 1, "rejected": 0});
    assert_eq!(states(&last)["js"], approved);
    assert_eq!(states(&last)["py"], approved);
}

#[test]
fn compile_puts_optimized_code_in_the_cache_ahead_of_runs() {
    let ws = Workspace::new();
    let manifest = ws.polyglot();
    let manifest = manifest.to_str().unwrap();
    let cache = ws.path().join("cache");
    let env = [(superstep::COMPILE_CACHE_ENV, cache.to_str().unwrap())];

    // Not cached: the interpreters' components are compiled by the baseline compiler.
    let validated = ws.superstep_env(&env, &["validate", manifest]);
    validated.assert_code(0);
    assert!(
        validated
            .stdout
            .contains("note: finalize, reverse, upper run on baseline code"),
        "{}",
        validated.stdout
    );

    let compiled = ws.superstep_env(&env, &["compile", manifest]);
    compiled.assert_code(0);
    let lines: Vec<&str> = compiled.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "one line per component: {lines:?}");
    for line in &lines {
        let done = if line.contains("lower.wasm") {
            line.ends_with(": already compiled")
        } else {
            line.contains(": compiled in ") && line.ends_with(" s")
        };
        assert!(done, "{line}");
    }
    let again = ws.superstep_env(&env, &["compile", manifest]);
    again.assert_code(0);
    assert_eq!(again.stdout.matches(": already compiled\n").count(), 4);

    // Now every component loads optimized, and runs as before.
    let validated = ws.superstep_env(&env, &["validate", manifest]);
    validated.assert_code(0);
    assert!(!validated.stdout.contains("note:"), "{}", validated.stdout);
    let run = ws.superstep_env(&env, &["run", manifest, "--input", "\"hello world\""]);
    run.assert_code(0);
    assert_eq!(run.stdout, "\"dlrow olleh\"\n");

    let off = ws.superstep_env(
        &[(superstep::COMPILE_CACHE_ENV, "off")],
        &["compile", manifest],
    );
    off.assert_code(2);
    assert!(
        off.stderr
            .contains("the compile cache is off (SUPERSTEP_COMPILE_CACHE=off)"),
        "{}",
        off.stderr
    );
}
