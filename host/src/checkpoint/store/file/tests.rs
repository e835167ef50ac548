//! The file store's own tests: batches of saves, failures part-way, journals cut short.

use super::*;
use crate::checkpoint::blobs::BLOB_MIN_SIZE;
use crate::checkpoint::tests::sample;
use crate::message::Payload;
use bytes::Bytes;

fn numbered(id: &str, superstep: u64) -> Checkpoint {
    let mut checkpoint = sample();
    checkpoint.checkpoint_id = id.into();
    checkpoint.superstep = superstep;
    checkpoint
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != ".lock")
        .collect();
    names.sort();
    names
}

#[test]
fn a_batch_is_saved_in_order_and_each_checkpoint_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let batch: Vec<Checkpoint> = (1..=3).map(|n| numbered(&format!("0190-{n}"), n)).collect();
    let saved = store.save_all(&batch.iter().collect::<Vec<_>>());
    let locations: Vec<String> = saved.into_iter().map(Result::unwrap).collect();
    for (checkpoint, location) in batch.iter().zip(&locations) {
        assert_eq!(
            location,
            &store
                .path_of(&checkpoint.checkpoint_id)
                .display()
                .to_string()
        );
        let read = store.load(&checkpoint.checkpoint_id).unwrap();
        assert_eq!(read.encode(), checkpoint.encode());
    }
    assert_eq!(
        files_in(dir.path()),
        ["0190-1.json", "0190-2.json", "0190-3.json"]
    );
}

/// The checkpoints before the one that cannot be written are durable; the one is
/// reported with its path, the ones after it are not written, and no temp file stays.
#[test]
fn a_batch_stops_at_the_first_checkpoint_that_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let first = numbered("0190-1", 1);
    let unwritable = numbered("no-such-dir/0190-2", 2);
    let third = numbered("0190-3", 3);
    let saved = store.save_all(&[&first, &unwritable, &third]);
    assert_eq!(saved.len(), 2, "nothing is tried after the failure");
    assert!(saved[0].is_ok());
    let error = format!("{:#}", saved[1].as_ref().unwrap_err());
    assert!(
        error.contains("cannot write checkpoint") && error.contains("no-such-dir/0190-2.json"),
        "{error}"
    );
    assert_eq!(store.load("0190-1").unwrap().encode(), first.encode());
    assert_eq!(files_in(dir.path()), ["0190-1.json"]);
}

/// Files are written while earlier ones are being synced: when one in the middle of
/// a group cannot be written, the ones before it are still durable and in place,
/// and nothing after it is written or left behind.
#[test]
fn a_group_stops_where_a_checkpoint_cannot_be_written_while_earlier_ones_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    // Where the blobs go is a file: a checkpoint with a large state cannot be written.
    std::fs::write(dir.path().join("blobs"), b"not a directory").unwrap();
    let small: Vec<Checkpoint> = (1..=2).map(|n| numbered(&format!("0190-{n}"), n)).collect();
    let mut large = numbered("0190-3", 3);
    let state = Bytes::from(vec![b'x'; BLOB_MIN_SIZE]);
    large.executors.get_mut("a").unwrap().state = Payload::of(&state);
    let after = numbered("0190-4", 4);
    let saved = store.save_all(&[&small[0], &small[1], &large, &after]);
    assert_eq!(saved.len(), 3, "nothing is tried after the failure");
    assert!(saved[0].is_ok() && saved[1].is_ok());
    let error = format!("{:#}", saved[2].as_ref().unwrap_err());
    assert!(
        error.contains("cannot write the blob of executors.a.state"),
        "{error}"
    );
    for checkpoint in &small {
        let read = store.load(&checkpoint.checkpoint_id).unwrap();
        assert_eq!(read.encode(), checkpoint.encode());
    }
    assert_eq!(
        files_in(dir.path()),
        ["0190-1.json", "0190-2.json", "blobs"]
    );
}

#[test]
fn each_group_of_a_batch_stops_at_its_own_failure_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    std::fs::write(dir.path().join("blobs"), b"not a directory").unwrap();
    let mut large = numbered("0190-b2", 2);
    let state = Bytes::from(vec![b'x'; BLOB_MIN_SIZE]);
    large.executors.get_mut("a").unwrap().state = Payload::of(&state);
    let (a1, a2) = (numbered("0190-a1", 1), numbered("0190-a2", 2));
    let (b1, b3) = (numbered("0190-b1", 1), numbered("0190-b3", 3));
    let saved = store.save_groups(&[vec![&a1, &a2], vec![&b1, &large, &b3], vec![]]);
    assert_eq!(saved.len(), 3);
    assert!(
        saved[0].iter().all(Result::is_ok),
        "the other run's group is whole"
    );
    assert_eq!(
        saved[1].len(),
        2,
        "nothing of a group is tried after its failure"
    );
    assert!(saved[1][0].is_ok() && saved[1][1].is_err());
    assert!(saved[2].is_empty());
    for checkpoint in [&a1, &a2, &b1] {
        let read = store.load(&checkpoint.checkpoint_id).unwrap();
        assert_eq!(read.encode(), checkpoint.encode());
    }
    assert_eq!(
        files_in(dir.path()),
        ["0190-a1.json", "0190-a2.json", "0190-b1.json", "blobs"]
    );
}

fn journal_record(executor: &str) -> JournalRecord {
    JournalRecord {
        superstep: 1,
        executor: executor.into(),
        state: Payload::encode(b"{\"n\":1}"),
        sends: vec![],
        outputs: vec![],
        writes: vec![("key".into(), Some(Payload::encode(b"[1,2]")))],
        requests: vec![],
    }
}

#[test]
fn an_append_after_a_record_cut_short_goes_on_from_the_last_complete_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    store
        .append_journal("base", &[journal_record("a"), journal_record("b")])
        .unwrap();
    let whole = std::fs::read(store.journal_path("base")).unwrap();
    let first = journal_record("a").encode(None).len();
    // Every cut inside the last record, as a crash while appending leaves it.
    for cut in first..whole.len() {
        std::fs::write(store.journal_path("base"), &whole[..cut]).unwrap();
        store
            .append_journal("base", &[journal_record("c")])
            .unwrap();
        store
            .append_journal("base", &[journal_record("d")])
            .unwrap();
        let executors: Vec<String> = store
            .read_journal("base")
            .unwrap_or_else(|e| panic!("cut at {cut}: {e:#}"))
            .into_iter()
            .map(|r| r.executor)
            .collect();
        assert_eq!(executors, ["a", "c", "d"], "cut at {cut}");
    }
    // A journal with nothing complete in it starts again from empty.
    std::fs::write(store.journal_path("base"), &whole[..first - 1]).unwrap();
    store
        .append_journal("base", &[journal_record("e")])
        .unwrap();
    assert_eq!(store.read_journal("base").unwrap()[0].executor, "e");
    assert_eq!(store.read_journal("base").unwrap().len(), 1);
}
