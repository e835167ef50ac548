//! Each claimed run's events, stored in order in the database: a sink per run numbers
//! them from where the run's stored events end, and one thread writes what queued up,
//! per run at the epoch it was claimed at (an owner that lost the run writes none).
//! How runs ended goes through the same thread, after their events: a client that sees
//! a run's end finds all its events stored.

use super::Notes;
use crate::error::Result;
use crate::events::{Event, EventSink};
use crate::queue::{RunEnd, RunQueue};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, mpsc};

/// An event of a run, numbered.
struct Numbered {
    run_id: Arc<str>,
    epoch: i64,
    seq: i64,
    json: String,
}

/// What the writer thread stores.
enum Entry {
    /// An event.
    Event(Numbered),
    /// How runs ended, once the events before are stored; what
    /// [`RunQueue::finish`] says goes back.
    Ends(Vec<RunEnd>, mpsc::Sender<Result<Vec<bool>>>),
}

/// The thread that stores events, and the sinks that feed it.
pub(super) struct EventLog {
    sender: mpsc::Sender<Entry>,
}

impl EventLog {
    /// Starts the writer thread, which ends once every sink is dropped; what cannot be
    /// stored is said to `notes`.
    pub(super) fn start(queue: Arc<RunQueue>, notes: Notes) -> std::io::Result<EventLog> {
        let (sender, received) = mpsc::channel();
        std::thread::Builder::new()
            .name("superstep-events".into())
            .spawn(move || write(&queue, &received, notes.as_ref()))?;
        Ok(EventLog { sender })
    }

    /// Records how runs ended ([`RunQueue::finish`]) once every event sent before is
    /// stored.
    pub(super) fn finish(&self, ends: Vec<RunEnd>) -> Result<Vec<bool>> {
        let (reply, replied) = mpsc::channel();
        let gone = || crate::error::host("the event writer stopped");
        self.sender
            .send(Entry::Ends(ends, reply))
            .map_err(|_| gone())?;
        replied.recv().map_err(|_| gone())?
    }

    /// The sink of run `run_id` claimed at `epoch`, whose next event is number `next`;
    /// each event also goes to `also`.
    pub(super) fn sink(
        &self,
        run_id: &str,
        epoch: i64,
        next: i64,
        also: Arc<dyn EventSink>,
    ) -> Arc<dyn EventSink> {
        Arc::new(RunEvents {
            run_id: run_id.into(),
            epoch,
            next: AtomicI64::new(next),
            sender: std::sync::Mutex::new(self.sender.clone()),
            also,
        })
    }
}

struct RunEvents {
    run_id: Arc<str>,
    epoch: i64,
    next: AtomicI64,
    sender: std::sync::Mutex<mpsc::Sender<Entry>>,
    also: Arc<dyn EventSink>,
}

impl EventSink for RunEvents {
    fn emit(&self, event: &Event) {
        self.also.emit(event);
        let json = serde_json::to_string(event).expect("events serialise");
        let sender = self.sender.lock().expect("event sink lock");
        // Numbered under the lock, so that numbers and sending order agree.
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let _ = sender.send(Entry::Event(Numbered {
            run_id: self.run_id.clone(),
            epoch: self.epoch,
            seq,
            json,
        }));
    }
}

/// Stores what queued up, one statement per run, and the ends of runs after the
/// events sent before them, until every sender is gone. A batch of events that cannot
/// be stored (the database is away) is reported and dropped: the run goes on, and its
/// state lives in its checkpoints.
fn write(queue: &RunQueue, received: &mpsc::Receiver<Entry>, notes: &(dyn Fn(&str) + Send + Sync)) {
    while let Ok(first) = received.recv() {
        let mut batches: Batches = BTreeMap::new();
        for entry in std::iter::once(first).chain(received.try_iter()) {
            match entry {
                Entry::Event(event) => {
                    let key = (event.run_id, event.epoch);
                    let batch = batches.entry(key).or_insert((event.seq, Vec::new()));
                    batch.1.push(event.json);
                }
                Entry::Ends(ends, reply) => {
                    store(queue, std::mem::take(&mut batches), notes);
                    let _ = reply.send(queue.finish(ends));
                }
            }
        }
        store(queue, batches, notes);
    }
}

/// Events by run and epoch: the first's number, and the events in order.
type Batches = BTreeMap<(Arc<str>, i64), (i64, Vec<String>)>;

fn store(queue: &RunQueue, batches: Batches, notes: &(dyn Fn(&str) + Send + Sync)) {
    for ((run_id, epoch), (first, events)) in batches {
        if let Err(error) = queue.append_events(&run_id, epoch, first, events) {
            notes(&format!("events of run {run_id} not stored: {error:#}"));
        }
    }
}
