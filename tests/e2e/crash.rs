//! Crash consistency the hard way: SIGKILL the host at random moments, resume from the
//! newest checkpoint, repeat until the run completes; the result must equal an
//! uninterrupted run's and no damaged checkpoint may ever appear.
//!
//! `SUPERSTEP_CRASH_KILLS` sets how many kills to make (default 50);
//! `SUPERSTEP_CRASH_SEED` replays a failing sequence (the seed is printed).

use crate::common::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Hops per run: 8 stations, so each station handles the token 50 times.
const LIMIT: u64 = 400;

#[test]
fn sigkill_at_random_moments_never_loses_or_corrupts_a_run() {
    let kills_wanted: usize = std::env::var("SUPERSTEP_CRASH_KILLS")
        .map(|n| n.parse().expect("SUPERSTEP_CRASH_KILLS is a number"))
        .unwrap_or(50);
    let seed: u64 = std::env::var("SUPERSTEP_CRASH_SEED")
        .map(|n| n.parse().expect("SUPERSTEP_CRASH_SEED is a number"))
        .unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("SUPERSTEP_CRASH_SEED={seed}");
    let mut random = XorShift(seed | 1);

    let ws = Workspace::new();
    // Station n3 keeps a 100 kB state: its checkpoints write blobs too.
    let manifest = ws.ring(8, LIMIT, &[(3, 100_000)]);
    let mut args = ring_args(&manifest);
    args.extend(["--checkpoint-dir", "reference", "--events", "quiet"].map(String::from));
    let started = Instant::now();
    let reference = ws.superstep(&args.iter().map(String::as_str).collect::<Vec<_>>());
    reference.assert_code(0);
    let uninterrupted = started.elapsed();
    let expected = final_run_state(&ws, "reference");

    let (mut kills, mut rounds) = (0, 0);
    while kills < kills_wanted {
        rounds += 1;
        let dir = format!("crashed-{rounds}");
        let mut resume_from: Option<String> = None;
        loop {
            let mut attempt = match &resume_from {
                None => ring_args(&manifest),
                Some(id) => vec!["resume".into(), id.clone()],
            };
            attempt.extend(["--checkpoint-dir", &dir, "--events", "quiet"].map(String::from));
            let mut child = Command::new(env!("CARGO_BIN_EXE_superstep"))
                .env(superstep::COMPILE_CACHE_ENV, test_compile_cache())
                .args(&attempt)
                .current_dir(ws.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let status = if kills < kills_wanted {
                // Anywhere from process start to well past an uninterrupted run's end.
                let limit = uninterrupted.as_micros() as u64 / 2 + 1;
                std::thread::sleep(Duration::from_micros(random.next() % limit));
                match child.try_wait().unwrap() {
                    Some(status) => Some(status),
                    None => {
                        child.kill().unwrap(); // SIGKILL
                        child.wait().unwrap();
                        kills += 1;
                        None
                    }
                }
            } else {
                Some(child.wait().unwrap())
            };
            if let Some(status) = status {
                assert!(status.success(), "{attempt:?} failed: {status}");
            }
            match newest_valid_checkpoint(&ws, &dir) {
                Some((_, status)) if status == "completed" => break,
                Some((id, _)) => resume_from = Some(id),
                None => resume_from = None,
            }
        }
        assert_eq!(
            final_run_state(&ws, &dir),
            expected,
            "round {rounds} (seed {seed}) ended unlike the uninterrupted run"
        );
    }
    println!("{kills} kills over {rounds} completed runs");
}

/// The newest checkpoint (id, status) of `dir`, after checking that every checkpoint
/// file in it is whole and verified: a kill may leave temp files, never a damaged
/// checkpoint under its final name.
fn newest_valid_checkpoint(ws: &Workspace, dir: &str) -> Option<(String, String)> {
    let listed = ws.superstep(&["checkpoints", "list", "--json", "--dir", dir]);
    listed.assert_code(0);
    let entries = listed.events();
    for entry in &entries {
        assert!(entry["damaged"].is_null(), "a damaged checkpoint: {entry}");
    }
    // The listing is newest first; lineage is linear since we always resume the newest.
    entries.first().map(|newest| {
        (
            newest["checkpoint_id"].as_str().unwrap().to_string(),
            newest["status"].as_str().unwrap().to_string(),
        )
    })
}

/// What a completed run left: outputs and every executor's state, from its newest
/// checkpoint exported into one file (blobs folded in).
fn final_run_state(ws: &Workspace, dir: &str) -> (Value, Value) {
    let (id, status) = newest_valid_checkpoint(ws, dir).expect("a checkpoint");
    assert_eq!(status, "completed");
    let file = format!("{dir}-final.json");
    ws.superstep(&["checkpoints", "export", &id, "--dir", dir, "-o", &file])
        .assert_code(0);
    let checkpoint = read_checkpoint(&ws.path().join(&file));
    assert_eq!(checkpoint["superstep"], LIMIT);
    (
        checkpoint["outputs"].clone(),
        checkpoint["executors"].clone(),
    )
}

/// A small deterministic generator, so that a failing sequence can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
