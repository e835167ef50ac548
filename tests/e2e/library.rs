//! The engine used as a library: in-memory checkpoints, several runs in one process.

use crate::common::*;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use superstep::error::host;
use superstep::{
    CheckpointStore, Event, EventSink, MemoryStore, Message, Outcome, Runtime, Workflow,
};

/// A sink that keeps every event, and the events it kept.
pub(crate) fn collecting_sink() -> (Arc<Mutex<Vec<Event>>>, Arc<dyn EventSink>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let kept = events.clone();
    let sink = Arc::new(move |e: &Event| kept.lock().unwrap().push(e.clone()));
    (events, sink)
}

#[test]
fn runs_and_resumes_in_process_with_memory_storage() {
    let ws = Workspace::new();
    let manifest = superstep::Manifest::load(&ws.pipeline()).unwrap();
    let workflow = Workflow::load(Runtime::new(2, false).unwrap(), manifest).unwrap();
    let store = Arc::new(MemoryStore::new());
    let (events, sink) = collecting_sink();
    let input = |text: &str| Message {
        kind: "input".into(),
        body: Bytes::from(serde_json::to_vec(text).unwrap()),
    };

    // Two runs of one loaded workflow, each with its own instances and run id.
    let mut first = workflow
        .start(input("hello world"), store.clone(), sink.clone())
        .unwrap();
    let mut second = workflow
        .start(input("abc"), store.clone(), sink.clone())
        .unwrap();
    assert_eq!(first.run().unwrap(), Outcome::Completed);
    assert_eq!(second.run().unwrap(), Outcome::Completed);
    assert_ne!(first.run_id(), second.run_id());
    assert_eq!(&first.outputs()[0].message.body[..], b"\"dlrow olleh\"");
    assert_eq!(&second.outputs()[0].message.body[..], b"\"cba\"");
    assert_eq!(store.list().unwrap().len(), 8);
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::RunCompleted { .. }))
    );

    // Resume the first run from its second checkpoint.
    let listing = store.list().unwrap();
    let second_of_first = listing
        .iter()
        .filter_map(|l| l.summary.as_ref().ok())
        .find(|c| c.run_id == first.run_id() && c.superstep == 2)
        .unwrap();
    let second_of_first = store.load(&second_of_first.checkpoint_id).unwrap();
    let mut resumed = workflow
        .resume(second_of_first, false, store.clone(), sink)
        .unwrap();
    assert_eq!(resumed.run().unwrap(), Outcome::Completed);
    assert_eq!(resumed.outputs(), first.outputs());
    assert_eq!(resumed.states(), first.states());
    assert_eq!(resumed.shared_state(), first.shared_state());
    assert_eq!(store.list().unwrap().len(), 10);
}

#[test]
fn a_failed_run_refuses_to_go_on() {
    let ws = Workspace::new();
    let path = ws.manifest(
        "failing.toml",
        r#"
        [workflow]
        name = "failing"
        start = "a"
        [[executors]]
        id = "a"
        component = "@test-guests@/probe.wasm"
        [executors.config]
        fail_on_kind = "input"
        "#,
    );
    let workflow = Workflow::load(
        Runtime::new(1, false).unwrap(),
        superstep::Manifest::load(&path).unwrap(),
    )
    .unwrap();
    let input = Message {
        kind: "input".into(),
        body: Bytes::from_static(b"1"),
    };
    let mut run = workflow
        .start(
            input,
            Arc::new(MemoryStore::new()),
            Arc::new(|_: &Event| {}),
        )
        .unwrap();
    match run.run().unwrap() {
        Outcome::Failed { reason } => assert_eq!(
            reason,
            "executor 'a': message 1 of 1 (kind 'input' from '$input'): handle returned an error: refusing a message of kind 'input'"
        ),
        other => panic!("{other:?}"),
    }
    let again = run.run().unwrap_err().to_string();
    assert!(again.contains("already failed"), "{again}");
    assert!(run.last_checkpoint().is_none());
}

