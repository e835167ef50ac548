//! Damaged, tampered and cut-short checkpoints, blobs, export and blob collection.

use crate::common::*;
use serde_json::{Value, json};
use std::path::PathBuf;

/// A completed 4-station ring of `limit` hops whose station n1 keeps its state in a
/// blob; returns the workspace and the file of the checkpoint after superstep 3.
fn ring_with_a_blob(limit: u64) -> (Workspace, std::path::PathBuf) {
    let ws = Workspace::new();
    let manifest = ws.ring(4, limit, &[(1, 100_000)]);
    let args = ring_args(&manifest);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ws.superstep(&args).assert_code(0);
    let third = checkpoint_paths(&ws.path().join("checkpoints"))
        .into_iter()
        .find(|path| read_checkpoint(path)["superstep"] == 3)
        .expect("a checkpoint after superstep 3");
    (ws, third)
}

#[test]
fn large_states_live_in_blobs_written_once() {
    let (ws, third) = ring_with_a_blob(6);
    let checkpoint = read_checkpoint(&third);
    let blob = &checkpoint["executors"]["n1"]["state"]["blob"];
    assert!(blob["size"].as_u64().unwrap() > 100_000, "{blob}");
    assert!(checkpoint["executors"]["n0"]["state"]["json"].is_object());
    let file_size = std::fs::metadata(&third).unwrap().len();
    assert!(
        file_size < 10_000,
        "the state is not in the file: {file_size}"
    );

    // n1 changes its state at hops 2 and 6: two blobs for six checkpoints (its initial
    // state is too small for a blob).
    let blobs: Vec<_> = std::fs::read_dir(ws.path().join("checkpoints/blobs"))
        .unwrap()
        .collect();
    assert_eq!(blobs.len(), 2);

    let state = ws.superstep(&[
        "checkpoints",
        "show",
        third.to_str().unwrap(),
        "--state",
        "n1",
    ]);
    state.assert_code(0);
    let state: Value = serde_json::from_str(&state.stdout).unwrap();
    assert_eq!(state["seen"], 1);
    assert_eq!(state["ballast"].as_str().unwrap().len(), 100_000);
}

