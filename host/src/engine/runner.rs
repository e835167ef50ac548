//! Many runs at once against one store: a [`Runner`] owns the store and one checkpoint
//! writer for all its runs, so that the checkpoints of every run in flight are made
//! durable together instead of each run syncing its own.

use super::saving::{RunnerLimits, Saver, SharedWriter};
use super::{Run, Workflow};
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::error::{Result, host};
use crate::events::EventSink;
use crate::message::Message;
use std::sync::Arc;

/// Starts and resumes runs whose checkpoints one writer makes durable together: the
/// checkpoints that all the runs in flight hand over while a save is under way are
/// written as one group (on a file store, one sync of the filesystem and one of the
/// directory for all of them), each run's in its order and apart from the others.
/// Every run keeps the guarantees of [`Run`]: nothing of a superstep shows or reaches
/// outside the sandbox before the checkpoint it started from is durable, and a save
/// that fails fails that run only.
///
/// ```no_run
/// # fn main() -> superstep::Result<()> {
/// use std::sync::Arc;
/// use superstep::{Event, FileStore, Manifest, Message, Runner, Runtime, Workflow};
///
/// let manifest = Manifest::load("guest-examples/pipeline.toml".as_ref())?;
/// let workflow = Workflow::load(Runtime::new(0, false)?, manifest)?;
/// let runner = Runner::new(Arc::new(FileStore::new("checkpoints")))?;
/// std::thread::scope(|scope| {
///     for n in 0..32 {
///         let (runner, workflow) = (&runner, &workflow);
///         scope.spawn(move || -> superstep::Result<()> {
///             let body = format!("\"hello {n}\"").into_bytes().into();
///             let input = Message { kind: "input".into(), body };
///             let mut run = runner.start(workflow, input, Arc::new(|_: &Event| {}))?;
///             run.run()?;
///             Ok(())
///         });
///     }
/// });
/// # Ok(())
/// # }
/// ```
pub struct Runner {
    store: Arc<dyn CheckpointStore>,
    writer: Arc<SharedWriter>,
}

impl Runner {
    /// A runner of runs whose checkpoints go to `store`, under the default limits (256
    /// runs at once, 256 MiB waiting to be written); its writer thread starts now and
    /// stops when the runner and its runs are dropped.
    pub fn new(store: Arc<dyn CheckpointStore>) -> Result<Runner> {
        Runner::with_limits(store, RunnerLimits::default())
    }

    /// [`Runner::new`] under `limits`: starting or resuming a run waits while as many
    /// runs as allowed are alive (until one is dropped), and a run's save waits while
    /// as many bytes as allowed wait to be written.
    pub fn with_limits(store: Arc<dyn CheckpointStore>, limits: RunnerLimits) -> Result<Runner> {
        let writer = SharedWriter::start(store.clone(), limits)
            .map_err(|e| host(format!("cannot start the checkpoint writer: {e}")))?;
        Ok(Runner {
            store,
            writer: Arc::new(writer),
        })
    }

    /// The store every run of this runner saves to.
    pub fn store(&self) -> &Arc<dyn CheckpointStore> {
        &self.store
    }

    /// [`Workflow::start`], the run's checkpoints written with those of the runner's
    /// other runs.
    pub fn start<'w>(
        &self,
        workflow: &'w Workflow,
        input: Message,
        sink: Arc<dyn EventSink>,
    ) -> Result<Run<'w>> {
        workflow.start_saving(input, self.saver(sink, None))
    }

    /// [`Workflow::resume`], the run's checkpoints written with those of the runner's
    /// other runs.
    pub fn resume<'w>(
        &self,
        workflow: &'w Workflow,
        checkpoint: Checkpoint,
        allow_changed_components: bool,
        sink: Arc<dyn EventSink>,
    ) -> Result<Run<'w>> {
        let saver = self.saver(sink, Some(checkpoint.checkpoint_id.clone()));
        workflow.resume_saving(checkpoint, allow_changed_components, saver)
    }

    fn saver(&self, sink: Arc<dyn EventSink>, last_checkpoint: Option<String>) -> Saver {
        Saver::shared(&self.writer, self.store.clone(), sink, last_checkpoint)
    }
}
