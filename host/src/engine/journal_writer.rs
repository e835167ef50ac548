//! The journal writer of a superstep: while executors run, it appends each finished
//! one's results to the journal of the checkpoint the superstep started from, in
//! batches (one durable write each), and reports each executor complete once its
//! results are durable.

use super::saving::SaveHandle;
use crate::checkpoint::CheckpointStore;
use crate::checkpoint::journal::JournalRecord;
use crate::error::Result;
use crate::events::{Event, EventSink};
use crate::graph::Graph;
use anyhow::Context as _;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A finished executor's results on their way into the journal.
pub(super) struct Finished {
    pub(super) index: usize,
    pub(super) record: JournalRecord,
    pub(super) duration_us: u64,
    /// Whether the executor may have made paid calls: then its results are written even
    /// in the superstep's last batch.
    pub(super) makes_http_calls: bool,
}

/// Where executors hand their results to the superstep's journal writer. The writer
/// gathers them until its deadline without being woken by each one (a wakeup per
/// executor would take a core from the others); only an executor that makes HTTP calls
/// wakes it,
/// and the engine does once every executor finished.
#[derive(Clone, Copy)]
pub(super) struct JournalFeed<'a> {
    pub(super) finished: &'a mpsc::Sender<Finished>,
    pub(super) writer: &'a std::thread::Thread,
}

impl JournalFeed<'_> {
    pub(super) fn send(&self, finished: Finished) {
        let wake = finished.makes_http_calls;
        // A closed channel means the writer failed; it reports why.
        let _ = self.finished.send(finished);
        if wake {
            self.writer.unpark();
        }
    }
}

/// How long the journal writer gathers finished executors before one durable append:
/// many quick executors cost one fsync, and a completion event waits at most this long.
const JOURNAL_WINDOW: Duration = Duration::from_millis(2);

/// Nothing is journaled before the superstep has run this long, unless an executor that
/// makes HTTP requests finished: redoing a few milliseconds of work after a crash costs
/// less than the fsyncs of a journal, and a quick superstep needs none.
const JOURNAL_DELAY: Duration = Duration::from_millis(10);

/// The journal writer of one superstep: where finished executors' results go before
/// the barrier.
pub(super) struct JournalWriter<'a> {
    pub(super) store: &'a dyn CheckpointStore,
    /// The checkpoint the superstep starts from.
    pub(super) base: &'a str,
    /// The save of `base` while it is still being written: nothing is appended before
    /// it is durable.
    pub(super) base_save: Option<SaveHandle>,
    pub(super) superstep: u64,
    pub(super) graph: &'a Graph,
    pub(super) sink: &'a dyn EventSink,
}

impl JournalWriter<'_> {
    /// Appends finished executors' results in batches (one durable write each, none
    /// before [`JOURNAL_DELAY`] unless an HTTP executor finished) and reports each
    /// executor complete once its results are durable. Returns when every
    /// executor of the superstep has finished, with the last batch unwritten when the
    /// superstep ended within its window and no executor in it makes HTTP requests: the
    /// barrier's checkpoint, written next, makes those results durable, and the caller
    /// reports them (index and duration) then.
    pub(super) fn write(mut self, finished: mpsc::Receiver<Finished>) -> Result<Vec<(usize, u64)>> {
        let started = Instant::now();
        while let Ok(first) = finished.recv() {
            let mut batch = vec![first];
            let window = Instant::now() + JOURNAL_WINDOW;
            // Until the deadline, what finished is taken whenever this thread wakes (see
            // `JournalFeed` for who wakes it).
            let last = loop {
                match finished.try_recv() {
                    Ok(next) => {
                        batch.push(next);
                        continue;
                    }
                    Err(mpsc::TryRecvError::Disconnected) => break true,
                    Err(mpsc::TryRecvError::Empty) => {}
                }
                let deadline = if batch.iter().any(|f| f.makes_http_calls) {
                    window
                } else {
                    window.max(started + JOURNAL_DELAY)
                };
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    break false;
                };
                std::thread::park_timeout(left);
            };
            if last && !batch.iter().any(|f| f.makes_http_calls) {
                return Ok(batch.iter().map(|f| (f.index, f.duration_us)).collect());
            }
            if let Some(save) = self.base_save.take()
                && save.wait().is_err()
            {
                // The run fails with the reason the base was not saved (see
                // `Saver::poll`); a journal without its base would be of no use.
                return Ok(Vec::new());
            }
            let (done, records): (Vec<(usize, u64)>, Vec<JournalRecord>) = batch
                .into_iter()
                .map(|f| ((f.index, f.duration_us), f.record))
                .unzip();
            self.store
                .append_journal(self.base, &records)
                .context("the superstep's results could not be journaled")?;
            report_completed(self.sink, self.superstep, self.graph, &done);
        }
        Ok(Vec::new())
    }
}

/// Emits `executor_completed` for each (executor index, duration in µs).
pub(super) fn report_completed(
    sink: &dyn EventSink,
    superstep: u64,
    graph: &Graph,
    done: &[(usize, u64)],
) {
    for event in completed_events(superstep, graph, done) {
        sink.emit(&event);
    }
}

/// `executor_completed` for each (executor index, duration in µs).
pub(super) fn completed_events<'a>(
    superstep: u64,
    graph: &'a Graph,
    done: &'a [(usize, u64)],
) -> impl Iterator<Item = Event> + 'a {
    done.iter()
        .map(move |&(index, duration_us)| Event::ExecutorCompleted {
            superstep,
            executor: graph.id(index).to_string(),
            duration_us,
        })
}
