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
        run_id: String,
        workflow: String,
        /// The checkpoint the run resumed from, if any.
        resumed_from: Option<String>,
        /// The superstep the run goes on with.
        superstep: u64,
    },
    /// A superstep began.
    SuperstepStarted {
        superstep: u64,
        /// The checkpoint whose state this superstep starts from.
        from_checkpoint: Option<String>,
        /// The executors with messages to handle, in id order.
        executors: Vec<String>,
    },
    /// An executor started handling its messages of the superstep.
    ExecutorInvoked {
        superstep: u64,
        executor: String,
        messages: usize,
    },
    /// An executor handled all its messages of the superstep.
    ExecutorCompleted {
        superstep: u64,
        executor: String,
        duration_us: u64,
    },
    /// An executor was not invoked in this superstep because a journal of an earlier,
    /// interrupted attempt at the same superstep already holds its results.
    ExecutorSkipped {
        superstep: u64,
        executor: String,
        reason: String,
    },
    /// An executor failed: its handler returned an error, or it trapped.
    ExecutorFailed {
        superstep: u64,
        executor: String,
        reason: String,
    },
    /// A guest wrote a log line (through `log`, or on its stdout or stderr).
    Log {
        superstep: u64,
        executor: String,
        level: Level,
        text: String,
    },
    /// A workflow output, emitted at the barrier.
    Output {
        superstep: u64,
        executor: String,
        kind: String,
        body: Payload,
    },
    /// An executor asked for outside input (at the barrier of the superstep it asked
    /// in; again on every resume while the request is pending).
    RequestInfo {
        request_id: String,
        executor: String,
        /// The superstep it asked in.
        superstep: u64,
        kind: String,
        body: Payload,
    },
    /// A checkpoint was written durably.
    CheckpointSaved {
        checkpoint_id: String,
        parent_id: Option<String>,
        superstep: u64,
        status: String,
        /// Where the store put it (a file path for file storage).
        location: String,
    },
    /// A superstep's barrier completed.
    SuperstepCompleted {
        superstep: u64,
        /// Messages queued for the next superstep.
        queued: usize,
    },
    /// The run completed: no message is queued and no request is pending.
    RunCompleted {
        run_id: String,
        /// Supersteps taken since the run began.
        supersteps: u64,
        /// Outputs emitted since the run began.
        outputs: usize,
    },
    /// Nothing is left to do but requests wait for responses: the run paused. Resume its
    /// last checkpoint with the responses to go on.
    RunPaused {
        run_id: String,
        /// The checkpoint (status `awaiting-input`) to resume from.
        checkpoint_id: Option<String>,
        /// The ids of the pending requests.
        pending: Vec<String>,
    },
    /// The run failed; the last checkpoint stays valid.
    RunFailed {
        run_id: String,
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
