//! A run: the loop of supersteps and the barrier between them. In a superstep every
//! executor with messages handles them in delivery order (executors in parallel); at
//! the barrier shared-state writes commit in executor-id order, sends become the next
//! superstep's inboxes, outputs are emitted and a checkpoint is handed to the
//! [`Saver`].

use super::Workflow;
use super::journal_writer::{
    Finished, JournalFeed, JournalWriter, completed_events, report_completed,
};
use super::saving::{BarrierReport, SaveHandle, Saver, Settle};
use super::snapshot::{Output, PendingRequest, RunState};
use super::step::{Inbox, Recorded, Step, Turn};
use crate::error::Result;
use crate::error::{host, invalid};
use crate::events::{Event, EventSink};
use crate::message::{Envelope, Message, Payload};
use crate::sandbox::ExecutorInstance;
use crate::sandbox::context::SharedState;
use crate::telemetry::Traced;
use bytes::Bytes;
use opentelemetry::KeyValue;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No message is queued and no request is pending: the run is over.
    Completed,
    /// Only requests for outside input are left: the run waits for responses
    /// ([`Run::respond`], or `resume --respond` from its last checkpoint).
    Paused {
        /// The ids of the pending requests, oldest first.
        pending: Vec<String>,
    },
    /// The run was asked to stop ([`Stopper::stop`]) and stopped at a barrier, its last
    /// checkpoint durable; it goes on from there when run or resumed again.
    Stopped,
    /// An executor failed or a limit was hit; the last checkpoint stays valid.
    Failed {
        /// What went wrong, naming the executor or limit.
        reason: String,
    },
}

/// Asks a run to stop at its next barrier (see [`Outcome::Stopped`]), or at once;
/// clones ask the same run.
#[derive(Debug, Clone, Default)]
pub struct Stopper {
    stop: Arc<AtomicBool>,
    interrupt: Arc<AtomicBool>,
    /// Wakes the waits before retries when the run is asked to stop.
    wake: Arc<(Mutex<()>, Condvar)>,
}

impl Stopper {
    /// Asks the run to stop at its next barrier: a superstep under way finishes first
    /// (an executor waiting to retry a call retries at once).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let (lock, wake) = &*self.wake;
        let _held = lock.lock().expect("stopper lock");
        wake.notify_all();
    }

    /// Waits for `duration`, or less if the run is asked to stop meanwhile.
    pub(super) fn wait_unless_stopped(&self, duration: std::time::Duration) {
        let (lock, wake) = &*self.wake;
        let held = lock.lock().expect("stopper lock");
        let waited = wake.wait_timeout_while(held, duration, |_| !self.is_stopping());
        drop(waited.expect("stopper lock"));
    }

    /// Whether the run was interrupted ([`Stopper::interrupt`]).
    pub(super) fn is_interrupted(&self) -> bool {
        self.interrupt.load(Ordering::Acquire)
    }

    /// Stops the run at once: the executors' running calls end at their next epoch
    /// tick (a call waiting on the host, such as an HTTP request, once it returns), so
    /// that the superstep fails and nothing of it is applied.
    pub fn interrupt(&self) {
        self.interrupt.store(true, Ordering::Release);
        self.stop();
    }

    /// Whether the run was asked to stop.
    pub fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// When a run writes checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Durably at every barrier (and before delivering responses), with the superstep
    /// journal. The next supersteps may run while a barrier's checkpoint is written
    /// (up to 32 barriers ahead of the disk), their events held back until the
    /// checkpoint before them is durable: a crash loses at most the unfinished
    /// executors of the running superstep and the barriers whose checkpoints were still
    /// being written.
    #[default]
    Superstep,
    /// Once, when the run stops (completes, pauses or fails, at its last good barrier):
    /// a crash loses everything since the run started or resumed.
    Exit,
    /// Never: the run cannot be resumed. For measurements and throwaway runs.
    Off,
}

