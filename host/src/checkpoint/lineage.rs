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
