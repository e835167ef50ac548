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
    let superstep = |c: &Checkpoint| c.superstep.to_string();
    field("superstep", superstep(a), superstep(b));
    field("status", a.status.as_str().into(), b.status.as_str().into());
    executors(&mut lines, a, b);
    let keys: BTreeSet<&String> = a.shared_state.keys().chain(b.shared_state.keys()).collect();
    for key in keys {
        let name = format!("shared_state {key}");
        compare(
            &mut lines,
            &name,
            a.shared_state.get(key),
            b.shared_state.get(key),
        );
    }
    queues(&mut lines, a, b);
    listed(&mut lines, "pending requests", &requests(a), &requests(b));
    listed(&mut lines, "responses", &responses(a), &responses(b));
    if a.outputs.len() != b.outputs.len() {
        let (x, y) = (a.outputs.len(), b.outputs.len());
        lines.push(format!("outputs: {x} -> {y}"));
    }
    lines
}

/// Each executor's state and component.
fn executors(lines: &mut Vec<String>, a: &Checkpoint, b: &Checkpoint) {
    let ids: BTreeSet<&String> = a.executors.keys().chain(b.executors.keys()).collect();
    for id in ids {
        let (x, y) = (a.executors.get(id), b.executors.get(id));
        let name = format!("executor {id} state");
        compare(lines, &name, x.map(|e| &e.state), y.map(|e| &e.state));
        if let (Some(x), Some(y)) = (x, y)
            && x.component != y.component
        {
            let (x, y) = (&x.component, &y.component);
            lines.push(format!("executor {id} component: {x} -> {y}"));
        }
    }
}

/// Each executor's queue: the messages of both sides when they differ.
fn queues(lines: &mut Vec<String>, a: &Checkpoint, b: &Checkpoint) {
    let targets: BTreeSet<&String> = a.queued.keys().chain(b.queued.keys()).collect();
    for id in targets {
        let render = |c: &Checkpoint| -> Vec<String> {
            let queue = c.queued.get(id).into_iter().flatten();
            queue
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
}

fn requests(c: &Checkpoint) -> Vec<String> {
    let line = |r: &super::RequestRecord| {
        let body = r.body.to_text();
        format!("{} from {} ({}): {body}", r.request_id, r.executor, r.kind)
    };
    c.pending_requests.iter().map(line).collect()
}

fn responses(c: &Checkpoint) -> Vec<String> {
    let responses = c.responses.values().flatten();
    responses
        .map(|r| format!("{} ({}): {}", r.request_id, r.kind, r.body.to_text()))
        .collect()
}

/// A list whose entries differ: the counts, then what went and what came.
fn listed(lines: &mut Vec<String>, name: &str, x: &[String], y: &[String]) {
    if x == y {
        return;
    }
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

fn compare(lines: &mut Vec<String>, name: &str, x: Option<&Payload>, y: Option<&Payload>) {
    match (x.map(Payload::to_text), y.map(Payload::to_text)) {
        (None, Some(y)) => lines.push(format!("{name}: added {y}")),
        (Some(x), None) => lines.push(format!("{name}: removed (was {x})")),
        (Some(x), Some(y)) if x != y && same_json_value(&x, &y) => {
            lines.push(format!(
                "{name}: the same JSON value, written differently (key order or spacing)"
            ));
        }
        (Some(x), Some(y)) if x != y => {
            lines.push(format!("{name}: changed"));
            lines.push(format!("  - {x}"));
            lines.push(format!("  + {y}"));
        }
        _ => {}
    }
}

/// Whether two payload texts are JSON holding the same value (objects compared by key,
/// not order). JSON a value cannot hold (too deep, numbers past `f64`) counts as
/// different.
fn same_json_value(x: &str, y: &str) -> bool {
    let value = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
    matches!((value(x), value(y)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::super::{RequestRecord, Status};
    use super::*;

    #[test]
    fn the_same_run_state_has_no_differences() {
        let a = sample();
        let mut b = sample();
        b.checkpoint_id = "0190-other".into();
        b.created_at = "2027-01-01T00:00:00Z".into();
        assert!(diff(&a, &b).is_empty());
    }

    #[test]
    fn json_states_compare_as_values() {
        let a = sample();
        let mut b = sample();
        let state = |text: &str| Payload::encode(text.as_bytes());
        b.executors.get_mut("a").unwrap().state = state(r#"{ "count" : 1 }"#);
        assert_eq!(
            diff(&a, &b),
            ["executor a state: the same JSON value, written differently (key order or spacing)"]
        );
        let mut reordered = sample();
        reordered.executors.get_mut("a").unwrap().state = state(r#"{"x":1,"count":1}"#);
        let mut other = sample();
        other.executors.get_mut("a").unwrap().state = state(r#"{"count":1,"x":1}"#);
        assert_eq!(diff(&reordered, &other).len(), 1);
        other.executors.get_mut("a").unwrap().state = state(r#"{"count":1,"x":2}"#);
        assert_eq!(diff(&reordered, &other)[0], "executor a state: changed");
    }

    #[test]
    fn names_each_change_with_both_sides() {
        let a = sample();
        let mut b = sample();
        b.superstep = 2;
        b.status = Status::AwaitingInput;
        b.executors.get_mut("a").unwrap().state = Payload::encode(br#"{"count":2}"#);
        b.shared_state.clear();
        b.shared_state.insert("new".into(), Payload::encode(b"1"));
        b.queued.clear();
        b.pending_requests.push(RequestRecord {
            request_id: "a:1:1".into(),
            executor: "a".into(),
            superstep: 1,
            kind: "ask".into(),
            body: Payload::encode(b"\"ok?\""),
        });
        assert_eq!(
            diff(&a, &b),
            [
                "superstep: 1 -> 2",
                "status: running -> awaiting-input",
                "executor a state: changed",
                "  - {\"count\":1}",
                "  + {\"count\":2}",
                "shared_state k: removed (was (base64) AAE=)",
                "shared_state new: added 1",
                "queued for a: 1 -> 0 message(s)",
                "  - from a (text): \"hi\"",
                "pending requests: 0 -> 1",
                "  + a:1:1 from a (ask): \"ok?\"",
            ]
        );
    }
}
