//! Test helpers: building the guests, workspaces with manifests, running the binary.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds the example Rust guests once per test process; returns their directory.
pub fn components() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_examples("build.sh"))
}

/// Builds the Python, JavaScript and C example guests once per test process (with the
/// tools scripts/install-guest-tools installs); returns their directory.
pub fn polyglot_components() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_examples("build-polyglot.sh"))
}

/// Builds the executors only the tests use (`tests/guests`) once per test process;
/// returns their directory.
pub fn test_guests() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_guests("tests/guests", "build.sh"))
}

/// Runs a build script of guest-examples/; returns the components' directory.
fn build_examples(script: &str) -> PathBuf {
    build_guests("guest-examples", script)
}

/// Runs the build script `script` of directory `dir`; returns its components'
/// directory.
fn build_guests(dir: &str, script: &str) -> PathBuf {
    let status = Command::new("bash")
        .arg(repo().join(dir).join(script))
        .status()
        .unwrap_or_else(|e| panic!("run {dir}/{script}: {e}"));
    assert!(
        status.success(),
        "{dir}/{script} failed (scripts/install-guest-tools installs the guest tools)"
    );
    repo().join(dir).join("components")
}

/// The compile cache the tests share (under Cargo's temp dir, not the user's cache).
pub fn test_compile_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("compile-cache")
}

/// The path of the built example component `name`.
pub fn component(name: &str) -> PathBuf {
    components().join(format!("{name}.wasm"))
}

/// The path of the built test executor `name` (see [`test_guests`]).
pub fn test_guest(name: &str) -> PathBuf {
    test_guests().join(format!("{name}.wasm"))
}

