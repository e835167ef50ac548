//! One checkpoint writer shared by every run of a store: the checkpoints that all the
//! runs in flight hand over while a save is under way are made durable together
//! ([`CheckpointStore::save_groups`]: on a file store, one sync of the filesystem and one
//! of the directory for all of them), each run's in its order and apart from the
//! others, so that one run's failed save fails that run only. It bounds how many runs
//! it serves at once and how many bytes wait to be written: a run that would pass
//! either waits (back-pressure) instead of the queue growing.

use super::writer::{Job, OnDurable, SaveHandle, finish};
use crate::checkpoint::{Checkpoint, CheckpointStore};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use tokio::sync::Notify;

/// How much a [`Runner`](crate::Runner) takes on at once: runs, threads, and bytes
/// waiting to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerLimits {
    /// Runs alive at once; one more waits until a run is dropped (a spawned run waits
    /// as a task, holding no thread and no instance).
    pub max_runs: usize,
    /// Spawned runs that execute at once (a superstep, or starting): each holds a
    /// thread while it does, including while its executors wait on HTTP calls; a run
    /// waiting for a save holds none.
    pub threads: usize,
    /// Bytes of checkpoints handed over and not yet written (about: payloads counted
    /// in full); a save that would pass it waits, unless nothing waits at all.
    pub max_bytes_waiting: usize,
}