#[test]
fn every_kind_of_damage_is_refused_and_listed_as_damaged() {
    let (ws, third) = ring_with_a_blob(6);
    let name = third.file_name().unwrap().to_str().unwrap().to_string();
    let id = name.trim_end_matches(".json").to_string();
    let good = std::fs::read(&third).unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    let blob_hex = read_checkpoint(&third)["executors"]["n1"]["state"]["blob"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blob_path = ws.path().join("checkpoints/blobs").join(&blob_hex);
    let blob = std::fs::read(&blob_path).unwrap();

    let mut cases: Vec<(String, Vec<u8>, &str)> = Vec::new();
    for sixteenth in 0..16 {
        let cut = good.len() * sixteenth / 16;
        cases.push((
            format!("cut at {sixteenth}/16"),
            good[..cut].to_vec(),
            "truncated checkpoint file",
        ));
    }
    for at in [
        good.len() / 5,
        good.len() / 2,
        good.len() * 4 / 5,
        good.len() - 3,
    ] {
        let mut flipped = good.clone();
        flipped[at] ^= 0x04;
        cases.push((format!("byte {at} flipped"), flipped, ""));
    }
    let field = text.replacen("\"superstep\": 3", "\"superstep\": 4", 1);
    assert_ne!(field, text);
    cases.push((
        "a field changed".into(),
        field.into_bytes(),
        "checksum mismatch",
    ));
    // The `"json": …` line of a station's state.
    let state_of = |station: &str| {
        let start = text.find(&format!("\"{station}\": {{")).unwrap();
        let from = start + text[start..].find("\"json\": ").unwrap();
        let to = from + text[from..].find('\n').unwrap();
        text[from..to].to_string()
    };
    let (s0, s3) = (state_of("n0"), state_of("n3"));
    assert_ne!(s0, s3);
    let swapped = text
        .replacen(&s0, "@n0@", 1)
        .replacen(&s3, &s0, 1)
        .replacen("@n0@", &s3, 1);
    cases.push((
        "two executors' states swapped".into(),
        swapped.into_bytes(),
        "checksum mismatch",
    ));

    for (what, bytes, expected) in &cases {
        std::fs::write(&third, bytes).unwrap();
        assert_refused_and_listed(&ws, &third, &id, what, expected, 1);
    }
    std::fs::write(&third, &good).unwrap();

    std::fs::remove_file(&blob_path).unwrap();
    // Checkpoints 2 to 5 share n1's first blob.
    let missing = "is missing (it was deleted)";
    assert_refused_and_listed(&ws, &third, &id, "blob deleted", missing, 4);
    let mut damaged_blob = blob.clone();
    damaged_blob[blob.len() / 2] ^= 0x01;
    std::fs::write(&blob_path, &damaged_blob).unwrap();
    let refused = ws.superstep(&["resume", third.to_str().unwrap()]);
    refused.assert_code(2).assert_stderr("is damaged");
    assert!(refused.stderr.contains(&blob_hex), "{}", refused.stderr);
    std::fs::write(&blob_path, &blob).unwrap();

    let resumed = ws.superstep(&["resume", third.to_str().unwrap(), "--events", "jsonl"]);
    resumed.assert_code(0);
    assert_eq!(resumed.outputs(), vec![serde_json::json!({"hops": 6})]);
}

/// `resume` refuses the damaged checkpoint with `expected` (and the file's name) in
/// its message and changes nothing; `list` marks it (and `damaged - 1` others) damaged
/// and lists the rest.
#[track_caller]
fn assert_refused_and_listed(
    ws: &Workspace,
    file: &std::path::Path,
    id: &str,
    what: &str,
    expected: &str,
    damaged: usize,
) {
    let before = ws.checkpoint_files("checkpoints");
    let refused = ws.superstep(&["resume", file.to_str().unwrap()]);
    assert_eq!(refused.code, 2, "{what}: {}", refused.stderr);
    assert!(
        refused.stderr.contains(expected) && refused.stderr.contains(id),
        "{what}: expected {expected:?} and the file name in {}",
        refused.stderr
    );
    assert_eq!(
        ws.checkpoint_files("checkpoints"),
        before,
        "{what}: files changed"
    );

    let listed = ws.superstep(&["checkpoints", "list", "--json"]);
    listed.assert_code(0);
    let entries: Vec<Value> = listed.events();
    assert_eq!(entries.len(), 6, "{what}: every checkpoint is listed");
    let listed_damaged: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            e["damaged"]
                .as_str()
                .is_some_and(|why| why.contains(expected))
        })
        .collect();
    assert_eq!(listed_damaged.len(), damaged, "{what}: {}", listed.stdout);
    assert!(
        listed_damaged.iter().any(|e| e["checkpoint_id"] == id),
        "{what}: {}",
        listed.stdout
    );
}

#[test]
fn export_folds_blobs_into_one_file_that_resumes_anywhere() {
    let (ws, third) = ring_with_a_blob(6);
    let elsewhere = tempfile::tempdir().unwrap();
    let exported = elsewhere.path().join("handoff.json");
    let id = read_checkpoint(&third)["checkpoint_id"]
        .as_str()
        .unwrap()
        .to_string();
    let export = ws.superstep(&[
        "checkpoints",
        "export",
        &id[..id.len() - 2],
        "-o",
        exported.to_str().unwrap(),
    ]);
    export.assert_code(0);
    assert!(export.stdout.contains(&id), "{}", export.stdout);
    let checkpoint = read_checkpoint(&exported);
    assert_eq!(checkpoint["checkpoint_id"], id.as_str());
    assert!(checkpoint["executors"]["n1"]["state"]["json"]["ballast"].is_string());

    // Another machine: only the exported file and the manifest's components.
    std::fs::remove_dir_all(ws.path().join("checkpoints")).unwrap();
    let resumed = ws.superstep(&["resume", exported.to_str().unwrap(), "--events", "jsonl"]);
    resumed.assert_code(0);
    assert_eq!(resumed.outputs(), vec![serde_json::json!({"hops": 6})]);
    let saved = resumed.events_named("checkpoint_saved");
    assert_eq!(saved[0]["parent_id"], id.as_str());
    assert!(
        elsewhere.path().join("blobs").is_dir(),
        "new checkpoints go beside the exported file, with their blobs"
    );

    let missing = ws.superstep(&["checkpoints", "export", "ffff", "-o", "x.json"]);
    missing.assert_code(2).assert_stderr("no checkpoint 'ffff'");
}

