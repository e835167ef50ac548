//! Runs on this server's own [`Runner`], their checkpoints in its store: what `serve`
//! does without a database. The runs and their events are kept in memory for the
//! server's life; a paused run holds no instances, and resumes from its checkpoint
//! when answered. A server that starts on a store takes up the runs its checkpoints
//! hold ([`LocalRuns::recover`]), without their earlier events.

use super::{
    Idempotency, NewRun, RequestView, RunEvent, RunStatus, RunSummary, Runs, Started, Watchers,
    checkpoint_of, now,
};
use crate::checkpoint::{Checkpoint, CheckpointStore, Status, Summary};
use crate::engine::{RunHandle, Runner, Stopped, Stopper};
use crate::events::{Event, EventSink};
use crate::message::{Message, Payload};
use crate::server::catalog::SharedCatalog;
use crate::server::problem::{Answer, Problem};
use crate::{Outcome, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// Runs on this server's runner.
pub struct LocalRuns {
    inner: Arc<Inner>,
}

struct Inner {
    catalog: SharedCatalog,
    runner: Runner,
    /// By id: ids are time-ordered, so this is oldest first.
    runs: Mutex<BTreeMap<String, Arc<Slot>>>,
    /// `Idempotency-Key` to the request it came with and the run it started.
    keys: Mutex<HashMap<String, (String, String)>>,
    watchers: Arc<Watchers>,
    /// The server's runtime: a run's end is recorded on it.
    tasks: tokio::runtime::Handle,
}

/// One run.
struct Slot {
    run_id: String,
    workflow: String,
    created_at: String,
    state: Mutex<SlotState>,
}

/// What changes as a run goes.
struct SlotState {
    status: RunStatus,
    superstep: Option<u64>,
    last_checkpoint: Option<String>,
    reason: Option<String>,
    updated_at: String,
    /// Requests waiting for an answer.
    pending: Vec<RequestView>,
    /// Answers taken while the run could not take them, delivered when it resumes.
    answers: Vec<(String, Message)>,
    /// The requests answered as the run now being run resumed: its resume reports
    /// them once more before it takes the answers.
    delivered: Vec<String>,
    events: Vec<RunEvent>,
    /// While the run is being run.
    stopper: Option<Stopper>,
}

impl LocalRuns {
    /// Runs of `catalog`'s workflows on `runner`; their ends are recorded on `tasks`.
    pub fn new(catalog: SharedCatalog, runner: Runner, tasks: tokio::runtime::Handle) -> Self {
        LocalRuns {
            inner: Arc::new(Inner {
                catalog,
                runner,
                runs: Mutex::default(),
                keys: Mutex::default(),
                watchers: Arc::default(),
                tasks,
            }),
        }
    }

    /// Takes up the runs whose checkpoints are in the store, as a restarted server
    /// finds them: each at its newest checkpoint, `paused` on its pending requests,
    /// `completed`, or `cancelled` (cut short, resumable). Runs of manifests that are
    /// not in the catalog, and damaged checkpoints, are left alone. Returns how many.
    pub fn recover(&self) -> Result<usize> {
        let store = self.inner.runner.store().clone();
        let listed = store.list()?;
        // Per run, its oldest and newest checkpoints.
        let mut found: BTreeMap<&str, (&Summary, &Summary)> = BTreeMap::new();
        for summary in listed.iter().filter_map(|l| l.summary.as_ref().ok()) {
            let key = |s: &Summary| (s.created_at.clone(), s.checkpoint_id.clone());
            let entry = found
                .entry(summary.run_id.as_str())
                .or_insert((summary, summary));
            if key(summary) < key(entry.0) {
                entry.0 = summary;
            }
            if key(summary) > key(entry.1) {
                entry.1 = summary;
            }
        }
        let mut runs = self.inner.runs.lock().expect("runs lock");
        let before = runs.len();
        for (run_id, (oldest, summary)) in found {
            let Ok(checkpoint) = store.load(&summary.checkpoint_id) else {
                continue;
            };
            let path = std::path::Path::new(&checkpoint.manifest.path);
            let Some(workflow) = self.inner.catalog.id_of(path) else {
                continue;
            };
            let status = match summary.status {
                Status::AwaitingInput => RunStatus::Paused,
                Status::Completed => RunStatus::Completed,
                Status::Running => RunStatus::Cancelled,
            };
            let mut state = SlotState::running();
            state.status = status;
            state.superstep = Some(summary.superstep);
            state.last_checkpoint = Some(summary.checkpoint_id.clone());
            state.pending = checkpoint
                .pending_requests
                .iter()
                .map(RequestView::from)
                .collect();
            let slot = Slot {
                run_id: run_id.to_string(),
                workflow: workflow.to_string(),
                created_at: oldest.created_at.clone(),
                state: Mutex::new(state),
            };
            runs.entry(run_id.to_string())
                .or_insert_with(|| Arc::new(slot));
        }
        Ok(runs.len() - before)
    }

    fn slot(&self, run_id: &str) -> Answer<Arc<Slot>> {
        let runs = self.inner.runs.lock().expect("runs lock");
        runs.get(run_id)
            .cloned()
            .ok_or_else(|| Problem::not_found(format!("no run '{run_id}'")))
    }

    /// The run an earlier request with the same key started, or the key reserved for
    /// `run_id`.
    fn reserve(&self, idempotency: &Idempotency, run_id: &str) -> Answer<Option<String>> {
        let mut keys = self.inner.keys.lock().expect("keys lock");
        match keys.get(&idempotency.key) {
            Some((request, run)) if *request == idempotency.request => Ok(Some(run.clone())),
            Some((_, run)) => Err(Problem::unprocessable(format!(
                "Idempotency-Key '{}' was used for another request (run {run})",
                idempotency.key
            ))),
            None => {
                let entry = (idempotency.request.clone(), run_id.to_string());
                keys.insert(idempotency.key.clone(), entry);
                Ok(None)
            }
        }
    }
}

impl Runs for LocalRuns {
    fn start(&self, new: NewRun) -> Answer<Started> {
        let run_id = uuid::Uuid::now_v7().to_string();
        if let Some(idempotency) = &new.idempotency
            && let Some(run_id) = self.reserve(idempotency, &run_id)?
        {
            return Ok(Started {
                run_id,
                created: false,
            });
        }
        let workflow = match self.inner.catalog.workflow(&new.workflow) {
            Ok(workflow) => workflow,
            Err(error) => {
                if let Some(idempotency) = &new.idempotency {
                    self.inner
                        .keys
                        .lock()
                        .expect("keys lock")
                        .remove(&idempotency.key);
                }
                return Err(error.into());
            }
        };
        let slot = Arc::new(Slot {
            run_id: run_id.clone(),
            workflow: new.workflow,
            created_at: now(),
            state: Mutex::new(SlotState::running()),
        });
        let mut runs = self.inner.runs.lock().expect("runs lock");
        runs.insert(run_id.clone(), slot.clone());
        drop(runs);
        let recorder = self.inner.recorder(&slot);
        let handle = self
            .inner
            .runner
            .spawn_as(&workflow, run_id.clone(), new.input, recorder);
        self.inner.drive(&slot, handle);
        Ok(Started {
            run_id,
            created: true,
        })
    }

    fn list(&self, status: Option<RunStatus>, workflow: Option<&str>) -> Answer<Vec<RunSummary>> {
        let runs: Vec<Arc<Slot>> = {
            let runs = self.inner.runs.lock().expect("runs lock");
            runs.values().rev().cloned().collect()
        };
        Ok(runs
            .iter()
            .map(|slot| slot.summary())
            .filter(|run| status.is_none_or(|s| run.status == s))
            .filter(|run| workflow.is_none_or(|w| run.workflow == w))
            .collect())
    }

    fn get(&self, run_id: &str) -> Answer<RunSummary> {
        Ok(self.slot(run_id)?.summary())
    }

    fn pending(&self, run_id: &str) -> Answer<Vec<RequestView>> {
        Ok(self.slot(run_id)?.lock().pending.clone())
    }

    fn events_after(&self, run_id: &str, after: Option<u64>) -> Answer<Vec<RunEvent>> {
        let slot = self.slot(run_id)?;
        let state = slot.lock();
        let from = after.map_or(0, |seq| seq.saturating_add(1));
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        Ok(state.events.get(from..).unwrap_or_default().to_vec())
    }

    fn watch(&self, run_id: &str) -> watch::Receiver<u64> {
        self.inner.watchers.watch(run_id)
    }

    fn respond(&self, run_id: &str, request_id: &str, response: Message) -> Answer<()> {
        let slot = self.slot(run_id)?;
        let mut state = slot.lock();
        let Some(at) = state
            .pending
            .iter()
            .position(|r| r.request_id == request_id)
        else {
            return Err(Problem::conflict(format!(
                "request '{request_id}' is not pending in run {run_id} (never asked, or already answered); pending: {}",
                pending_ids(&state.pending)
            )));
        };
        state.pending.remove(at);
        state.answers.push((request_id.to_string(), response));
        state.updated_at = now();
        if state.status == RunStatus::Paused {
            let checkpoint = state.last_checkpoint.clone();
            state.status = RunStatus::Running;
            drop(state);
            self.inner
                .resume_claimed(&slot, checkpoint.as_deref(), None);
        }
        self.inner.watchers.notify(run_id);
        Ok(())
    }

    fn resume(&self, run_id: &str, checkpoint: Option<&str>) -> Answer<String> {
        let slot = self.slot(run_id)?;
        let store = self.store();
        let checkpoint = checkpoint
            .map(|id| checkpoint_of(&*store, run_id, id))
            .transpose()?;
        let mut state = slot.lock();
        if state.status.is_active() {
            return Err(Problem::conflict(format!(
                "run {run_id} is {}: cancel it first",
                state.status.as_str()
            )));
        }
        let id = match (&checkpoint, &state.last_checkpoint) {
            (Some(checkpoint), _) => checkpoint.checkpoint_id.clone(),
            (None, Some(last)) => last.clone(),
            (None, None) => {
                return Err(Problem::conflict(format!("run {run_id} has no checkpoint")));
            }
        };
        state.status = RunStatus::Running;
        drop(state);
        self.inner.resume_claimed(&slot, Some(&id), checkpoint);
        self.inner.watchers.notify(run_id);
        Ok(id)
    }

    fn cancel(&self, run_id: &str) -> Answer<()> {
        let slot = self.slot(run_id)?;
        let state = slot.lock();
        match (&state.stopper, state.status.is_active()) {
            (Some(stopper), true) => {
                stopper.stop();
                Ok(())
            }
            _ => Err(Problem::conflict(format!(
                "run {run_id} is {}, not running",
                state.status.as_str()
            ))),
        }
    }

    fn store(&self) -> Arc<dyn CheckpointStore> {
        self.inner.runner.store().clone()
    }
}

impl Inner {
    /// The sink of `slot`'s run.
    fn recorder(&self, slot: &Arc<Slot>) -> Arc<dyn EventSink> {
        Arc::new(Recorder {
            slot: slot.clone(),
            watchers: self.watchers.clone(),
        })
    }

    /// Records how `handle`'s run stops, when it does.
    fn drive(self: &Arc<Self>, slot: &Arc<Slot>, handle: RunHandle) {
        slot.lock().stopper = Some(handle.stopper());
        let (inner, slot) = (self.clone(), slot.clone());
        self.tasks.spawn(async move {
            let stopped = handle.await;
            let ended = move || inner.ended(&slot, stopped);
            drop(tokio::task::spawn_blocking(ended));
        });
    }

    /// Records how a run stopped; a paused run with answers waiting goes on at once.
    fn ended(self: &Arc<Self>, slot: &Arc<Slot>, stopped: Result<Stopped>) {
        let (status, reason) = match stopped {
            Ok(Stopped { outcome, .. }) => match outcome {
                Ok(Outcome::Completed) => (RunStatus::Completed, None),
                Ok(Outcome::Paused { .. }) => (RunStatus::Paused, None),
                Ok(Outcome::Stopped) => (RunStatus::Cancelled, None),
                Ok(Outcome::Failed { reason }) => (RunStatus::Failed, Some(reason)),
                Err(error) => (RunStatus::Failed, Some(format!("{error:#}"))),
            },
            // It did not start: no event says so yet.
            Err(error) => {
                let reason = format!("{error:#}");
                let last_checkpoint = slot.lock().last_checkpoint.clone();
                self.recorder(slot).emit(&Event::RunFailed {
                    run_id: slot.run_id.clone(),
                    reason: reason.clone(),
                    last_checkpoint,
                });
                (RunStatus::Failed, Some(reason))
            }
        };
        let mut state = slot.lock();
        state.stopper = None;
        state.delivered.clear();
        state.reason = reason;
        state.updated_at = now();
        if status == RunStatus::Paused && !state.answers.is_empty() {
            let checkpoint = state.last_checkpoint.clone();
            drop(state);
            self.resume_claimed(slot, checkpoint.as_deref(), None);
        } else {
            state.status = status;
        }
        self.watchers.notify(&slot.run_id);
    }

    /// Resumes `slot`'s run, already marked running, from checkpoint `id` (`loaded`, if
    /// it is) with the answers waiting that it has pending; a run that cannot resume
    /// fails, naming why.
    fn resume_claimed(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        id: Option<&str>,
        loaded: Option<Checkpoint>,
    ) {
        match self.resumed(slot, id, loaded) {
            Ok(handle) => self.drive(slot, handle),
            Err(error) => {
                let stopped = Err(crate::error::invalid(error.message));
                self.ended(slot, stopped);
            }
        }
    }

    fn resumed(
        &self,
        slot: &Arc<Slot>,
        id: Option<&str>,
        loaded: Option<Checkpoint>,
    ) -> Answer<RunHandle> {
        let checkpoint = match (loaded, id) {
            (Some(checkpoint), _) => checkpoint,
            (None, Some(id)) => self.runner.store().load(id)?,
            (None, None) => {
                return Err(Problem::conflict(format!(
                    "run {} has no checkpoint to resume",
                    slot.run_id
                )));
            }
        };
        let workflow = self.catalog.workflow(&slot.workflow)?;
        let mut state = slot.lock();
        let pending: Vec<RequestView> = checkpoint
            .pending_requests
            .iter()
            .map(RequestView::from)
            .collect();
        let (answers, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut state.answers)
            .into_iter()
            .partition(|(id, _)| pending.iter().any(|r| r.request_id == *id));
        state.answers = kept;
        state.delivered = answers.iter().map(|(id, _)| id.clone()).collect();
        state.pending = pending;
        state
            .pending
            .retain(|r| !answers.iter().any(|(id, _)| *id == r.request_id));
        state.last_checkpoint = Some(checkpoint.checkpoint_id.clone());
        state.superstep = Some(checkpoint.superstep);
        drop(state);
        let recorder = self.recorder(slot);
        Ok(self
            .runner
            .spawn_resume_answering(&workflow, checkpoint, answers, recorder))
    }
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().expect("run lock")
    }

    fn summary(&self) -> RunSummary {
        let state = self.lock();
        RunSummary {
            run_id: self.run_id.clone(),
            workflow: self.workflow.clone(),
            status: state.status,
            superstep: state.superstep,
            last_checkpoint: state.last_checkpoint.clone(),
            reason: state.reason.clone(),
            created_at: self.created_at.clone(),
            updated_at: state.updated_at.clone(),
        }
    }
}

