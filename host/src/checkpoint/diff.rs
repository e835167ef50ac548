//! What changed between two checkpoints: executor states, shared state, queues,
//! pending requests, responses and outputs.

use super::Checkpoint;
use crate::message::Payload;
use std::collections::BTreeSet;

/// The differences from checkpoint `a` to checkpoint `b`, one readable line each
/// (payloads as JSON text or base64); empty when the two hold the same run state.
pub fn diff(a: &Checkpoint, b: &Checkpoint) -> Vec<String> {
    let mut lines = Vec::new();
    let mut field = |name: &str, x: String, y: String| {
        if x != y {
            lines.push(format!("{name}: {x} -> {y}"));
        }
    };
    field("run_id", a.run_id.clone(), b.run_id.clone());
    field(
        "superstep",
        a.superstep.to_string(),
        b.superstep.to_string(),
    );
    field("status", a.status.as_str().into(), b.status.as_str().into());

    let ids: BTreeSet<&String> = a.executors.keys().chain(b.executors.keys()).collect();
    for id in ids {
        let (x, y) = (a.executors.get(id), b.executors.get(id));
        compare(
            &mut lines,
            &format!("executor {id} state"),
            x.map(|e| &e.state),
            y.map(|e| &e.state),
        );
        if let (Some(x), Some(y)) = (x, y)
            && x.component != y.component
        {
            lines.push(format!(
                "executor {id} component: {} -> {}",
                x.component, y.component
            ));
        }
    }
    let keys: BTreeSet<&String> = a.shared_state.keys().chain(b.shared_state.keys()).collect();
    for key in keys {
        compare(
            &mut lines,
            &format!("shared_state {key}"),
            a.shared_state.get(key),
            b.shared_state.get(key),
        );
    }
    let targets: BTreeSet<&String> = a.queued.keys().chain(b.queued.keys()).collect();
    for id in targets {
        let render = |c: &Checkpoint| -> Vec<String> {
            c.queued
                .get(id)
                .into_iter()
                .flatten()
                .map(|m| format!("from {} ({}): {}", m.source, m.kind, m.body.to_text()))
                .collect()
        };
        let (x, y) = (render(a), render(b));
        if x != y {
            lines.push(format!(
                "queued for {id}: {} -> {} message(s)",
                x.len(),
                y.len()
            ));
            lines.extend(x.iter().map(|m| format!("  - {m}")));
            lines.extend(y.iter().map(|m| format!("  + {m}")));
        }
    }
    let requests = |c: &Checkpoint| -> Vec<String> {
        c.pending_requests
            .iter()
            .map(|r| {
                format!(
                    "{} from {} ({}): {}",
                    r.request_id,
                    r.executor,
                    r.kind,
                    r.body.to_text()
                )
            })
            .collect()
    };
    let responses = |c: &Checkpoint| -> Vec<String> {
        c.responses
            .values()
            .flatten()
            .map(|r| format!("{} ({}): {}", r.request_id, r.kind, r.body.to_text()))
            .collect()
    };
    for (name, render) in [
        (
            "pending requests",
            &requests as &dyn Fn(&Checkpoint) -> Vec<String>,
        ),
        ("responses", &responses),
    ] {
        let (x, y) = (render(a), render(b));
        if x != y {
            lines.push(format!("{name}: {} -> {}", x.len(), y.len()));
            lines.extend(
                x.iter()
                    .filter(|r| !y.contains(r))
                    .map(|r| format!("  - {r}")),
            );
            lines.extend(
                y.iter()
                    .filter(|r| !x.contains(r))
                    .map(|r| format!("  + {r}")),
            );
        }
    }
    if a.outputs.len() != b.outputs.len() {
        lines.push(format!(
            "outputs: {} -> {}",
            a.outputs.len(),
            b.outputs.len()
        ));
    }
    lines
}

fn compare(lines: &mut Vec<String>, name: &str, x: Option<&Payload>, y: Option<&Payload>) {
    match (x.map(Payload::to_text), y.map(Payload::to_text)) {
        (None, Some(y)) => lines.push(format!("{name}: added {y}")),
        (Some(x), None) => lines.push(format!("{name}: removed (was {x})")),
        (Some(x), Some(y)) if x != y => {
            lines.push(format!("{name}: changed"));
            lines.push(format!("  - {x}"));
            lines.push(format!("  + {y}"));
        }
        _ => {}
    }
}
