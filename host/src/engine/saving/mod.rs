//! Saving a run's checkpoints: one [`Saver`] per run owns the writer thread, the saves
//! in flight, the event gate and the run's last checkpoint. The run loop hands it a
//! checkpoint at each barrier and polls it for the saves it must wait for (without
//! waiting itself, so that a run waiting on a save need not hold a thread); the next
//! supersteps may run while the disk catches up, their events held until the
//! checkpoint before them is durable.

mod gate;
mod shared;
mod writer;

pub use shared::RunnerLimits;
pub(crate) use shared::{Registration, SharedWriter};
pub(crate) use writer::SaveHandle;

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::error::Result;
use crate::error::host;
use crate::events::{Event, EventSink};
use gate::Gate;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use writer::{CheckpointWriter, OnDurable};

/// How many checkpoints may be in flight at once: the engine runs at most this many
/// barriers ahead of the disk. Only supersteps quicker than a save get that far ahead
/// (on the machine of the README's benchmarks, a save takes about 1 ms); saves that
/// queue up are written together.
const MAX_SAVES_IN_FLIGHT: usize = 32;

/// How many bytes the checkpoints in flight may hold together, their payloads counted
/// in full (one checkpoint on its own may hold more).
const MAX_BYTES_IN_FLIGHT: usize = 256 << 20;

/// Saves one run's checkpoints in order, reports each once it is durable, and holds the
/// events that come after a checkpoint until then.
pub(crate) struct Saver {
    store: Arc<dyn CheckpointStore>,
    /// In front of the caller's sink: holds a superstep's events back while the
    /// checkpoint it started from is still being written.
    gate: Arc<Gate>,
    /// Writes checkpoints behind the engine, in order.
    writing: Writing,
    /// Checkpoints being written, oldest first.
    in_flight: VecDeque<InFlight>,
    /// The run's latest checkpoint, counting one still in flight.
    last_checkpoint: Option<String>,
}

/// Whose thread writes a run's checkpoints behind the engine.
enum Writing {
    /// The run's own.
    Own(CheckpointWriter),
    /// One shared with the other runs of the store, this run registered with it.
    Shared(shared::Registration),
}

impl Writing {
    /// Hands `checkpoint` (about `bytes` long) over, to be saved after those handed
    /// over before.
    fn save(
        &mut self,
        checkpoint: Checkpoint,
        bytes: usize,
        what: String,
        on_durable: OnDurable,
    ) -> SaveHandle {
        match self {
            Writing::Own(writer) => writer.save(checkpoint, what, on_durable),
            Writing::Shared(registration) => registration.save(checkpoint, bytes, what, on_durable),
        }
    }
}

/// Which saves in flight a run must wait for before it goes on (see [`Saver::poll`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Every one: the next work reaches outside the sandbox, or the run stops.
    All,
    /// The oldest, while the run is too far ahead of the disk.
    TooFarAhead,
}

/// A checkpoint while it is being written.
struct InFlight {
    /// About how many bytes the checkpoint holds.
    bytes: usize,
    save: SaveHandle,
    checkpoint_id: String,
    /// The checkpoint before: the run's last one if this save fails.
    parent_id: Option<String>,
    /// Set once the checkpoint is durable, even if reporting it failed afterwards.
    durable: Arc<AtomicBool>,
}

/// What a barrier's checkpoint reports once it is durable, after `checkpoint_saved`.
pub(crate) struct BarrierReport {
    /// The superstep whose barrier it is.
    pub(crate) superstep: u64,
    /// `executor_completed` of the executors whose results the checkpoint makes durable.
    pub(crate) made_durable: Vec<Event>,
    /// `superstep_completed`.
    pub(crate) completed: Event,
    /// The journal that the checkpoint makes obsolete.
    pub(crate) journal_to_remove: Option<String>,
}

