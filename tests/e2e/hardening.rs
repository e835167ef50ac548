//! Checkpoints, manifests and files made on purpose to break the host: whatever they
//! say, `resume` and `checkpoints show` refuse them with exit code 2 and a reason, or
//! go on exactly as the same checkpoint given through the library would; they never
//! panic, hang, read a special file or quote a file the user did not name.

use crate::common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use superstep::{CheckpointStore, MemoryStore, Runtime, Workflow};

/// The pipeline's checkpoints after a completed run: superstep 1 (a message queued for
/// `reverse`) to 4 (completed), oldest first.
fn pipeline_checkpoints(ws: &Workspace) -> Vec<PathBuf> {
    ws.run_pipeline("\"hello world\"");
    let mut paths = checkpoint_paths(&ws.path().join("checkpoints"));
    paths.sort_by_key(|p| read_checkpoint(p)["superstep"].as_u64().unwrap());
    paths
}

/// A copy of `file` in its own directory, to forge.
fn copy_of(ws: &Workspace, file: &Path, name: &str) -> PathBuf {
    let dir = ws.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(file.file_name().unwrap());
    std::fs::copy(file, &copy).unwrap();
    copy
}

#[test]
fn a_checkpoint_that_lacks_or_renames_an_executor_is_refused_not_a_panic() {
    let ws = Workspace::new();
    let checkpoints = pipeline_checkpoints(&ws);
    // Superstep 1 queues a message for `reverse`: without `reverse`, the checkpoint
    // contradicts itself, and show refuses it too.
    let missing = copy_of(&ws, &checkpoints[0], "missing");
    forge(&missing, &[], |c| {
        c["executors"].as_object_mut().unwrap().remove("reverse");
    });
    let missing = missing.to_str().unwrap();
    ws.superstep(&["resume", missing])
        .assert_code(2)
        .assert_stderr("queued: messages for unknown executor 'reverse'");
    ws.superstep(&["checkpoints", "show", missing])
        .assert_code(2)
        .assert_stderr("queued: messages for unknown executor 'reverse'");

    // `lower` under another key: consistent in itself, but not the workflow's.
    let renamed = copy_of(&ws, &checkpoints[0], "renamed");
    forge(&renamed, &[], |c| {
        let executors = c["executors"].as_object_mut().unwrap();
        let lower = executors.remove("lower").unwrap();
        executors.insert("lower2".into(), lower);
    });
    let renamed = renamed.to_str().unwrap();
    ws.superstep(&["resume", renamed])
        .assert_code(2)
        .assert_stderr("executors: 'lower2' is not an executor of");
    let dropped = copy_of(&ws, &checkpoints[0], "dropped");
    forge(&dropped, &[], |c| {
        c["executors"].as_object_mut().unwrap().remove("lower");
    });
    ws.superstep(&["resume", dropped.to_str().unwrap()])
        .assert_code(2)
        .assert_stderr("executors: executor 'lower' has no record (no state to restore)");
}

/// An edit of a checkpoint's content.
type Edit = dyn Fn(&mut Value);

#[test]
fn queued_messages_requests_and_supersteps_must_fit_the_workflow() {
    let ws = Workspace::new();
    let checkpoints = pipeline_checkpoints(&ws);
    let cases: Vec<(&str, Box<Edit>)> = vec![
        (
            "queued.lower[0]: a message of kind 'text' from 'upper' that the workflow cannot carry: no edge from 'upper' to 'lower'",
            Box::new(|c| {
                let message = json!({"source": "upper", "kind": "text", "body": {"json": "x"}});
                c["queued"]["lower"] = json!([message]);
            }),
        ),
        (
            "queued.reverse[0]: a message of kind 'bytes' from 'upper' that the workflow cannot carry: the edge 'upper' -> 'reverse' does not carry kind 'bytes'",
            Box::new(|c| c["queued"]["reverse"][0]["kind"] = json!("bytes")),
        ),
        (
            "queued.reverse[0].source: unknown executor '$input'",
            Box::new(|c| c["queued"]["reverse"][0]["source"] = json!("$input")),
        ),
        (
            "pending_requests[0].superstep: superstep 5 is not before the checkpoint's own (1)",
            Box::new(|c| {
                c["pending_requests"] = json!([{"request_id": "upper:5:1", "executor": "upper",
                    "superstep": 5, "kind": "k", "body": {"json": 1}}]);
            }),
        ),
        (
            "superstep: 11 is past workflow.max_supersteps = 10",
            Box::new(|c| c["superstep"] = json!(11)),
        ),
    ];
    for (n, (expected, edit)) in cases.into_iter().enumerate() {
        let file = copy_of(&ws, &checkpoints[0], &format!("case-{n}"));
        forge(&file, &[], edit);
        let before = ws.checkpoint_files(&format!("case-{n}"));
        ws.superstep(&["resume", file.to_str().unwrap()])
            .assert_code(2)
            .assert_stderr(expected);
        assert_eq!(ws.checkpoint_files(&format!("case-{n}")), before);
    }
}

