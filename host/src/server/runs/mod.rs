//! Runs as the server sees them, whichever way they are run: [`local`]ly, on this
//! server's runner with its checkpoints in a store of its own, or [`queued`] in a
//! database for the workers of every server on it. The HTTP handlers speak to the
//! [`Runs`] trait alone.
//!
//! Every method may block (on a file or the database): handlers call them on
//! blocking threads.

pub mod local;
pub mod queued;
mod watchers;

pub use watchers::Watchers;

use super::problem::{Answer, Problem};
use crate::checkpoint::{Checkpoint, CheckpointStore, Found, RequestRecord, is_plain_id};
use crate::message::Message;
pub use crate::queue::RunStatus;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::watch;
use utoipa::ToSchema;

/// A run, as lists show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunSummary {
    /// The run.
    pub run_id: String,
    /// The workflow's id in the catalog.
    pub workflow: String,
    /// Where it stands.
    pub status: RunStatus,
    /// The supersteps its last checkpoint completed.
    pub superstep: Option<u64>,
    /// Its newest checkpoint.
    pub last_checkpoint: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
    /// When it was started (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

/// A run in full: `GET /v1/runs/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDetail {
    /// The run.
    #[serde(flatten)]
    pub run: RunSummary,
    /// Its outputs so far, oldest first (as of its last checkpoint).
    pub outputs: Vec<OutputView>,
    /// Its requests waiting for an answer.
    pub pending: Vec<RequestView>,
}

/// A workflow output.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutputView {
    /// The superstep that emitted it.
    pub superstep: u64,
    /// The executor that emitted it.
    pub executor: String,
    /// Its kind.
    pub kind: String,
    /// Its body: JSON when it is JSON, else `{"base64": "..."}`.
    pub body: serde_json::Value,
}

/// A request for outside input.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestView {
    /// Its id (`<executor>:<superstep>:<n>`): answer it at
    /// `POST /v1/runs/{run}/requests/{request_id}`.
    pub request_id: String,
    /// The executor that asked.
    pub executor: String,
    /// The superstep it asked in.
    pub superstep: u64,
    /// Its kind.
    pub kind: String,
    /// Its body: JSON when it is JSON, else `{"base64": "..."}`.
    pub body: serde_json::Value,
}

impl From<&RequestRecord> for RequestView {
    fn from(request: &RequestRecord) -> RequestView {
        RequestView {
            request_id: request.request_id.clone(),
            executor: request.executor.clone(),
            superstep: request.superstep,
            kind: request.kind.clone(),
            body: request.body.to_json_value(),
        }
    }
}

/// One event of a run, numbered from 0 in the order the run emitted them.
#[derive(Debug, Clone)]
pub struct RunEvent {
    /// Its place in the run's events.
    pub seq: u64,
    /// The event, as JSON (see [`Event`](crate::Event)).
    pub json: Arc<str>,
}

/// A run to start.
pub struct NewRun {
    /// The workflow's id in the catalog.
    pub workflow: String,
    /// The input message.
    pub input: Message,
    /// The client's `Idempotency-Key`, and what identifies its request: a second start
    /// with the same key returns the first run.
    pub idempotency: Option<Idempotency>,
}

/// An `Idempotency-Key` and the request it came with.
pub struct Idempotency {
    /// The key.
    pub key: String,
    /// A digest of the request (workflow, input kind and body): the same key with
    /// another request is refused.
    pub request: String,
}

/// A run started, or found by its idempotency key.
#[derive(Debug, Serialize, ToSchema)]
pub struct Started {
    /// The run.
    pub run_id: String,
    /// Whether this request started it (false: an earlier one with the same
    /// `Idempotency-Key` did).
    pub created: bool,
}

/// Runs, however they are run.
pub trait Runs: Send + Sync {
    /// Starts a run (or finds the one started with the same idempotency key).
    fn start(&self, new: NewRun) -> Answer<Started>;

    /// The runs, newest first, with `status` and of `workflow` if given.
    fn list(&self, status: Option<RunStatus>, workflow: Option<&str>) -> Answer<Vec<RunSummary>>;

    /// One run; 404 if there is none.
    fn get(&self, run_id: &str) -> Answer<RunSummary>;

    /// The run's requests waiting for an answer (those answered but not yet delivered
    /// left out).
    fn pending(&self, run_id: &str) -> Answer<Vec<RequestView>>;

    /// The run's events numbered after `after` (all when `None`), in order.
    fn events_after(&self, run_id: &str, after: Option<u64>) -> Answer<Vec<RunEvent>>;

    /// A receiver that changes whenever the run has news (events or status); look at
    /// it before reading, then wait on it.
    fn watch(&self, run_id: &str) -> watch::Receiver<u64>;

    /// Answers the run's pending request `request_id`; 409 if it is not pending.
    fn respond(&self, run_id: &str, request_id: &str, response: Message) -> Answer<()>;

    /// Runs the run on from `checkpoint` (one of its own; its newest when `None`),
    /// branching when that is an older one; 409 while it is active. Returns the
    /// checkpoint resumed.
    fn resume(&self, run_id: &str, checkpoint: Option<&str>) -> Answer<String>;

    /// Asks the run to stop at its next barrier; 409 if it is not active.
    fn cancel(&self, run_id: &str) -> Answer<()>;

    /// The run in full: where it stands, its pending requests, and the outputs of its
    /// last checkpoint.
    fn detail(&self, run_id: &str) -> Answer<RunDetail> {
        let run = self.get(run_id)?;
        let pending = self.pending(run_id)?;
        let outputs = match &run.last_checkpoint {
            Some(id) => outputs(&self.store().load(id)?),
            None => Vec::new(),
        };
        Ok(RunDetail {
            run,
            outputs,
            pending,
        })
    }

    /// Where the runs' checkpoints are.
    fn store(&self) -> Arc<dyn CheckpointStore>;
}

/// A checkpoint's outputs, oldest first.
pub fn outputs(checkpoint: &Checkpoint) -> Vec<OutputView> {
    checkpoint
        .outputs
        .iter()
        .map(|o| OutputView {
            superstep: o.superstep,
            executor: o.source.clone(),
            kind: o.kind.clone(),
            body: o.body.to_json_value(),
        })
        .collect()
}

/// Checkpoint `id` (an id or unique prefix) of run `run_id`: 404 if there is none,
/// 422 if it belongs to another run.
pub fn checkpoint_of(store: &dyn CheckpointStore, run_id: &str, id: &str) -> Answer<Checkpoint> {
    let resolved = resolve(store, id)?;
    let checkpoint = store.load(&resolved)?;
    if checkpoint.run_id != run_id {
        return Err(Problem::unprocessable(format!(
            "checkpoint {resolved} belongs to run {}, not to run {run_id}",
            checkpoint.run_id
        )));
    }
    Ok(checkpoint)
}

/// The id of checkpoint `id` (an id or unique prefix): 404 if there is none, 422 if
/// it is not an id or names several.
pub fn resolve(store: &dyn CheckpointStore, id: &str) -> Answer<String> {
    if !is_plain_id(id) {
        return Err(Problem::unprocessable(format!(
            "'{id}' is not a checkpoint id (ids hold letters, digits and '-')"
        )));
    }
    match store.find(id)? {
        Found::One(one) => Ok(one),
        Found::None => Err(Problem::not_found(format!("no checkpoint '{id}'"))),
        Found::Many(n) => Err(Problem::unprocessable(format!(
            "'{id}' names {n} checkpoints; give more of the id"
        ))),
    }
}

/// The time now, as runs record it.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
