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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Summary;
    use crate::checkpoint::tests::bare_summary;
    use std::time::UNIX_EPOCH;

    fn listed(id: &str, parent: Option<&str>, run: &str, second: u64) -> Listed {
        let created = UNIX_EPOCH + Duration::from_secs(1_800_000_000 + second);
        Listed {
            id: id.into(),
            location: id.into(),
            summary: Ok(Summary {
                superstep: second,
                ..bare_summary(
                    id,
                    parent,
                    run,
                    &humantime::format_rfc3339(created).to_string(),
                )
            }),
        }
    }

    fn listing() -> Vec<Listed> {
        vec![
            listed("a1", None, "ra", 1),
            listed("a2", Some("a1"), "ra", 2),
            listed("a3", Some("a2"), "ra", 3),
            listed("b1", None, "rb", 4),
            Listed {
                id: "broken".into(),
                location: "broken".into(),
                summary: Err("checksum mismatch".into()),
            },
        ]
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_100)
    }

    #[test]
    fn keeps_the_newest_of_each_run_the_parents_it_needs_and_damaged_files() {
        let keep_one = PrunePolicy {
            keep_last: Some(1),
            ..PrunePolicy::default()
        };
        // a3 is kept, and names a2 as parent: a2 stays too.
        assert_eq!(plan(&listing(), &keep_one, now()), ["a1"]);
        let everything_old = PrunePolicy {
            older_than: Some(Duration::from_secs(10)),
            ..PrunePolicy::default()
        };
        // Every one is old, but the newest of each run stays, and so does its parent.
        assert_eq!(plan(&listing(), &everything_old, now()), ["a1"]);
        let recent = PrunePolicy {
            older_than: Some(Duration::from_secs(1000)),
            ..PrunePolicy::default()
        };
        assert!(plan(&listing(), &recent, now()).is_empty());
        let other_run = PrunePolicy {
            run: Some("rb".into()),
            ..keep_one
        };
        assert!(plan(&listing(), &other_run, now()).is_empty());
    }
}
