//! What a run reports while it goes: the event stream behind `--events jsonl`, the
//! terminal display and the library's callbacks.

use crate::message::Payload;
use serde::Serialize;

/// The severity of a log event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Very fine detail.
    Trace,
    /// Detail for debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that did not stop the executor.
    Warn,
    /// Something went wrong.
    Error,
}

impl Level {
    /// The level's name, as in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One event of a run. Serialised with an `event` field naming the variant in
/// snake_case, e.g. `{"event":"checkpoint_saved",...}`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run began, fresh or resumed from a checkpoint.
    RunStarted {
        /// The run.
        run_id: String,
        /// The workflow's name.
        workflow: String,
        /// The checkpoint the run resumed from, if any.
        resumed_from: Option<String>,
        /// The superstep the run goes on with.
        superstep: u64,
    },
    /// A superstep began.
    SuperstepStarted {
        /// The superstep.
        superstep: u64,
        /// The checkpoint whose state this superstep starts from.
        from_checkpoint: Option<String>,
        /// The executors with messages to handle, in id order.
        executors: Vec<String>,
    },
    /// An executor started handling its messages of the superstep.
    ExecutorInvoked {
        /// The superstep.
        superstep: u64,
        /// The executor.
        executor: String,
        /// How many responses and messages it gets.
        messages: usize,
    },
    /// An executor handled all its messages of the superstep.
    ExecutorCompleted {
        /// The superstep.
        superstep: u64,
        /// The executor.
        executor: String,
        /// How long it ran, in microseconds.
        duration_us: u64,
    },
    /// An executor was not invoked in this superstep because a journal of an earlier,
    /// interrupted attempt at the same superstep already holds its results.
    ExecutorSkipped {
        /// The superstep.
        superstep: u64,
        /// The executor.
        executor: String,
        /// What went wrong, naming the call and the limit or error.
        reason: String,
    },
    /// An executor's call failed and its superstep will be tried again on a fresh
    /// instance, restored to the state before it, after `backoff_ms` (see the
    /// executor's retry policy).
    ExecutorRetrying {
        /// The superstep.
        superstep: u64,
        /// The executor.
        executor: String,
        /// The attempt that failed, from 1.
        attempt: u32,
        /// The attempts the policy allows in all.
        max_attempts: u32,
        /// How it failed: `error`, `trap` or `timeout`.
        failure: &'static str,
        /// The last HTTP error status a request of the call got, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        http_status: Option<u16>,
        /// What went wrong, naming the call and the error.
        reason: String,
        /// The wait before the next attempt, in milliseconds.
        backoff_ms: u64,
    },
    /// An executor failed: its handler returned an error, or it trapped.
    ExecutorFailed {
        /// The superstep.
        superstep: u64,
        /// The executor.
        executor: String,
        /// What went wrong, naming the call and the limit or error.
        reason: String,
    },
    /// A guest wrote a log line (through `log`, or on its stdout or stderr).
    Log {
        /// The superstep.
        superstep: u64,
        /// The executor.
        executor: String,
        /// The severity.
        level: Level,
        /// The text (granted secrets masked).
        text: String,
    },
    /// A workflow output, emitted at the barrier.
    Output {
        /// The superstep.
        superstep: u64,
        /// The executor.
        executor: String,
        /// The kind.
        kind: String,
        /// The body, as checkpoints write payloads.
        body: Payload,
    },
    /// An executor asked for outside input (at the barrier of the superstep it asked
    /// in; again on every resume while the request is pending).
    RequestInfo {
        /// The request id (`<executor>:<superstep>:<n>`).
        request_id: String,
        /// The executor.
        executor: String,
        /// The superstep it asked in.
        superstep: u64,
        /// The kind.
        kind: String,
        /// The body, as checkpoints write payloads.
        body: Payload,
    },
    /// A checkpoint was written durably.
    CheckpointSaved {
        /// The checkpoint.
        checkpoint_id: String,
        /// The checkpoint the superstep started from.
        parent_id: Option<String>,
        /// The superstep.
        superstep: u64,
        /// The run's status in it.
        status: String,
        /// Where the store put it (a file path for file storage).
        location: String,
    },
    /// A superstep's barrier completed.
    SuperstepCompleted {
        /// The superstep.
        superstep: u64,
        /// Messages queued for the next superstep.
        queued: usize,
    },
    /// The run completed: no message is queued and no request is pending.
    RunCompleted {
        /// The run.
        run_id: String,
        /// Supersteps taken since the run began.
        supersteps: u64,
        /// Outputs emitted since the run began.
        outputs: usize,
    },
    /// Nothing is left to do but requests wait for responses: the run paused. Resume its
    /// last checkpoint with the responses to go on.
    RunPaused {
        /// The run.
        run_id: String,
        /// The checkpoint (status `awaiting-input`) to resume from.
        checkpoint_id: Option<String>,
        /// The ids of the pending requests.
        pending: Vec<String>,
    },
    /// The run was stopped at a barrier (see [`Run::stopper`](crate::Run::stopper)), its
    /// last checkpoint durable: resume it to go on.
    RunStopped {
        /// The run.
        run_id: String,
        /// The checkpoint to resume from.
        checkpoint_id: Option<String>,
    },
    /// The run failed; the last checkpoint stays valid.
    RunFailed {
        /// The run.
        run_id: String,
        /// What went wrong, naming the call and the limit or error.
        reason: String,
        /// The checkpoint to resume from once the cause is fixed.
        last_checkpoint: Option<String>,
    },
}

/// Receives a run's events. Called from the executor threads too, so it must be
/// thread-safe; calls for one executor arrive in order.
pub trait EventSink: Send + Sync {
    /// Takes one event.
    fn emit(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync> EventSink for F {
    fn emit(&self, event: &Event) {
        self(event)
    }
}
