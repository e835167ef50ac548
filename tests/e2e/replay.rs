//! Replay: `superstep replay` runs a run's recorded supersteps again in memory with a
//! manifest's components and compares each with its checkpoint, writing nothing.

use crate::common::*;
use serde_json::Value;

/// The ids of the checkpoints in `./checkpoints`, by superstep (several at one
/// superstep in the order they were made).
fn checkpoints_by_superstep(ws: &Workspace) -> Vec<(u64, String)> {
    let mut found: Vec<(u64, String, String)> = checkpoint_paths(&ws.path().join("checkpoints"))
        .iter()
        .map(|path| read_checkpoint(path))
        .map(|c: Value| {
            let id = c["checkpoint_id"].as_str().unwrap().to_string();
            let created = c["created_at"].as_str().unwrap().to_string();
            (c["superstep"].as_u64().unwrap(), created, id)
        })
        .collect();
    found.sort();
    found.into_iter().map(|(s, _, id)| (s, id)).collect()
}

/// The pipeline's manifest with `lower` replaced by a version whose text ends in "!".
fn pipeline_with_lower_bang(ws: &Workspace) -> String {
    let text = std::fs::read_to_string(repo().join("guest-examples/pipeline.toml")).unwrap();
    let text = text
        .replace("components/lower.wasm", "@test-guests@/lower_bang.wasm")
        .replace("components/", "@components@/");
    let path = ws.manifest("bang.toml", &text);
    path.to_str().unwrap().to_string()
}

#[test]
fn a_recorded_run_replays_identically_and_a_changed_lower_diverges() {
    let ws = Workspace::new();
    ws.run_pipeline("\"Hello\"");
    let recorded = ws.checkpoint_files("checkpoints");
    let at = checkpoints_by_superstep(&ws);
    let ids: Vec<&str> = at.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(at.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2, 3, 4]);

    // With the components that ran, every superstep after the first checkpoint.
    let same = ws.superstep(&["replay", ids[0]]);
    same.assert_code(0);
    let lines: Vec<&str> = same.stdout.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "replaying run {} from checkpoint {} (superstep 1) to {} (superstep 4) with ",
            read_checkpoint(&ws.path().join(format!("checkpoints/{}.json", ids[0])))["run_id"]
                .as_str()
                .unwrap(),
            ids[0],
            ids[3]
        )),
        "{}",
        same.stdout
    );
    assert_eq!(
        lines[1..],
        [
            "superstep 1: identical",
            "superstep 2: identical",
            "superstep 3: identical"
        ]
    );

    // With a lower that appends "!": superstep 2, where lower runs, diverges.
    let bang = pipeline_with_lower_bang(&ws);
    let changed = ws.superstep(&["replay", ids[0], "--manifest", &bang]);
    changed.assert_code(4);
    let lines: Vec<&str> = changed.stdout.lines().collect();
    assert_eq!(
        lines[1..],
        [
            "superstep 1: identical",
            &format!("superstep 2: differs from checkpoint {}:", ids[2]),
            "  executor lower state: changed",
            r#"    - {"count":1,"last_input":"OLLEH","last_output":"olleh"}"#,
            r#"    + {"count":1,"last_input":"OLLEH","last_output":"olleh!"}"#,
            "  queued for finalize: 1 -> 1 message(s)",
            r#"    - from lower (text): "olleh""#,
            r#"    + from lower (text): "olleh!""#,
        ],
        "{}",
        changed.stdout
    );
    // Up to the checkpoint before lower's superstep, the change does not show; from a
    // file, the store is the file's directory.
    let file = ws.path().join(format!("checkpoints/{}.json", ids[1]));
    let until = ws.superstep(&[
        "replay",
        file.to_str().unwrap(),
        "--manifest",
        &bang,
        "--until",
        ids[2],
    ]);
    until.assert_code(4);
    let before = ws.superstep(&["replay", ids[0], "--manifest", &bang, "--until", ids[1]]);
    before.assert_code(0);
    assert!(
        before.stdout.ends_with("\nsuperstep 1: identical\n"),
        "{}",
        before.stdout
    );
    // A component that does not take the recorded state differs at once.
    let text = std::fs::read_to_string(&bang).unwrap();
    let refusing = ws.manifest(
        "refusing.toml",
        &text.replace("lower_bang.wasm", "adversary.wasm"),
    );
    let refused = ws.superstep(&["replay", ids[1], "--manifest", refusing.to_str().unwrap()]);
    refused.assert_code(4);
    let lines: Vec<&str> = refused.stdout.lines().collect();
    assert_eq!(
        lines[1],
        format!("superstep 2: differs from checkpoint {}:", ids[2])
    );
    assert!(
        lines[2].starts_with(&format!(
            "  the components do not take the recorded states: checkpoint {}: executor 'lower' did not accept its checkpointed state: restore returned an error: ",
            ids[1]
        )),
        "{}",
        refused.stdout
    );
    // A replay writes nothing.
    assert_eq!(ws.checkpoint_files("checkpoints"), recorded);

    // Refused with exit 2: nothing after the last checkpoint, an --until that does not
    // descend from the checkpoint, a manifest of another graph.
    let last = ws.superstep(&["replay", ids[3]]);
    last.assert_code(2);
    last.assert_stderr(&format!(
        "error: checkpoint {} is the last of its lineage in checkpoints: nothing comes after it to replay\n",
        ids[3]
    ));
    let backwards = ws.superstep(&["replay", ids[2], "--until", ids[1]]);
    backwards.assert_code(2);
    backwards.assert_stderr(&format!(
        "error: checkpoints: checkpoint {} does not descend from {} (--until)\n",
        ids[1], ids[2]
    ));
    let ring = ws.ring(2, 2, &[]);
    let other = ws.superstep(&["replay", ids[0], "--manifest", ring.to_str().unwrap()]);
    other.assert_code(2);
    assert!(
        other
            .stderr
            .contains("was taken with a different workflow graph than"),
        "{}",
        other.stderr
    );
    assert_eq!(ws.checkpoint_files("checkpoints"), recorded);
}