/// A temporary directory to run in, with manifests written into it.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        components();
        test_guests();
        Workspace {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a manifest; `@components@` stands for the built example components'
    /// directory, `@test-guests@` for the test executors'.
    pub fn manifest(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        let text = text
            .replace("@components@", components().to_str().unwrap())
            .replace("@test-guests@", test_guests().to_str().unwrap());
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Opens or closes the gate `gate/open` of the workspace: a probe granted `gate/` with
    /// `wait_for = "/gate/open"` holds its message while the gate is closed.
    pub fn set_gate(&self, open: bool) {
        let gate = self.path().join("gate");
        std::fs::create_dir_all(&gate).unwrap();
        if open {
            std::fs::write(gate.join("open"), "").unwrap();
        } else if gate.join("open").exists() {
            std::fs::remove_file(gate.join("open")).unwrap();
        }
    }

    /// The demo pipeline manifest with its components resolved to the built ones.
    pub fn pipeline(&self) -> PathBuf {
        let text = std::fs::read_to_string(repo().join("guest-examples/pipeline.toml")).unwrap();
        self.manifest(
            "pipeline.toml",
            &text.replace("components/", "@components@/"),
        )
    }

    /// A W2-style ring manifest `ring.toml`: stations `n0..n{stations-1}` passing a
    /// token until it has made `limit` hops; `ballast` gives stations big states
    /// (pairs of station index and bytes). Input: `{"hops": 0}` of kind `token`.
    pub fn ring(&self, stations: usize, limit: u64, ballast: &[(usize, usize)]) -> PathBuf {
        let mut text = format!(
            "[workflow]\nname = \"ring\"\nstart = \"n0\"\nmax_supersteps = {}\n",
            limit + 1
        );
        for i in 0..stations {
            let bytes = ballast
                .iter()
                .find(|(station, _)| *station == i)
                .map_or(0, |(_, bytes)| *bytes);
            text += &format!(
                "\n[[executors]]\nid = \"n{i}\"\ncomponent = \"@components@/ring.wasm\"\nconfig = {{ limit = {limit}, ballast = {bytes} }}\n"
            );
        }
        for i in 0..stations {
            text += &format!(
                "\n[[edges]]\nfrom = \"n{i}\"\nto = \"n{}\"\nkinds = [\"token\"]\n",
                (i + 1) % stations
            );
        }
        self.manifest("ring.toml", &text)
    }

    /// The three-language text pipeline (`polyglot.toml`) with its components resolved
    /// to the built ones.
    pub fn polyglot(&self) -> PathBuf {
        polyglot_components();
        let text = std::fs::read_to_string(repo().join("guest-examples/polyglot.toml")).unwrap();
        self.manifest(
            "polyglot.toml",
            &text.replace("components/", "@components@/"),
        )
    }

    /// `approvals.toml`: the JavaScript approver, then the Python one, then the Rust
    /// `finalize` (as `done`); each approver asks for a response before it sends on.
    pub fn approvals(&self) -> PathBuf {
        polyglot_components();
        self.manifest(
            "approvals.toml",
            "[workflow]\nname = \"approvals\"\nstart = \"js\"\n\n\
             [[executors]]\nid = \"js\"\ncomponent = \"@components@/approve_js.wasm\"\n\n\
             [[executors]]\nid = \"py\"\ncomponent = \"@components@/approve_py.wasm\"\n\n\
             [[executors]]\nid = \"done\"\ncomponent = \"@components@/finalize.wasm\"\n\n\
             [[edges]]\nfrom = \"js\"\nto = \"py\"\n\n[[edges]]\nfrom = \"py\"\nto = \"done\"\n",
        )
    }

    /// The plan-review manifest with its components resolved to the built ones.
    pub fn plan_review(&self) -> PathBuf {
        let text = std::fs::read_to_string(repo().join("guest-examples/plan_review.toml")).unwrap();
        self.manifest(
            "plan_review.toml",
            &text.replace("components/", "@components@/"),
        )
    }

    /// Runs the plan review on "launch the beta" with `extra` arguments; it must pause
    /// for the planner's first request.
    pub fn paused_plan_review(&self, extra: &[&str]) -> Run {
        let manifest = self.plan_review();
        let mut args = vec![
            "run",
            manifest.to_str().unwrap(),
            "--input",
            "\"launch the beta\"",
        ];
        args.extend_from_slice(extra);
        let run = self.superstep(&args);
        run.assert_code(3);
        run
    }

    /// Runs the demo pipeline on `input` (JSON) with JSON Lines events; it must complete.
    pub fn run_pipeline(&self, input: &str) -> Run {
        let manifest = self.pipeline();
        let run = self.superstep(&[
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

    /// The run id of the checkpoint a `checkpoint_saved` event names.
    pub fn run_id_of(&self, saved: &Value) -> String {
        let location = self.path().join(saved["location"].as_str().unwrap());
        read_checkpoint(&location)["run_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Runs the binary in the workspace.
    pub fn superstep(&self, args: &[&str]) -> Run {
        self.superstep_env(&[], args)
    }

    /// Runs the binary in the workspace with `env` set (over the test compile cache).
    pub fn superstep_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_superstep"))
            .args(args)
            .env(superstep::COMPILE_CACHE_ENV, test_compile_cache())
            .envs(env.iter().copied())
            .current_dir(self.path())
            .output()
            .expect("start superstep");
        Run::from(output)
    }

    /// The checkpoint files of a directory (relative to the workspace), by name.
    pub fn checkpoint_files(&self, dir: &str) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        collect_files(&self.path().join(dir), "", &mut files);
        files
    }
}

/// What one process did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().expect("exited"),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }
}

impl Run {
    /// The JSON Lines events on stdout (for `--events jsonl`).
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// The events named `name`.
    pub fn events_named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    /// Output bodies (JSON) from `output` events.
    pub fn outputs(&self) -> Vec<Value> {
        self.events_named("output")
            .into_iter()
            .map(|e| e["body"]["json"].clone())
            .collect()
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_stderr(&self, expected: &str) -> &Run {
        assert!(
            self.stderr.contains(expected),
            "expected {expected:?} in stderr:\n{}",
            self.stderr
        );
        self
    }
}

/// The arguments that run a ring manifest (see [`Workspace::ring`]) from its first hop.
pub fn ring_args(manifest: &Path) -> Vec<String> {
    let manifest = manifest.to_str().unwrap();
    [
        "run",
        manifest,
        "--input",
        "{\"hops\": 0}",
        "--input-kind",
        "token",
    ]
    .map(String::from)
    .to_vec()
}

/// A checkpoint file's `checkpoint` object.
pub fn read_checkpoint(path: &Path) -> Value {
    let document: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    document["checkpoint"].clone()
}

/// Every file under `dir` (blobs included) by relative path, except the lock file.
fn collect_files(dir: &Path, prefix: &str, files: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let name = format!("{prefix}{}", entry.file_name().into_string().unwrap());
        if entry.file_type().unwrap().is_dir() {
            collect_files(&entry.path(), &format!("{name}/"), files);
        } else if name != ".lock" {
            files.insert(name, std::fs::read(entry.path()).unwrap());
        }
    }
}

/// The checkpoint files (`<id>.json`) of a directory, sorted by name.
pub fn checkpoint_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.ends_with(".json") && !name.starts_with('.')
        })
        .collect();
    paths.sort();
    paths
}

/// The newest checkpoint of a directory by lineage: the one no other names as parent.
pub fn latest_checkpoint(dir: &Path) -> Value {
    let all: Vec<Value> = checkpoint_paths(dir)
        .iter()
        .map(|p| read_checkpoint(p))
        .collect();
    let leaves: Vec<&Value> = all
        .iter()
        .filter(|c| !all.iter().any(|o| o["parent_id"] == c["checkpoint_id"]))
        .collect();
    assert_eq!(leaves.len(), 1, "one branch expected in {}", dir.display());
    leaves[0].clone()
}

