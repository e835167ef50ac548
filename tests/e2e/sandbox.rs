//! The sandbox: an executor reaches nothing it was not granted, and an executor that
//! breaks a limit fails alone, with a precise reason, leaving a resumable checkpoint.

use crate::common::*;
use serde_json::{Value, json};

/// `src` sends one `go` message to `adv` (the adversary), whose sends go to `sink`.
/// `@adv@` stands for the adversary's extra manifest lines (grants, limits, config).
fn adversary_manifest(ws: &Workspace, name: &str, adv: &str) -> std::path::PathBuf {
    let text = r#"
[workflow]
name = "adversary"
start = "src"

[[executors]]
id = "src"
component = "@test-guests@/probe.wasm"
config = { forward = [{ kind = "go" }] }

[[executors]]
id = "sink"
component = "@test-guests@/probe.wasm"

[[executors]]
id = "adv"
component = "@test-guests@/adversary.wasm"
@adv@

[[edges]]
from = "src"
to = "adv"

[[edges]]
from = "adv"
to = "sink"
"#;
    ws.manifest(name, &text.replace("@adv@", adv))
}

fn run(ws: &Workspace, manifest: &std::path::Path) -> Run {
    ws.superstep(&[
        "run",
        manifest.to_str().unwrap(),
        "--input",
        "\"x\"",
        "--events",
        "jsonl",
    ])
}

#[test]
fn an_executor_reaches_only_what_it_was_granted() {
    let ws = Workspace::new();
    let root = ws.path();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::create_dir_all(root.join("rw")).unwrap();
    std::fs::write(root.join("data/ok.txt"), "granted").unwrap();
    std::fs::write(root.join("secret.txt"), "not granted").unwrap();
    std::os::unix::fs::symlink(root.join("secret.txt"), root.join("data/escape")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("data/etc")).unwrap();
    // A listener that the guest must not reach.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("SUPERSTEP_TEST_PASSED", "passed") };
    let manifest = adversary_manifest(
        &ws,
        "grants.toml",
        &format!(
            r#"env = ["SUPERSTEP_TEST_PASSED", "MODE=strict"]
dirs = [{{ host = "data", guest = "/data" }}, {{ host = "rw", guest = "/rw", mode = "rw" }}]
[executors.config]
read = ["/etc/passwd", "/data/ok.txt", "/data/../secret.txt", "/data/escape", "/data/etc/passwd", "{root}/secret.txt"]
write = ["/data/new.txt", "/rw/new.txt"]
list = ["/", "/data"]
env = ["SUPERSTEP_TEST_PASSED", "MODE", "HOME", "PATH"]
tcp = ["{address}"]
lookup = ["localhost"]"#,
            root = root.display()
        ),
    );
    let run = run(&ws, &manifest);
    run.assert_code(0);
    let report = run.outputs().pop().unwrap();
    let refused = |section: &str, target: &str| -> String {
        let entry = &report[section][target];
        assert!(
            entry["ok"].is_null(),
            "{section} {target} succeeded: {report:#}"
        );
        entry["error"].as_str().unwrap().to_string()
    };
    assert_eq!(report["read"]["/data/ok.txt"]["ok"], "granted");
    assert!(refused("read", "/etc/passwd").contains("No such file"));
    for escape in ["/data/../secret.txt", "/data/escape", "/data/etc/passwd"] {
        assert!(
            refused("read", escape).contains("not permitted"),
            "{escape}"
        );
    }
    refused("read", &format!("{}/secret.txt", root.display()));
    assert!(refused("write", "/data/new.txt").contains("not permitted"));
    assert!(
        report["write"]["/rw/new.txt"]["error"].is_null(),
        "{report:#}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("rw/new.txt")).unwrap(),
        "written by the adversary"
    );
    assert!(!root.join("data/new.txt").exists());
    refused("list", "/");
    assert_eq!(
        report["env"],
        json!({"SUPERSTEP_TEST_PASSED": "passed", "MODE": "strict", "HOME": null, "PATH": null})
    );
    assert_eq!(report["env_all"], json!(["SUPERSTEP_TEST_PASSED", "MODE"]));
    refused("tcp", &address);
    refused("lookup", "localhost");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "no connection reached the host");

    // Without grants: nothing at all.
    let bare = adversary_manifest(
        &ws,
        "bare.toml",
        r#"[executors.config]
read = ["/data/ok.txt", "ok.txt"]
env = ["SUPERSTEP_TEST_PASSED"]"#,
    );
    let report = run_ok_report(&ws, &bare);
    assert!(report["read"]["/data/ok.txt"]["error"].is_string());
    assert!(report["read"]["ok.txt"]["error"].is_string());
    assert_eq!(report["env_all"], json!([]));
}