impl Saver {
    /// A saver to `store` for a run whose latest checkpoint is `last_checkpoint`,
    /// passing events on to `sink`.
    pub(crate) fn new(
        store: Arc<dyn CheckpointStore>,
        sink: Arc<dyn EventSink>,
        last_checkpoint: Option<String>,
    ) -> Saver {
        Saver {
            writing: Writing::Own(CheckpointWriter::new(store.clone())),
            store,
            gate: Arc::new(Gate::new(sink)),
            in_flight: VecDeque::new(),
            last_checkpoint,
        }
    }

    /// [`Saver::new`], its checkpoints written by the writer the run is registered
    /// with, which other runs of the same store share.
    pub(crate) fn shared(
        registration: shared::Registration,
        store: Arc<dyn CheckpointStore>,
        sink: Arc<dyn EventSink>,
        last_checkpoint: Option<String>,
    ) -> Saver {
        Saver {
            writing: Writing::Shared(registration),
            ..Saver::new(store, sink, last_checkpoint)
        }
    }

    /// The sink everything of the run emits to: the gate in front of the caller's.
    pub(crate) fn sink(&self) -> Arc<dyn EventSink> {
        self.gate.clone()
    }

    /// The store checkpoints and journals go to.
    pub(crate) fn store(&self) -> &Arc<dyn CheckpointStore> {
        &self.store
    }

    /// The run's latest checkpoint, counting one still being written.
    pub(crate) fn last_checkpoint(&self) -> Option<&str> {
        self.last_checkpoint.as_deref()
    }

    /// The save of the latest checkpoint while it is still being written: a journal
    /// that builds on it waits for it.
    pub(crate) fn pending_save(&self) -> Option<SaveHandle> {
        self.in_flight.back().map(|f| f.save.clone())
    }

    /// Starts saving `checkpoint` (whose parent is the latest): a barrier's checkpoint
    /// (and any save while others are in flight, to go after them) by the writer
    /// thread, whose saves overlap the next supersteps and are made durable together
    /// when they queue up; any other save here. Either way it is reported once durable
    /// (see [`Saver::on_durable`]), and [`Saver::poll`] says when to wait for it.
    pub(crate) fn start(&mut self, checkpoint: Checkpoint, barrier: Option<BarrierReport>) {
        let what = match &barrier {
            Some(barrier) => format!("superstep {}: checkpoint not saved", barrier.superstep),
            None => format!(
                "checkpoint before superstep {}: not saved",
                checkpoint.superstep
            ),
        };
        self.last_checkpoint = Some(checkpoint.checkpoint_id.clone());
        // What happens from now on is reported once this checkpoint is durable.
        self.gate.hold(&checkpoint.checkpoint_id);
        let handed_over = barrier.is_some() || !self.in_flight.is_empty();
        let durable = Arc::new(AtomicBool::new(false));
        let on_durable = self.on_durable(&checkpoint, barrier, durable.clone());
        let bytes = checkpoint.size_hint();
        let in_flight = InFlight {
            bytes,
            checkpoint_id: checkpoint.checkpoint_id.clone(),
            parent_id: checkpoint.parent_id.clone(),
            durable,
            save: if handed_over {
                self.writing.save(checkpoint, bytes, what, on_durable)
            } else {
                SaveHandle::now(self.store.as_ref(), &checkpoint, &what, on_durable)
            },
        };
        self.in_flight.push_back(in_flight);
    }

