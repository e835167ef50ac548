//! Many runs at once against one store: a [`Runner`] owns the store and one checkpoint
//! writer for all its runs, so that the checkpoints of every run in flight are made
//! durable together instead of each run syncing its own.

use super::run::Progress;
use super::saving::{Registration, RunnerLimits, Saver, SharedWriter};
use super::{Outcome, Run, Stopper, Workflow};
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::error::{Result, host};
use crate::events::EventSink;
use crate::message::Message;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{Semaphore, oneshot};

/// Starts and resumes runs whose checkpoints one writer makes durable together: the
/// checkpoints that all the runs in flight hand over while a save is under way are
/// written as one group (on a file store, one sync of the filesystem and one of the
/// directory for all of them), each run's in its order and apart from the others.
/// Every run keeps the guarantees of [`Run`]: nothing of a superstep shows or reaches
/// outside the sandbox before the checkpoint it started from is durable, and a save
/// that fails fails that run only.
///
/// Spawned runs ([`Runner::spawn`]) share a few threads: a run holds one only while
/// it executes, never while it waits for its checkpoint, and the runner bounds the runs
/// alive, the runs executing and the bytes waiting to be written ([`RunnerLimits`]).
///
/// ```no_run
/// # fn main() -> superstep::Result<()> {
/// use std::sync::Arc;
/// use superstep::{Event, FileStore, Manifest, Message, Outcome, Runner, Runtime, Workflow};
///
/// let manifest = Manifest::load("guest-examples/pipeline.toml".as_ref())?;
/// let workflow = Workflow::load(Runtime::new(0, false)?, manifest)?;
/// let runner = Runner::new(Arc::new(FileStore::new("checkpoints")))?;
/// let handles: Vec<_> = (0..1000)
///     .map(|n| {
///         let body = format!("\"hello {n}\"").into_bytes().into();
///         let input = Message { kind: "input".into(), body };
///         runner.spawn(&workflow, input, Arc::new(|_: &Event| {}))
///     })
///     .collect();
/// for handle in handles {
///     let stopped = handle.wait()?;
///     assert_eq!(stopped.outcome?, Outcome::Completed);
///     println!("{}: {:?}", stopped.run.run_id(), stopped.run.outputs());
/// }
/// # Ok(())
/// # }
/// ```
pub struct Runner {
    store: Arc<dyn CheckpointStore>,
    writer: Arc<SharedWriter>,
    /// Drives spawned runs: a run executes on one of its blocking threads, and waits
    /// for its saves as a task, holding none.
    tasks: Option<tokio::runtime::Runtime>,
    /// One permit per spawned run executing at once.
    threads: Arc<Semaphore>,
}

/// A run handed to [`Runner::spawn`]: wait for it on a thread ([`RunHandle::wait`]) or
/// await it.
#[must_use = "a run handle says how the run stopped"]
pub struct RunHandle {
    stopped: oneshot::Receiver<Result<Stopped>>,
    stopper: Stopper,
    /// The runner's runtime, for [`RunHandle::then`].
    tasks: tokio::runtime::Handle,
}

/// A spawned run that stopped, and how. The run can be inspected, answered when paused
/// ([`Run::respond`]) and spawned again ([`Runner::spawn_run`]).
pub struct Stopped {
    /// The run.
    pub run: Run,
    /// What [`Run::run`] returns.
    pub outcome: Result<Outcome>,
}

impl Runner {
    /// A runner of runs whose checkpoints go to `store`, under the default limits (see
    /// [`RunnerLimits`]); its writer thread starts now and stops when the runner and its
    /// runs are dropped.
    pub fn new(store: Arc<dyn CheckpointStore>) -> Result<Runner> {
        Runner::with_limits(store, RunnerLimits::default())
    }

    /// [`Runner::new`] under `limits`: starting or resuming a run waits while as many
    /// runs as allowed are alive (until one is dropped), a run's save waits while as
    /// many bytes as allowed wait to be written, and at most `limits.threads` spawned
    /// runs execute at once.
    pub fn with_limits(store: Arc<dyn CheckpointStore>, limits: RunnerLimits) -> Result<Runner> {
        let writer = SharedWriter::start(store.clone(), limits)
            .map_err(|e| host(format!("cannot start the checkpoint writer: {e}")))?;
        // Executors' HTTP calls run on the runtime of the thread that makes them: it
        // needs its I/O and timers.
        let tasks = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("superstep-runner")
            .enable_all()
            .build()
            .map_err(|e| host(format!("cannot start the runner's threads: {e}")))?;
        Ok(Runner {
            store,
            writer: Arc::new(writer),
            tasks: Some(tasks),
            threads: Arc::new(Semaphore::new(limits.threads.max(1))),
        })
    }