/// One run of a workflow, fresh or resumed.
pub struct Run {
    workflow: Workflow,
    /// What a checkpoint holds of the run.
    state: RunState,
    /// Saves the run's checkpoints and holds events back until the one before them is
    /// durable.
    saver: Saver,
    /// The saver's gate, as the sink that instances and the engine emit to.
    sink: Arc<dyn EventSink>,
    /// Per executor index.
    instances: Vec<ExecutorInstance>,
    /// When checkpoints are written.
    durability: Durability,
    /// Whether each new state is checked to come back from `restore` then `snapshot`.
    verify_snapshots: bool,
    /// Something happened since the last checkpoint (a barrier, or responses).
    unsaved: bool,
    /// Results of the next superstep that stand in for running some executors: a
    /// journal of an earlier attempt that died before the barrier, or a replay's.
    recorded: Option<Recorded>,
    /// Set when the run failed: its instances may be mid-superstep, so it cannot go on.
    failure: Option<String>,
    /// Where [`Run::advance`] goes on from.
    stage: Stage,
    /// Set when the run is to stop at its next barrier.
    stopper: Stopper,
    /// The run's span, from when it sets out until it stops.
    span: Traced,
}

/// Where a run stands between two calls of [`Run::advance`].
enum Stage {
    /// Not running: before the first call, or after the run stopped (a paused run can
    /// be answered and go on).
    Idle,
    /// Waiting for every save in flight before the next superstep (the checkpoint that
    /// holds responses is durable before they are delivered).
    Settling,
    /// Running supersteps.
    Running,
    /// Stopped with this outcome: waiting for the saves in flight, then (with
    /// [`Durability::Exit`]) for the checkpoint taken at exit.
    Ending(Result<Outcome>),
}

/// What [`Run::advance`] got to.
pub(crate) enum Progress {
    /// The run cannot go on until this save has finished.
    Wait(SaveHandle),
    /// The run stopped: what [`Run::run`] returns.
    Done(Result<Outcome>),
}

/// The results of a superstep's executors, by executor index.
type Results = Vec<(usize, Result<Step, String>)>;

impl Run {
    /// A fresh run of `workflow` whose input is queued in `state`.
    pub(super) fn fresh(
        workflow: &Workflow,
        state: RunState,
        instances: Vec<ExecutorInstance>,
        saver: Saver,
    ) -> Run {
        let mut run = Run {
            workflow: workflow.clone(),
            state,
            sink: saver.sink(),
            saver,
            instances,
            durability: Durability::default(),
            verify_snapshots: false,
            unsaved: true,
            recorded: None,
            failure: None,
            stage: Stage::Idle,
            stopper: Stopper::default(),
            span: Traced::default(),
        };
        run.wire_interrupt();
        run.announce(None);
        run
    }

    /// A run resumed from checkpoint `from`, whose state is `state`: each executor is
    /// initialised and restored, and `replay` holds what its journal says.
    pub(super) fn resumed(
        workflow: &Workflow,
        state: RunState,
        from: String,
        recorded: Option<Recorded>,
        saver: Saver,
    ) -> Result<Run> {
        let sink = saver.sink();
        let origin = format!("checkpoint {from}");
        let instances = (0..state.states.len())
            .map(|i| workflow.restored_instance(i, &sink, &state.states[i], &origin))
            .collect::<Result<Vec<_>>>()?;
        let mut run = Run {
            workflow: workflow.clone(),
            state,
            saver,
            sink,
            instances,
            durability: Durability::default(),
            verify_snapshots: false,
            unsaved: false,
            recorded,
            failure: None,
            stage: Stage::Idle,
            stopper: Stopper::default(),
            span: Traced::default(),
        };
        run.wire_interrupt();
        run.announce(Some(from));
        Ok(run)
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.state.run_id
    }

    /// Every output since the run began (including before a resume).
    pub fn outputs(&self) -> &[Output] {
        &self.state.outputs
    }

    /// Each executor's latest snapshot, by id.
    pub fn states(&self) -> BTreeMap<&str, &Bytes> {
        let ids = self.workflow.graph().ids().iter().map(String::as_str);
        ids.zip(&self.state.states).collect()
    }