#[test]
fn a_run_pauses_for_input_and_takes_responses_in_process() {
    let ws = Workspace::new();
    let manifest = superstep::Manifest::load(&ws.plan_review()).unwrap();
    let workflow = Workflow::load(Runtime::new(1, false).unwrap(), manifest).unwrap();
    let store = Arc::new(MemoryStore::new());
    let sink = Arc::new(|_: &Event| {});
    let json = |text: &str| Bytes::from(text.to_string());
    let task = Message {
        kind: "task".into(),
        body: json("\"ship it\""),
    };
    let response = |text: &str| Message {
        kind: "response".into(),
        body: json(text),
    };

    let mut run = workflow.start(task, store.clone(), sink.clone()).unwrap();
    assert_eq!(
        run.run().unwrap(),
        Outcome::Paused {
            pending: vec!["planner:0:1".into()]
        }
    );
    let request = &run.pending_requests()[0];
    assert_eq!(request.executor, "planner");
    assert_eq!(request.message.kind, "plan-review");
    let asked: serde_json::Value = serde_json::from_slice(&request.message.body).unwrap();
    assert_eq!(asked["task"], "ship it");

    let unknown = run.respond("planner:7:1", response("{}")).unwrap_err();
    assert!(
        unknown.to_string().contains("pending: planner:0:1"),
        "{unknown}"
    );
    run.respond(
        "planner:0:1",
        response(r#"{"approved": false, "feedback": "cheaper"}"#),
    )
    .unwrap();
    assert!(run.pending_requests().is_empty());
    assert!(
        run.respond("planner:0:1", response("{}")).is_err(),
        "answered once only"
    );
    assert_eq!(
        run.run().unwrap(),
        Outcome::Paused {
            pending: vec!["planner:1:1".into()]
        }
    );
    run.respond("planner:1:1", response(r#"{"approved": true}"#))
        .unwrap();
    assert_eq!(run.run().unwrap(), Outcome::Completed);
    let report: serde_json::Value = serde_json::from_slice(&run.outputs()[0].message.body).unwrap();
    assert_eq!(report["rounds"], 2);
    assert_eq!(report["results"][2], "done: address: cheaper");

    // The paused checkpoint resumes in a new run object, with the request still pending.
    let paused = store
        .list()
        .unwrap()
        .into_iter()
        .filter_map(|l| l.summary.ok())
        .find(|s| s.status == superstep::Status::AwaitingInput)
        .unwrap();
    let checkpoint = store.load(&paused.checkpoint_id).unwrap();
    let resumed = workflow.resume(checkpoint, false, store, sink).unwrap();
    assert_eq!(resumed.pending_requests().len(), 1);
}

#[test]
fn a_fuel_limit_needs_a_runtime_that_meters_fuel() {
    let ws = Workspace::new();
    let path = ws.manifest(
        "fuel.toml",
        r#"
        [workflow]
        name = "fuel"
        start = "a"

        [[executors]]
        id = "a"
        component = "@test-guests@/probe.wasm"
        limits = { fuel = 1000000 }
        "#,
    );
    let manifest = superstep::Manifest::load(&path).unwrap();
    assert!(manifest.uses_fuel());
    let error = Workflow::load(Runtime::new(1, false).unwrap(), manifest.clone())
        .err()
        .unwrap();
    assert!(
        error.to_string().contains(
            "an executor sets limits.fuel, but this runtime was created without fuel metering"
        ),
        "{error}"
    );
    Workflow::load(Runtime::new(1, true).unwrap(), manifest).unwrap();
}

/// A store (by default in memory) that takes `save_delay` for each group of saves, as a
/// slow disk would, and fails as a full disk would: the save of the checkpoint taken
/// after superstep `fail_save_after`, every journal append if `fail_journal`, and every
/// journal removal if `fail_journal_removal`.
/// Records the superstep of every checkpoint it tried to save, per group (none after a
/// failure). Creates the file `gate_on_journal` when a journal append is tried: the gate
/// of a probe that should still run until then (see `Workspace::set_gate`).
pub(crate) struct FailingStore {
    pub(crate) inner: Arc<dyn CheckpointStore>,
    pub(crate) save_delay: Duration,
    pub(crate) fail_save_after: Option<u64>,
    pub(crate) fail_journal: bool,
    pub(crate) fail_journal_removal: bool,
    pub(crate) gate_on_journal: Option<std::path::PathBuf>,
    pub(crate) groups: Mutex<Vec<Vec<u64>>>,
}

impl Default for FailingStore {
    fn default() -> FailingStore {
        FailingStore {
            inner: Arc::new(MemoryStore::new()),
            save_delay: Duration::ZERO,
            fail_save_after: None,
            fail_journal: false,
            fail_journal_removal: false,
            gate_on_journal: None,
            groups: Mutex::default(),
        }
    }
}

impl FailingStore {
    /// The supersteps of the checkpoints it was asked to save, in order.
    pub(crate) fn saves(&self) -> Vec<u64> {
        self.groups.lock().unwrap().concat()
    }
}

impl CheckpointStore for FailingStore {
    fn save(&self, checkpoint: &superstep::Checkpoint) -> superstep::Result<String> {
        self.save_all(&[checkpoint]).pop().unwrap()
    }
    fn save_all(&self, checkpoints: &[&superstep::Checkpoint]) -> Vec<superstep::Result<String>> {
        std::thread::sleep(self.save_delay);
        let mut saved = Vec::new();
        let mut tried = Vec::new();
        for checkpoint in checkpoints {
            tried.push(checkpoint.superstep);
            if Some(checkpoint.superstep) == self.fail_save_after.map(|s| s + 1) {
                saved.push(Err(host("No space left on device (injected)")));
                break;
            }
            saved.push(self.inner.save(checkpoint));
        }
        self.groups.lock().unwrap().push(tried);
        saved
    }
    fn load(&self, id: &str) -> superstep::Result<superstep::Checkpoint> {
        self.inner.load(id)
    }
    fn list(&self) -> superstep::Result<Vec<superstep::checkpoint::Listed>> {
        self.inner.list()
    }
    fn delete(&self, id: &str) -> superstep::Result<()> {
        self.inner.delete(id)
    }
    fn append_journal(
        &self,
        base: &str,
        records: &[superstep::checkpoint::journal::JournalRecord],
    ) -> superstep::Result<()> {
        if let Some(gate) = &self.gate_on_journal {
            std::fs::write(gate, "").unwrap();
        }
        if self.fail_journal {
            return Err(host("No space left on device (injected)"));
        }
        self.inner.append_journal(base, records)
    }
    fn read_journal(
        &self,
        base: &str,
    ) -> superstep::Result<Vec<superstep::checkpoint::journal::JournalRecord>> {
        self.inner.read_journal(base)
    }
    fn remove_journal(&self, base: &str) -> superstep::Result<()> {
        if self.fail_journal_removal {
            return Err(host(format!(
                "cannot delete journal {base}: Permission denied (injected)"
            )));
        }
        self.inner.remove_journal(base)
    }
}

/// `src -> mid -> (a, b) -> sink`: the checkpoint taken before `a` and `b` run is
/// written while they run.
const BRANCHING: &str = r#"
[workflow]
name = "branching"
start = "src"
[[executors]]
id = "src"
component = "@test-guests@/probe.wasm"
config = { forward = [{ kind = "work" }] }
[[executors]]
id = "mid"
component = "@test-guests@/probe.wasm"
config = { forward = [{ kind = "work" }] }
[[executors]]
id = "a"
component = "@test-guests@/probe.wasm"
config = { forward = [{ kind = "done" }] }
[[executors]]
id = "b"
component = "@test-guests@/probe.wasm"
config = { forward = [{ kind = "done" }] }
[[executors]]
id = "sink"
component = "@test-guests@/probe.wasm"
config = { yield = true }
[[edges]]
from = "src"
to = "mid"
[[edges]]
from = "mid"
to = "a"
[[edges]]
from = "mid"
to = "b"
[[edges]]
from = "a"
to = "sink"
[[edges]]
from = "b"
to = "sink"
"#;

/// The input the branching workflow runs on.
pub(crate) fn branching_input() -> Message {
    Message {
        kind: "input".into(),
        body: Bytes::from_static(b"\"hello\""),
    }
}

/// A superstep with several executors runs while the previous checkpoint is written,
/// and on a slow disk the supersteps after it run too, their checkpoints queued behind
/// it. The events read as if each checkpoint had been written before the next
/// superstep. When that checkpoint cannot be written, nothing of the supersteps that
/// ran meanwhile shows and none of their checkpoints is written: the event stream ends
/// as a run that stopped at the failed save would, and the last checkpoint resumes.
#[test]
fn a_checkpoint_that_cannot_be_written_fails_the_run_at_its_barrier() {
    let ws = Workspace::new();
    let manifest = superstep::Manifest::load(&ws.manifest("branching.toml", BRANCHING)).unwrap();
    let workflow = Workflow::load(Runtime::new(2, false).unwrap(), manifest).unwrap();
    let input = branching_input();
    let (events, sink) = collecting_sink();
    let slow = Arc::new(FailingStore {
        save_delay: Duration::from_millis(50),
        ..FailingStore::default()
    });
    let mut undisturbed = workflow.start(input.clone(), slow.clone(), sink).unwrap();
    assert_eq!(undisturbed.run().unwrap(), Outcome::Completed);
    assert_eq!(slow.saves(), [1, 2, 3, 4]);
    // Overlapped or not, every superstep starts after the checkpoint it starts from is
    // reported saved, and after the superstep before it completed.
    let mut saved = None;
    let mut completed = None;
    for event in events.lock().unwrap().iter() {
        match event {
            Event::CheckpointSaved { checkpoint_id, .. } => saved = Some(checkpoint_id.clone()),
            Event::SuperstepCompleted { superstep, .. } => completed = Some(*superstep),
            Event::SuperstepStarted {
                superstep,
                from_checkpoint,
                ..
            } => {
                assert_eq!(from_checkpoint, &saved, "superstep {superstep}");
                assert_eq!(completed, superstep.checked_sub(1), "superstep {superstep}");
            }
            _ => {}
        }
    }
    assert_eq!(completed, Some(3));

    let (events, sink) = collecting_sink();
    let store = Arc::new(FailingStore {
        save_delay: Duration::from_millis(300),
        fail_save_after: Some(1),
        ..FailingStore::default()
    });
    let mut run = workflow.start(input, store.clone(), sink.clone()).unwrap();
    let error = format!("{:#}", run.run().unwrap_err());
    assert!(
        error.contains("superstep 1: checkpoint not saved") && error.contains("(injected)"),
        "{error}"
    );

    let events = events.lock().unwrap().clone();
    let saved: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::CheckpointSaved { checkpoint_id, .. } => Some(checkpoint_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(saved.len(), 1, "only superstep 0's checkpoint was saved");
    // The checkpoints of the supersteps that ran while the failing save was written
    // were never tried (the store may have got them in the failing one's group).
    assert_eq!(store.saves(), [1, 2]);
    assert_eq!(run.last_checkpoint(), Some(saved[0]));
    // Superstep 2 (a and b) ran while the failing save was written; none of it shows.
    let names: Vec<String> = events
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let tail: Vec<&str> = names
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(tail, ["executor_completed", "run_failed"], "{names:?}");
    assert!(events.iter().all(|e| !matches!(
        e,
        Event::SuperstepStarted { superstep: 2.., .. }
            | Event::SuperstepCompleted { superstep: 1.., .. }
            | Event::ExecutorInvoked { superstep: 2.., .. }
    )));
    match events.last().unwrap() {
        Event::RunFailed {
            last_checkpoint, ..
        } => assert_eq!(last_checkpoint.as_deref(), Some(saved[0])),
        other => panic!("{other:?}"),
    }

    // The last checkpoint resumes to the outputs and states of an undisturbed run.
    let checkpoint = store.load(saved[0]).unwrap();
    let (_, sink) = collecting_sink();
    let store = Arc::new(MemoryStore::new());
    let mut resumed = workflow.resume(checkpoint, false, store, sink).unwrap();
    assert_eq!(resumed.run().unwrap(), Outcome::Completed);
    assert_eq!(resumed.outputs(), undisturbed.outputs());
    assert_eq!(resumed.states(), undisturbed.states());
}

/// On a disk slower than the supersteps, the engine runs at most 32 checkpoints ahead
/// of it: while one group is saved, the next ones queue up behind it until 32 are in
/// flight, and are then saved together. The run ends as an undisturbed one does.
#[test]
fn the_engine_runs_at_most_32_checkpoints_ahead_of_a_slow_disk() {
    let ws = Workspace::new();
    let mut text = String::from("[workflow]\nname = \"ring\"\nstart = \"n0\"\n");
    for n in 0..4 {
        text += &format!(
            "[[executors]]\nid = \"n{n}\"\ncomponent = \"@components@/ring.wasm\"\nconfig = {{ limit = 80 }}\n\
             [[edges]]\nfrom = \"n{n}\"\nto = \"n{}\"\n",
            (n + 1) % 4
        );
    }
    let manifest = superstep::Manifest::load(&ws.manifest("ring.toml", &text)).unwrap();
    let workflow = Workflow::load(Runtime::new(1, false).unwrap(), manifest).unwrap();
    let input = Message {
        kind: "token".into(),
        body: Bytes::from_static(b"{\"hops\": 0}"),
    };
    let slow = Arc::new(FailingStore {
        save_delay: Duration::from_millis(250),
        ..FailingStore::default()
    });
    let (_, sink) = collecting_sink();
    let mut run = workflow.start(input, slow.clone(), sink).unwrap();
    assert_eq!(run.run().unwrap(), Outcome::Completed);
    assert_eq!(run.outputs()[0].message.body, "{\"hops\":80}");
    assert_eq!(slow.saves(), (1..=80).collect::<Vec<u64>>());
    // A group is what was in flight when the writer took it: never more than 32, and
    // far more than one while each group takes 250 ms and a superstep a millisecond.
    let groups: Vec<usize> = slow.groups.lock().unwrap().iter().map(Vec::len).collect();
    let largest = *groups.iter().max().unwrap();
    assert!((16..=32).contains(&largest), "group sizes: {groups:?}");
}

/// A journal that cannot be removed once the barrier's checkpoint is durable fails the
/// run there: that checkpoint is reported and stays the last one, nothing after it
/// shows, and it resumes.
#[test]
fn a_journal_that_cannot_be_removed_fails_the_run_after_its_checkpoint() {
    let ws = Workspace::new();
    let manifest = superstep::Manifest::load(&ws.manifest("branching.toml", BRANCHING)).unwrap();
    let workflow = Workflow::load(Runtime::new(2, false).unwrap(), manifest).unwrap();
    let (events, sink) = collecting_sink();
    let store = Arc::new(FailingStore {
        fail_journal_removal: true,
        ..FailingStore::default()
    });
    let input = branching_input();
    let mut run = workflow.start(input, store.clone(), sink).unwrap();
    let error = format!("{:#}", run.run().unwrap_err());
    assert!(
        error.contains("cannot delete journal") && error.contains("(injected)"),
        "{error}"
    );
    let events = events.lock().unwrap().clone();
    // Superstep 2 (a and b) was journaled; its barrier's checkpoint is saved.
    let last = events
        .iter()
        .find_map(|e| match e {
            Event::CheckpointSaved {
                checkpoint_id,
                superstep: 3,
                ..
            } => Some(checkpoint_id.clone()),
            _ => None,
        })
        .expect("the barrier's checkpoint is reported");
    assert_eq!(run.last_checkpoint(), Some(last.as_str()));
    for executor in ["a", "b"] {
        assert!(events.iter().any(|e| matches!(
            e,
            Event::ExecutorCompleted { superstep: 2, executor: id, .. } if id == executor
        )));
    }
    assert!(events.iter().all(|e| !matches!(
        e,
        Event::SuperstepCompleted { superstep: 2.., .. }
            | Event::SuperstepStarted { superstep: 3.., .. }
    )));
    assert!(matches!(
        events.last().unwrap(),
        Event::RunFailed { last_checkpoint, .. } if last_checkpoint.as_deref() == Some(last.as_str())
    ));
    let checkpoint = store.load(&last).unwrap();
    let (_, sink) = collecting_sink();
    let mut resumed = workflow
        .resume(checkpoint, false, Arc::new(MemoryStore::new()), sink)
        .unwrap();
    assert_eq!(resumed.run().unwrap(), Outcome::Completed);
    assert_eq!(resumed.outputs().len(), 2);
}

/// `b` of the branching workflow held at the workspace's gate (see `Workspace::set_gate`).
pub(crate) fn branching_with_b_at_the_gate(ws: &Workspace) -> Workflow {
    let text = BRANCHING.replace(
        "id = \"b\"\ncomponent = \"@test-guests@/probe.wasm\"\nconfig = { forward = [{ kind = \"done\" }] }",
        "id = \"b\"\ncomponent = \"@test-guests@/probe.wasm\"\ndirs = [{ host = \"gate\", guest = \"/gate\" }]\nconfig = { forward = [{ kind = \"done\" }], wait_for = \"/gate/open\" }",
    );
    assert_ne!(text, BRANCHING);
    ws.set_gate(false);
    let manifest = superstep::Manifest::load(&ws.manifest("gated-b.toml", &text)).unwrap();
    Workflow::load(Runtime::new(2, false).unwrap(), manifest).unwrap()
}

/// A superstep's events flow as soon as the checkpoint it started from is durable, not
/// when the superstep ends: on a slow disk, superstep 2 (`a` and `b`) starts while the
/// checkpoint before it is written, and once it is, that checkpoint and `a`'s journaled
/// completion are reported while `b` still runs.
#[test]
fn a_supersteps_events_flow_once_the_checkpoint_before_it_is_durable() {
    let ws = Workspace::new();
    let workflow = branching_with_b_at_the_gate(&ws);
    let (events, sink) = collecting_sink();
    let store = Arc::new(FailingStore {
        save_delay: Duration::from_millis(100),
        ..FailingStore::default()
    });
    let input = branching_input();
    let mut run = workflow.start(input, store, sink).unwrap();
    let outcome = std::thread::scope(|scope| {
        let running = scope.spawn(|| run.run().unwrap());
        let a_done = |events: &[Event]| {
            events.iter().any(|e| {
                matches!(e, Event::ExecutorCompleted { superstep: 2, executor, .. } if executor == "a")
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !a_done(&events.lock().unwrap()) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let seen = events.lock().unwrap().clone();
        ws.set_gate(true);
        assert!(a_done(&seen), "a's completion was held back: {seen:#?}");
        assert!(
            seen.iter()
                .any(|e| matches!(e, Event::CheckpointSaved { superstep: 2, .. }))
        );
        assert!(seen.iter().all(|e| !matches!(
            e,
            Event::ExecutorCompleted { executor, .. } if executor == "b"
        )));
        running.join().unwrap()
    });
    assert_eq!(outcome, Outcome::Completed);
}

/// A journal that cannot be appended to fails the run with that reason before the
/// barrier; the checkpoint the superstep started from stays the last one and resumes.
#[test]
fn a_journal_that_cannot_be_written_fails_the_run_before_the_barrier() {
    let ws = Workspace::new();
    // `b` waits at its gate until the journal is tried, so `a`'s results are journaled
    // while `b` still runs.
    let workflow = branching_with_b_at_the_gate(&ws);
    let (events, sink) = collecting_sink();
    let store = Arc::new(FailingStore {
        fail_journal: true,
        gate_on_journal: Some(ws.path().join("gate/open")),
        ..FailingStore::default()
    });
    let input = branching_input();
    let mut run = workflow.start(input, store.clone(), sink.clone()).unwrap();
    let error = format!("{:#}", run.run().unwrap_err());
    assert!(
        error.contains("could not be journaled") && error.contains("(injected)"),
        "{error}"
    );
    let events = events.lock().unwrap().clone();
    // Supersteps 0 and 1 were saved; superstep 2 (a and b) never reached its barrier.
    let saved: Vec<(&str, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::CheckpointSaved {
                checkpoint_id,
                superstep,
                ..
            } => Some((checkpoint_id.as_str(), *superstep)),
            _ => None,
        })
        .collect();
    assert_eq!(saved.iter().map(|s| s.1).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(run.last_checkpoint(), Some(saved[1].0));
    assert!(events.iter().all(|e| !matches!(
        e,
        Event::SuperstepCompleted { superstep: 2.., .. }
            | Event::ExecutorCompleted { superstep: 2.., .. }
    )));
    assert!(matches!(
        events.last().unwrap(),
        Event::RunFailed { last_checkpoint, .. } if last_checkpoint.as_deref() == Some(saved[1].0)
    ));
    // A run refuses to go on after a host-side failure; its last checkpoint resumes.
    assert!(run.run().is_err());
    let checkpoint = store.load(saved[1].0).unwrap();
    let mut resumed = workflow
        .resume(checkpoint, false, Arc::new(MemoryStore::new()), sink)
        .unwrap();
    assert_eq!(resumed.run().unwrap(), Outcome::Completed);
    assert_eq!(resumed.outputs().len(), 2);
}
