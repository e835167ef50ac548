//! Which checkpoints `prune` deletes, decided from a listing alone.

use super::Listed;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

/// What to keep. A checkpoint goes when some rule selects it and no protection holds.
#[derive(Debug, Clone, Default)]
pub struct PrunePolicy {
    /// Keep this many newest checkpoints of each run; older ones go.
    pub keep_last: Option<usize>,
    /// Delete checkpoints older than this.
    pub older_than: Option<Duration>,
    /// Only consider this run (a run id or a unique prefix of one).
    pub run: Option<String>,
}

/// The ids to delete from `listing`, oldest first. Never deleted: the newest checkpoint
/// of each run, a checkpoint that a kept one names as its parent, and damaged files
/// (which prune leaves for a person to look at).
pub fn plan(listing: &[Listed], policy: &PrunePolicy, now: SystemTime) -> Vec<String> {
    let mut by_run: BTreeMap<&str, Vec<&super::Summary>> = BTreeMap::new();
    for checkpoint in listing.iter().filter_map(|l| l.summary.as_ref().ok()) {
        by_run
            .entry(checkpoint.run_id.as_str())
            .or_default()
            .push(checkpoint);
    }
    let mut doomed: BTreeSet<&str> = BTreeSet::new();
    for (run, checkpoints) in &mut by_run {
        if policy
            .run
            .as_deref()
            .is_some_and(|wanted| !run.starts_with(wanted))
        {
            continue;
        }
        // Newest first: by time, then superstep.
        checkpoints.sort_by(|a, b| (&b.created_at, b.superstep).cmp(&(&a.created_at, a.superstep)));
        for (age_rank, checkpoint) in checkpoints.iter().enumerate().skip(1) {
            let too_many = policy.keep_last.is_some_and(|n| age_rank >= n);
            let too_old = policy.older_than.is_some_and(|limit| {
                humantime::parse_rfc3339(&checkpoint.created_at)
                    .ok()
                    .and_then(|created| now.duration_since(created).ok())
                    .is_some_and(|age| age > limit)
            });
            if too_many || too_old {
                doomed.insert(&checkpoint.checkpoint_id);
            }
        }
    }
    let kept_parents: BTreeSet<&str> = listing
        .iter()
        .filter_map(|l| l.summary.as_ref().ok())
        .filter(|c| !doomed.contains(c.checkpoint_id.as_str()))
        .filter_map(|c| c.parent_id.as_deref())
        .collect();
    listing
        .iter()
        .filter_map(|l| l.summary.as_ref().ok())
        .map(|c| c.checkpoint_id.as_str())
        .filter(|id| doomed.contains(id) && !kept_parents.contains(id))
        .map(str::to_string)
        .collect()
}
