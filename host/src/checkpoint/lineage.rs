//! Checkpoint lineage: every checkpoint names its parent, so the checkpoints of a run
//! form a tree that branches wherever an older checkpoint was resumed.

use super::Summary;
use std::collections::{BTreeMap, HashMap};

/// The newest checkpoint by lineage: of the run `run` (an id or a unique prefix), or
/// else of the run whose checkpoint was created last, the leaf with the longest chain
/// of parents (ties: the one created last). File times play no part.
pub fn latest<'a>(summaries: &[&'a Summary], run: Option<&str>) -> Option<&'a Summary> {
    let run_id = match run {
        Some(prefix) => summaries
            .iter()
            .find(|s| s.run_id.starts_with(prefix))?
            .run_id
            .as_str(),
        None => summaries
            .iter()
            .max_by(|a, b| {
                (&a.created_at, &a.checkpoint_id).cmp(&(&b.created_at, &b.checkpoint_id))
            })?
            .run_id
            .as_str(),
    };
    let of_run: Vec<&Summary> = summaries
        .iter()
        .copied()
        .filter(|s| s.run_id == run_id)
        .collect();
    let by_id: HashMap<&str, &Summary> = of_run
        .iter()
        .map(|s| (s.checkpoint_id.as_str(), *s))
        .collect();
    let depth = |summary: &Summary| {
        let mut depth = 0usize;
        let mut parent = summary.parent_id.as_deref();
        while let Some(found) = parent.and_then(|p| by_id.get(p)) {
            depth += 1;
            parent = found.parent_id.as_deref();
            if depth > by_id.len() {
                break; // a cycle can only come from hand-edited files
            }
        }
        depth
    };
    of_run
        .into_iter()
        .map(|s| (depth(s), s))
        .max_by(|(da, a), (db, b)| {
            (da, &a.created_at, &a.checkpoint_id).cmp(&(db, &b.created_at, &b.checkpoint_id))
        })
        .map(|(_, s)| s)
}

/// The checkpoints as a tree per run, one line each: a chain continues on the same
/// indentation, and each branch of a checkpoint resumed more than once is drawn with
/// `├─`/`└─`. `line` renders one checkpoint.
pub fn tree(summaries: &[&Summary], line: impl Fn(&Summary) -> String) -> Vec<String> {
    let ids: HashMap<&str, ()> = summaries
        .iter()
        .map(|s| (s.checkpoint_id.as_str(), ()))
        .collect();
    // Children per parent, oldest first; roots are checkpoints without a listed parent.
    let mut children: HashMap<&str, Vec<&Summary>> = HashMap::new();
    let mut roots: BTreeMap<&str, Vec<&Summary>> = BTreeMap::new();
    for summary in summaries {
        match summary.parent_id.as_deref().filter(|p| ids.contains_key(p)) {
            Some(parent) => children.entry(parent).or_default().push(summary),
            None => roots
                .entry(summary.run_id.as_str())
                .or_default()
                .push(summary),
        }
    }
    let order = |list: &mut Vec<&Summary>| {
        list.sort_by(|a, b| {
            (&a.created_at, &a.checkpoint_id).cmp(&(&b.created_at, &b.checkpoint_id))
        })
    };
    children.values_mut().for_each(order);
    let mut lines = Vec::new();
    for (run, mut run_roots) in roots {
        order(&mut run_roots);
        lines.push(format!("run {run} ({})", run_roots[0].workflow));
        // Work list of (checkpoint, first-line prefix, continuation prefix).
        let mut stack: Vec<(&Summary, String, String)> = Vec::new();
        push_branches(&mut stack, &run_roots, "");
        while let Some((mut node, mut first, rest)) = stack.pop() {
            loop {
                lines.push(format!("{first}{}", line(node)));
                let next = children.get(node.checkpoint_id.as_str());
                match next.map(Vec::as_slice) {
                    Some([only]) => {
                        node = only;
                        first = rest.clone();
                    }
                    Some(many) => {
                        push_branches(&mut stack, many, &rest);
                        break;
                    }
                    None => break,
                }
            }
        }
    }
    lines
}

/// The checkpoints from `from` down to `until`, both included, parents first: `until`
/// must descend from `from`. Without `until`, the chain goes on while each checkpoint
/// has one child; one that was resumed or forked more than once ends it with an error
/// naming its children, for the caller to choose a branch. Ids are exact.
pub fn chain<'a>(
    summaries: &[&'a Summary],
    from: &str,
    until: Option<&str>,
) -> Result<Vec<&'a Summary>, String> {
    let by_id: HashMap<&str, &Summary> = summaries
        .iter()
        .map(|s| (s.checkpoint_id.as_str(), *s))
        .collect();
    let first = *by_id
        .get(from)
        .ok_or_else(|| format!("no checkpoint {from} in the store"))?;
    let Some(until) = until else {
        return descendants(summaries, first);
    };
    let mut at = *by_id
        .get(until)
        .ok_or_else(|| format!("no checkpoint {until} in the store"))?;
    let mut chain = vec![at];
    while at.checkpoint_id != from {
        let parent = at.parent_id.as_deref().and_then(|p| by_id.get(p));
        match parent {
            Some(parent) if chain.len() <= by_id.len() => at = parent,
            _ => return Err(format!("checkpoint {until} does not descend from {from}")),
        }
        chain.push(at);
    }
    chain.reverse();
    Ok(chain)
}

