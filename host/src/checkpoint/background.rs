//! Checkpoint saves that may run behind the engine: a writer thread saves checkpoints
//! in the order they were taken while the next supersteps run, so that the disk's
//! syncs overlap the executors' work.

use super::{Checkpoint, CheckpointStore};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Where the store put a checkpoint, or why it could not.
type Saved = Result<String, String>;

/// A checkpoint save, possibly still in progress; clones wait for the same save.
#[derive(Clone)]
pub(crate) struct SaveHandle {
    /// `None` until the save finished; the condvar announces it.
    outcome: Arc<(Mutex<Option<Saved>>, Condvar)>,
}

impl SaveHandle {
    fn new() -> SaveHandle {
        SaveHandle {
            outcome: Arc::default(),
        }
    }

    /// Saves `checkpoint` to `store` before returning; `what` names it in the error.
    pub(crate) fn now(
        store: &dyn CheckpointStore,
        checkpoint: &Checkpoint,
        what: &str,
    ) -> SaveHandle {
        let save = SaveHandle::new();
        save.finish(save_one(store, checkpoint, what));
        save
    }

    fn finish(&self, saved: Saved) {
        let (outcome, done) = &*self.outcome;
        *outcome.lock().expect("checkpoint save lock") = Some(saved);
        done.notify_all();
    }

    /// Whether the save has finished (durable or failed).
    pub(crate) fn is_done(&self) -> bool {
        self.outcome
            .0
            .lock()
            .expect("checkpoint save lock")
            .is_some()
    }

    /// Waits until the checkpoint is durable; returns where the store put it, or why it
    /// could not.
    pub(crate) fn wait(&self) -> Saved {
        let (outcome, done) = &*self.outcome;
        let finished = done
            .wait_while(outcome.lock().expect("checkpoint save lock"), |outcome| {
                outcome.is_none()
            })
            .expect("checkpoint save lock");
        finished.clone().expect("finished")
    }
}

fn save_one(store: &dyn CheckpointStore, checkpoint: &Checkpoint, what: &str) -> Saved {
    store
        .save(checkpoint)
        .map_err(|error| format!("{what}: {error:#}"))
}

/// One checkpoint for the writer thread.
struct Job {
    checkpoint: Checkpoint,
    what: String,
    done: SaveHandle,
}

/// A thread that saves checkpoints to one store, one after the other in the order they
/// were handed over. Once a save fails, the later ones are not written (each builds on
/// the one before). Started on the first checkpoint handed over; dropping it waits for
/// the saves handed over.
pub(crate) struct Writer {
    store: Arc<dyn CheckpointStore>,
    thread: Option<(mpsc::Sender<Job>, JoinHandle<()>)>,
}

impl Writer {
    /// A writer to `store`, its thread not started yet.
    pub(crate) fn new(store: Arc<dyn CheckpointStore>) -> Writer {
        Writer {
            store,
            thread: None,
        }
    }

    /// Hands `checkpoint` over to be saved after those handed over before; `what`
    /// names it in the error.
    pub(crate) fn save(&mut self, checkpoint: Checkpoint, what: String) -> SaveHandle {
        let done = SaveHandle::new();
        let job = Job {
            checkpoint,
            what,
            done: done.clone(),
        };
        let sent = match self.thread() {
            Ok(jobs) => jobs.send(job).map_err(|unsent| unsent.0),
            Err(error) => {
                done.finish(Err(format!("cannot start the checkpoint writer: {error}")));
                return done;
            }
        };
        if let Err(job) = sent {
            job.done
                .finish(Err(format!("{}: the checkpoint writer stopped", job.what)));
        }
        done
    }

    fn thread(&mut self) -> std::io::Result<&mpsc::Sender<Job>> {
        if self.thread.is_none() {
            let (jobs, queue) = mpsc::channel::<Job>();
            let store = self.store.clone();
            let thread = std::thread::Builder::new()
                .name("superstep-checkpoint".into())
                .spawn(move || write_in_order(store.as_ref(), queue))?;
            self.thread = Some((jobs, thread));
        }
        Ok(&self.thread.as_ref().expect("started above").0)
    }
}

fn write_in_order(store: &dyn CheckpointStore, queue: mpsc::Receiver<Job>) {
    let mut failed = false;
    for job in queue {
        let saved = if failed {
            Err(format!(
                "{}: not written, as a checkpoint before it could not be saved",
                job.what
            ))
        } else {
            save_one(store, &job.checkpoint, &job.what)
        };
        failed |= saved.is_err();
        job.done.finish(saved);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some((jobs, thread)) = self.thread.take() {
            drop(jobs);
            let _ = thread.join();
        }
    }
}
