//! The guest SDKs as a user gets them: each installed from its directory into a project
//! in a temporary directory outside the repository, an executor built with it as the
//! README says, and run by the real binary (a word counter that keeps its state).

use crate::common::{Workspace, polyglot_components, repo, run_in};
use std::path::Path;

/// Writes a one-executor manifest for `component` and runs it twice from the
/// workspace; checks the counts it yields and that its state is in the checkpoint.
fn runs_and_counts(ws: &Workspace, component: &Path) {
    let manifest = format!(
        "[workflow]\nname = \"count\"\nstart = \"wordcount\"\n\n[[executors]]\nid = \"wordcount\"\ncomponent = \"{}\"\n",
        component.display()
    );
    let manifest = ws.manifest("count.toml", &manifest);
    let run = ws.superstep(&[
        "run",
        manifest.to_str().unwrap(),
        "--input",
        "\"to be or not to be\"",
        "--events",
        "quiet",
    ]);
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), r#"{"words":6}"#);
    let latest = crate::common::latest_checkpoint(&ws.path().join("checkpoints"));
    let states = crate::common::states(&latest);
    assert_eq!(states["wordcount"]["seen"], 6, "{states:?}");
}

/// Runs the workspace's `count.toml` (see [`runs_and_counts`]): it must fail, its
/// executor's error naming `why`, and trap nowhere.
fn fails_naming(ws: &Workspace, why: &str) {
    let run = ws.superstep(&["run", "count.toml", "--input", "\"a b\""]);
    run.assert_code(1).assert_stderr(why);
    assert!(!run.stderr.contains("trap"), "{}", run.stderr);
}

#[test]
fn the_sdks_carry_the_hosts_wit() {
    let wit = std::fs::read_to_string(repo().join("wit/superstep.wit")).unwrap();
    for copy in [
        "sdk/rust/wit/superstep.wit",
        "sdk/python/superstep_guest/wit/superstep.wit",
        "sdk/js/wit/superstep.wit",
    ] {
        let carried = std::fs::read_to_string(repo().join(copy)).unwrap();
        assert!(
            carried == wit,
            "{copy} differs from wit/superstep.wit: copy it again"
        );
    }
}

#[test]
fn a_rust_executor_builds_outside_the_repository() {
    let ws = Workspace::new();
    let project = ws.path().join("wordcount");
    std::fs::create_dir_all(project.join("src")).unwrap();
    let sdk = repo().join("sdk/rust");
    let cargo_toml = format!(
        "[package]\nname = \"wordcount\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nsuperstep-guest = {{ path = \"{}\" }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n[workspace]\n",
        sdk.display()
    );
    std::fs::write(project.join("Cargo.toml"), cargo_toml).unwrap();
    let source = r#"use serde::{Deserialize, Serialize};
use superstep_guest::{Context, Executor, Incoming};

#[derive(Default, Serialize, Deserialize)]
struct WordCount {
    seen: u64,
}

impl Executor for WordCount {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        let text: String = message.json()?;
        self.seen += text.split_whitespace().count() as u64;
        ctx.yield_output("count", &serde_json::json!({ "words": self.seen }))
    }
}

superstep_guest::export_executor!(WordCount);
"#;
    let source = source.replace("serde_json::", "superstep_guest::serde_json::");
    std::fs::write(project.join("src/lib.rs"), source).unwrap();
    // The dependencies' builds are shared between test runs; the project is not.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-rust-target");
    let target_dir = target.to_str().unwrap();
    let args = ["build", "--release", "--target", "wasm32-wasip2", "--quiet"];
    run_in(
        &project,
        "cargo",
        &args,
        &[("CARGO_TARGET_DIR", target_dir)],
    );
    runs_and_counts(&ws, &target.join("wasm32-wasip2/release/wordcount.wasm"));

    // Built against another version of the WIT package, it is refused, and told which
    // version this host provides.
    let old_sdk = ws.path().join("old-sdk");
    std::fs::create_dir_all(old_sdk.join("wit")).unwrap();
    copy_tree(&sdk.join("src"), &old_sdk.join("src"));
    std::fs::copy(sdk.join("Cargo.toml"), old_sdk.join("Cargo.toml")).unwrap();
    let wit = std::fs::read_to_string(sdk.join("wit/superstep.wit")).unwrap();
    let old_wit = wit.replace("superstep:workflow@0.1.0", "superstep:workflow@0.0.9");
    std::fs::write(old_sdk.join("wit/superstep.wit"), old_wit).unwrap();
    let toml = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    let toml = toml.replace(sdk.to_str().unwrap(), old_sdk.to_str().unwrap());
    std::fs::write(project.join("Cargo.toml"), toml).unwrap();
    run_in(
        &project,
        "cargo",
        &args,
        &[("CARGO_TARGET_DIR", target_dir)],
    );
    ws.superstep(&["validate", "count.toml"])
        .assert_code(2)
        .assert_stderr("(it was built against superstep:workflow@0.0.9; this host provides superstep:workflow@0.1.0");
}