/// `first` and its descendants while each has a single child; refused at a child
/// that has several.
fn descendants<'a>(
    summaries: &[&'a Summary],
    first: &'a Summary,
) -> Result<Vec<&'a Summary>, String> {
    let mut chain = vec![first];
    loop {
        let last = chain[chain.len() - 1].checkpoint_id.as_str();
        let children: Vec<&Summary> = summaries
            .iter()
            .copied()
            .filter(|s| s.parent_id.as_deref() == Some(last))
            .collect();
        match children.as_slice() {
            [only] if chain.len() <= summaries.len() => chain.push(only),
            [] | [_] => return Ok(chain),
            many => {
                let ids: Vec<&str> = many.iter().map(|s| s.checkpoint_id.as_str()).collect();
                return Err(format!(
                    "the run went on from checkpoint {last} more than once ({}): name the last checkpoint of the branch to follow",
                    ids.join(", ")
                ));
            }
        }
    }
}

/// Queues `branches` so that the oldest is drawn first, each with its tree prefixes.
fn push_branches<'a>(
    stack: &mut Vec<(&'a Summary, String, String)>,
    branches: &[&'a Summary],
    prefix: &str,
) {
    if let [only] = branches {
        stack.push((only, prefix.to_string(), prefix.to_string()));
        return;
    }
    for (n, branch) in branches.iter().enumerate().rev() {
        let last = n + 1 == branches.len();
        let (first, rest) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        stack.push((
            branch,
            format!("{prefix}{first}"),
            format!("{prefix}{rest}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::tests::bare_summary as summary;

    /// Run r1: c1 -> c2 -> c3, and a branch c1 -> b2 made later; run r2: d1, made last.
    fn forest() -> Vec<Summary> {
        vec![
            summary("c1", None, "r1", "2026-01-01T00:00:01Z"),
            summary("c2", Some("c1"), "r1", "2026-01-01T00:00:02Z"),
            summary("c3", Some("c2"), "r1", "2026-01-01T00:00:03Z"),
            summary("b2", Some("c1"), "r1", "2026-01-01T00:00:04Z"),
            summary("d1", None, "r2", "2026-01-01T00:00:05Z"),
        ]
    }

    #[test]
    fn latest_is_the_end_of_the_longest_chain_not_the_newest_file() {
        let all = forest();
        let all: Vec<&Summary> = all.iter().collect();
        let id = |run| latest(&all, run).map(|s| s.checkpoint_id.as_str());
        assert_eq!(
            id(Some("r1")),
            Some("c3"),
            "b2 is newer but its chain is shorter"
        );
        assert_eq!(id(None), Some("d1"), "the run that saved last");
        assert_eq!(id(Some("r3")), None);
        assert_eq!(latest(&[], None), None);
    }

    #[test]
    fn a_chain_runs_from_a_checkpoint_to_a_descendant() {
        let all = forest();
        let all: Vec<&Summary> = all.iter().collect();
        let ids = |from, until| {
            chain(&all, from, until).map(|c| {
                let ids: Vec<&str> = c.iter().map(|s| s.checkpoint_id.as_str()).collect();
                ids.join(" ")
            })
        };
        assert_eq!(ids("c1", Some("c3")).unwrap(), "c1 c2 c3");
        assert_eq!(ids("c1", Some("b2")).unwrap(), "c1 b2");
        assert_eq!(ids("c2", None).unwrap(), "c2 c3", "one child each");
        assert_eq!(
            ids("c1", None).unwrap_err(),
            "the run went on from checkpoint c1 more than once (c2, b2): name the last checkpoint of the branch to follow"
        );
        assert_eq!(ids("d1", Some("d1")).unwrap(), "d1");
        let refused = |from, until| ids(from, until).unwrap_err();
        assert_eq!(
            refused("c2", Some("b2")),
            "checkpoint b2 does not descend from c2"
        );
        assert_eq!(
            refused("c3", Some("c1")),
            "checkpoint c1 does not descend from c3"
        );
        assert_eq!(refused("x", None), "no checkpoint x in the store");
        assert_eq!(refused("c1", Some("y")), "no checkpoint y in the store");
    }

    #[test]
    fn a_tree_draws_each_branch() {
        let all = forest();
        let all: Vec<&Summary> = all.iter().collect();
        let lines = tree(&all, |s| s.checkpoint_id.clone());
        assert!(lines.iter().any(|l| l.contains("c3")), "{lines:?}");
        let branches = lines
            .iter()
            .filter(|l| l.contains('├') || l.contains('└'))
            .count();
        assert_eq!(branches, 2, "c1 was resumed twice: {lines:?}");
    }
}
