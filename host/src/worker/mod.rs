//! A worker: claims runs from the queue of a PostgreSQL database (see [`queue`](crate::queue))
//! and drives them on a [`Runner`] whose checkpoints go to the same database, as many at
//! once as its concurrency allows. It renews its leases every third of their TTL; a run
//! it no longer holds (claimed by another worker after its lease expired) is stopped at
//! once and nothing more of it is written (its writes are fenced by epoch). A run it
//! claims resumes from the run's latest checkpoint and journal, exactly as `superstep
//! resume` does, with the answers stored for it. Idle, it waits for the queue's
//! notifications, and for its renewal tick to find leases that expired.

mod events;

use crate::Outcome;
use crate::checkpoint::{CheckpointStore, PostgresStore, Status};
use crate::engine::{Runner, RunnerLimits, Runtimes, Stopped, Stopper, Workflow};
use crate::error::{Result, host};
use crate::events::EventSink;
use crate::manifest::Manifest;
use crate::queue::{Claim, RunEnd, RunQueue, RunStatus, STOP, materialize};
use events::EventLog;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// How a worker works.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Runs driven at once.
    pub concurrency: usize,
    /// How long a claim lasts without renewal; renewed every third of it.
    pub lease_ttl: Duration,
    /// The worker's name in the runs it owns (unique among workers).
    pub name: String,
    /// Where the components and manifests of claimed runs are written.
    pub cache_dir: PathBuf,
}

/// What wakes the worker.
enum Wake {
    /// A run of this worker stopped.
    Stopped(String, Box<Result<Stopped>>),
    /// The queue changed (or the worker should look again); the notification's
    /// payload, if it had one.
    Changed(Option<String>),
    /// Finish the runs in hand, give them back and return; twice: return now.
    Stop,
}

/// A run the worker drives.
struct Active {
    epoch: i64,
    stopper: Stopper,
    /// Answers delivered when it started.
    delivered: usize,
    /// Whether it was cancelled: stopped, it ends `cancelled`, not given back.
    cancelled: bool,
}

/// A worker of one database.
pub struct Worker {
    queue: Arc<RunQueue>,
    store: Arc<PostgresStore>,
    runner: Runner,
    runtimes: Runtimes,
    config: WorkerConfig,
    /// Loaded workflows, by digest.
    workflows: HashMap<String, Workflow>,
    active: HashMap<String, Active>,
    events: EventLog,
    wake: mpsc::Sender<Wake>,
    woken: mpsc::Receiver<Wake>,
    /// Each event of every run also goes here (the worker's log).
    log: Arc<dyn EventSink>,
    /// What the worker says it does: claims, ends, takeovers, errors.
    notes: Notes,
    stopping: bool,
}

/// Where a worker says what it does, one line at a time.
pub type Notes = Arc<dyn Fn(&str) + Send + Sync>;

/// Asks a worker to stop (see [`Worker::stopper`]).
#[derive(Clone)]
pub struct WorkerStopper(mpsc::Sender<Wake>);

impl WorkerStopper {
    /// The first call: the worker claims nothing more, stops its runs at their next
    /// barrier, gives them back to the queue and returns. The second: it returns now
    /// (its leases then expire, as after a crash).
    pub fn stop(&self) {
        let _ = self.0.send(Wake::Stop);
    }
}

impl Worker {
    /// A worker of the database at `url` (queue and checkpoints), its runs' events
    /// also going to `log`, and what it does said to `notes`.
    pub fn connect(
        url: &str,
        config: WorkerConfig,
        log: Arc<dyn EventSink>,
        notes: Notes,
    ) -> Result<Worker> {
        let queue = Arc::new(RunQueue::connect(url)?);
        let keys = crate::checkpoint::SigningKeys::from_env()?;
        let store = Arc::new(queue.checkpoints().with_signing_keys(keys));
        let limits = RunnerLimits {
            max_runs: config.concurrency.max(1),
            ..RunnerLimits::default()
        };
        let runner = Runner::with_limits(store.clone(), limits)?;
        let events = EventLog::start(queue.clone(), notes.clone()).map_err(host)?;
        let (wake, woken) = mpsc::channel();
        let changed = std::sync::Mutex::new(wake.clone());
        queue.watch(move |payload| {
            let _ = changed
                .lock()
                .expect("wake lock")
                .send(Wake::Changed(payload));
        });
        Ok(Worker {
            queue,
            store,
            runner,
            runtimes: Runtimes::default(),
            config,
            workflows: HashMap::new(),
            active: HashMap::new(),
            events,
            wake,
            woken,
            log,
            notes,
            stopping: false,
        })
    }

