//! Replay: the supersteps between two recorded checkpoints of a lineage run again in
//! memory with this workflow's components, and the run they reach compared with the
//! later checkpoint. Nothing is written and nothing reaches outside the sandbox: an
//! executor that could (outbound HTTP, a writable directory) is not run, its results
//! taken from the later checkpoint instead, and every instance gets its grants sealed.

use super::Workflow;
use super::run::{Durability, Outcome};
use super::step::{Recorded, Step};
use crate::checkpoint::journal::{JournalMessage, JournalRecord, JournalSend};
use crate::checkpoint::{Checkpoint, MemoryStore, diff};
use crate::error::Result;
use crate::error::{bad_checkpoint, invalid};
use crate::events::EventSink;
use crate::message::Payload;
use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

/// How the supersteps between two recorded checkpoints replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The supersteps replayed.
    pub supersteps: Range<u64>,
    /// The executors whose recorded results stood in for running them (they can reach
    /// outside the sandbox), by id.
    pub recorded: Vec<String>,
    /// How the replayed run differs from the later checkpoint, one line each as
    /// `checkpoints show --diff` gives them (recorded, then replayed); or how the
    /// replayed run stopped short, or that the components did not take the states of
    /// the first checkpoint. Empty when they hold the same run state.
    pub differences: Vec<String>,
}

impl Replayed {
    /// Whether the replay produced what was recorded.
    pub fn is_identical(&self) -> bool {
        self.differences.is_empty()
    }
}

impl Workflow {
    /// Runs the supersteps from checkpoint `from` to its descendant `to` again, in
    /// memory, and compares the run they reach with `to`. Components may differ from
    /// the ones that ran (that is what a replay checks); the graph may not. An executor
    /// that can reach outside its sandbox is not run: its results come from `to`,
    /// which must then be the barrier right after the superstep it is in. `sink` hears
    /// the replayed run's events.
    pub fn replay(
        &self,
        from: &Checkpoint,
        to: &Checkpoint,
        sink: Arc<dyn EventSink>,
    ) -> Result<Replayed> {
        if to.run_id != from.run_id || to.superstep <= from.superstep {
            return Err(invalid(format!(
                "checkpoint {} (run {}, superstep {}) does not come supersteps after checkpoint {} (run {}, superstep {})",
                to.checkpoint_id,
                to.run_id,
                to.superstep,
                from.checkpoint_id,
                from.run_id,
                from.superstep
            )));
        }
        self.check_fits(from, true)?;
        let mut replayed = Replayed {
            supersteps: from.superstep..to.superstep,
            recorded: Vec::new(),
            differences: Vec::new(),
        };
        let store = Arc::new(MemoryStore::new());
        // The graph fits: what is left to fail is an executor restoring its state.
        let mut run = match self.sealed().resume(from.clone(), true, store, sink) {
            Ok(run) => run,
            Err(error) => {
                let why = format!("the components do not take the recorded states: {error:#}");
                replayed.differences.push(why);
                return Ok(replayed);
            }
        };
        run.set_durability(Durability::Off);
        let mut recorded = BTreeSet::new();
        while run.supersteps_done() < to.superstep {
            let superstep = run.supersteps_done();
            let outside: Vec<usize> = run
                .with_work()
                .filter(|&i| self.reaches_outside(i))
                .collect();
            let mut steps: Vec<Option<Step>> =
                (0..self.graph().ids().len()).map(|_| None).collect();
            for i in outside {
                steps[i] = Some(self.recorded_step(i, superstep, from, to)?);
                recorded.insert(self.graph().id(i).to_string());
            }
            let standing_in = Recorded {
                steps,
                origin: format!("checkpoint {}", to.checkpoint_id),
                reason: format!(
                    "it can reach outside its sandbox, so the replay takes its results from checkpoint {}",
                    to.checkpoint_id
                ),
            };
            if let Some(outcome) = run.step_once(standing_in)? {
                replayed
                    .differences
                    .push(stopped_short(superstep, &outcome, to));
                replayed.recorded = recorded.into_iter().collect();
                return Ok(replayed);
            }
        }
        replayed.recorded = recorded.into_iter().collect();
        replayed.differences = diff(to, &as_recorded(run.to_checkpoint(), to)?);
        Ok(replayed)
    }