    /// The committed shared state.
    pub fn shared_state(&self) -> &SharedState {
        &self.state.shared
    }

    /// Sets when checkpoints are written (by default at every superstep).
    pub fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    /// With `verify`, every state an executor returns at a barrier is restored into a
    /// fresh instance and snapshotted again before it is committed, and a state that
    /// does not come back (as bytes or as JSON) fails the run, naming the executor and
    /// the first difference. It costs an instance per executor per superstep.
    pub fn set_verify_snapshots(&mut self, verify: bool) {
        self.verify_snapshots = verify;
    }

    /// Supersteps completed so far: the next superstep to run.
    pub(super) fn supersteps_done(&self) -> u64 {
        self.state.superstep
    }

    /// Runs the next superstep alone, the results in `recorded` standing in for the
    /// executors it holds them for (they are not run); for replay. `Some` is how the
    /// run stopped instead: no work left, the superstep cap, or a failed executor.
    pub(super) fn step_once(&mut self, recorded: Recorded) -> Result<Option<Outcome>> {
        self.recorded = Some(recorded);
        loop {
            match self.next_superstep() {
                Ok(Some(save)) => drop(save.wait()),
                Ok(None) => return Ok(None),
                Err(Ok(outcome)) => return Ok(Some(outcome)),
                Err(Err(error)) => return Err(error),
            }
        }
    }

    /// The run as it stands, as a checkpoint whose parent is the latest one (not saved).
    pub(super) fn to_checkpoint(&self) -> crate::checkpoint::Checkpoint {
        let parent = self.last_checkpoint().map(str::to_string);
        self.state.to_checkpoint(&self.workflow, parent)
    }

    /// Requests waiting for a response, oldest first.
    pub fn pending_requests(&self) -> &[PendingRequest] {
        &self.state.pending
    }

    /// What asks this run to stop at its next barrier, from any thread.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Makes `stopper` the one that stops this run.
    pub(crate) fn set_stopper(&mut self, stopper: Stopper) {
        self.stopper = stopper;
        self.wire_interrupt();
    }

    /// Makes the run's stopper interrupt the calls of each of its instances.
    fn wire_interrupt(&mut self) {
        for instance in &mut self.instances {
            instance.interrupt_on(self.stopper.interrupt.clone());
        }
    }

    /// The id of the latest checkpoint of this run, if any.
    pub fn last_checkpoint(&self) -> Option<&str> {
        self.saver.last_checkpoint()
    }