/// Copies the files under `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().map(Result::unwrap) {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_python_executor_builds_outside_the_repository() {
    polyglot_components(); // the guest tools are there
    let ws = Workspace::new();
    let project = ws.path().join("wordcount");
    std::fs::create_dir_all(&project).unwrap();
    // A virtual environment that sees the componentize-py the guest tools installed.
    run_in(
        &project,
        "python3",
        &["-m", "venv", "--system-site-packages", ".venv"],
        &[],
    );
    let sdk = repo().join("sdk/python");
    let pip = project.join(".venv/bin/pip");
    let install = [
        "install",
        "--quiet",
        "--disable-pip-version-check",
        sdk.to_str().unwrap(),
    ];
    run_in(&project, pip.to_str().unwrap(), &install, &[]);
    let source = r#"from superstep_guest import Executor, export


class WordCount(Executor):
    def __init__(self):
        self.state = {"seen": 0}

    def handle(self, ctx, message):
        self.state["seen"] += len(message.json().split())
        ctx.yield_output("count", {"words": self.state["seen"]})


WitWorld = export(WordCount)
"#;
    std::fs::write(project.join("app.py"), source).unwrap();
    let build = project.join(".venv/bin/superstep-guest-build");
    run_in(
        &project,
        build.to_str().unwrap(),
        &["app.py", "wordcount.wasm"],
        &[],
    );
    runs_and_counts(&ws, &project.join("wordcount.wasm"));

    // A state json.dumps cannot take fails the handler that made it, naming why.
    let unencodable = source.replace(
        "        ctx.yield_output",
        "        self.state[\"words\"] = set(message.json().split())\n        ctx.yield_output",
    );
    std::fs::write(project.join("app.py"), unencodable).unwrap();
    run_in(
        &project,
        build.to_str().unwrap(),
        &["app.py", "wordcount.wasm"],
        &[],
    );
    fails_naming(
        &ws,
        "state of 'wordcount' is not JSON: Object of type set is not JSON serializable",
    );
}

#[test]
fn a_javascript_executor_builds_outside_the_repository() {
    polyglot_components(); // the guest tools (and the SDK's npm packages) are there
    let ws = Workspace::new();
    let project = ws.path().join("wordcount");
    std::fs::create_dir_all(&project).unwrap();
    let package = r#"{ "name": "wordcount", "private": true, "type": "module" }"#;
    std::fs::write(project.join("package.json"), package).unwrap();
    let sdk = repo().join("sdk/js");
    let install = [
        "install",
        "--no-audit",
        "--no-fund",
        "--silent",
        sdk.to_str().unwrap(),
    ];
    run_in(&project, "npm", &install, &[]);
    let source = r#"import { exportExecutor } from "superstep-guest";

class WordCount {
  state = { seen: 0 };
  handle(ctx, message) {
    this.state.seen += message.json().split(/\s+/).filter(Boolean).length;
    ctx.yieldOutput("count", { words: this.state.seen });
  }
}

export const { init, handle, onResponse, snapshot, restore } = exportExecutor(WordCount);
"#;
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("src/wordcount.js"), source).unwrap();
    let args = [
        "superstep-guest-build",
        "src/wordcount.js",
        "wordcount.wasm",
    ];
    run_in(&project, "npx", &args, &[]);
    runs_and_counts(&ws, &project.join("wordcount.wasm"));

    // A state JSON.stringify cannot take fails the handler that made it, naming why.
    let unencodable = source.replace("state = { seen: 0 };", "state = { seen: 0, big: 1n };");
    assert_ne!(unencodable, source);
    std::fs::write(project.join("src/wordcount.js"), unencodable).unwrap();
    run_in(&project, "npx", &args, &[]);
    fails_naming(
        &ws,
        "state of 'wordcount' is not JSON: BigInt value can't be serialized in JSON",
    );
}
