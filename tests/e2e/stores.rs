//! One body of behaviour tests for every checkpoint store: whatever the store, a run,
//! a resume of each of its checkpoints, journal replay, ids and prefixes, latest by
//! lineage, filters, export and prune behave the same.

use crate::common::*;
use crate::library::{
    FailingStore, branching_input, branching_with_b_at_the_gate, collecting_sink,
};
use crate::postgres_server::Postgres;
use std::sync::Arc;
use superstep::checkpoint::{ListFilter, PostgresStore, PrunePolicy, export, read_file};
use superstep::{
    CheckpointStore, Event, FileStore, MemoryStore, Message, Outcome, Runtime, Status, Workflow,
};

#[test]
fn the_file_store_behaves_as_a_store() {
    let ws = Workspace::new();
    let store: Arc<dyn CheckpointStore> = Arc::new(FileStore::new(ws.path().join("store")));
    behaves_as_a_store(&ws, store);
}

#[test]
fn the_postgres_store_behaves_as_a_store() {
    let ws = Workspace::new();
    let url = Postgres::shared().database();
    superstep::db::migrate(&url).unwrap();
    behaves_as_a_store(&ws, Arc::new(PostgresStore::connect(&url).unwrap()));
}

#[test]
fn the_memory_store_behaves_as_a_store() {
    let ws = Workspace::new();
    behaves_as_a_store(&ws, Arc::new(MemoryStore::new()));
}

fn behaves_as_a_store(ws: &Workspace, store: Arc<dyn CheckpointStore>) {
    let pipeline = superstep::Manifest::load(&ws.pipeline()).unwrap();
    let pipeline = Workflow::load(Runtime::new(1, false).unwrap(), pipeline).unwrap();
    let (outputs, states) = run_and_resume_every_checkpoint(&pipeline, &store);
    ids_prefixes_latest_and_filters(&store);
    export_folds_a_checkpoint_into_one_file(ws, &store);
    prune_keeps_the_newest_and_what_it_needs(&pipeline, &store, &outputs, &states);
    a_journal_replays_on_resume(ws, &store);
}

type Outputs = Vec<Vec<u8>>;
type States = Vec<(String, Vec<u8>)>;

/// What a run ended with.
fn ending(run: &superstep::Run) -> (Outputs, States) {
    let outputs = run
        .outputs()
        .iter()
        .map(|o| o.message.body.to_vec())
        .collect();
    let states = run
        .states()
        .into_iter()
        .map(|(id, state)| (id.to_string(), state.to_vec()))
        .collect();
    (outputs, states)
}

fn quiet() -> Arc<dyn superstep::EventSink> {
    Arc::new(|_: &Event| {})
}

/// The pipeline run into `store`, then each of its checkpoints resumed (a branch each)
/// to the same end; returns that end.
fn run_and_resume_every_checkpoint(
    pipeline: &Workflow,
    store: &Arc<dyn CheckpointStore>,
) -> (Outputs, States) {
    let input = Message {
        kind: "input".into(),
        body: "\"hello world\"".into(),
    };
    let mut run = pipeline.start(input, store.clone(), quiet()).unwrap();
    assert_eq!(run.run().unwrap(), Outcome::Completed);
    let end = ending(&run);
    assert_eq!(end.0, [b"\"dlrow olleh\"".to_vec()]);
    let ids = store.ids().unwrap();
    assert_eq!(ids.len(), 4, "one checkpoint per superstep");
    for id in &ids {
        let checkpoint = store.load(id).unwrap();
        let mut resumed = pipeline
            .resume(checkpoint, false, store.clone(), quiet())
            .unwrap();
        assert_eq!(resumed.run().unwrap(), Outcome::Completed, "from {id}");
        assert_eq!(ending(&resumed), end, "from {id}");
    }
    end
}