    /// Answers pending request `request_id`: the response reaches the asking executor's
    /// `on-response` in the next superstep (and is saved in a checkpoint before it
    /// runs). Refuses, changing nothing, an id that is not pending.
    pub fn respond(&mut self, request_id: &str, response: Message) -> Result<()> {
        let pending = &mut self.state.pending;
        let Some(at) = pending.iter().position(|r| r.request_id == request_id) else {
            let ids: Vec<&str> = pending.iter().map(|r| r.request_id.as_str()).collect();
            return Err(invalid(format!(
                "request '{request_id}' is not pending in run {} (never asked, or already answered); pending: {}",
                self.state.run_id,
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.join(", ")
                }
            )));
        };
        let request = pending.remove(at);
        let to = self
            .workflow
            .graph()
            .index_of(&request.executor)
            .expect("requests come from the graph's executors");
        self.state.responses[to].push((request.request_id, response));
        self.unsaved = true;
        // The next superstep now delivers responses: a journal of an earlier attempt
        // at it, made without them, does not describe it.
        self.recorded = None;
        Ok(())
    }

    /// Runs supersteps until no message is queued, an executor fails or the superstep
    /// cap is reached. An `Err` is a host-side failure (such as a checkpoint that
    /// cannot be written); the last saved checkpoint stays valid either way. A run that
    /// failed cannot go on: resume its last checkpoint instead.
    pub fn run(&mut self) -> Result<Outcome> {
        loop {
            match self.advance() {
                Progress::Wait(save) => drop(save.wait()),
                Progress::Done(outcome) => return outcome,
            }
        }
    }

    /// Goes on with the run until it must wait for a save or stops, without waiting:
    /// [`Run::run`] is this in a loop that waits for each save on its thread, and a
    /// [`Runner`](crate::Runner) awaits the saves of many runs with no thread held.
    pub(crate) fn advance(&mut self) -> Progress {
        loop {
            self.stage = match std::mem::replace(&mut self.stage, Stage::Idle) {
                Stage::Idle => match &self.failure {
                    Some(reason) => {
                        return Progress::Done(Err(host(format!(
                            "run {} already failed ({reason}); resume from its last checkpoint instead",
                            self.state.run_id
                        ))));
                    }
                    None => self.setting_out(),
                },
                Stage::Settling | Stage::Running if self.stopper.is_stopping() => {
                    Stage::Ending(Ok(Outcome::Stopped))
                }
                Stage::Settling => match self.saver.poll(Settle::All) {
                    Ok(Some(save)) => return self.wait(save, Stage::Settling),
                    Ok(None) => Stage::Running,
                    Err(error) => Stage::Ending(Err(error)),
                },
                Stage::Running => match self.next_superstep() {
                    Ok(Some(save)) => return self.wait(save, Stage::Running),
                    Ok(None) => Stage::Running,
                    Err(ended) => Stage::Ending(ended),
                },
                Stage::Ending(outcome) => match self.end(outcome) {
                    Ok(outcome) => return Progress::Done(outcome),
                    Err((save, outcome)) => return self.wait(save, Stage::Ending(outcome)),
                },
            }
        }
    }

    /// Waits for `save`, going on at `stage` once it has finished.
    fn wait(&mut self, save: SaveHandle, stage: Stage) -> Progress {
        self.stage = stage;
        Progress::Wait(save)
    }

    /// The stage a run sets out at: responses not yet saved are saved first (and are
    /// durable before they are delivered).
    fn setting_out(&mut self) -> Stage {
        let workflow = &self.workflow.manifest().name;
        let from = self.last_checkpoint();
        self.span = Traced::run(&self.state.run_id, workflow, from);
        let unsaved_responses = self.unsaved && self.state.responses.iter().any(|r| !r.is_empty());
        if unsaved_responses && self.durability == Durability::Superstep {
            self.start_save(None);
            return Stage::Settling;
        }
        Stage::Running
    }

    /// Runs the next superstep if the saves in flight allow it: `Ok(Some(save))` is
    /// the save to wait for first; `Err` is how the run stops (no more work, the cap,
    /// a failed executor or a failed save).
    fn next_superstep(&mut self) -> Result<Option<SaveHandle>, Result<Outcome>> {
        let active: Vec<usize> = self.with_work().collect();
        if active.is_empty() {
            return Err(Ok(self.stopped()));
        }
        let cap = self.workflow.manifest().max_supersteps;
        if self.state.superstep >= cap {
            return Err(Ok(Outcome::Failed {
                reason: format!(
                    "superstep cap reached: {cap} supersteps run and messages are still queued (raise workflow.max_supersteps in {} and resume)",
                    self.workflow.manifest().path.display()
                ),
            }));
        }
        let workflow = &self.workflow;
        let pays = active.iter().any(|&i| workflow.makes_http_calls(i));
        // Work that reaches outside the sandbox waits until the previous barrier is
        // durable, so that no crash can make it run twice; other work runs while that
        // checkpoint is written, its events held back until it is durable.
        let settle = match active.iter().any(|&i| workflow.reaches_outside(i)) {
            true => Settle::All,
            false => Settle::TooFarAhead,
        };
        let superstep_journals = self.durability == Durability::Superstep;
        if self.last_checkpoint().is_none() && superstep_journals && pays {
            // A journal needs a checkpoint to start from.
            self.start_save(None);
        }
        match self.saver.poll(settle) {
            Ok(Some(save)) => return Ok(Some(save)),
            Ok(None) => {}
            Err(error) => return Err(Err(error)),
        }
        match self.superstep(&active) {
            Ok(None) => Ok(None),
            Ok(Some(reason)) => Err(Ok(Outcome::Failed { reason })),
            Err(error) => Err(Err(error)),
        }
    }

    /// How a run with no work left stands: completed, or paused on its requests.
    fn stopped(&self) -> Outcome {
        if self.state.pending.is_empty() {
            return Outcome::Completed;
        }
        let pending = self.state.pending.iter();
        Outcome::Paused {
            pending: pending.map(|r| r.request_id.clone()).collect(),
        }
    }

    /// Ends the run with `outcome` once every save has finished (a checkpoint that
    /// could not be saved comes first: the work after it is lost), saving it first
    /// with [`Durability::Exit`]; `Err` is the save to wait for first.
    fn end(
        &mut self,
        mut outcome: Result<Outcome>,
    ) -> Result<Result<Outcome>, (SaveHandle, Result<Outcome>)> {
        loop {
            match self.saver.poll(Settle::All) {
                Ok(Some(save)) => return Err((save, outcome)),
                Ok(None) => {}
                Err(error) => outcome = Err(error),
            }
            if self.durability == Durability::Exit && self.unsaved && outcome.is_ok() {
                self.start_save(None);
                continue;
            }
            self.report_end(&outcome);
            return Ok(outcome);
        }
    }

    /// Emits how the run ended, and ends its span; a failed run cannot go on.
    fn report_end(&mut self, outcome: &Result<Outcome>) {
        let (name, error) = match outcome {
            Ok(Outcome::Completed) => ("completed", None),
            Ok(Outcome::Paused { .. }) => ("paused", None),
            Ok(Outcome::Stopped) => ("stopped", None),
            Ok(Outcome::Failed { reason }) => ("failed", Some(reason.clone())),
            Err(error) => ("failed", Some(format!("{error:#}"))),
        };
        self.span.end(name, error.as_deref());
        let run_id = self.state.run_id.clone();
        let reason = match outcome {
            Ok(Outcome::Completed) => {
                return self.sink.emit(&Event::RunCompleted {
                    run_id,
                    supersteps: self.state.superstep,
                    outputs: self.state.outputs.len(),
                });
            }
            Ok(Outcome::Paused { pending }) => {
                return self.sink.emit(&Event::RunPaused {
                    run_id,
                    checkpoint_id: self.last_checkpoint().map(str::to_string),
                    pending: pending.clone(),
                });
            }
            Ok(Outcome::Stopped) => {
                return self.sink.emit(&Event::RunStopped {
                    run_id,
                    checkpoint_id: self.last_checkpoint().map(str::to_string),
                });
            }
            Ok(Outcome::Failed { reason }) => reason.clone(),
            Err(error) => format!("{error:#}"),
        };
        self.failure = Some(reason.clone());
        self.sink.emit(&Event::RunFailed {
            run_id,
            reason,
            last_checkpoint: self.last_checkpoint().map(str::to_string),
        });
    }

    /// The indices of the executors with messages or responses for the next superstep.
    pub(super) fn with_work(&self) -> impl Iterator<Item = usize> + '_ {
        let state = &self.state;
        (0..state.queues.len())
            .filter(|&i| !state.queues[i].is_empty() || !state.responses[i].is_empty())
    }

    /// Emits `run_started` and, for a resumed run, every request still pending.
    fn announce(&self, resumed_from: Option<String>) {
        self.sink.emit(&Event::RunStarted {
            run_id: self.state.run_id.clone(),
            workflow: self.workflow.manifest().name.clone(),
            resumed_from,
            superstep: self.state.superstep,
        });
        for request in &self.state.pending {
            emit_request(self.sink.as_ref(), request);
        }
    }

    /// Hands the run as it stands to the saver, as a checkpoint whose parent is the
    /// latest one.
    fn start_save(&mut self, barrier: Option<BarrierReport>) {
        let checkpoint = self.to_checkpoint();
        self.unsaved = false;
        self.saver.start(checkpoint, barrier);
    }

    /// Runs one superstep of the executors `active` and its barrier; returns the
    /// failure reason if an executor failed, in which case nothing of the superstep is
    /// applied. The saves it must wait for have finished.
    fn superstep(&mut self, active: &[usize]) -> Result<Option<String>> {
        let superstep = self.state.superstep;
        let journal = self.begin(active);
        let mut span = self.superstep_span(active);
        // Without a checkpoint per superstep, a failure must leave the inboxes as they
        // were, so that the state saved at exit is the last good barrier's.
        let inboxes = (self.durability == Durability::Exit)
            .then(|| (self.state.queues.clone(), self.state.responses.clone()));
        let mut results = self.take_recorded()?;
        let replayed = !results.is_empty();
        let (executed, unreported) = self.execute(journal.as_deref(), &span)?;
        results.extend(executed);
        results.sort_by_key(|(i, _)| *i);
        let graph = self.workflow.graph();
        let mut failures: Vec<String> = results
            .iter()
            .filter_map(|(i, result)| {
                let reason = result.as_ref().err()?;
                Some(format!("executor '{}': {reason}", graph.id(*i)))
            })
            .collect();
        if failures.is_empty() && self.verify_snapshots {
            failures = self.unfaithful_snapshots(&results);
        }
        if !failures.is_empty() {
            report_completed(self.sink.as_ref(), superstep, graph, &unreported);
            if let Some((queues, responses)) = inboxes {
                self.state.queues = queues;
                self.state.responses = responses;
            }
            let reason = failures.join("; ");
            span.end("failed", Some(&reason));
            return Ok(Some(reason));
        }
        self.barrier(results);
        let queued = self.state.queues.iter().map(Vec::len).sum();
        let graph = self.workflow.graph();
        if self.durability == Durability::Superstep {
            // Written by the saver while the next supersteps run, and reported as soon
            // as it is durable.
            let barrier = BarrierReport {
                superstep,
                made_durable: completed_events(superstep, graph, &unreported).collect(),
                completed: Event::SuperstepCompleted { superstep, queued },
                journal_to_remove: self
                    .last_checkpoint()
                    .map(str::to_string)
                    .filter(|_| journal.is_some() || replayed),
            };
            self.start_save(Some(barrier));
            if let Some(checkpoint) = self.last_checkpoint().filter(|_| span.is_recording()) {
                span.set(KeyValue::new(
                    "superstep.checkpoint_id",
                    checkpoint.to_string(),
                ));
            }
        } else {
            self.sink
                .emit(&Event::SuperstepCompleted { superstep, queued });
        }
        span.end("completed", None);
        Ok(None)
    }

    /// The span of the next superstep, of executors `active`, in the run's.
    fn superstep_span(&self, active: &[usize]) -> Traced {
        if !self.span.is_recording() {
            return Traced::default();
        }
        let graph = self.workflow.graph();
        let ids: Vec<&str> = active.iter().map(|&i| graph.id(i)).collect();
        self.span.child(
            "superstep",
            vec![
                KeyValue::new("superstep.run_id", self.state.run_id.clone()),
                KeyValue::new("superstep.number", self.state.superstep as i64),
                KeyValue::new("superstep.executors", ids.join(",")),
            ],
        )
    }

    /// Announces the superstep of `active`; returns the checkpoint whose journal its
    /// results go to, if they are journaled.
    fn begin(&mut self, active: &[usize]) -> Option<String> {
        let workflow = &self.workflow;
        let pays = active.iter().any(|&i| workflow.makes_http_calls(i));
        // With more than one executor, or one that makes HTTP requests, each one's
        // results are journaled as it finishes, so that a crash before the barrier does
        // not cost the finished ones' work (or their paid calls) again.
        let journal = self
            .last_checkpoint()
            .filter(|_| (active.len() > 1 || pays) && self.durability == Durability::Superstep)
            .map(str::to_string);
        let graph = workflow.graph();
        self.sink.emit(&Event::SuperstepStarted {
            superstep: self.state.superstep,
            from_checkpoint: self.last_checkpoint().map(str::to_string),
            executors: active.iter().map(|&i| graph.id(i).to_string()).collect(),
        });
        journal
    }

    /// The recorded results of the superstep (see [`Recorded`]): each such executor
    /// gets a fresh instance in the state they leave it in, and its inbox is not
    /// delivered.
    fn take_recorded(&mut self) -> Result<Results> {
        let mut results = Vec::new();
        let Some(Recorded {
            steps,
            origin,
            reason,
        }) = self.recorded.take()
        else {
            return Ok(results);
        };
        for (i, step) in steps.into_iter().enumerate() {
            let Some(step) = step else { continue };
            self.state.queues[i].clear();
            self.state.responses[i].clear();
            self.instances[i] =
                self.workflow
                    .restored_instance(i, &self.sink, &step.state, &origin)?;
            self.instances[i].interrupt_on(self.stopper.interrupt.clone());
            self.sink.emit(&Event::ExecutorSkipped {
                superstep: self.state.superstep,
                executor: self.workflow.graph().id(i).to_string(),
                reason: reason.clone(),
            });
            results.push((i, Ok(step)));
        }
        Ok(results)
    }

    /// Delivers every inbox, executors in parallel, their results journaled to the
    /// journal of checkpoint `journal` if given. Returns the results and the executors
    /// whose completion is still to report (index, duration in µs): those the barrier's
    /// checkpoint makes durable.
    fn execute(
        &mut self,
        journal: Option<&str>,
        span: &Traced,
    ) -> Result<(Results, Vec<(usize, u64)>)> {
        let superstep = self.state.superstep;
        let workflow = &self.workflow;
        let graph = workflow.graph();
        let state = &mut self.state;
        let work = take_inboxes(&mut self.instances, &mut state.queues, &mut state.responses);
        let (shared, sink, run_id) = (&state.shared, &self.sink, state.run_id.as_str());
        let (states, stopper) = (&state.states, &self.stopper);
        let restart = |i: usize| {
            let origin = format!("the state before superstep {superstep}");
            let mut instance = workflow.restored_instance(i, sink, &states[i], &origin)?;
            instance.interrupt_on(stopper.interrupt.clone());
            Ok(instance)
        };
        let store = self.saver.store().as_ref();
        let base_save = self.saver.pending_save();
        std::thread::scope(|scope| {
            let (finished, journaled) = mpsc::channel::<Finished>();
            let writer = journal.map(|base| {
                let writer = JournalWriter {
                    store,
                    base,
                    base_save,
                    superstep,
                    graph,
                    sink: sink.as_ref(),
                };
                scope.spawn(move || writer.write(journaled))
            });
            let journal_to = writer.as_ref().map(|writer| JournalFeed {
                finished: &finished,
                writer: writer.thread(),
            });
            let execute = |(i, instance, inbox): (usize, &mut ExecutorInstance, Inbox)| {
                let turn = Turn {
                    run_id,
                    superstep,
                    index: i,
                    graph,
                    journal: journal_to,
                    makes_http_calls: workflow.makes_http_calls(i),
                    retry: &workflow.manifest().executors[i].retry,
                    restart: &restart,
                    stopper,
                    span,
                    component_digest: workflow.component_digest(i),
                };
                (i, turn.run(instance, &inbox, shared, sink.as_ref()))
            };
            let executed: Results = if work.len() == 1 {
                work.into_iter().map(execute).collect()
            } else {
                workflow
                    .pool()
                    .install(|| work.into_par_iter().map(execute).collect())
            };
            drop(finished);
            let unreported = match writer {
                Some(writer) => {
                    // Every executor finished: the writer need not wait any longer.
                    writer.thread().unpark();
                    writer.join().expect("the journal writer does not panic")?
                }
                None => Vec::new(),
            };
            Ok((executed, unreported))
        })
    }

    /// The executors of `results` whose new state does not come back from `restore`
    /// then `snapshot` on a fresh instance, each with why.
    fn unfaithful_snapshots(&self, results: &Results) -> Vec<String> {
        let graph = self.workflow.graph();
        let origin = format!("the state after superstep {}", self.state.superstep);
        results
            .iter()
            .filter_map(|(i, result)| {
                let state = &result.as_ref().ok()?.state;
                let id = graph.id(*i);
                match self.workflow.round_trip(*i, state, &self.sink, &origin) {
                    Ok(fidelity) if fidelity.is_faithful() => None,
                    Ok(fidelity) => Some(format!(
                        "executor '{id}': its snapshot does not come back from restore: {fidelity}"
                    )),
                    Err(e) => Some(format!("executor '{id}': snapshot verification: {e}")),
                }
            })
            .collect()
    }

    /// The barrier: executor-id order throughout, so that delivery is by sender id and
    /// then send order, and shared-state writes commit deterministically.
    fn barrier(&mut self, results: Results) {
        let superstep = self.state.superstep;
        let graph = self.workflow.graph();
        let mut next: Vec<Vec<Envelope>> = vec![Vec::new(); self.state.queues.len()];
        for (i, result) in results {
            let Step { effects, state } = result.expect("failures returned before");
            let source = graph.id(i);
            if !effects.writes.is_empty() {
                let shared = Arc::make_mut(&mut self.state.shared);
                for (key, value) in effects.writes {
                    match value {
                        Some(value) => shared.insert(key, value),
                        None => shared.remove(&key),
                    };
                }
            }
            for (to, message) in effects.sends {
                next[to].push(Envelope {
                    source: source.to_string(),
                    message,
                });
            }
            for (request_id, message) in effects.requests {
                let request = PendingRequest {
                    request_id,
                    executor: source.to_string(),
                    superstep,
                    message,
                };
                emit_request(self.sink.as_ref(), &request);
                self.state.pending.push(request);
            }
            for message in effects.outputs {
                self.sink.emit(&Event::Output {
                    superstep,
                    executor: source.to_string(),
                    kind: message.kind.clone(),
                    body: Payload::of(&message.body),
                });
                self.state.outputs.push(Output {
                    superstep,
                    source: source.to_string(),
                    message,
                });
            }
            self.state.states[i] = state;
        }
        self.state.queues = next;
        self.state.superstep += 1;
        self.unsaved = true;
    }
}

