//! Resuming a run: a checkpoint checked against the workflow, decoded into the run's
//! state, each executor restored to its snapshot, and the journal of an attempt that
//! died before its barrier read back.

use super::Workflow;
use super::run::Run;
use super::saving::Saver;
use super::snapshot::RunState;
use super::step::{Recorded, Step};
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::error::Result;
use crate::error::{Error, bad_checkpoint, invalid};
use crate::events::EventSink;
use crate::message::{Envelope, INPUT_SOURCE, Message};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

impl Workflow {
    /// Resumes a run from `checkpoint` after checking that it belongs to this
    /// workflow: same graph and, unless `allow_changed_components`, the same
    /// components. Every executor is initialised and then restored to its state.
    pub fn resume(
        &self,
        checkpoint: Checkpoint,
        allow_changed_components: bool,
        store: Arc<dyn CheckpointStore>,
        sink: Arc<dyn EventSink>,
    ) -> Result<Run> {
        let saver = Saver::new(store, sink, Some(checkpoint.checkpoint_id.clone()));
        self.resume_saving(checkpoint, allow_changed_components, saver)
    }

    /// [`Workflow::resume`], its checkpoints saved by `saver`.
    pub(super) fn resume_saving(
        &self,
        checkpoint: Checkpoint,
        allow_changed_components: bool,
        saver: Saver,
    ) -> Result<Run> {
        self.check_fits(&checkpoint, allow_changed_components)?;
        let state = RunState::from_checkpoint(&checkpoint, self.graph())?;
        let store = saver.store().clone();
        let journaled =
            self.journaled_steps(&checkpoint, &store, &state.queues, &state.responses)?;
        Run::resumed(self, state, checkpoint.checkpoint_id, journaled, saver)
    }

    /// The results that the journal of `checkpoint` holds for the superstep starting
    /// from it (left by a host that died before the barrier), if it has any.
    fn journaled_steps(
        &self,
        checkpoint: &Checkpoint,
        store: &Arc<dyn CheckpointStore>,
        queues: &[Vec<Envelope>],
        responses: &[Vec<(String, Message)>],
    ) -> Result<Option<Recorded>> {
        let mut steps: Vec<Option<Step>> = (0..queues.len()).map(|_| None).collect();
        let records = store.read_journal(&checkpoint.checkpoint_id)?;
        let origin = format!("journal of checkpoint {}", checkpoint.checkpoint_id);
        for record in records {
            let bad = |why: String| {
                bad_checkpoint(
                    origin.to_string(),
                    format!("executor '{}': {why}", record.executor),
                )
            };
            if record.superstep != checkpoint.superstep {
                return Err(bad(format!(
                    "journaled for superstep {}, but the checkpoint starts superstep {}",
                    record.superstep, checkpoint.superstep
                )));
            }
            let Some(i) = self.loaded.graph.index_of(&record.executor) else {
                return Err(bad("not an executor of this workflow".into()));
            };
            if queues[i].is_empty() && responses[i].is_empty() {
                return Err(bad("has nothing to handle in this superstep".into()));
            }
            if steps[i].is_some() {
                return Err(bad("journaled twice".into()));
            }
            let limits = &self.loaded.manifest.executors[i].limits;
            steps[i] =
                Some(Step::from_journal(&record, i, &self.loaded.graph, limits).map_err(bad)?);
        }
        if steps.iter().all(Option::is_none) {
            return Ok(None);
        }
        Ok(Some(Recorded {
            steps,
            reason: format!(
                "its results for this superstep are in the {origin}, left by an attempt that stopped before the barrier"
            ),
            origin,
        }))
    }