    /// What reports `checkpoint` as soon as it is durable, on the thread that saved it
    /// (the next supersteps may be running): sets `durable`, removes the journal the
    /// barrier makes obsolete, then lets `checkpoint_saved` through (for a barrier, then
    /// the executors it made durable complete and `superstep_completed`) and the events
    /// held behind it. If the journal cannot be removed, the events held are dropped.
    fn on_durable(
        &self,
        checkpoint: &Checkpoint,
        barrier: Option<BarrierReport>,
        durable: Arc<AtomicBool>,
    ) -> OnDurable {
        let (gate, store) = (self.gate.clone(), self.store.clone());
        let checkpoint_id = checkpoint.checkpoint_id.clone();
        let parent_id = checkpoint.parent_id.clone();
        let (superstep, status) = (checkpoint.superstep, checkpoint.status.as_str());
        let (made_durable, completed, journal_to_remove) = match barrier {
            Some(barrier) => (
                barrier.made_durable,
                Some(barrier.completed),
                barrier.journal_to_remove,
            ),
            None => (Vec::new(), None, None),
        };
        Box::new(move |location| {
            durable.store(true, Ordering::Release);
            let saved = Event::CheckpointSaved {
                checkpoint_id: checkpoint_id.clone(),
                parent_id,
                superstep,
                status: status.to_string(),
                location: location.to_string(),
            };
            let mut events: Vec<Event> = std::iter::once(saved).chain(made_durable).collect();
            if let Some(base) = journal_to_remove
                && let Err(error) = store.remove_journal(&base)
            {
                gate.release_alone(&checkpoint_id, &events);
                return Err(format!("{error:#}"));
            }
            events.extend(completed);
            gate.release(&checkpoint_id, &events);
            Ok(())
        })
    }

    /// Reports the saves that finished, oldest first, without waiting; returns the
    /// first save the run must wait for before it goes on, if any: with
    /// [`Settle::All`] any still being written; with [`Settle::TooFarAhead`], the
    /// oldest while too many are being written, or more than one and too many bytes.
    /// If a save failed, the run's last checkpoint is the one before it, the later
    /// ones and every held event (work that built on the lost barrier) are dropped,
    /// and the error says why.
    pub(crate) fn poll(&mut self, settle: Settle) -> Result<Option<SaveHandle>> {
        loop {
            let Some(oldest) = self.in_flight.front() else {
                return Ok(None);
            };
            if !oldest.save.is_done() {
                let must_wait = match settle {
                    Settle::All => true,
                    Settle::TooFarAhead => too_far_ahead(self.in_flight.iter().map(|f| f.bytes)),
                };
                return Ok(must_wait.then(|| oldest.save.clone()));
            }
            let in_flight = self.in_flight.pop_front().expect("looked at above");
            if let Err(error) = self.report(in_flight) {
                // The later saves fail (their parent is lost) or are left unreported,
                // soon; either way nothing is written once the run reports its failure.
                for later in self.in_flight.drain(..) {
                    let _ = later.save.wait();
                }
                self.gate.discard();
                return Err(error);
            }
        }
    }

    /// The outcome of `in_flight`, which finished: it is reported by then.
    fn report(&mut self, in_flight: InFlight) -> Result<()> {
        in_flight.save.wait().map(drop).map_err(|reason| {
            // A durable checkpoint stays the last one when what came after it failed.
            self.last_checkpoint = if in_flight.durable.load(Ordering::Acquire) {
                Some(in_flight.checkpoint_id)
            } else {
                in_flight.parent_id
            };
            host(reason)
        })
    }
}

/// Whether the engine must wait for the oldest save before it goes on, given the sizes
/// of the checkpoints in flight: [`MAX_SAVES_IN_FLIGHT`] of them, or more than one
/// holding more than [`MAX_BYTES_IN_FLIGHT`] together.
fn too_far_ahead(sizes: impl ExactSizeIterator<Item = usize>) -> bool {
    let count = sizes.len();
    count >= MAX_SAVES_IN_FLIGHT || (count > 1 && sizes.sum::<usize>() > MAX_BYTES_IN_FLIGHT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_waits_for_the_disk_when_too_many_checkpoints_or_bytes_are_in_flight() {
        const MIB: usize = 1 << 20;
        assert!(!too_far_ahead([1024; MAX_SAVES_IN_FLIGHT - 1].into_iter()));
        assert!(too_far_ahead([1024; MAX_SAVES_IN_FLIGHT].into_iter()));
        // One checkpoint larger than the bound is written on its own, not refused.
        assert!(!too_far_ahead([1024 * MIB].into_iter()));
        assert!(!too_far_ahead([100 * MIB, 100 * MIB].into_iter()));
        assert!(too_far_ahead([200 * MIB, 100 * MIB].into_iter()));
        assert!(too_far_ahead([1024 * MIB, 1024].into_iter()));
    }
}