fn run_ok_report(ws: &Workspace, manifest: &std::path::Path) -> Value {
    let run = run(ws, manifest);
    run.assert_code(0);
    run.outputs().pop().unwrap()
}

#[test]
fn bad_grants_and_limits_are_refused_with_the_field() {
    let ws = Workspace::new();
    std::fs::write(ws.path().join("file.txt"), "").unwrap();
    let cases = [
        (
            r#"dirs = [{ host = "missing", guest = "/m" }]"#,
            "executors[2] ('adv').dirs[0]: host:",
        ),
        (
            r#"dirs = [{ host = "file.txt", guest = "/f" }]"#,
            "is not a directory",
        ),
        (
            r#"dirs = [{ host = ".", guest = "relative" }]"#,
            "dirs[0]: guest: 'relative' must be an absolute guest path",
        ),
        (
            r#"dirs = [{ host = ".", guest = "/d", mode = "rwx" }]"#,
            "dirs[0]: mode: 'rwx' is neither",
        ),
        (
            r#"env = ["SUPERSTEP_SURELY_UNSET_VARIABLE"]"#,
            "env[0]: host variable 'SUPERSTEP_SURELY_UNSET_VARIABLE' is not set",
        ),
        (
            r#"env = ["BAD NAME=1"]"#,
            "env[0]: 'BAD NAME' is not a variable name",
        ),
        (
            "limits = { memory_mib = 0 }",
            "executors[2] ('adv').limits.memory_mib: must be at least 1",
        ),
        ("limits = { cpu = 1 }", "unknown field `cpu`"),
    ];
    for (lines, expected) in cases {
        let manifest = adversary_manifest(&ws, "bad.toml", lines);
        ws.superstep(&["validate", manifest.to_str().unwrap()])
            .assert_code(2)
            .assert_stderr(expected);
    }
}

/// A broken limit fails the executor with `reason`, exit code 1 and the checkpoint of
/// superstep 0 untouched; resuming it with `fixed` (a corrected manifest) completes.
#[track_caller]
fn assert_limit(breaking: &str, reason: &str, fixed: &str) {
    let ws = Workspace::new();
    let manifest = adversary_manifest(&ws, "limits.toml", breaking);
    let failed = run(&ws, &manifest);
    failed.assert_code(1);
    let failures = failed.events_named("executor_failed");
    assert_eq!(failures.len(), 1, "{}", failed.stdout);
    assert_eq!(failures[0]["executor"], "adv");
    let why = failures[0]["reason"].as_str().unwrap();
    assert!(why.contains(reason), "expected {reason:?} in {why:?}");
    let run_failed = failed.events_named("run_failed");
    assert!(
        run_failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("executor 'adv'")
    );
    let saved = failed.events_named("checkpoint_saved");
    assert_eq!(saved.len(), 1, "only superstep 0 was saved");
    let files = ws.checkpoint_files("checkpoints");

    let fixed = adversary_manifest(&ws, "fixed.toml", fixed);
    let resumed = ws.superstep(&[
        "resume",
        saved[0]["checkpoint_id"].as_str().unwrap(),
        "--manifest",
        fixed.to_str().unwrap(),
        "--events",
        "jsonl",
    ]);
    resumed.assert_code(0);
    assert_eq!(resumed.events_named("run_completed").len(), 1);
    for (name, bytes) in files {
        assert_eq!(
            std::fs::read(ws.path().join("checkpoints").join(&name)).unwrap(),
            bytes,
            "{name} changed"
        );
    }
}