/// Executor states of a checkpoint object, decoded as JSON.
pub fn states(checkpoint: &Value) -> BTreeMap<String, Value> {
    checkpoint["executors"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, record)| (id.clone(), record["state"]["json"].clone()))
        .collect()
}

/// Resumes each checkpoint of the text pipeline's completed run in `ws/checkpoints`, in
/// a fresh process and a copy of the directory: the resume changes no file, writes one
/// checkpoint per remaining superstep and ends with the run's states, shared state and
/// output.
pub fn assert_every_checkpoint_resumes_like_the_run(ws: &Workspace) {
    let reference = latest_checkpoint(&ws.path().join("checkpoints"));
    let original = ws.checkpoint_files("checkpoints");

    for name in original.keys() {
        // Each resume gets its own copy of the run's checkpoints.
        let dir = format!("branch-{}", name.trim_end_matches(".json"));
        std::fs::create_dir(ws.path().join(&dir)).unwrap();
        for (file, bytes) in &original {
            std::fs::write(ws.path().join(&dir).join(file), bytes).unwrap();
        }
        let resumed_from = read_checkpoint(&ws.path().join(&dir).join(name));
        let path = format!("{dir}/{name}");
        let run = ws.superstep(&["resume", &path, "--events", "jsonl"]);
        run.assert_code(0);

        let after = ws.checkpoint_files(&dir);
        for (file, bytes) in &original {
            assert_eq!(
                after.get(file),
                Some(bytes),
                "{file} was changed by the resume"
            );
        }
        let new: Vec<&String> = after
            .keys()
            .filter(|f| !original.contains_key(*f))
            .collect();
        let remaining = 4 - resumed_from["superstep"].as_u64().unwrap();
        assert_eq!(
            new.len() as u64,
            remaining,
            "one new checkpoint per superstep run"
        );

        let started = &run.events_named("run_started")[0];
        assert_eq!(started["resumed_from"], resumed_from["checkpoint_id"]);
        if remaining == 0 {
            assert!(run.events_named("superstep_started").is_empty());
            continue;
        }
        // The new branch's last checkpoint equals the uninterrupted run's.
        let branch_last = new
            .iter()
            .map(|f| read_checkpoint(&ws.path().join(&dir).join(f)))
            .find(|c| c["status"] == "completed")
            .expect("the resumed run completed");
        assert_eq!(states(&branch_last), states(&reference));
        assert_eq!(branch_last["shared_state"], reference["shared_state"]);
        assert_eq!(branch_last["outputs"], reference["outputs"]);
        assert_eq!(branch_last["run_id"], reference["run_id"]);
        assert_eq!(branch_last["superstep"], 4);
        assert_eq!(run.outputs(), vec![json!("dlrow olleh")]);
        let first_new = &run.events_named("checkpoint_saved")[0];
        assert_eq!(first_new["parent_id"], resumed_from["checkpoint_id"]);
    }
}

/// Rewrites the checkpoint file at `path` with its content edited by `edit` and the
/// checksum made right again, as someone who changes a file on purpose would: `edit`
/// gets the content as a JSON value, and the result is written compactly, with each
/// `"@raw:<n>@"` string replaced by `raw[n]` verbatim (JSON a value cannot hold).
pub fn forge(path: &Path, raw: &[&str], edit: impl FnOnce(&mut Value)) {
    let mut content = read_checkpoint(path);
    edit(&mut content);
    let mut text = serde_json::to_string(&content).unwrap();
    for (n, raw) in raw.iter().enumerate() {
        text = text.replace(&format!("\"@raw:{n}@\""), raw);
    }
    let document = format!(
        "{{\"format\": \"superstep-checkpoint\", \"format_version\": 2, \"checksum\": \"{}\", \"checkpoint\": {text}}}",
        superstep::hash::sha256_hex(text.as_bytes())
    );
    std::fs::write(path, document).unwrap();
}

/// Runs the binary in `ws` with `env` set, killing it if it has not exited within a
/// minute (exit code 124): for inputs that must not make it hang.
pub fn superstep_within_a_minute(ws: &Workspace, env: &[(&str, &str)], args: &[&str]) -> Run {
    let output = Command::new("timeout")
        .args(["-s", "KILL", "60", env!("CARGO_BIN_EXE_superstep")])
        .args(args)
        .env(superstep::COMPILE_CACHE_ENV, test_compile_cache())
        .envs(env.iter().copied())
        .current_dir(ws.path())
        .output()
        .expect("start superstep");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_ne!(run.code, 137, "superstep hung and was killed: {args:?}");
    run
}

/// Runs `program` with `args` in `dir`; it must succeed.
pub fn run_in(dir: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
