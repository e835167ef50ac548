//! Snapshot verification: whether an executor's `snapshot` gives back the state its
//! `restore` took. A guest whose snapshot and restore lose or change state is the
//! commonest bug of hand-written executors, in any language.

use super::Workflow;
use crate::checkpoint::{Checkpoint, Comparison};
use crate::error::Result;
use crate::error::bad_checkpoint;
use crate::events::EventSink;
use std::sync::Arc;

/// One executor's verdict in [`Workflow::verify_snapshots`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The executor.
    pub executor: String,
    /// How its state came back: the same bytes, the same JSON value, or not.
    pub fidelity: Comparison,
    /// Whether its component is not the one that wrote the state.
    pub component_changed: bool,
}

impl Workflow {
    /// Each executor's state in `checkpoint`, restored into a fresh instance (after
    /// `init`) and asked for again with `snapshot`, compared with the stored bytes, in
    /// executor id order. An executor that refuses its state or fails is an error
    /// naming it; a checkpoint of another graph is refused.
    pub fn verify_snapshots(
        &self,
        checkpoint: &Checkpoint,
        sink: Arc<dyn EventSink>,
    ) -> Result<Vec<Verified>> {
        self.check_fits(checkpoint, true)?;
        let origin = format!("checkpoint {}", checkpoint.checkpoint_id);
        let mut report = Vec::new();
        for (i, id) in self.graph().ids().iter().enumerate() {
            let field = format!("executors.{id}.state");
            let bad = |why: String| bad_checkpoint(origin.clone(), format!("{field}: {why}"));
            let record = checkpoint
                .executors
                .get(id)
                .ok_or_else(|| bad("missing".to_string()))?;
            let stored = record.state.decode().map_err(bad)?;
            report.push(Verified {
                executor: id.clone(),
                fidelity: self.round_trip(i, &stored, &sink, &origin)?,
                component_changed: record.component != self.component_digest(i),
            });
        }
        Ok(report)
    }

    /// How executor `i`'s `state` comes back from `restore` then `snapshot` on a fresh
    /// instance; `origin` names where the state comes from, in errors.
    pub(super) fn round_trip(
        &self,
        i: usize,
        state: &[u8],
        sink: &Arc<dyn EventSink>,
        origin: &str,
    ) -> Result<Comparison> {
        let mut instance = self.restored_instance(i, sink, state, origin)?;
        let again = instance
            .snapshot()
            .map_err(|reason| anyhow::anyhow!("executor '{}': {reason}", self.graph().id(i)))?;
        Ok(Comparison::of(state, &again))
    }
}
