//! One checkpoint writer shared by every run of a store: the checkpoints that all the
//! runs in flight hand over while a save is under way are made durable together
//! ([`CheckpointStore::save_groups`]: on a file store, one sync of the filesystem and one
//! of the directory for all of them), each run's in its order and apart from the
//! others, so that one run's failed save fails that run only.

use super::writer::{Job, OnDurable, SaveHandle, finish};
use crate::checkpoint::{Checkpoint, CheckpointStore};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

/// A writer thread for the checkpoints of many runs, each known by a key.
pub(crate) struct SharedWriter {
    jobs: Option<mpsc::Sender<(u64, Job)>>,
    thread: Option<JoinHandle<()>>,
    next_run: AtomicU64,
}

impl SharedWriter {
    /// A writer to `store`, its thread started.
    pub(crate) fn start(store: Arc<dyn CheckpointStore>) -> std::io::Result<SharedWriter> {
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("superstep-checkpoints".into())
            .spawn(move || write_groups(store.as_ref(), queue))?;
        Ok(SharedWriter {
            jobs: Some(jobs),
            thread: Some(thread),
            next_run: AtomicU64::new(0),
        })
    }

    /// A key for a new run's checkpoints.
    pub(crate) fn register(&self) -> u64 {
        self.next_run.fetch_add(1, Ordering::Relaxed)
    }

    /// Hands run `run`'s `checkpoint` over to be saved after those it handed over
    /// before, and `on_durable` to run once it is; `what` names it in the error.
    pub(crate) fn save(
        &self,
        run: u64,
        checkpoint: Checkpoint,
        what: String,
        on_durable: OnDurable,
    ) -> SaveHandle {
        let done = SaveHandle::new();
        let job = Job {
            checkpoint,
            what,
            on_durable,
            done: done.clone(),
        };
        let jobs = self.jobs.as_ref().expect("open until dropped");
        if let Err(unsent) = jobs.send((run, job)) {
            let job = unsent.0.1;
            job.done
                .finish(Err(format!("{}: the checkpoint writer stopped", job.what)));
        }
        done
    }
}

impl Drop for SharedWriter {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Saves what the runs hand over, the jobs that queued up meanwhile together: one group
/// per run, in the order its jobs came. A run whose save failed gets nothing more
/// written.
fn write_groups(store: &dyn CheckpointStore, queue: mpsc::Receiver<(u64, Job)>) {
    let mut failed: HashSet<u64> = HashSet::new();
    while let Ok(first) = queue.recv() {
        let mut groups: Vec<(u64, Vec<Job>)> = Vec::new();
        for (run, job) in std::iter::once(first).chain(queue.try_iter()) {
            match groups.iter_mut().find(|(r, _)| *r == run) {
                Some((_, jobs)) => jobs.push(job),
                None => groups.push((run, vec![job])),
            }
        }
        let checkpoints: Vec<Vec<&Checkpoint>> = groups
            .iter()
            .map(|(run, jobs)| match failed.contains(run) {
                true => Vec::new(),
                false => jobs.iter().map(|job| &job.checkpoint).collect(),
            })
            .collect();
        let saved = store.save_groups(&checkpoints);
        drop(checkpoints);
        for ((run, jobs), saved) in groups.into_iter().zip(saved) {
            let mut run_failed = failed.contains(&run);
            finish(jobs, saved, &mut run_failed);
            if run_failed {
                failed.insert(run);
            }
        }
    }
}
