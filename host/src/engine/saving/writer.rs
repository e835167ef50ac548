//! Checkpoint saves that may run behind the engine: a writer thread saves checkpoints
//! in the order they were taken while the next supersteps run, so that the disk's
//! syncs overlap the executors' work. What the engine does once a checkpoint is
//! durable (reporting it) runs on the thread that saved it, as soon as it is.

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::error::Result;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use tokio::sync::Notify;

/// Where the store put a checkpoint, or why it could not.
type Saved = Result<String, String>;

/// Runs once a checkpoint is durable, with where the store put it, on the thread that
/// saved it and before anyone waiting for the save is told. Its error (a whole
/// sentence) becomes the save's outcome, and nothing saved after it is reported.
pub(crate) type OnDurable = Box<dyn FnOnce(&str) -> Result<(), String> + Send>;

impl Job {
    /// A job, and the handle that waits for its save.
    pub(super) fn new(
        checkpoint: Checkpoint,
        what: String,
        on_durable: OnDurable,
    ) -> (Job, SaveHandle) {
        let done = SaveHandle::new();
        let job = Job {
            checkpoint,
            what,
            on_durable,
            done: done.clone(),
        };
        (job, done)
    }
}

/// A checkpoint save, possibly still in progress; clones wait for the same save, on a
/// thread ([`SaveHandle::wait`]) or as a task ([`SaveHandle::finished`]).
#[derive(Clone)]
pub(crate) struct SaveHandle {
    /// `None` until the save finished; the condvar announces it to threads.
    outcome: Arc<(Mutex<Option<Saved>>, Condvar)>,
    /// Announces the end of the save to tasks.
    finished: Arc<Notify>,
}

impl SaveHandle {
    pub(super) fn new() -> SaveHandle {
        SaveHandle {
            outcome: Arc::default(),
            finished: Arc::default(),
        }
    }

    /// Saves `checkpoint` to `store` and runs `on_durable` before returning; `what`
    /// names it in the error.
    pub(crate) fn now(
        store: &dyn CheckpointStore,
        checkpoint: &Checkpoint,
        what: &str,
        on_durable: OnDurable,
    ) -> SaveHandle {
        let save = SaveHandle::new();
        let saved = store
            .save(checkpoint)
            .map_err(|error| format!("{what}: {error:#}"))
            .and_then(|location| on_durable(&location).map(|()| location));
        save.finish(saved);
        save
    }

    pub(super) fn finish(&self, saved: Saved) {
        let (outcome, done) = &*self.outcome;
        *outcome.lock().expect("checkpoint save lock") = Some(saved);
        done.notify_all();
        self.finished.notify_waiters();
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

    /// Resolves once the save has finished (durable or failed), holding no thread
    /// meanwhile.
    pub(crate) async fn finished(&self) {
        loop {
            // Created before the check, so that a save finishing between the check and
            // the await still wakes this task.
            let announced = self.finished.notified();
            if self.is_done() {
                return;
            }
            announced.await;
        }
    }
}

/// One checkpoint for a writer thread.
pub(super) struct Job {
    pub(super) checkpoint: Checkpoint,
    /// Names the checkpoint in errors.
    pub(super) what: String,
    pub(super) on_durable: OnDurable,
    pub(super) done: SaveHandle,
}

/// A thread that saves checkpoints to one store in the order they were handed over
/// (those that queued up meanwhile together, see [`write_in_order`]). Once a save fails,
/// the later ones are not written (each builds on the one before), nor reported. Started
/// on the first checkpoint handed over; dropping it waits for the saves handed over.
pub(crate) struct CheckpointWriter {
    store: Arc<dyn CheckpointStore>,
    thread: Option<(mpsc::Sender<Job>, JoinHandle<()>)>,
}

impl CheckpointWriter {
    /// A writer to `store`, its thread not started yet.
    pub(crate) fn new(store: Arc<dyn CheckpointStore>) -> CheckpointWriter {
        CheckpointWriter {
            store,
            thread: None,
        }
    }