    /// Says `note`, naming the worker.
    fn note(&self, note: std::fmt::Arguments) {
        (self.notes)(&format!("worker {}: {note}", self.config.name));
    }

    /// What stops this worker, from any thread.
    pub fn stopper(&self) -> WorkerStopper {
        WorkerStopper(self.wake.clone())
    }

    /// Claims and drives runs until stopped.
    pub fn run(mut self) -> Result<()> {
        let every = self.config.lease_ttl / 3;
        let mut renewal = Instant::now() + every;
        loop {
            if !self.stopping {
                self.claim_runs();
            }
            if self.stopping && self.active.is_empty() {
                return Ok(());
            }
            let wait = renewal.saturating_duration_since(Instant::now());
            let first = match self.woken.recv_timeout(wait) {
                Ok(wake) => Some(wake),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    unreachable!("the worker holds a sender")
                }
            };
            // Everything that woke it meanwhile, the ends of runs recorded together.
            let wakes: Vec<Wake> = first.into_iter().chain(self.woken.try_iter()).collect();
            let mut ends = Vec::new();
            for wake in wakes {
                match wake {
                    Wake::Stopped(run_id, stopped) => ends.extend(self.finished(&run_id, *stopped)),
                    Wake::Changed(Some(payload)) => {
                        if let Some(run_id) = payload.strip_prefix(STOP) {
                            self.cancel(run_id);
                        }
                    }
                    Wake::Changed(None) => {}
                    Wake::Stop if self.stopping => return Ok(()),
                    Wake::Stop => {
                        self.stopping = true;
                        self.active.values().for_each(|a| a.stopper.stop());
                    }
                }
            }
            self.record(ends);
            if Instant::now() >= renewal {
                self.renew();
                renewal = Instant::now() + every;
            }
        }
    }

    /// Claims as many runs as it has room for, in one statement.
    fn claim_runs(&mut self) {
        let room = self.config.concurrency.saturating_sub(self.active.len());
        if room == 0 {
            return;
        }
        match self
            .queue
            .claim(&self.config.name, self.config.lease_ttl, room)
        {
            Ok(claims) => claims.into_iter().for_each(|claim| self.start(claim)),
            Err(error) => self.note(format_args!("cannot claim: {error:#}")),
        }
    }

    /// Starts or resumes a claimed run. A run that cannot start because of what it is
    /// (a manifest, component or checkpoint at fault) is given up as failed; one that
    /// cannot because of the host (the database away) is left to its lease, which
    /// expires unrenewed, so that a worker tries it again a TTL later.
    fn start(&mut self, claim: Claim) {
        let (run_id, epoch) = (claim.run_id.clone(), claim.epoch);
        self.note(format_args!("claimed run {run_id} (epoch {epoch})"));
        if let Err(error) = self.try_start(claim) {
            self.store.unfence(&run_id);
            let reason = format!("{error:#}");
            if error.exit_code() != crate::error::EXIT_INVALID {
                self.note(format_args!(
                    "run {run_id} cannot start now ({reason}); it is tried again once its lease expires"
                ));
                return;
            }
            self.note(format_args!("run {run_id} cannot start: {reason}"));
            self.record(vec![RunEnd {
                run_id,
                epoch,
                status: RunStatus::Failed,
                reason: Some(reason),
                delivered: 0,
            }]);
        }
    }

    fn try_start(&mut self, claim: Claim) -> Result<()> {
        let workflow = self.workflow(&claim.workflow_digest, &claim.manifest)?;
        let Claim {
            run_id,
            epoch,
            input,
            answers,
            next_event,
            latest,
            stop_requested,
            ..
        } = claim;
        self.store.fence(&run_id, epoch);
        let sink = self
            .events
            .sink(&run_id, epoch, next_event, self.log.clone());
        let delivered = answers.len();
        let handle = match latest {
            None => self.runner.spawn_as(&workflow, run_id.clone(), input, sink),
            Some((_, status)) if status == Status::Completed.as_str() => {
                // It completed; its owner died before it said so.
                self.store.unfence(&run_id);
                self.record(vec![RunEnd {
                    run_id,
                    epoch,
                    status: RunStatus::Completed,
                    reason: None,
                    delivered,
                }]);
                return Ok(());
            }
            Some((checkpoint_id, _)) => {
                let checkpoint = self.store.load(&checkpoint_id)?;
                self.runner
                    .spawn_resume_answering(&workflow, checkpoint, answers, sink)
            }
        };
        let stopper = handle.stopper();
        if self.stopping || stop_requested {
            stopper.stop();
        }
        let wake = self.wake.clone();
        let stopped_id = run_id.clone();
        handle.then(move |stopped| {
            let _ = wake.send(Wake::Stopped(stopped_id, Box::new(stopped)));
        });
        let active = Active {
            epoch,
            stopper,
            delivered,
            cancelled: stop_requested,
        };
        self.active.insert(run_id, active);
        Ok(())
    }

    /// The workflow stored as `digest`, loaded once.
    fn workflow(&mut self, digest: &str, manifest: &str) -> Result<Workflow> {
        if let Some(workflow) = self.workflows.get(digest) {
            return Ok(workflow.clone());
        }
        let queue = self.queue.clone();
        let path = materialize(&self.config.cache_dir, digest, manifest, |component| {
            queue.component(component)
        })?;
        let manifest = Manifest::load(&path)?;
        let workflow = Workflow::load(self.runtimes.for_manifest(&manifest)?, manifest)?;
        self.workflows.insert(digest.to_string(), workflow.clone());
        Ok(workflow)
    }

    /// How a run of this worker stopped, to record. A host failure (a checkpoint that
    /// could not be written) gives the run back to the queue, to be resumed from its
    /// last checkpoint; a run stopped by the worker is given back too.
    fn finished(&mut self, run_id: &str, stopped: Result<Stopped>) -> Option<RunEnd> {
        let active = self.active.remove(run_id)?;
        self.store.unfence(run_id);
        let (status, reason) = match stopped.and_then(|s| s.outcome) {
            Ok(Outcome::Completed) => (RunStatus::Completed, None),
            Ok(Outcome::Paused { .. }) => (RunStatus::Paused, None),
            Ok(Outcome::Stopped) if active.cancelled => (RunStatus::Cancelled, None),
            Ok(Outcome::Stopped) => (RunStatus::Queued, None),
            Ok(Outcome::Failed { reason }) => (RunStatus::Failed, Some(reason)),
            Err(error) => (RunStatus::Queued, Some(format!("{error:#}"))),
        };
        Some(RunEnd {
            run_id: run_id.to_string(),
            epoch: active.epoch,
            status,
            reason,
            delivered: active.delivered,
        })
    }

    /// Writes how runs ended, together; says so of each, and of one taken over
    /// meanwhile.
    fn record(&self, ends: Vec<RunEnd>) {
        if ends.is_empty() {
            return;
        }
        match self.events.finish(ends.clone()) {
            Ok(recorded) => {
                for (end, recorded) in ends.iter().zip(recorded) {
                    let run_id = &end.run_id;
                    match recorded {
                        true => {
                            let why = end.reason.as_ref().map(|r| format!(": {r}"));
                            let status = end.status.as_str();
                            self.note(format_args!(
                                "run {run_id} {status}{}",
                                why.unwrap_or_default()
                            ))
                        }
                        false => self.note(format_args!(
                            "run {run_id} was taken over by another worker; abandoned"
                        )),
                    }
                }
            }
            // Their leases expire, and workers resume them from their last checkpoints.
            Err(error) => self.note(format_args!("cannot record how runs ended: {error:#}")),
        }
    }

    /// Stops run `run_id`, if this worker drives it, at its next barrier: it was
    /// cancelled.
    fn cancel(&mut self, run_id: &str) {
        if let Some(active) = self.active.get_mut(run_id)
            && !active.cancelled
        {
            active.cancelled = true;
            active.stopper.stop();
            self.note(format_args!(
                "run {run_id} cancelled; stopping it at its next barrier"
            ));
        }
    }

    /// Renews the leases of the runs in hand; a run no longer held is stopped at once.
    fn renew(&mut self) {
        let held: Vec<(String, i64)> = self
            .active
            .iter()
            .map(|(id, a)| (id.clone(), a.epoch))
            .collect();
        match self
            .queue
            .renew(&self.config.name, &held, self.config.lease_ttl)
        {
            Ok(renewed) => {
                for run_id in renewed.lost {
                    if let Some(active) = self.active.get(&run_id) {
                        self.note(format_args!(
                            "lost the lease of run {run_id}; stopping it at once"
                        ));
                        active.stopper.interrupt();
                    }
                }
                renewed.stop.iter().for_each(|run_id| self.cancel(run_id));
            }
            Err(error) => self.note(format_args!("cannot renew leases: {error:#}")),
        }
    }
}