    /// The store every run of this runner saves to.
    pub fn store(&self) -> &Arc<dyn CheckpointStore> {
        &self.store
    }

    /// [`Workflow::start`], the run's checkpoints written with those of the runner's
    /// other runs; the run is driven by the caller ([`Run::run`] on its thread).
    pub fn start(
        &self,
        workflow: &Workflow,
        input: Message,
        sink: Arc<dyn EventSink>,
    ) -> Result<Run> {
        workflow.start_saving(None, input, self.saver(self.writer.register(), sink, None))
    }

    /// [`Workflow::resume`], the run's checkpoints written with those of the runner's
    /// other runs; the run is driven by the caller.
    pub fn resume(
        &self,
        workflow: &Workflow,
        checkpoint: Checkpoint,
        allow_changed_components: bool,
        sink: Arc<dyn EventSink>,
    ) -> Result<Run> {
        let last = Some(checkpoint.checkpoint_id.clone());
        let saver = self.saver(self.writer.register(), sink, last);
        workflow.resume_saving(checkpoint, allow_changed_components, saver)
    }

    /// Starts a run of `workflow` on `input` and drives it to its end on the runner's
    /// threads: the normal way to run many workflows at once. Returns at once; the run
    /// waits as a task while [`RunnerLimits::max_runs`] runs are being driven, and
    /// holds a thread only while it executes.
    pub fn spawn(
        &self,
        workflow: &Workflow,
        input: Message,
        sink: Arc<dyn EventSink>,
    ) -> RunHandle {
        self.spawn_started(workflow, None, input, sink)
    }

    /// [`Runner::spawn`] of a run whose id is `run_id` (one that no checkpoint of the
    /// store carries yet: a run submitted to a queue, say).
    pub fn spawn_as(
        &self,
        workflow: &Workflow,
        run_id: String,
        input: Message,
        sink: Arc<dyn EventSink>,
    ) -> RunHandle {
        self.spawn_started(workflow, Some(run_id), input, sink)
    }

    /// [`Runner::spawn`] of a run resumed from `checkpoint` (see [`Workflow::resume`]).
    pub fn spawn_resume(
        &self,
        workflow: &Workflow,
        checkpoint: Checkpoint,
        allow_changed_components: bool,
        sink: Arc<dyn EventSink>,
    ) -> RunHandle {
        self.spawn_resumed(
            workflow,
            checkpoint,
            allow_changed_components,
            Vec::new(),
            sink,
        )
    }

    /// [`Runner::spawn_resume`] (components unchanged) with `answers` to pending
    /// requests (request id and response) delivered first, as [`Run::respond`] does;
    /// the run fails to start if one is not pending.
    pub fn spawn_resume_answering(
        &self,
        workflow: &Workflow,
        checkpoint: Checkpoint,
        answers: Vec<(String, Message)>,
        sink: Arc<dyn EventSink>,
    ) -> RunHandle {
        self.spawn_resumed(workflow, checkpoint, false, answers, sink)
    }

    /// Spawns a fresh run, its id `run_id` if given.
    fn spawn_started(
        &self,
        workflow: &Workflow,
        run_id: Option<String>,
        input: Message,
        sink: Arc<dyn EventSink>,
    ) -> RunHandle {
        let workflow = workflow.clone();
        self.spawn_with(sink, None, move |saver| {
            workflow.start_saving(run_id, input, saver)
        })
    }

    /// Spawns a run resumed from `checkpoint`, `answers` delivered first.
    fn spawn_resumed(
        &self,
        workflow: &Workflow,
        checkpoint: Checkpoint,
        allow_changed_components: bool,
        answers: Vec<(String, Message)>,
        sink: Arc<dyn EventSink>,
    ) -> RunHandle {
        let workflow = workflow.clone();
        let last = Some(checkpoint.checkpoint_id.clone());
        self.spawn_with(sink, last, move |saver| {
            let mut run = workflow.resume_saving(checkpoint, allow_changed_components, saver)?;
            for (request_id, response) in answers {
                run.respond(&request_id, response)?;
            }
            Ok(run)
        })
    }

