//! Property tests over the checkpoint reader (`Checkpoint::decode`, `Summary::read`,
//! `FileStore::read_file`): whatever the bytes, the host does not panic, and a damaged
//! file is never read as a checkpoint other than the one that was written.

use proptest::prelude::*;
use std::collections::BTreeMap;
use superstep::Payload;
use superstep::checkpoint::{
    Checkpoint, ExecutorRecord, ManifestRef, OutputRecord, QueuedMessage, Status, Summary,
};

/// A checkpoint with the given executor states, shared values and queued bodies; with
/// `fan_out`, the first queued body is written once, in `shared_bodies`, and every queued
/// message refers to it.
fn checkpoint(
    states: Vec<Vec<u8>>,
    shared: Vec<Vec<u8>>,
    queued: Vec<Vec<u8>>,
    fan_out: bool,
) -> Checkpoint {
    let fan_out = fan_out && !queued.is_empty();
    let executors = states
        .iter()
        .enumerate()
        .map(|(i, state)| {
            let record = ExecutorRecord {
                component: format!("sha256:{:064x}", i),
                state: Payload::encode(state),
            };
            (format!("e{i}"), record)
        })
        .collect();
    let status = if queued.is_empty() {
        Status::Completed
    } else {
        Status::Running
    };
    Checkpoint {
        checkpoint_id: "0190aaaa-0000-7000-8000-000000000001".into(),
        parent_id: Some("0190aaaa-0000-7000-8000-000000000000".into()),
        run_id: "0190aaaa-0000-7000-8000-0000000000ff".into(),
        workflow: "fuzz".into(),
        superstep: 3,
        created_at: "2026-11-23T00:00:00Z".into(),
        status,
        manifest: ManifestRef {
            path: "/m.toml".into(),
            digest: format!("sha256:{:064x}", 7),
        },
        executors,
        shared_state: shared
            .iter()
            .enumerate()
            .map(|(i, value)| (format!("k{i}"), Payload::encode(value)))
            .collect::<BTreeMap<_, _>>(),
        queued: if queued.is_empty() {
            BTreeMap::new()
        } else {
            BTreeMap::from([(
                "e0".to_string(),
                queued
                    .iter()
                    .map(|body| QueuedMessage {
                        source: "e1".into(),
                        kind: "k".into(),
                        body: if fan_out {
                            Payload::Shared(0)
                        } else {
                            Payload::encode(body)
                        },
                    })
                    .collect(),
            )])
        },
        shared_bodies: if fan_out {
            vec![Payload::encode(&queued[0])]
        } else {
            Vec::new()
        },
        pending_requests: Vec::new(),
        responses: BTreeMap::new(),
        outputs: vec![OutputRecord {
            superstep: 2,
            source: "e0".into(),
            kind: "out".into(),
            body: Payload::encode(b"{\"done\": true}"),
        }],
        edit: None,
    }
}

/// Bytes that are often JSON (so that both payload forms are exercised).
fn payload_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "[a-z0-9 ]{0,20}"
            .prop_map(|s| format!("{{\"text\": \"{s}\", \"n\": [1, 2.5e3]}}").into_bytes()),
        "\\PC{0,16}".prop_map(|s| serde_json::to_vec(&s).unwrap()),
    ]
}

fn sample() -> impl Strategy<Value = Checkpoint> {
    (
        proptest::collection::vec(payload_bytes(), 2..4),
        proptest::collection::vec(payload_bytes(), 0..3),
        proptest::collection::vec(payload_bytes(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(states, shared, queued, fan_out)| checkpoint(states, shared, queued, fan_out))
}

/// The bytes of `checkpoint` as a reader gives it back: shared bodies in place.
fn as_read(checkpoint: &Checkpoint) -> Vec<u8> {
    let mut read = checkpoint.clone();
    let shared = std::mem::take(&mut read.shared_bodies);
    for message in read.queued.values_mut().flatten() {
        if let Payload::Shared(n) = message.body {
            message.body = shared[n].clone();
        }
    }
    read.encode()
}

/// Reads `bytes` every way the host does; none may panic. Returns the decoded
/// checkpoint, if any reader accepted the bytes.
fn read_every_way(bytes: &[u8]) -> Option<Checkpoint> {
    let summary = Summary::read(bytes, "fuzz.json").ok();
    let decoded = Checkpoint::decode(bytes, "fuzz.json").ok();
    assert_eq!(
        summary.is_some(),
        decoded.is_some(),
        "the listing and the reader disagree"
    );
    if let (Some(summary), Some(decoded)) = (&summary, &decoded) {
        assert_eq!(summary, &decoded.summary());
    }
    decoded
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_reader(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(read_every_way(&bytes).is_none());
    }

    #[test]
    fn written_checkpoints_read_back_exactly(checkpoint in sample()) {
        let bytes = checkpoint.encode();
        let back = read_every_way(&bytes).expect("a written checkpoint reads back");
        prop_assert_eq!(back.encode(), as_read(&checkpoint));
    }

    #[test]
    fn damaged_files_are_refused_or_read_as_written(
        checkpoint in sample(),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4),
    ) {
        let bytes = checkpoint.encode();
        // Cutting only trailing whitespace leaves the same document.
        let cut = cut.index(bytes.len());
        if let Some(back) = read_every_way(&bytes[..cut]) {
            prop_assert!(bytes[cut..].iter().all(u8::is_ascii_whitespace), "a cut-short file was accepted");
            prop_assert_eq!(back.encode(), as_read(&checkpoint));
        }

        let mut flipped = bytes.clone();
        for (at, mask) in &flips {
            flipped[at.index(bytes.len())] ^= mask;
        }
        // A flip outside the checksummed content (say, in the indentation of the
        // envelope) may leave a valid file; it must then hold the same checkpoint.
        if let Some(back) = read_every_way(&flipped) {
            prop_assert_eq!(back.encode(), as_read(&checkpoint));
        }
    }

    #[test]
    fn arbitrary_files_never_panic_the_file_store(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0190aaaa.json");
        std::fs::write(&path, &bytes).unwrap();
        prop_assert!(superstep::checkpoint::read_file(&path, None).is_err());
    }
}
