//! What a run reports while it goes: the event stream behind `--events jsonl`, the
//! terminal display and the library's callbacks.

use crate::message::Payload;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

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

/// A sink in front of another that can hold events back: while checkpoints are still
/// being written, the next supersteps already run, and their events wait here until the
/// checkpoint before them is durable, so that the stream reads as if everything had run
/// one after the other. Released from the thread that saved the checkpoint, while
/// executors may be emitting: events pass on under the lock, so none overtakes another.
pub(crate) struct Gate {
    inner: Arc<dyn EventSink>,
    /// One segment per checkpoint being written, oldest first: its id and the events
    /// that came after it (until the next one), in arrival order. Empty when open.
    held: Mutex<VecDeque<(String, Vec<Event>)>>,
}

impl Gate {
    /// A gate in front of `inner`, open.
    pub(crate) fn new(inner: Arc<dyn EventSink>) -> Gate {
        Gate {
            inner,
            held: Mutex::new(VecDeque::new()),
        }
    }

    /// Holds every event from now on behind checkpoint `checkpoint_id`, which is being
    /// written, until [`Gate::release`] for it.
    pub(crate) fn hold(&self, checkpoint_id: &str) {
        self.held
            .lock()
            .expect("event gate lock")
            .push_back((checkpoint_id.to_string(), Vec::new()));
    }

    /// Checkpoint `checkpoint_id`, the oldest being written, is durable: passes `first`
    /// on, then the events held behind it; events flow again once nothing is held. Does
    /// nothing once the checkpoint's events were discarded.
    pub(crate) fn release(&self, checkpoint_id: &str, first: &[Event]) {
        let mut held = self.held.lock().expect("event gate lock");
        if held.front().is_none_or(|(id, _)| id != checkpoint_id) {
            return;
        }
        let (_, behind) = held.pop_front().expect("checked above");
        for event in first.iter().chain(&behind) {
            self.inner.emit(event);
        }
    }

    /// What builds on checkpoint `checkpoint_id` (the oldest being written, now
    /// durable) is lost: passes `first` on and drops every event held. The gate stays
    /// shut, whatever comes after dropped too, until the engine learns of the loss and
    /// calls [`Gate::discard`].
    pub(crate) fn release_alone(&self, checkpoint_id: &str, first: &[Event]) {
        let mut held = self.held.lock().expect("event gate lock");
        if held.front().is_some_and(|(id, _)| id == checkpoint_id) {
            for event in first {
                self.inner.emit(event);
            }
        }
        held.clear();
        // A segment no checkpoint releases.
        held.push_back((String::new(), Vec::new()));
    }

    /// A checkpoint being written is lost: drops every event held (they are of work that
    /// built on it) and lets events through again.
    pub(crate) fn discard(&self) {
        self.held.lock().expect("event gate lock").clear();
    }
}

impl EventSink for Gate {
    fn emit(&self, event: &Event) {
        let mut held = self.held.lock().expect("event gate lock");
        match held.back_mut() {
            Some((_, events)) => events.push(event.clone()),
            None => {
                drop(held);
                self.inner.emit(event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(superstep: u64) -> Event {
        Event::SuperstepStarted {
            superstep,
            from_checkpoint: None,
            executors: Vec::new(),
        }
    }

    /// A gate in front of a sink that records the supersteps of what it gets.
    fn gate() -> (Gate, Arc<Mutex<Vec<u64>>>) {
        let passed = Arc::new(Mutex::new(Vec::new()));
        let seen = passed.clone();
        let sink = move |event: &Event| {
            if let Event::SuperstepStarted { superstep, .. } = event {
                seen.lock().unwrap().push(*superstep);
            }
        };
        (Gate::new(Arc::new(sink)), passed)
    }

    #[test]
    fn held_events_pass_in_order_once_their_checkpoint_is_released() {
        let (gate, passed) = gate();
        gate.emit(&started(0));
        gate.hold("c1");
        gate.emit(&started(1));
        gate.hold("c2");
        gate.emit(&started(2));
        gate.release("c2", &[started(9)]); // not the oldest: nothing passes
        assert_eq!(*passed.lock().unwrap(), [0]);
        gate.release("c1", &[started(10)]);
        gate.release("c2", &[started(20)]);
        gate.emit(&started(3));
        assert_eq!(*passed.lock().unwrap(), [0, 10, 1, 20, 2, 3]);
    }

    /// After a checkpoint whose successors are lost, nothing passes until the engine
    /// discards: not the held events, not those that come meanwhile, not later releases.
    #[test]
    fn a_lost_successor_shuts_the_gate_until_discarded() {
        let (gate, passed) = gate();
        gate.hold("c1");
        gate.emit(&started(1));
        gate.hold("c2");
        gate.release_alone("c1", &[started(10)]);
        gate.emit(&started(2));
        gate.release("c2", &[started(20)]);
        assert_eq!(*passed.lock().unwrap(), [10]);
        gate.discard();
        gate.emit(&started(3));
        assert_eq!(*passed.lock().unwrap(), [10, 3]);
    }
}
