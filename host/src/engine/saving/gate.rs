//! The event gate: while checkpoints are still being written, the next supersteps
//! already run, and their events wait here until the checkpoint before them is durable.

use crate::events::{Event, EventSink};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

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