fn ids_prefixes_latest_and_filters(store: &Arc<dyn CheckpointStore>) {
    let listing = store.list().unwrap();
    assert!(listing.iter().all(|l| l.summary.is_ok()));
    let first = &listing[0].id;
    // A prefix long enough to be unique resolves; a stranger does not.
    assert_eq!(&store.resolve(first).unwrap(), first);
    let unique = (1..=first.len())
        .map(|n| &first[..n])
        .find(|prefix| listing.iter().filter(|l| l.id.starts_with(prefix)).count() == 1)
        .unwrap();
    assert_eq!(&store.resolve(unique).unwrap(), first);
    let error = store.resolve("ffffffff").unwrap_err().to_string();
    assert!(error.starts_with("no checkpoint 'ffffffff' in "), "{error}");
    // Latest by lineage is a completed checkpoint at the end of the longest chain.
    let latest = store.latest(None).unwrap().unwrap();
    assert_eq!((latest.status, latest.superstep), (Status::Completed, 4));
    let run = &latest.run_id[..8];
    assert_eq!(
        store.latest(Some(run)).unwrap().unwrap().run_id,
        latest.run_id
    );
    assert!(store.latest(Some("ffffffff")).unwrap().is_none());
    let completed = ListFilter {
        status: Some(Status::Completed),
        ..ListFilter::default()
    };
    let matching = store.list_matching(&completed).unwrap();
    assert!(!matching.is_empty() && matching.len() < listing.len());
    assert!(
        matching
            .iter()
            .all(|l| l.summary.as_ref().unwrap().status == Status::Completed)
    );
}

fn export_folds_a_checkpoint_into_one_file(ws: &Workspace, store: &Arc<dyn CheckpointStore>) {
    let latest = store.latest(None).unwrap().unwrap();
    let checkpoint = store.load(&latest.checkpoint_id).unwrap();
    let file = ws.path().join("exported.json");
    export(&checkpoint, &file, store.signing_keys()).unwrap();
    assert_eq!(
        read_file(&file, None).unwrap().encode(),
        checkpoint.encode()
    );
}

fn prune_keeps_the_newest_and_what_it_needs(
    pipeline: &Workflow,
    store: &Arc<dyn CheckpointStore>,
    outputs: &Outputs,
    states: &States,
) {
    let before = store.ids().unwrap().len();
    let policy = PrunePolicy {
        keep_last: Some(1),
        ..PrunePolicy::default()
    };
    let dry = store
        .prune(&policy, std::time::SystemTime::now(), true)
        .unwrap();
    assert_eq!(
        store.ids().unwrap().len(),
        before,
        "a dry run deletes nothing"
    );
    let pruned = store
        .prune(&policy, std::time::SystemTime::now(), false)
        .unwrap();
    assert_eq!(pruned.deleted, dry.deleted);
    assert!(!pruned.deleted.is_empty());
    assert_eq!(store.ids().unwrap().len(), before - pruned.deleted.len());
    // The newest checkpoint stays, whole: it resumes (to nothing left to do).
    let latest = store.latest(None).unwrap().unwrap();
    let checkpoint = store.load(&latest.checkpoint_id).unwrap();
    let mut resumed = pipeline
        .resume(checkpoint, false, store.clone(), quiet())
        .unwrap();
    assert_eq!(resumed.run().unwrap(), Outcome::Completed);
    assert_eq!(&ending(&resumed), &(outputs.clone(), states.clone()));
}

/// A superstep whose barrier is not saved leaves its journal in the store; resuming
/// the checkpoint it started from replays the journaled executor instead of running it.
fn a_journal_replays_on_resume(ws: &Workspace, store: &Arc<dyn CheckpointStore>) {
    let workflow = branching_with_b_at_the_gate(ws);
    let failing = Arc::new(FailingStore {
        inner: store.clone(),
        fail_save_after: Some(2),
        gate_on_journal: Some(ws.path().join("gate/open")),
        ..FailingStore::default()
    });
    let (_, sink) = collecting_sink();
    let mut run = workflow.start(branching_input(), failing, sink).unwrap();
    assert!(
        run.run().is_err(),
        "the barrier of superstep 2 is not saved"
    );
    let base = run.last_checkpoint().unwrap().to_string();
    let journaled = store.read_journal(&base).unwrap();
    assert!(
        journaled.iter().any(|r| r.executor == "a"),
        "a was journaled"
    );

    let (events, sink) = collecting_sink();
    let checkpoint = store.load(&base).unwrap();
    let mut resumed = workflow
        .resume(checkpoint, false, store.clone(), sink)
        .unwrap();
    assert_eq!(resumed.run().unwrap(), Outcome::Completed);
    assert_eq!(resumed.outputs().len(), 2);
    let events = events.lock().unwrap();
    let skipped: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::ExecutorSkipped { executor, .. } => Some(executor.as_str()),
            _ => None,
        })
        .collect();
    assert!(skipped.contains(&"a"), "{skipped:?}");
    let invoked_a = events
        .iter()
        .filter(|e| matches!(e, Event::ExecutorInvoked { executor, superstep: 2, .. } if executor == "a"))
        .count();
    assert_eq!(invoked_a, 0, "a is not invoked again");
    assert!(
        store.read_journal(&base).unwrap().is_empty(),
        "the barrier retires it"
    );
}
