//! One checkpoint writer shared by every run of a store: the checkpoints that all the
//! runs in flight hand over while a save is under way are made durable together
//! ([`CheckpointStore::save_groups`]: on a file store, one sync of the filesystem and one
//! of the directory for all of them), each run's in its order and apart from the
//! others, so that one run's failed save fails that run only. It bounds how many runs
//! it serves at once and how many bytes wait to be written: a run that would pass
//! either waits (back-pressure) instead of the queue growing.

use super::writer::{Job, OnDurable, SaveHandle, finish};
use crate::checkpoint::{Checkpoint, CheckpointStore};
use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;

/// How much a [`Runner`](crate::Runner) takes on at once: runs, and bytes waiting to be
/// written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerLimits {
    /// Runs registered at once; one more waits until a run ends.
    pub max_runs: usize,
    /// Bytes of checkpoints handed over and not yet written (about: payloads counted
    /// in full); a save that would pass it waits, unless nothing waits at all.
    pub max_bytes_waiting: usize,
}

impl Default for RunnerLimits {
    fn default() -> RunnerLimits {
        RunnerLimits {
            max_runs: 256,
            max_bytes_waiting: 256 << 20,
        }
    }
}

/// A writer thread for the checkpoints of many runs, each known by a key.
pub(crate) struct SharedWriter {
    jobs: Option<mpsc::Sender<Handed>>,
    thread: Option<JoinHandle<()>>,
    limits: RunnerLimits,
    /// Runs registered, and bytes waiting; `room` announces changes of either.
    load: Arc<(Mutex<Load>, Condvar)>,
}

#[derive(Default)]
struct Load {
    runs: usize,
    next_run: u64,
    bytes_waiting: usize,
}

/// A job handed over by run `run`, with about how many bytes its checkpoint holds.
type Handed = (u64, usize, Job);

/// A run's place with a shared writer; dropped, the place is free for another run.
pub(crate) struct Registration {
    writer: Arc<SharedWriter>,
    run: u64,
}

impl SharedWriter {
    /// A writer to `store` under `limits`, its thread started.
    pub(crate) fn start(
        store: Arc<dyn CheckpointStore>,
        limits: RunnerLimits,
    ) -> std::io::Result<SharedWriter> {
        let (jobs, queue) = mpsc::channel();
        let load: Arc<(Mutex<Load>, Condvar)> = Arc::default();
        let written = load.clone();
        let thread = std::thread::Builder::new()
            .name("superstep-checkpoints".into())
            .spawn(move || write_groups(store.as_ref(), queue, &written))?;
        Ok(SharedWriter {
            jobs: Some(jobs),
            thread: Some(thread),
            limits,
            load,
        })
    }

    /// A place for a new run, once fewer than [`RunnerLimits::max_runs`] have one.
    pub(crate) fn register(self: &Arc<Self>) -> Registration {
        let (load, room) = &*self.load;
        let mut load = room
            .wait_while(load.lock().expect("writer load lock"), |load| {
                load.runs >= self.limits.max_runs
            })
            .expect("writer load lock");
        load.runs += 1;
        load.next_run += 1;
        Registration {
            writer: self.clone(),
            run: load.next_run,
        }
    }

    /// Hands run `run`'s `checkpoint` (about `bytes` long) over to be saved after those
    /// it handed over before, and `on_durable` to run once it is; `what` names it in the
    /// error. Waits first while too many bytes wait to be written.
    fn save(
        &self,
        run: u64,
        checkpoint: Checkpoint,
        bytes: usize,
        what: String,
        on_durable: OnDurable,
    ) -> SaveHandle {
        let (load, room) = &*self.load;
        let mut load = room
            .wait_while(load.lock().expect("writer load lock"), |load| {
                load.bytes_waiting > 0 && load.bytes_waiting + bytes > self.limits.max_bytes_waiting
            })
            .expect("writer load lock");
        load.bytes_waiting += bytes;
        drop(load);
        let (job, done) = Job::new(checkpoint, what, on_durable);
        let jobs = self.jobs.as_ref().expect("open until dropped");
        if let Err(unsent) = jobs.send((run, bytes, job)) {
            let job = unsent.0.2;
            job.done
                .finish(Err(format!("{}: the checkpoint writer stopped", job.what)));
        }
        done
    }
}

impl Registration {
    /// Hands this run's `checkpoint` (about `bytes` long) over (see [`SharedWriter`]).
    pub(crate) fn save(
        &self,
        checkpoint: Checkpoint,
        bytes: usize,
        what: String,
        on_durable: OnDurable,
    ) -> SaveHandle {
        self.writer
            .save(self.run, checkpoint, bytes, what, on_durable)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let (load, room) = &*self.writer.load;
        load.lock().expect("writer load lock").runs -= 1;
        room.notify_all();
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
/// written. Each job's bytes stop counting as waiting once it is reported.
fn write_groups(
    store: &dyn CheckpointStore,
    queue: mpsc::Receiver<Handed>,
    load: &(Mutex<Load>, Condvar),
) {
    let mut failed: HashSet<u64> = HashSet::new();
    while let Ok(first) = queue.recv() {
        let mut groups: Vec<(u64, Vec<Job>)> = Vec::new();
        let mut bytes = 0;
        for (run, size, job) in std::iter::once(first).chain(queue.try_iter()) {
            bytes += size;
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
        let (load, room) = load;
        load.lock().expect("writer load lock").bytes_waiting -= bytes;
        room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::MemoryStore;
    use crate::checkpoint::tests::sample;

    #[test]
    fn a_run_waits_for_a_place_and_gets_one_when_another_ends() {
        let limits = RunnerLimits {
            max_runs: 2,
            ..RunnerLimits::default()
        };
        let writer = Arc::new(SharedWriter::start(Arc::new(MemoryStore::new()), limits).unwrap());
        let (first, second) = (writer.register(), writer.register());
        assert_ne!(first.run, second.run);
        let (registered, waited) = mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| registered.send(writer.register().run).unwrap());
            // The third waits for a place: it gets one only once the first is gone.
            assert!(
                waited
                    .recv_timeout(std::time::Duration::from_millis(50))
                    .is_err()
            );
            drop(first);
            assert!(waited.recv().is_ok());
        });
        drop(second);
        let checkpoint = sample();
        let bytes = checkpoint.size_hint();
        let on_durable = Box::new(|_: &str| Ok(()));
        let saved = writer
            .register()
            .save(checkpoint, bytes, "c".into(), on_durable);
        assert_eq!(saved.wait().unwrap(), "memory:0190-abc");
    }
}