impl Default for RunnerLimits {
    fn default() -> RunnerLimits {
        RunnerLimits {
            max_runs: 256,
            threads: 4 * std::thread::available_parallelism().map_or(1, usize::from),
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
    /// Announces to tasks that a run's place is free.
    place_freed: Notify,
}

#[derive(Default)]
struct Load {
    runs: usize,
    next_run: u64,
    bytes_waiting: usize,
}

/// A job handed over by run `run`, with about how many bytes its checkpoint holds.
type Handed = (u64, usize, Job);

/// A run known to a shared writer: its saves are grouped apart from other runs'.
pub(crate) struct Registration {
    writer: Arc<SharedWriter>,
    run: u64,
    /// The run's place, held as long as the run lives (for runs the caller drives).
    _place: Option<Place>,
}

/// One of the [`RunnerLimits::max_runs`] places; dropped, it is free for another run.
pub(crate) struct Place {
    writer: Arc<SharedWriter>,
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
            place_freed: Notify::new(),
        })
    }

    /// A new run, which holds a place as long as it lives (taken once fewer than
    /// [`RunnerLimits::max_runs`] have one).
    pub(crate) fn register(self: &Arc<Self>) -> Registration {
        let (load, room) = &*self.load;
        let load = room
            .wait_while(load.lock().expect("writer load lock"), |load| {
                load.runs >= self.limits.max_runs
            })
            .expect("writer load lock");
        let place = self.take_place(load);
        Registration {
            _place: Some(place),
            ..self.register_unplaced()
        }
    }

    /// A new run whose places are taken apart ([`SharedWriter::place`]): a spawned run
    /// holds one while it is driven, not while it waits to be collected.
    pub(crate) fn register_unplaced(self: &Arc<Self>) -> Registration {
        let mut load = self.load.0.lock().expect("writer load lock");
        load.next_run += 1;
        Registration {
            writer: self.clone(),
            run: load.next_run,
            _place: None,
        }
    }

    /// A place, once fewer than [`RunnerLimits::max_runs`] are taken: waits as a task,
    /// holding no thread.
    pub(crate) async fn place(self: &Arc<Self>) -> Place {
        loop {
            // Created before the check, so that a place freed between the check and
            // the await still wakes this task.
            let freed = self.place_freed.notified();
            if let Some(place) = self.try_place() {
                return place;
            }
            freed.await;
        }
    }

    /// A place if one is free now.
    fn try_place(self: &Arc<Self>) -> Option<Place> {
        let load = self.load.0.lock().expect("writer load lock");
        (load.runs < self.limits.max_runs).then(|| self.take_place(load))
    }

    /// Takes a place, with the load locked.
    fn take_place(self: &Arc<Self>, mut load: MutexGuard<'_, Load>) -> Place {
        load.runs += 1;
        Place {
            writer: self.clone(),
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

impl Drop for Place {
    fn drop(&mut self) {
        let (load, room) = &*self.writer.load;
        load.lock().expect("writer load lock").runs -= 1;
        room.notify_all();
        self.writer.place_freed.notify_waiters();
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

/// How many bytes of one run's checkpoints a group of saves takes (at least one
/// checkpoint): a run with big states has its saves spread over several groups, so that
/// the other runs' saves wait for about this much of its bytes, not for all of them.
const BYTES_PER_RUN_PER_GROUP: usize = 8 << 20;

/// What the runs handed over and is not written yet: per run, in the order the runs
/// first handed something over, its jobs in order with their sizes.
type Queued<J> = Vec<(u64, VecDeque<(usize, J)>)>;

/// Saves what the runs hand over, the jobs that queued up meanwhile together: one group
/// per run, in the order its jobs came, each run's share of a group bounded (see
/// [`BYTES_PER_RUN_PER_GROUP`]). A run whose save failed gets nothing more written.
/// Each job's bytes stop counting as waiting once it is reported.
fn write_groups(
    store: &dyn CheckpointStore,
    queue: mpsc::Receiver<Handed>,
    load: &(Mutex<Load>, Condvar),
) {
    let mut failed: HashSet<u64> = HashSet::new();
    let mut queued: Queued<Job> = Vec::new();
    loop {
        // Waits for work only when none is left over from the last group.
        if queued.is_empty() {
            let Ok(first) = queue.recv() else { return };
            enqueue(&mut queued, first);
        }
        queue
            .try_iter()
            .for_each(|handed| enqueue(&mut queued, handed));
        let groups = take_group(&mut queued, BYTES_PER_RUN_PER_GROUP);
        let bytes: usize = groups
            .iter()
            .flat_map(|(_, jobs)| jobs)
            .map(|(b, _)| b)
            .sum();
        let checkpoints: Vec<Vec<&Checkpoint>> = groups
            .iter()
            .map(|(run, jobs)| match failed.contains(run) {
                true => Vec::new(),
                false => jobs.iter().map(|(_, job)| &job.checkpoint).collect(),
            })
            .collect();
        let saved = store.save_groups(&checkpoints);
        drop(checkpoints);
        for ((run, jobs), saved) in groups.into_iter().zip(saved) {
            let mut run_failed = failed.contains(&run);
            finish(
                jobs.into_iter().map(|(_, job)| job).collect(),
                saved,
                &mut run_failed,
            );
            if run_failed {
                failed.insert(run);
            }
        }
        let (load, room) = load;
        load.lock().expect("writer load lock").bytes_waiting -= bytes;
        room.notify_all();
    }
}

/// Queues a job handed over, behind the earlier ones of its run.
fn enqueue<J>(queued: &mut Queued<J>, (run, bytes, job): (u64, usize, J)) {
    match queued.iter_mut().find(|(r, _)| *r == run) {
        Some((_, jobs)) => jobs.push_back((bytes, job)),
        None => queued.push((run, VecDeque::from([(bytes, job)]))),
    }
}

/// Takes the next group off `queued`: from each run, its oldest jobs up to `quantum`
/// bytes (at least one). Every run with jobs has its share in every group, however
/// much another run has queued.
fn take_group<J>(queued: &mut Queued<J>, quantum: usize) -> Vec<(u64, Vec<(usize, J)>)> {
    let mut group = Vec::with_capacity(queued.len());
    let mut left = Vec::new();
    for (run, mut jobs) in queued.drain(..) {
        let mut taken = Vec::new();
        let mut bytes = 0;
        while let Some((size, _)) = jobs.front() {
            if !taken.is_empty() && bytes + size > quantum {
                break;
            }
            bytes += size;
            taken.push(jobs.pop_front().expect("looked at above"));
        }
        group.push((run, taken));
        if !jobs.is_empty() {
            left.push((run, jobs));
        }
    }
    *queued = left;
    group
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::MemoryStore;
    use crate::checkpoint::tests::sample;

    #[test]
    fn a_group_takes_a_bounded_share_of_each_run_and_every_run_in_turn() {
        const MIB: usize = 1 << 20;
        let mut queued: Queued<&str> = Vec::new();
        // Run 1 hands over three big checkpoints, then runs 2 and 3 small ones.
        for (run, bytes, job) in [
            (1, 100 * MIB, "a1"),
            (1, 100 * MIB, "a2"),
            (2, 1024, "b1"),
            (1, 100 * MIB, "a3"),
            (2, 1024, "b2"),
            (3, 1024, "c1"),
        ] {
            enqueue(&mut queued, (run, bytes, job));
        }
        let names = |group: Vec<(u64, Vec<(usize, &'static str)>)>| -> Vec<(u64, Vec<&str>)> {
            let jobs =
                |jobs: Vec<(usize, &'static str)>| jobs.into_iter().map(|(_, j)| j).collect();
            group.into_iter().map(|(run, j)| (run, jobs(j))).collect()
        };
        // The small runs' saves wait for one of the big run's checkpoints, not three.
        let first = names(take_group(&mut queued, 8 * MIB));
        assert_eq!(
            first,
            [(1, vec!["a1"]), (2, vec!["b1", "b2"]), (3, vec!["c1"])]
        );
        enqueue(&mut queued, (2, 1024, "b3"));
        let second = names(take_group(&mut queued, 8 * MIB));
        assert_eq!(second, [(1, vec!["a2"]), (2, vec!["b3"])]);
        let third = names(take_group(&mut queued, 8 * MIB));
        assert_eq!(third, [(1, vec!["a3"])]);
        assert!(queued.is_empty());
    }

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