#[test]
fn a_guest_that_loops_or_runs_too_long_is_stopped() {
    assert_limit(
        "limits = { call_timeout_ms = 200 }\nconfig = { loop = true }",
        "handle stopped: exceeded limits.call_timeout_ms = 200",
        "limits = { call_timeout_ms = 200 }",
    );
    assert_limit(
        "limits = { call_timeout_ms = 100 }\nconfig = { spin_ms = 400 }",
        "exceeded limits.call_timeout_ms = 100",
        "limits = { call_timeout_ms = 5000 }\nconfig = { spin_ms = 400 }",
    );
}

#[test]
fn a_guest_that_allocates_past_its_cap_is_stopped() {
    assert_limit(
        "limits = { memory_mib = 32 }\nconfig = { alloc_mib = 64 }",
        "handle stopped: exceeded limits.memory_mib = 32",
        "limits = { memory_mib = 128 }\nconfig = { alloc_mib = 64 }",
    );
}

#[test]
fn a_guest_out_of_fuel_is_stopped() {
    assert_limit(
        "limits = { fuel = 100000 }\nconfig = { work = 10000000 }",
        "handle stopped: ran out of fuel (limits.fuel = 100000)",
        "limits = { fuel = 10000000000 }\nconfig = { work = 10000000 }",
    );
}

#[test]
fn traps_fail_the_executor_not_the_host() {
    for (trap, reason) in [
        (
            "unreachable",
            "handle trapped: wasm trap: wasm `unreachable` instruction executed\n",
        ),
        ("divide-by-zero", "integer divide by zero"),
        ("stack-overflow", "call stack exhausted"),
    ] {
        assert_limit(&format!("config = {{ trap = \"{trap}\" }}"), reason, "");
    }
}

#[test]
fn message_and_snapshot_limits_fail_the_executor() {
    assert_limit(
        "limits = { max_message_bytes = 1000 }\nconfig = { send_bytes = 5000 }",
        "handle stopped: a message of 5002 bytes exceeds limits.max_message_bytes = 1000",
        "limits = { max_message_bytes = 10000 }\nconfig = { send_bytes = 5000 }",
    );
    assert_limit(
        "limits = { max_message_bytes = 1000 }\nconfig = { output_bytes = 5000 }",
        "an output of 5002 bytes exceeds limits.max_message_bytes = 1000",
        "config = { output_bytes = 5000 }",
    );
    assert_limit(
        "limits = { max_messages_per_call = 10 }\nconfig = { send_count = 50 }",
        "a message would make 11 messages in one call, over limits.max_messages_per_call = 10",
        "limits = { max_messages_per_call = 100 }\nconfig = { send_count = 50 }",
    );
    assert_limit(
        "limits = { max_snapshot_bytes = 10000 }\nconfig = { state_bytes = 20000 }",
        "snapshot of 20026 bytes exceeds limits.max_snapshot_bytes = 10000",
        "limits = { max_snapshot_bytes = 100000 }\nconfig = { state_bytes = 20000 }",
    );
}

#[test]
fn with_durability_exit_a_failure_saves_the_last_good_barrier() {
    let ws = Workspace::new();
    let manifest = adversary_manifest(&ws, "exit.toml", "config = { trap = \"unreachable\" }");
    let failed = ws.superstep(&[
        "run",
        manifest.to_str().unwrap(),
        "--input",
        "\"x\"",
        "--durability",
        "exit",
        "--events",
        "jsonl",
    ]);
    failed.assert_code(1);
    let saved = failed.events_named("checkpoint_saved");
    assert_eq!(saved.len(), 1, "one checkpoint, when the run stopped");
    let checkpoint = latest_checkpoint(&ws.path().join("checkpoints"));
    assert_eq!(
        checkpoint["superstep"], 1,
        "the barrier before the failing superstep"
    );
    assert_eq!(checkpoint["queued"]["adv"][0]["kind"], "go");

    let fixed = adversary_manifest(&ws, "fixed.toml", "");
    let resumed = ws.superstep(&[
        "resume",
        saved[0]["checkpoint_id"].as_str().unwrap(),
        "--manifest",
        fixed.to_str().unwrap(),
        "--durability",
        "exit",
    ]);
    resumed.assert_code(0);
    assert_eq!(checkpoint_paths(&ws.path().join("checkpoints")).len(), 2);
}
