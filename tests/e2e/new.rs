//! `superstep new`, `superstep build` and `run --build`, from an empty directory, as a
//! new user goes: a project per language, its build, its run; and what they refuse.

use crate::common::{Workspace, polyglot_components, run_in};

/// `superstep new counter --lang <lang>` in the workspace; checks what it says.
fn new_project(ws: &Workspace, lang: &str) {
    let made = ws.superstep(&["new", "counter", "--lang", lang]);
    made.assert_code(0);
    assert!(
        made.stdout.contains("superstep run --build workflow.toml"),
        "{}",
        made.stdout
    );
    assert!(ws.path().join("counter/workflow.toml").is_file());
}

/// Builds and runs the project, then builds it again: the counts come out, and the
/// state is in the checkpoint.
fn builds_and_runs(ws: &Workspace) {
    let run = ws.superstep(&[
        "run",
        "--build",
        "counter/workflow.toml",
        "--input",
        "\"to be or not\"",
        "--events",
        "quiet",
    ]);
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), r#"{"messages":1,"words":4}"#);
    assert!(run.stderr.contains("built counter: "), "{}", run.stderr);
    assert!(run.stderr.contains("(new)"), "{}", run.stderr);
    let latest = crate::common::latest_checkpoint(&ws.path().join("checkpoints"));
    assert_eq!(crate::common::states(&latest)["counter"]["words"], 4);
    let again = ws.superstep(&["build", "counter/workflow.toml"]);
    again.assert_code(0);
    assert!(
        again.stderr.starts_with("built counter: "),
        "{}",
        again.stderr
    );
}

#[test]
fn a_new_rust_executor_builds_and_runs() {
    let ws = Workspace::new();
    new_project(&ws, "rust");
    builds_and_runs(&ws);
    // Cargo builds unchanged sources to the same bytes, into the project's own target
    // directory whatever CARGO_TARGET_DIR says.
    let elsewhere = ws.path().join("elsewhere");
    let env = [("CARGO_TARGET_DIR", elsewhere.to_str().unwrap())];
    let again = ws.superstep_env(&env, &["build", "counter/workflow.toml"]);
    again.assert_code(0);
    assert!(again.stderr.contains("(unchanged)"), "{}", again.stderr);
}

#[test]
fn a_new_python_executor_builds_and_runs() {
    polyglot_components(); // the guest tools are there
    let ws = Workspace::new();
    new_project(&ws, "python");
    let project = ws.path().join("counter");
    // As `new` says, in an environment that sees the installed componentize-py.
    run_in(
        &project,
        "python3",
        &["-m", "venv", "--system-site-packages", ".venv"],
        &[],
    );
    let pip = [
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-r",
        "requirements.txt",
    ];
    run_in(&project, ".venv/bin/pip", &pip, &[]);
    builds_and_runs(&ws);
}

#[test]
fn a_new_javascript_executor_builds_and_runs() {
    polyglot_components(); // the guest tools (and the SDK's npm packages) are there
    let ws = Workspace::new();
    new_project(&ws, "js");
    run_in(
        &ws.path().join("counter"),
        "npm",
        &["install", "--no-audit", "--no-fund", "--silent"],
        &[],
    );
    builds_and_runs(&ws);
}

#[test]
fn new_and_build_refuse_what_they_cannot_do_and_say_why() {
    let ws = Workspace::new();
    ws.superstep(&["new", "Counter!", "--lang", "rust"])
        .assert_code(2)
        .assert_stderr("'Counter!': a name is lower-case letters");
    std::fs::create_dir_all(ws.path().join("taken")).unwrap();
    std::fs::write(ws.path().join("taken/keep.txt"), "mine").unwrap();
    ws.superstep(&["new", "taken", "--lang", "python"])
        .assert_code(2)
        .assert_stderr("taken: already there and not empty");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );
    ws.superstep(&["new", "x", "--lang", "js", "--sdk", "/nonexistent"])
        .assert_code(2)
        .assert_stderr("--sdk: no superstep SDK there (no js/package.json)");

    let failing = ws.manifest(
        "failing.toml",
        "[workflow]\nname = \"f\"\nstart = \"a\"\n\n[[executors]]\nid = \"a\"\ncomponent = \"a.wasm\"\nbuild = \"echo broken source >&2; exit 3\"\n",
    );
    let failed = ws.superstep(&["build", failing.to_str().unwrap()]);
    failed
        .assert_code(2)
        .assert_stderr("executors[0] ('a').build: `echo broken source >&2; exit 3` failed");
    assert!(failed.stderr.contains("broken source"), "{}", failed.stderr);
    let run = ws.superstep(&["run", "--build", failing.to_str().unwrap(), "--input", "1"]);
    run.assert_code(2).assert_stderr("('a').build");

    let nothing = ws.manifest(
        "nothing.toml",
        "[workflow]\nname = \"n\"\nstart = \"a\"\n\n[[executors]]\nid = \"a\"\ncomponent = \"a.wasm\"\nbuild = \"true\"\n",
    );
    ws.superstep(&["build", nothing.to_str().unwrap()])
        .assert_code(2)
        .assert_stderr("executors[0] ('a').component: ");
}