    /// Hands `checkpoint` over to be saved after those handed over before, and
    /// `on_durable` to run once it is; `what` names it in the error.
    pub(crate) fn save(
        &mut self,
        checkpoint: Checkpoint,
        what: String,
        on_durable: OnDurable,
    ) -> SaveHandle {
        let (job, done) = Job::new(checkpoint, what, on_durable);
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

/// Saves the jobs in the order they came. The jobs queued up while a save was being
/// written are saved together ([`CheckpointStore::save_all`]: one directory sync for
/// all of them on a file store), so that a disk slower than the supersteps does not
/// fall further behind.
fn write_in_order(store: &dyn CheckpointStore, queue: mpsc::Receiver<Job>) {
    let mut failed = false;
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        jobs.extend(queue.try_iter());
        let saved = if failed {
            Vec::new()
        } else {
            let checkpoints: Vec<&Checkpoint> = jobs.iter().map(|job| &job.checkpoint).collect();
            store.save_all(&checkpoints)
        };
        finish(jobs, saved, &mut failed);
    }
}

/// Reports each of one run's `jobs` with its outcome in `saved` (one per checkpoint
/// tried, in order): a durable one runs its `on_durable`; once one failed (`failed`,
/// which this sets), the later ones fail too, saved or not.
pub(super) fn finish(jobs: Vec<Job>, saved: Vec<Result<String>>, failed: &mut bool) {
    let mut saved = saved.into_iter();
    for job in jobs {
        let result = match saved.next() {
            Some(Ok(location)) if !*failed => (job.on_durable)(&location).map(|()| location),
            Some(Ok(_)) => Err(format!(
                "{}: saved but not reported, as a checkpoint before it failed",
                job.what
            )),
            Some(Err(error)) => Err(format!("{}: {error:#}", job.what)),
            None => Err(format!(
                "{}: not written, as a checkpoint before it could not be saved",
                job.what
            )),
        };
        *failed |= result.is_err();
        job.done.finish(result);
    }
}

impl Drop for CheckpointWriter {
    fn drop(&mut self) {
        if let Some((jobs, thread)) = self.thread.take() {
            drop(jobs);
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::journal::JournalRecord;
    use crate::checkpoint::save_in_turn;
    use crate::checkpoint::tests::sample;
    use crate::checkpoint::{Listed, MemoryStore};
    use crate::error::{Result, host};

    /// A memory store that records the supersteps of each batch it is asked to save,
    /// holds the first batch until the test lets it go, and fails to save the
    /// checkpoint of superstep `fail`.
    struct GatedStore {
        inner: MemoryStore,
        batches: Mutex<Vec<Vec<u64>>>,
        started: mpsc::SyncSender<()>,
        release: Mutex<mpsc::Receiver<()>>,
        fail: Option<u64>,
    }

    impl CheckpointStore for GatedStore {
        fn save(&self, checkpoint: &Checkpoint) -> Result<String> {
            if Some(checkpoint.superstep) == self.fail {
                return Err(host("No space left on device (injected)"));
            }
            self.inner.save(checkpoint)
        }
        fn save_all(&self, checkpoints: &[&Checkpoint]) -> Vec<Result<String>> {
            let first = {
                let mut batches = self.batches.lock().unwrap();
                batches.push(checkpoints.iter().map(|c| c.superstep).collect());
                batches.len() == 1
            };
            if first {
                self.started.send(()).unwrap();
                self.release.lock().unwrap().recv().unwrap();
            }
            save_in_turn(self, checkpoints)
        }
        fn load(&self, id: &str) -> Result<Checkpoint> {
            self.inner.load(id)
        }
        fn list(&self) -> Result<Vec<Listed>> {
            self.inner.list()
        }
        fn delete(&self, id: &str) -> Result<()> {
            self.inner.delete(id)
        }
        fn append_journal(&self, base: &str, records: &[JournalRecord]) -> Result<()> {
            self.inner.append_journal(base, records)
        }
        fn read_journal(&self, base: &str) -> Result<Vec<JournalRecord>> {
            self.inner.read_journal(base)
        }
        fn remove_journal(&self, base: &str) -> Result<()> {
            self.inner.remove_journal(base)
        }
    }

    /// Hands supersteps 1 to 4 to a writer whose first save is held until 2 and 3
    /// are queued; the store fails superstep `fail`, and reporting fails superstep
    /// `fail_report`. Returns the store and each save's outcome.
    fn write_four(fail: Option<u64>, fail_report: Option<u64>) -> (Arc<GatedStore>, Vec<Saved>) {
        let (started, wait_started) = mpsc::sync_channel(1);
        let (let_go, release) = mpsc::channel();
        let store = Arc::new(GatedStore {
            inner: MemoryStore::new(),
            batches: Mutex::default(),
            started,
            release: Mutex::new(release),
            fail,
        });
        let mut writer = CheckpointWriter::new(store.clone());
        let job = |writer: &mut CheckpointWriter, superstep: u64| {
            let mut checkpoint = sample();
            checkpoint.checkpoint_id = format!("0190-{superstep}");
            checkpoint.superstep = superstep;
            let on_durable: OnDurable = Box::new(move |_| match fail_report {
                Some(failing) if failing == superstep => Err("cannot report (injected)".into()),
                _ => Ok(()),
            });
            writer.save(checkpoint, format!("superstep {superstep}"), on_durable)
        };
        let mut saves = vec![job(&mut writer, 1)];
        wait_started.recv().unwrap();
        saves.push(job(&mut writer, 2));
        saves.push(job(&mut writer, 3));
        let_go.send(()).unwrap();
        saves[2].wait().ok();
        saves.push(job(&mut writer, 4));
        let outcomes = saves.iter().map(SaveHandle::wait).collect();
        (store, outcomes)
    }

    #[test]
    fn saves_that_queue_up_behind_one_being_written_are_saved_together() {
        let (store, outcomes) = write_four(None, None);
        assert_eq!(
            *store.batches.lock().unwrap(),
            [vec![1], vec![2, 3], vec![4]]
        );
        for outcome in outcomes {
            outcome.unwrap();
        }
    }

    #[test]
    fn nothing_after_a_failed_save_is_written() {
        let (store, outcomes) = write_four(Some(2), None);
        // Superstep 4's save never reaches the store.
        assert_eq!(*store.batches.lock().unwrap(), [vec![1], vec![2, 3]]);
        assert!(outcomes[0].is_ok());
        let failed = outcomes[1].as_ref().unwrap_err();
        assert!(
            failed.starts_with("superstep 2: ") && failed.contains("(injected)"),
            "{failed}"
        );
        for later in &outcomes[2..] {
            let error = later.as_ref().unwrap_err();
            assert!(
                error.contains("not written, as a checkpoint before it could not be saved"),
                "{error}"
            );
        }
        assert!(store.inner.load("0190-3").is_err());
    }

    #[test]
    fn nothing_saved_after_a_checkpoint_that_cannot_be_reported_is_reported() {
        let (store, outcomes) = write_four(None, Some(2));
        // Superstep 3 was saved in 2's group; superstep 4 never reaches the store.
        assert_eq!(*store.batches.lock().unwrap(), [vec![1], vec![2, 3]]);
        assert!(outcomes[0].is_ok());
        assert_eq!(outcomes[1], Err("cannot report (injected)".to_string()));
        assert_eq!(
            outcomes[2],
            Err("superstep 3: saved but not reported, as a checkpoint before it failed".into())
        );
        assert!(store.inner.load("0190-3").is_ok());
        let error = outcomes[3].as_ref().unwrap_err();
        assert!(
            error.contains("not written, as a checkpoint before it could not be saved"),
            "{error}"
        );
    }
}