    /// Drives `run`, one this runner spawned that stopped (for instance a paused run,
    /// answered), on to its end on the runner's threads.
    pub fn spawn_run(&self, run: Run) -> RunHandle {
        let (stopped, handle) = oneshot::channel();
        let (writer, threads) = (self.writer.clone(), self.threads.clone());
        let stopper = run.stopper();
        self.tasks().spawn(async move {
            let place = writer.place().await;
            let result = drive(run, &threads).await;
            drop(place);
            let _ = stopped.send(result);
        });
        self.handle(handle, stopper)
    }

    fn handle(&self, stopped: oneshot::Receiver<Result<Stopped>>, stopper: Stopper) -> RunHandle {
        RunHandle {
            stopped,
            stopper,
            tasks: self.tasks().handle().clone(),
        }
    }

    /// Spawns a run that `begin` makes with its saver, once it has a place.
    fn spawn_with(
        &self,
        sink: Arc<dyn EventSink>,
        last_checkpoint: Option<String>,
        begin: impl FnOnce(Saver) -> Result<Run> + Send + 'static,
    ) -> RunHandle {
        let (stopped, handle) = oneshot::channel();
        let (writer, store) = (self.writer.clone(), self.store.clone());
        let threads = self.threads.clone();
        let stopper = Stopper::default();
        let stops = stopper.clone();
        self.tasks().spawn(async move {
            // Held while the run is driven, not while its end waits to be collected.
            let place = writer.place().await;
            let saver = Saver::shared(writer.register_unplaced(), store, sink, last_checkpoint);
            let begun = on_a_thread(&threads, move || {
                let mut run = begin(saver)?;
                run.set_stopper(stops);
                Ok(run)
            });
            let result = match begun.await {
                Ok(Ok(run)) => drive(run, &threads).await,
                Ok(Err(error)) | Err(error) => Err(error),
            };
            drop(place);
            let _ = stopped.send(result);
        });
        self.handle(handle, stopper)
    }

    fn tasks(&self) -> &tokio::runtime::Runtime {
        self.tasks.as_ref().expect("present until dropped")
    }

    fn saver(
        &self,
        registration: Registration,
        sink: Arc<dyn EventSink>,
        last_checkpoint: Option<String>,
    ) -> Saver {
        Saver::shared(registration, self.store.clone(), sink, last_checkpoint)
    }
}

impl Drop for Runner {
    /// Spawned runs that have not stopped are dropped at their next wait (their saves
    /// handed over are still written); their handles say so.
    fn drop(&mut self) {
        if let Some(tasks) = self.tasks.take() {
            tasks.shutdown_background();
        }
    }
}

impl RunHandle {
    /// What asks the run to stop at its next barrier ([`Outcome::Stopped`]).
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Calls `then` with how the run stopped, on one of the runner's threads, once it
    /// has (or right away if the runner was dropped).
    pub fn then(self, then: impl FnOnce(Result<Stopped>) + Send + 'static) {
        let tasks = self.tasks.clone();
        tasks.spawn(async move { then(self.await) });
    }

    /// Waits on this thread until the run stops. `Err` if it could not start (or its
    /// runner was dropped first); how it stopped is in [`Stopped::outcome`]. Not for
    /// async code: await the handle there.
    pub fn wait(self) -> Result<Stopped> {
        self.stopped
            .blocking_recv()
            .unwrap_or_else(|_| Err(runner_gone()))
    }
}

impl Future for RunHandle {
    type Output = Result<Stopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Stopped>> {
        Pin::new(&mut self.stopped)
            .poll(cx)
            .map(|sent| sent.unwrap_or_else(|_| Err(runner_gone())))
    }
}

fn runner_gone() -> crate::Error {
    host("the runner was dropped before the run stopped")
}

/// Goes on with `run` until it stops: on a thread while it executes, as a task while
/// it waits for a save.
async fn drive(mut run: Run, threads: &Semaphore) -> Result<Stopped> {
    loop {
        let (back, progress) = on_a_thread(threads, move || {
            let progress = run.advance();
            (run, progress)
        })
        .await?;
        run = back;
        match progress {
            Progress::Wait(save) => save.finished().await,
            Progress::Done(outcome) => return Ok(Stopped { run, outcome }),
        }
    }
}

/// Runs `work` on a blocking thread once one of `threads` is free.
async fn on_a_thread<T: Send + 'static>(
    threads: &Semaphore,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let _permit = threads
        .acquire()
        .await
        .expect("the semaphore is never closed");
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| host(format!("a run's thread stopped: {e}")))
}