impl SlotState {
    fn running() -> SlotState {
        SlotState {
            status: RunStatus::Running,
            superstep: None,
            last_checkpoint: None,
            reason: None,
            updated_at: now(),
            pending: Vec::new(),
            answers: Vec::new(),
            delivered: Vec::new(),
            events: Vec::new(),
            stopper: None,
        }
    }
}

/// Keeps a run's events, and what they say of where it stands.
struct Recorder {
    slot: Arc<Slot>,
    watchers: Arc<Watchers>,
}

impl EventSink for Recorder {
    fn emit(&self, event: &Event) {
        let json: Arc<str> = serde_json::to_string(event)
            .expect("events serialise")
            .into();
        let mut state = self.slot.lock();
        match event {
            Event::CheckpointSaved {
                checkpoint_id,
                superstep,
                ..
            } => {
                state.last_checkpoint = Some(checkpoint_id.clone());
                state.superstep = Some(*superstep);
            }
            Event::RequestInfo {
                request_id,
                executor,
                superstep,
                kind,
                body,
            } => asked(&mut state, request_id, executor, *superstep, kind, body),
            Event::RunPaused { pending, .. } => {
                state.pending.retain(|r| pending.contains(&r.request_id))
            }
            Event::RunCompleted { .. } => state.pending.clear(),
            _ => {}
        }
        let seq = state.events.len() as u64;
        state.events.push(RunEvent { seq, json });
        state.updated_at = now();
        drop(state);
        self.watchers.notify(&self.slot.run_id);
    }
}

/// Adds a request to those pending, unless it is there or already answered.
fn asked(
    state: &mut SlotState,
    id: &str,
    executor: &str,
    superstep: u64,
    kind: &str,
    body: &Payload,
) {
    let known = state.pending.iter().any(|r| r.request_id == id);
    let answered = state.answers.iter().any(|(answered, _)| answered == id)
        || state.delivered.iter().any(|delivered| delivered == id);
    if known || answered {
        return;
    }
    state.pending.push(RequestView {
        request_id: id.to_string(),
        executor: executor.to_string(),
        superstep,
        kind: kind.to_string(),
        body: body.to_json_value(),
    });
}

/// The ids of `pending`, for an error.
fn pending_ids(pending: &[RequestView]) -> String {
    if pending.is_empty() {
        return "none".to_string();
    }
    let ids: Vec<&str> = pending.iter().map(|r| r.request_id.as_str()).collect();
    ids.join(", ")
}