#[test]
fn prune_collects_blobs_no_kept_checkpoint_refers_to() {
    // n1 changes its state at hops 2, 6 and 10: three blobs.
    let (ws, _) = ring_with_a_blob(10);
    let blobs = || {
        std::fs::read_dir(ws.path().join("checkpoints/blobs"))
            .unwrap()
            .count()
    };
    assert_eq!(blobs(), 3);
    std::fs::write(
        ws.path()
            .join("checkpoints/.left-by-a-killed-writer.json.1.2.tmp"),
        "{",
    )
    .unwrap();
    let pruned = ws.superstep(&["checkpoints", "prune", "--keep-last", "1"]);
    pruned.assert_code(0);
    assert!(
        pruned.stdout.contains(
            "deleted 8 of 10 checkpoint(s), 1 unreferenced blob(s) and 1 leftover temp or journal file(s)"
        ),
        "{}",
        pruned.stdout
    );
    assert_eq!(blobs(), 2, "the kept checkpoints' blobs stay");
    let left = checkpoint_paths(&ws.path().join("checkpoints"));
    assert_eq!(left.len(), 2, "the newest and its parent");
    for path in left {
        ws.superstep(&[
            "checkpoints",
            "show",
            path.to_str().unwrap(),
            "--state",
            "n1",
        ])
        .assert_code(0);
    }
    ws.superstep(&[
        "checkpoints",
        "prune",
        "--keep-last",
        "1",
        "--dir",
        "nowhere",
    ])
    .assert_code(2)
    .assert_stderr("nowhere: no such checkpoint directory");
}

/// Runs `src` -> {`a`, `b`} (probe stations, which keep what they receive) with a string
/// input of `len` characters; returns the first checkpoint (the body queued for both),
/// its file and its id, after checking that resuming it delivers the body to both and
/// that `checkpoints export` folds it back into each queue.
fn fan_out(ws: &Workspace, len: usize) -> (Value, PathBuf, String) {
    let manifest = ws.manifest(
        "fan.toml",
        r#"
[workflow]
name = "fan"
start = "src"

[[executors]]
id = "src"
component = "@test-guests@/probe.wasm"
config = { forward = [{ kind = "copy" }] }

[[executors]]
id = "a"
component = "@test-guests@/probe.wasm"

[[executors]]
id = "b"
component = "@test-guests@/probe.wasm"

[[edges]]
from = "src"
to = "a"

[[edges]]
from = "src"
to = "b"
"#,
    );
    let input = serde_json::to_string(&"x".repeat(len)).unwrap();
    let run = ws.superstep(&[
        "run",
        manifest.to_str().unwrap(),
        "--input",
        &input,
        "--events",
        "jsonl",
    ]);
    run.assert_code(0);
    let first = &run.events_named("checkpoint_saved")[0];
    let file = ws.path().join(first["location"].as_str().unwrap());
    let checkpoint = read_checkpoint(&file);
    for station in ["a", "b"] {
        assert_eq!(
            checkpoint["queued"][station][0]["body"],
            json!({"shared": 0}),
            "{checkpoint:#}"
        );
    }
    let id = first["checkpoint_id"].as_str().unwrap().to_string();

    let resumed = ws.superstep(&["resume", &id, "--events", "jsonl"]);
    resumed.assert_code(0);
    let saved = resumed.events_named("checkpoint_saved");
    let last = saved.last().unwrap()["checkpoint_id"].as_str().unwrap();
    for station in ["a", "b"] {
        let shown = ws.superstep(&["checkpoints", "show", last, "--state", station]);
        shown.assert_code(0);
        let state: Value = serde_json::from_str(&shown.stdout).unwrap();
        let body = &state["received"][0]["body"]["body"];
        assert_eq!(body.as_str().unwrap().len(), len);
    }
    let exported = ws.path().join("one.json");
    ws.superstep(&[
        "checkpoints",
        "export",
        &id,
        "-o",
        exported.to_str().unwrap(),
    ])
    .assert_code(0);
    let folded = read_checkpoint(&exported);
    for station in ["a", "b"] {
        let body = &folded["queued"][station][0]["body"]["json"]["body"];
        assert_eq!(body.as_str().unwrap().len(), len);
    }
    assert!(folded.get("shared_bodies").is_none(), "{folded:#}");
    (checkpoint, file, id)
}