#[test]
fn a_branched_lineage_needs_until_and_responses_and_forks_are_taken_as_recorded() {
    let ws = Workspace::new();
    ws.paused_plan_review(&[]);
    let at = checkpoints_by_superstep(&ws);
    assert_eq!(at.len(), 1);
    let paused_at = at[0].1.clone();
    // One branch answered as it stands, one forked with feedback queued first.
    let approve = r#"planner:0:1={"approved": true}"#;
    ws.superstep(&["resume", &paused_at, "--respond", approve])
        .assert_code(0);
    let forked = ws.superstep(&["checkpoints", "fork", &paused_at, "--shared", "note=\"x\""]);
    forked.assert_code(0);
    let forked = forked.stdout.trim().to_string();
    ws.superstep(&["resume", &forked, "--respond", approve])
        .assert_code(0);

    let branched = ws.superstep(&["replay", &paused_at]);
    branched.assert_code(2);
    assert!(
        branched.stderr.contains(&format!(
            "the run went on from checkpoint {paused_at} more than once ("
        )) && branched.stderr.contains(&forked),
        "{}",
        branched.stderr
    );

    // Along the fork's branch, the longer one: the fork and the responses are taken as
    // they are, and the supersteps after them replay identically.
    let leaf = ws.superstep(&["checkpoints", "latest"]);
    let leaf = leaf.stdout.trim();
    let along = ws.superstep(&["replay", &paused_at, "--until", leaf]);
    along.assert_code(0);
    let lines: Vec<&str> = along.stdout.lines().skip(1).collect();
    assert_eq!(
        lines[0],
        format!(
            "checkpoint {forked} (before superstep 1): forked (shared value 'note' set); taken as recorded"
        ),
        "{}",
        along.stdout
    );
    assert!(
        lines[1].ends_with("(before superstep 1): responses given; taken as recorded"),
        "{}",
        along.stdout
    );
    assert!(lines.len() > 3, "{}", along.stdout);
    for line in &lines[2..] {
        assert!(line.ends_with(": identical"), "{}", along.stdout);
    }
}