    /// Executor `i`'s results in `superstep` as checkpoint `to`, taken at the barrier
    /// right after it, recorded them: its state, the messages it queued, its outputs and
    /// requests of that superstep, and as its shared-state writes every key that changed
    /// since `from` (a key another executor of the superstep also wrote counts as this
    /// one's). Refused when `to` is not that barrier.
    fn recorded_step(
        &self,
        i: usize,
        superstep: u64,
        from: &Checkpoint,
        to: &Checkpoint,
    ) -> Result<Step> {
        let id = self.graph().id(i);
        if to.superstep != superstep + 1 {
            return Err(invalid(format!(
                "replay stops at superstep {superstep}: executor '{id}' can reach outside its sandbox, so it is not run, and no checkpoint records its results of that superstep alone (checkpoint {} is {} supersteps on); replay up to the superstep before it with --until",
                to.checkpoint_id,
                to.superstep - superstep
            )));
        }
        let origin = format!("checkpoint {}", to.checkpoint_id);
        let bad = |why: String| bad_checkpoint(origin.clone(), format!("executor '{id}': {why}"));
        let message = |kind: &str, body: &Payload| JournalMessage {
            kind: kind.to_string(),
            body: body.clone(),
        };
        let sends = to.queued.iter().flat_map(|(target, queue)| {
            let from_this = queue.iter().filter(|m| m.source == id);
            from_this.map(|m| JournalSend {
                to: target.clone(),
                kind: m.kind.clone(),
                body: m.body.clone(),
            })
        });
        let outputs = to.outputs.iter().filter(|o| o.superstep == superstep);
        let requests = to.pending_requests.iter();
        let requests = requests.filter(|r| r.superstep == superstep && r.executor == id);
        let keys: BTreeSet<&String> = from
            .shared_state
            .keys()
            .chain(to.shared_state.keys())
            .collect();
        let changed = keys.into_iter().filter(|key| {
            let text = |c: &Checkpoint| c.shared_state.get(*key).map(Payload::to_text);
            text(from) != text(to)
        });
        let record = JournalRecord {
            superstep,
            executor: id.to_string(),
            state: to
                .executors
                .get(id)
                .ok_or_else(|| bad("no state".to_string()))?
                .state
                .clone(),
            sends: sends.collect(),
            outputs: outputs
                .filter(|o| o.source == id)
                .map(|o| message(&o.kind, &o.body))
                .collect(),
            writes: changed
                .map(|key| (key.clone(), to.shared_state.get(key).cloned()))
                .collect(),
            requests: requests
                .map(|r| (r.request_id.clone(), message(&r.kind, &r.body)))
                .collect(),
        };
        let limits = &self.manifest().executors[i].limits;
        Step::from_journal(&record, i, self.graph(), limits).map_err(bad)
    }
}

/// Why a replayed run that stopped before superstep `to.superstep` diverged.
fn stopped_short(superstep: u64, outcome: &Outcome, to: &Checkpoint) -> String {
    let recorded = format!(
        "the recorded run went on to superstep {} (checkpoint {})",
        to.superstep, to.checkpoint_id
    );
    match outcome {
        Outcome::Failed { reason } => {
            format!("superstep {superstep} failed in the replay: {reason}; {recorded}")
        }
        Outcome::Completed => {
            format!("the replayed run completed before superstep {superstep}; {recorded}")
        }
        Outcome::Paused { pending } => format!(
            "the replayed run paused before superstep {superstep} for {}; {recorded}",
            pending.join(", ")
        ),
        Outcome::Stopped => format!("the replayed run stopped before superstep {superstep}"),
    }
}

/// `replayed` as `to` would hold it if the replay matched: read back as a stored
/// checkpoint is, with `to`'s identity, times and component digests, so that only the
/// run state can differ.
fn as_recorded(replayed: Checkpoint, to: &Checkpoint) -> Result<Checkpoint> {
    let mut replayed = Checkpoint::decode(&replayed.encode(), "the replayed run")?;
    replayed.checkpoint_id.clone_from(&to.checkpoint_id);
    replayed.parent_id.clone_from(&to.parent_id);
    replayed.created_at.clone_from(&to.created_at);
    replayed.manifest = to.manifest.clone();
    for (id, record) in &mut replayed.executors {
        if let Some(recorded) = to.executors.get(id) {
            record.component.clone_from(&recorded.component);
        }
    }
    replayed.edit.clone_from(&to.edit);
    Ok(replayed)
}