/// The executors with work in the next superstep, each with its instance and the inbox
/// taken from its queue and responses.
fn take_inboxes<'a>(
    instances: &'a mut [ExecutorInstance],
    queues: &mut [Vec<Envelope>],
    responses: &mut [Vec<(String, Message)>],
) -> Vec<(usize, &'a mut ExecutorInstance, Inbox)> {
    instances
        .iter_mut()
        .zip(queues.iter_mut().zip(responses.iter_mut()))
        .enumerate()
        .filter(|(_, (_, (queue, responses)))| !queue.is_empty() || !responses.is_empty())
        .map(|(i, (instance, (queue, responses)))| {
            let inbox = Inbox {
                responses: std::mem::take(responses),
                messages: std::mem::take(queue),
            };
            (i, instance, inbox)
        })
        .collect()
}

/// Emits `request_info` for a pending request.
fn emit_request(sink: &dyn EventSink, request: &PendingRequest) {
    sink.emit(&Event::RequestInfo {
        request_id: request.request_id.clone(),
        executor: request.executor.clone(),
        superstep: request.superstep,
        kind: request.message.kind.clone(),
        body: Payload::of(&request.message.body),
    });
}

#[cfg(test)]
mod tests {
    use super::Stopper;
    use std::time::{Duration, Instant};

    #[test]
    fn a_stop_cuts_the_wait_before_a_retry_short() {
        let stopper = Stopper::default();
        let waiting = stopper.clone();
        let started = Instant::now();
        let waiter =
            std::thread::spawn(move || waiting.wait_unless_stopped(Duration::from_secs(600)));
        stopper.stop();
        waiter.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(300));
        // Once stopped, a wait does not wait at all.
        stopper.wait_unless_stopped(Duration::from_secs(600));
        assert!(!stopper.is_interrupted());
        stopper.interrupt();
        assert!(stopper.is_interrupted());
    }
}