#[test]
fn show_prints_every_payload_that_resume_accepts() {
    let ws = Workspace::new();
    let checkpoints = pipeline_checkpoints(&ws);
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let raw = [deep.as_str(), "1e999", "\"\\ud800\""];
    let file = copy_of(&ws, &checkpoints[2], "odd");
    forge(&file, &raw, |c| {
        let outputs = c["outputs"].as_array_mut().unwrap();
        for n in 0..raw.len() {
            outputs.push(json!({"superstep": 0, "source": "upper", "kind": "odd",
                "body": {"json": format!("@raw:{n}@")}}));
        }
        c["shared_state"]["deep"] = json!({"json": "@raw:0@"});
    });
    let file = file.to_str().unwrap();
    let shown = ws.superstep(&["checkpoints", "show", file]);
    shown.assert_code(0);
    assert!(shown.stdout.contains("1e999"), "{}", shown.stdout);
    assert!(shown.stdout.contains("\"\\ud800\""), "{}", shown.stdout);
    assert!(
        shown
            .stdout
            .contains(&format!("{}[]", "  ".repeat(299 + 4)))
    );
    ws.superstep(&["resume", file, "--events", "jsonl"])
        .assert_code(0);
}

#[test]
fn a_manifest_named_by_a_checkpoint_is_never_quoted() {
    let ws = Workspace::new();
    let checkpoints = pipeline_checkpoints(&ws);
    let secret = ws.path().join("secret.txt");
    std::fs::write(&secret, "root:x:0:0:the secret line\n").unwrap();
    let link = ws.path().join("innocent.toml");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let file = copy_of(&ws, &checkpoints[0], "pointing");
    forge(&file, &[], |c| {
        c["manifest"]["path"] = json!(link.to_str().unwrap());
    });
    let refused = ws.superstep(&["resume", file.to_str().unwrap()]);
    refused
        .assert_code(2)
        .assert_stderr("not a valid manifest (TOML at line 1")
        .assert_stderr("it is named by checkpoint")
        .assert_stderr("so its contents are not quoted; pass --manifest");
    assert!(!refused.stderr.contains("secret"), "{}", refused.stderr);
    assert!(!refused.stderr.contains("root:x"), "{}", refused.stderr);
    // Named on the command line, the same file's error may show where it went wrong.
    let named = ws.superstep(&["validate", link.to_str().unwrap()]);
    named.assert_code(2);
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn special_files_are_refused_without_hanging_or_reading_them() {
    let ws = Workspace::new();
    let checkpoints = pipeline_checkpoints(&ws);
    let fifo = ws.path().join("fifo.toml");
    mkfifo(&fifo);
    let zero = ws.path().join("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let dir = ws.path().join("dir.toml");
    std::fs::create_dir(&dir).unwrap();
    let huge = ws.path().join("huge.toml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    // As the manifest a checkpoint names, and as the manifest given.
    let cases = [
        (&fifo, "it is a FIFO, not a regular file"),
        (&zero, "it is a character device, not a regular file"),
        (&dir, "it is a directory, not a regular file"),
        (
            &huge,
            "it holds 1099511627776 bytes, over the limit of 1048576",
        ),
    ];
    for (n, (manifest, why)) in cases.iter().enumerate() {
        let file = copy_of(&ws, &checkpoints[0], &format!("manifest-{n}"));
        forge(&file, &[], |c| {
            c["manifest"]["path"] = json!(manifest.to_str().unwrap())
        });
        superstep_within_a_minute(&ws, &[], &["resume", file.to_str().unwrap()])
            .assert_code(2)
            .assert_stderr(why);
        superstep_within_a_minute(&ws, &[], &["validate", manifest.to_str().unwrap()])
            .assert_code(2)
            .assert_stderr(why);
    }
    // As a component.
    let component_fifo = ws.path().join("component.wasm");
    mkfifo(&component_fifo);
    let manifest = ws.manifest(
        "fifo_component.toml",
        "[workflow]\nname = \"w\"\nstart = \"a\"\n[[executors]]\nid = \"a\"\ncomponent = \"component.wasm\"\n",
    );
    superstep_within_a_minute(&ws, &[], &["validate", manifest.to_str().unwrap()])
        .assert_code(2)
        .assert_stderr("fifo_component.toml: executors[0] ('a').component: cannot read component")
        .assert_stderr("it is a FIFO, not a regular file");
    // As a checkpoint, and a journal.
    let dir = ws.path().join("checkpoints");
    let fifo_checkpoint = dir.join("0190aaaa-0000-7000-8000-000000000000.json");
    mkfifo(&fifo_checkpoint);
    let listed = superstep_within_a_minute(&ws, &[], &["checkpoints", "list"]);
    listed.assert_code(0);
    assert!(
        listed.stdout.contains("DAMAGED: cannot read: it is a FIFO"),
        "{}",
        listed.stdout
    );
    superstep_within_a_minute(&ws, &[], &["resume", fifo_checkpoint.to_str().unwrap()])
        .assert_code(2)
        .assert_stderr("cannot read checkpoint: it is a FIFO, not a regular file");
    std::fs::remove_file(&fifo_checkpoint).unwrap();
    let base = read_checkpoint(&checkpoints[0])["checkpoint_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::File::create(dir.join(format!("{base}.journal")))
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    superstep_within_a_minute(
        &ws,
        &[("SUPERSTEP_MAX_JOURNAL_BYTES", "1000000")],
        &["resume", &base],
    )
    .assert_code(2)
    .assert_stderr("cannot read journal: it holds 1099511627776 bytes, over the limit of 1000000 (raise SUPERSTEP_MAX_JOURNAL_BYTES to read it)");
    superstep_within_a_minute(
        &ws,
        &[("SUPERSTEP_MAX_JOURNAL_BYTES", "lots")],
        &["resume", &base],
    )
    .assert_code(2)
    .assert_stderr("SUPERSTEP_MAX_JOURNAL_BYTES='lots': expected a positive number of bytes");
}

/// Everything a resumed run ends with, to compare two resumes of one checkpoint.
#[derive(Debug, PartialEq)]
struct Ending {
    outputs: Vec<Value>,
    states: Vec<(String, Value)>,
}

/// The mutations of the checkpoint content a property test applies: each takes a
/// number that picks what to change.
const MUTATIONS: usize = 12;

fn mutate(content: &mut Value, kind: usize, pick: usize) {
    let ids = ["upper", "reverse", "lower", "finalize", "nobody", "$input"];
    let id = ids[pick % ids.len()];
    let other = ids[(pick / 7) % ids.len()];
    let fields = [
        "executors",
        "queued",
        "outputs",
        "shared_state",
        "superstep",
        "status",
        "pending_requests",
        "responses",
        "manifest",
        "run_id",
    ];
    let field = fields[pick % fields.len()];
    let c = content.as_object_mut().unwrap();
    match kind {
        0 => drop(c.remove(field)),
        1 => {
            let executors = c["executors"].as_object_mut().unwrap();
            if let Some(record) = executors.remove(id) {
                executors.insert(other.to_string(), record);
            }
        }
        2 => {
            let executors = c["executors"].as_object_mut().unwrap();
            let a = executors.get(id).cloned();
            let b = executors.get(other).cloned();
            if let (Some(a), Some(b)) = (a, b) {
                executors[id] = b;
                executors[other] = a;
            }
        }
        3 => c[field] = [json!("x"), json!(7), json!([]), json!({}), json!(null)][pick % 5].clone(),
        4 => {
            let kinds = ["text", "other"];
            let message =
                json!({"source": other, "kind": kinds[pick % 2], "body": {"json": "\"X\""}});
            let queue = c["queued"].as_object_mut().unwrap();
            queue
                .entry(id)
                .or_insert(json!([]))
                .as_array_mut()
                .unwrap()
                .push(message);
        }
        5 => {
            let superstep = (pick % 4) as u64;
            let id_given = format!("{id}:{superstep}:{}", pick % 3);
            c["pending_requests"] = json!([{"request_id": id_given, "executor": id,
                "superstep": superstep, "kind": "ask", "body": {"json": 1}}]);
            c["status"] = json!("awaiting-input");
        }
        6 => {
            let superstep = (pick % 4) as u64;
            c["responses"] = json!({id: [{"request_id": format!("{id}:{superstep}:1"),
                "kind": "response", "body": {"json": true}}]});
        }
        7 => {
            let outputs = c["outputs"].as_array_mut().unwrap();
            outputs.push(json!({"superstep": pick % 4, "source": id, "kind": "text",
                "body": {"json": "\"extra\""}}));
        }
        8 => {
            let supersteps = [0u64, 2, 3, 9, 10, 11, u64::MAX];
            c["superstep"] = json!(supersteps[pick % supersteps.len()]);
        }
        9 => c["status"] = json!(["running", "awaiting-input", "completed"][pick % 3]),
        10 => {
            let states = [
                json!({"json": {"x": 1}}),
                json!({"base64": "AAEC"}),
                json!({"json": 5}),
            ];
            if let Some(record) = c["executors"].get_mut(id) {
                record["state"] = states[pick % 3].clone();
            }
        }
        _ => {
            if let Some(queue) = c["queued"]
                .as_object_mut()
                .and_then(|q| q.values_mut().next())
            {
                queue[0]["source"] = json!(id);
            }
        }
    }
}

/// How the library resumes the checkpoint file at `path` with `workflow`, run to its
/// end: `None` if it refuses.
fn library_ending(workflow: &Workflow, path: &Path) -> Option<Ending> {
    let checkpoint = superstep::checkpoint::read_file(path, None).ok()?;
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let sink: Arc<dyn superstep::EventSink> = Arc::new(|_: &superstep::Event| {});
    let mut run = workflow.resume(checkpoint, false, store, sink).ok()?;
    drop(run.run());
    Some(Ending {
        outputs: run
            .outputs()
            .iter()
            .map(|o| serde_json::from_slice(&o.message.body).unwrap_or(Value::Null))
            .collect(),
        states: run
            .states()
            .into_iter()
            .map(|(id, s)| {
                (
                    id.to_string(),
                    serde_json::from_slice(s).unwrap_or(Value::Null),
                )
            })
            .collect(),
    })
}

#[test]
fn mutated_checkpoints_are_refused_or_resume_as_the_library_does() {
    let ws = Workspace::new();
    let checkpoints = pipeline_checkpoints(&ws);
    let manifest = superstep::Manifest::load(&ws.pipeline()).unwrap();
    let workflow = Workflow::load(Runtime::new(1, false).unwrap(), manifest).unwrap();
    let count: usize = std::env::var("SUPERSTEP_MUTANTS")
        .map(|n| n.parse().unwrap())
        .unwrap_or(200);
    let seed: u64 = std::env::var("SUPERSTEP_MUTANTS_SEED")
        .map(|n| n.parse().unwrap())
        .unwrap_or_else(|_| std::process::id().into());
    println!("SUPERSTEP_MUTANTS_SEED={seed}");
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let (mut refused, mut resumed) = (0, 0);
    for n in 0..count {
        let base = &checkpoints[next() % 3];
        let file = copy_of(&ws, base, &format!("mutant-{n}"));
        let (kind, pick) = (n % MUTATIONS, next());
        forge(&file, &[], |c| mutate(c, kind, pick));
        let what = format!("mutant {n} (mutation {kind}, pick {pick}, seed {seed})");
        let path = file.to_str().unwrap();
        let shown = ws.superstep(&["checkpoints", "show", path]);
        assert!(
            matches!(shown.code, 0 | 2),
            "{what}: show exited {}: {}",
            shown.code,
            shown.stderr
        );
        let run = ws.superstep(&["resume", path, "--events", "jsonl"]);
        assert!(
            matches!(run.code, 0..=3),
            "{what}: resume exited {}: {}",
            run.code,
            run.stderr
        );
        let library = library_ending(&workflow, &file);
        if run.code == 2 {
            assert!(run.stderr.starts_with("error: "), "{what}: {}", run.stderr);
            assert!(
                library.is_none(),
                "{what}: the binary refused what the library resumes: {}",
                run.stderr
            );
            refused += 1;
            continue;
        }
        assert_eq!(
            shown.code, 0,
            "{what}: resume accepts what show refuses: {}",
            shown.stderr
        );
        resumed += 1;
        let library = library.unwrap_or_else(|| panic!("{what}: the library refused it"));
        let last = latest_checkpoint(file.parent().unwrap());
        let binary = Ending {
            outputs: last["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["body"]["json"].clone())
                .collect(),
            states: states(&last).into_iter().collect(),
        };
        assert_eq!(binary, library, "{what}");
    }
    println!("{refused} mutants refused, {resumed} resumed");
    assert!(
        refused > 0 && resumed > 0,
        "{refused} refused, {resumed} resumed"
    );
}

#[test]
fn signed_checkpoints_are_read_only_where_a_key_that_signed_them_is_configured() {
    let ws = Workspace::new();
    let k1 = [("SUPERSTEP_CHECKPOINT_KEY", "k1:0123456789abcdef-one")];
    let manifest = ws.pipeline();
    let manifest = manifest.to_str().unwrap();
    let run = [
        "run",
        manifest,
        "--input",
        "\"hello world\"",
        "--checkpoint-dir",
    ];
    superstep_within_a_minute(&ws, &k1, &[&run[..], &["signed"]].concat()).assert_code(0);
    superstep_within_a_minute(&ws, &[], &[&run[..], &["unsigned"]].concat()).assert_code(0);
    let first = |dir: &str| {
        let mut paths = checkpoint_paths(&ws.path().join(dir));
        paths.sort_by_key(|p| read_checkpoint(p)["superstep"].as_u64().unwrap());
        paths[0].to_str().unwrap().to_string()
    };
    let (signed, unsigned) = (first("signed"), first("unsigned"));
    let text = std::fs::read_to_string(&signed).unwrap();
    assert!(text.contains("\"signature\": \"hmac-sha256:k1:"), "{text}");

    let keys_file = |name: &str, text: &str| {
        let path = ws.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let rotating = keys_file(
        "rotating.keys",
        "k2:0123456789abcdef-two\nk1:0123456789abcdef-one\n",
    );
    let rotated = keys_file("rotated.keys", "# k1 retired\nk2:0123456789abcdef-two\n");
    let rotating = [("SUPERSTEP_CHECKPOINT_KEY_FILE", rotating.as_str())];
    let rotated = [("SUPERSTEP_CHECKPOINT_KEY_FILE", rotated.as_str())];
    let export = ["checkpoints", "export", &signed, "-o", "exported.json"];
    // Where a key that signed it is configured, or none is, it reads.
    for env in [&k1[..], &rotating[..], &[]] {
        superstep_within_a_minute(&ws, env, &["checkpoints", "show", &signed]).assert_code(0);
        superstep_within_a_minute(&ws, env, &export).assert_code(0);
    }
    let resumed = superstep_within_a_minute(
        &ws,
        &rotating,
        &[
            "resume",
            &signed,
            "--checkpoint-dir",
            "rotating",
            "--events",
            "jsonl",
        ],
    );
    resumed.assert_code(0);
    for path in checkpoint_paths(&ws.path().join("rotating")) {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text.contains("\"signature\": \"hmac-sha256:k2:"),
            "the first key signs"
        );
    }
    // A key rotated out, an unsigned file, and one changed after signing: refused.
    let forged = copy_of(&ws, Path::new(&signed), "forged");
    forge(&forged, &[], |c| {
        c["executors"]["upper"]["state"] = json!({"json": {}})
    });
    let forged = forged.to_str().unwrap();
    let cases = [
        (
            &rotated[..],
            signed.as_str(),
            "signed with key 'k1', which is not configured",
        ),
        (
            &k1[..],
            unsigned.as_str(),
            "not signed, but a checkpoint key is configured",
        ),
        (
            &k1[..],
            forged,
            "not signed, but a checkpoint key is configured",
        ),
    ];
    for (env, file, why) in cases {
        for args in [
            &["resume", file, "--checkpoint-dir", "refused"][..],
            &["checkpoints", "show", file],
            &["checkpoints", "export", file, "-o", "refused.json"],
        ] {
            superstep_within_a_minute(&ws, env, args)
                .assert_code(2)
                .assert_stderr(why);
        }
    }
    assert!(!ws.path().join("refused").exists() && !ws.path().join("refused.json").exists());
    let listed = superstep_within_a_minute(&ws, &k1, &["checkpoints", "list", "--dir", "unsigned"]);
    assert!(listed.stdout.contains("DAMAGED"), "{}", listed.stdout);
    let both = [k1[0], ("SUPERSTEP_CHECKPOINT_KEY_FILE", "keys.txt")];
    superstep_within_a_minute(&ws, &both, &["checkpoints", "show", &signed])
        .assert_code(2)
        .assert_stderr(
            "both SUPERSTEP_CHECKPOINT_KEY and SUPERSTEP_CHECKPOINT_KEY_FILE are set; set one",
        );
    let missing = [("SUPERSTEP_CHECKPOINT_KEY_FILE", "no-such.keys")];
    superstep_within_a_minute(&ws, &missing, &["checkpoints", "show", &signed])
        .assert_code(2)
        .assert_stderr("SUPERSTEP_CHECKPOINT_KEY_FILE=no-such.keys: cannot read:");
    let malformed = [("SUPERSTEP_CHECKPOINT_KEY", "k1:short")];
    superstep_within_a_minute(&ws, &malformed, &["checkpoints", "show", &signed])
        .assert_code(2)
        .assert_stderr(
            "SUPERSTEP_CHECKPOINT_KEY: line 1: the secret of key 'k1' is shorter than 16 bytes",
        );
}