    /// Refuses a checkpoint that was not taken with this workflow, saying what differs.
    pub(super) fn check_fits(
        &self,
        checkpoint: &Checkpoint,
        allow_changed_components: bool,
    ) -> Result<()> {
        let origin = format!("checkpoint {}", checkpoint.checkpoint_id);
        let manifest = self.loaded.manifest.path.display();
        if checkpoint.manifest.digest != self.loaded.graph.digest() {
            let ours: BTreeSet<&str> = self.loaded.graph.ids().iter().map(String::as_str).collect();
            let theirs: BTreeSet<&str> = checkpoint.executors.keys().map(String::as_str).collect();
            let mut differences = Vec::new();
            if checkpoint.workflow != self.loaded.manifest.name {
                differences.push(format!(
                    "workflow '{}' in the checkpoint, '{}' in the manifest",
                    checkpoint.workflow, self.loaded.manifest.name
                ));
            }
            let missing: Vec<&str> = theirs.difference(&ours).copied().collect();
            if !missing.is_empty() {
                differences.push(format!(
                    "executors not in the manifest: {}",
                    missing.join(", ")
                ));
            }
            let added: Vec<&str> = ours.difference(&theirs).copied().collect();
            if !added.is_empty() {
                differences.push(format!(
                    "executors not in the checkpoint: {}",
                    added.join(", ")
                ));
            }
            if differences.is_empty() {
                differences.push("the edges or the start executor differ".into());
            }
            return Err(invalid(format!(
                "{origin} was taken with a different workflow graph than {manifest} ({}); resume with the manifest the run started with ({})",
                differences.join("; "),
                checkpoint.manifest.path
            )));
        }
        // Also checked when a file is read; again here for checkpoints made in code.
        checkpoint
            .check_references()
            .map_err(|why| bad_checkpoint(origin.to_string(), why))?;
        self.check_executors(checkpoint, allow_changed_components)?;
        self.check_queues(checkpoint)?;
        let cap = self.loaded.manifest.max_supersteps;
        if checkpoint.superstep > cap {
            return Err(invalid(format!(
                "{origin}: superstep: {} is past workflow.max_supersteps = {cap} of {manifest}",
                checkpoint.superstep
            )));
        }
        Ok(())
    }

    /// Refuses a checkpoint whose executors are not exactly the workflow's, or whose
    /// components changed (unless `allow_changed_components`).
    fn check_executors(
        &self,
        checkpoint: &Checkpoint,
        allow_changed_components: bool,
    ) -> Result<()> {
        let origin = format!("checkpoint {}", checkpoint.checkpoint_id);
        if let Some(id) = checkpoint
            .executors
            .keys()
            .find(|id| self.loaded.graph.index_of(id).is_none())
        {
            return Err(invalid(format!(
                "{origin}: executors: '{id}' is not an executor of {}",
                self.loaded.manifest.path.display()
            )));
        }
        for (i, id) in self.loaded.graph.ids().iter().enumerate() {
            let Some(record) = checkpoint.executors.get(id) else {
                return Err(invalid(format!(
                    "{origin}: executors: executor '{id}' has no record (no state to restore)"
                )));
            };
            let component = &self.loaded.components[i];
            if record.component != component.digest && !allow_changed_components {
                return Err(changed_component(
                    checkpoint,
                    id,
                    &component.digest,
                    &component.path,
                ));
            }
        }
        Ok(())
    }

    /// Refuses a queued message that no edge of the workflow could have carried (the
    /// run's input may only be queued for the start executor).
    fn check_queues(&self, checkpoint: &Checkpoint) -> Result<()> {
        let origin = format!("checkpoint {}", checkpoint.checkpoint_id);
        for (id, queue) in &checkpoint.queued {
            for (n, message) in queue.iter().enumerate() {
                let carried = if message.source == INPUT_SOURCE {
                    match self.loaded.graph.index_of(id) == Some(self.loaded.graph.start()) {
                        true => Ok(()),
                        false => Err(format!(
                            "the run's input goes to the start executor '{}' only",
                            self.loaded.graph.id(self.loaded.graph.start())
                        )),
                    }
                } else {
                    let from = self.loaded.graph.index_of(&message.source);
                    let from = from.expect("a checkpoint's sources are its executors");
                    self.loaded
                        .graph
                        .route(from, &message.kind, Some(id))
                        .map(drop)
                };
                carried.map_err(|why| {
                    invalid(format!(
                        "{origin}: queued.{id}[{n}]: a message of kind '{}' from '{}' that the workflow cannot carry: {why}",
                        message.kind, message.source
                    ))
                })?;
            }
        }
        Ok(())
    }
}

/// The refusal of a checkpoint whose executor `id` now has a component with another
/// digest, at `path`.
pub(super) fn changed_component(
    checkpoint: &Checkpoint,
    id: &str,
    digest: &str,
    path: &Path,
) -> Error {
    let recorded = &checkpoint.executors[id].component;
    bad_checkpoint(
        format!("checkpoint {}", checkpoint.checkpoint_id),
        format!(
            "executor '{id}': its component changed since the checkpoint (checkpoint {recorded}, now {digest} at {}); pass --allow-changed-components to restore the old state into the new component",
            path.display()
        ),
    )
}