fn blob_count(ws: &Workspace) -> usize {
    std::fs::read_dir(ws.path().join("checkpoints/blobs")).map_or(0, |dir| dir.count())
}

#[test]
fn a_fanned_out_body_is_written_once_in_the_file() {
    let ws = Workspace::new();
    let (checkpoint, file, _) = fan_out(&ws, 3000);
    let body = &checkpoint["shared_bodies"][0]["json"]["body"];
    assert_eq!(body.as_str().unwrap().len(), 3000, "{checkpoint:#}");
    // The state of `src` holds the body once and `shared_bodies` once: not four times.
    let size = std::fs::metadata(&file).unwrap().len();
    assert!((6000..9000).contains(&size), "{size} bytes");
    assert_eq!(blob_count(&ws), 0);
}

#[test]
fn a_large_fanned_out_body_is_kept_once_as_a_blob() {
    let ws = Workspace::new();
    let (checkpoint, file, id) = fan_out(&ws, 100_000);
    let blob = &checkpoint["shared_bodies"][0]["blob"];
    assert!(blob["size"].as_u64().unwrap() > 100_000, "{checkpoint:#}");
    // `src`'s state (the body, with its count) is a blob of its own.
    assert!(std::fs::metadata(&file).unwrap().len() < 6000);
    assert!(blob_count(&ws) >= 2);

    let digest = blob["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    std::fs::remove_file(ws.path().join("checkpoints/blobs").join(digest)).unwrap();
    let listed = ws.superstep(&["checkpoints", "list", "--json"]);
    let damaged: Vec<Value> = listed
        .events()
        .into_iter()
        .filter(|e| e["damaged"].is_string())
        .collect();
    assert_eq!(damaged.len(), 1, "{}", listed.stdout);
    assert_eq!(damaged[0]["checkpoint_id"], id);
    assert!(
        damaged[0]["damaged"].as_str().unwrap().contains(digest),
        "{damaged:?}"
    );
}

#[test]
fn a_resigned_checkpoint_cannot_point_resume_at_any_file() {
    let ws = Workspace::new();
    ws.run_pipeline("\"hello world\"");
    let file = checkpoint_paths(&ws.path().join("checkpoints")).remove(0);
    let text = std::fs::read_to_string(&file).unwrap();
    // Re-sign the content, as someone who edits the file on purpose would.
    let at = text.find("\"checkpoint\": ").unwrap() + "\"checkpoint\": ".len();
    let inner = &text[at..text.len() - "\n}\n".len()];
    let path = read_checkpoint(&file)["manifest"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    let forged = inner.replace(&path, "/etc/passwd");
    let old_sum = superstep::hash::sha256_hex(inner.as_bytes());
    let new_sum = superstep::hash::sha256_hex(forged.as_bytes());
    let forged = format!("{}{forged}\n}}\n", &text[..at]).replace(&old_sum, &new_sum);
    let elsewhere = ws.path().join("forged");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let name = elsewhere.join(file.file_name().unwrap());
    std::fs::write(&name, forged).unwrap();

    let refused = ws.superstep(&["resume", name.to_str().unwrap()]);
    refused
        .assert_code(2)
        .assert_stderr("names the manifest '/etc/passwd', which is not an absolute path to a .toml file; pass --manifest");
    assert!(!refused.stderr.contains("root:"), "{}", refused.stderr);
    let manifest = ws.pipeline();
    ws.superstep(&[
        "resume",
        name.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ])
    .assert_code(0);
}
