//! Faults that SIGKILL cannot make: a disk that fills up under a run, two processes
//! resuming one checkpoint into one directory, and `prune` while a run writes.

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A tmpfs mounted over a directory for the test's life: a disk that can fill up.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (e.g. `1m`) at `dir`; `None` when this process may not
    /// mount (not root), unless `SUPERSTEP_REQUIRE_ROOT_TESTS` is set (as CI sets it).
    fn mount(dir: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status();
        if status.is_ok_and(|s| s.success()) {
            return Some(SmallDisk {
                dir: dir.to_path_buf(),
            });
        }
        assert!(
            std::env::var_os("SUPERSTEP_REQUIRE_ROOT_TESTS").is_none(),
            "cannot mount a tmpfs at {} (needs root)",
            dir.display()
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        None
    }

    /// Gives the filesystem `size` in all, keeping its files.
    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// The outputs and executor states of a directory's newest checkpoint.
fn ending(dir: &Path) -> (Value, Value) {
    let last = latest_checkpoint(dir);
    assert_eq!(last["status"], "completed", "{}", dir.display());
    (last["outputs"].clone(), last["executors"].clone())
}

/// `checkpoints list --json` of `dir` in `ws`: the damaged entries.
fn damaged(ws: &Workspace, dir: &str) -> Vec<Value> {
    let listed = ws.superstep(&["checkpoints", "list", "--json", "--dir", dir]);
    listed.assert_code(0);
    listed
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|entry| entry.get("damaged").is_some())
        .collect()
}

fn run_args(manifest: &Path, dir: &str) -> Vec<String> {
    let mut args = ring_args(manifest);
    args.extend(["--checkpoint-dir", dir, "--events", "jsonl"].map(String::from));
    args
}

#[test]
fn a_full_disk_fails_the_run_and_a_resume_after_space_is_freed_completes() {
    let ws = Workspace::new();
    // Station n3's 100 kB state changes at every visit: a new blob each time.
    let manifest = ws.ring(8, 200, &[(3, 100_000)]);
    let reference = run_args(&manifest, "reference");
    ws.superstep(&reference.iter().map(String::as_str).collect::<Vec<_>>())
        .assert_code(0);
    let Some(disk) = SmallDisk::mount(&ws.path().join("full"), "1m") else {
        return;
    };
    let full = run_args(&manifest, "full");
    let failed = ws.superstep(&full.iter().map(String::as_str).collect::<Vec<_>>());
    failed
        .assert_code(1)
        .assert_stderr("No space left on device");
    let last_good = failed.events_named("run_failed")[0]["last_checkpoint"]
        .as_str()
        .expect("a checkpoint was saved before the disk filled")
        .to_string();
    assert!(
        damaged(&ws, "full").is_empty(),
        "every checkpoint left verifies"
    );
    let leftovers: Vec<String> = std::fs::read_dir(&disk.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    disk.grow("64m");
    ws.superstep(&["resume", &last_good, "--checkpoint-dir", "full"])
        .assert_code(0);
    assert_eq!(ending(&disk.dir), ending(&ws.path().join("reference")));
}

#[test]
fn two_resumes_of_one_checkpoint_into_one_directory_each_write_a_whole_branch() {
    let ws = Workspace::new();
    let manifest = ws.ring(4, 40, &[(1, 100_000)]);
    let mut args = ring_args(&manifest);
    args.extend(["--checkpoint-dir", "reference", "--events", "quiet"].map(String::from));
    ws.superstep(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .assert_code(0);
    let mut ids: Vec<(u64, String)> = checkpoint_paths(&ws.path().join("reference"))
        .iter()
        .map(|p| read_checkpoint(p))
        .map(|c| {
            (
                c["superstep"].as_u64().unwrap(),
                c["checkpoint_id"].as_str().unwrap().into(),
            )
        })
        .collect();
    ids.sort();
    let (_, base) = ids[5].clone();
    let resume = || {
        Command::new(env!("CARGO_BIN_EXE_superstep"))
            .env(superstep::COMPILE_CACHE_ENV, test_compile_cache())
            .args([
                "resume",
                &base,
                "--checkpoint-dir",
                "reference",
                "--events",
                "quiet",
            ])
            .current_dir(ws.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut one, mut two) = (resume(), resume());
    assert!(one.wait().unwrap().success());
    assert!(two.wait().unwrap().success());

    assert!(damaged(&ws, "reference").is_empty());
    let all: Vec<Value> = checkpoint_paths(&ws.path().join("reference"))
        .iter()
        .map(|p| read_checkpoint(p))
        .collect();
    // Two new branches from the base, each a whole chain to the run's end.
    let children: Vec<&Value> = all
        .iter()
        .filter(|c| c["parent_id"] == base.as_str())
        .collect();
    assert_eq!(
        children.len(),
        3,
        "the first run's child and one per resume"
    );
    let completed: Vec<&Value> = all.iter().filter(|c| c["status"] == "completed").collect();
    assert_eq!(completed.len(), 3);
    for end in completed {
        let mut at = end;
        while at["checkpoint_id"] != base.as_str() {
            at = all
                .iter()
                .find(|c| c["checkpoint_id"] == at["parent_id"])
                .expect("every parent of a branch is there");
        }
        assert_eq!(end["executors"], completed_states(&all));
    }
}

/// The executor states every completed checkpoint of `all` must have.
fn completed_states(all: &[Value]) -> Value {
    all.iter().find(|c| c["status"] == "completed").unwrap()["executors"].clone()
}

#[test]
fn prune_while_a_run_writes_loses_nothing_the_run_needs() {
    let ws = Workspace::new();
    let manifest = ws.ring(8, 300, &[(3, 100_000)]);
    let reference = run_args(&manifest, "reference");
    ws.superstep(&reference.iter().map(String::as_str).collect::<Vec<_>>())
        .assert_code(0);

    let mut child = Command::new(env!("CARGO_BIN_EXE_superstep"))
        .env(superstep::COMPILE_CACHE_ENV, test_compile_cache())
        .args(run_args(&manifest, "pruned"))
        .current_dir(ws.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut saved, mut prunes) = (0, 0);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if event["event"] == "checkpoint_saved" {
            saved += 1;
            if saved % 25 == 0 {
                ws.superstep(&[
                    "checkpoints",
                    "prune",
                    "--keep-last",
                    "2",
                    "--dir",
                    "pruned",
                ])
                .assert_code(0);
                prunes += 1;
            }
        }
    }
    assert!(child.wait().unwrap().success(), "the run completed");
    assert!(prunes >= 10, "pruned {prunes} times");
    assert!(damaged(&ws, "pruned").is_empty());
    assert_eq!(
        ending(&ws.path().join("pruned")),
        ending(&ws.path().join("reference"))
    );
    // Whatever is left resumes: its blobs are all there.
    for path in checkpoint_paths(&ws.path().join("pruned")) {
        ws.superstep(&[
            "checkpoints",
            "export",
            path.to_str().unwrap(),
            "-o",
            "exported.json",
        ])
        .assert_code(0);
    }
}
