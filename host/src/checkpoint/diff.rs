//! What changed between two checkpoints: executor states, shared state, queues,
//! pending requests, responses and outputs; and how two payloads' bytes compare.

use super::Checkpoint;
use crate::message::Payload;
use serde_json::Value;
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
    listed(&mut lines, "outputs", &outputs(a), &outputs(b));
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

fn outputs(c: &Checkpoint) -> Vec<String> {
    let line = |o: &super::OutputRecord| {
        let body = o.body.to_text();
        format!(
            "superstep {} from {} ({}): {body}",
            o.superstep, o.source, o.kind
        )
    };
    c.outputs.iter().map(line).collect()
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
        (Some(x), Some(y)) => match Comparison::of(x.as_bytes(), y.as_bytes()) {
            Comparison::Identical => {}
            Comparison::EqualAsJson => lines.push(format!(
                "{name}: the same JSON value, written differently (key order or spacing)"
            )),
            Comparison::Differs(_) => {
                lines.push(format!("{name}: changed"));
                lines.push(format!("  - {x}"));
                lines.push(format!("  + {y}"));
            }
        },
        (None, None) => {}
    }
}

/// How two byte strings compare (a state against the same state restored and
/// snapshotted again, or against another checkpoint's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// The same bytes.
    Identical,
    /// Other bytes holding the same JSON value (key order or spacing differ).
    EqualAsJson,
    /// Not the same: the first difference, in words.
    Differs(String),
}

impl Comparison {
    /// How `again` compares with `stored`.
    pub fn of(stored: &[u8], again: &[u8]) -> Comparison {
        if stored == again {
            return Comparison::Identical;
        }
        // JSON a value cannot hold (too deep, numbers past `f64`) counts as different.
        let json = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).ok();
        match (json(stored), json(again)) {
            (Some(x), Some(y)) if x == y => Comparison::EqualAsJson,
            (Some(x), Some(y)) => Comparison::Differs(
                first_json_difference("$", &x, &y).expect("unequal values differ somewhere"),
            ),
            _ => Comparison::Differs(first_byte_difference(stored, again)),
        }
    }

    /// Whether the two hold the same (as bytes or as JSON).
    pub fn is_faithful(&self) -> bool {
        !matches!(self, Comparison::Differs(_))
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Comparison::Identical => f.write_str("identical"),
            Comparison::EqualAsJson => f.write_str("equal as JSON (the bytes differ)"),
            Comparison::Differs(how) => write!(f, "differs: {how}"),
        }
    }
}

/// Where two JSON values first differ, as `<path>: <stored> -> <again>`.
fn first_json_difference(path: &str, x: &Value, y: &Value) -> Option<String> {
    if x == y {
        return None;
    }
    match (x, y) {
        (Value::Object(a), Value::Object(b)) => {
            let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
            keys.map(|key| {
                let at = format!("{path}.{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => first_json_difference(&at, x, y),
                    (Some(x), None) => Some(format!("{at}: {x} -> missing")),
                    (None, Some(y)) => Some(format!("{at}: missing -> {y}")),
                    (None, None) => None,
                }
            })
            .find_map(|difference| difference)
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_json_difference(&format!("{path}[{i}]"), x, y)),
        (Value::Array(a), Value::Array(b)) => Some(format!(
            "{path}: an array of {} -> an array of {}",
            a.len(),
            b.len()
        )),
        _ => Some(format!("{path}: {x} -> {y}")),
    }
}

/// Where two byte strings first differ.
fn first_byte_difference(x: &[u8], y: &[u8]) -> String {
    match x.iter().zip(y).position(|(a, b)| a != b) {
        Some(at) => format!("byte {at}: 0x{:02x} -> 0x{:02x}", x[at], y[at]),
        None => format!("{} bytes -> {} bytes", x.len(), y.len()),
    }
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
        b.outputs.push(crate::checkpoint::OutputRecord {
            superstep: 1,
            source: "a".into(),
            kind: "text".into(),
            body: Payload::encode(b"\"done\""),
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
                "outputs: 0 -> 1",
                "  + superstep 1 from a (text): \"done\"",
            ]
        );
    }

    fn compared(x: &str, y: &str) -> String {
        Comparison::of(x.as_bytes(), y.as_bytes()).to_string()
    }

    #[test]
    fn states_compare_as_bytes_then_as_json() {
        assert_eq!(compared(r#"{"a":1}"#, r#"{"a":1}"#), "identical");
        assert_eq!(
            compared(r#"{"a":1,"b":2}"#, r#"{"b": 2, "a": 1}"#),
            "equal as JSON (the bytes differ)"
        );
        assert!(Comparison::of(b"{}", b"{ }").is_faithful());
        assert!(!Comparison::of(b"{}", b"[]").is_faithful());
    }

    #[test]
    fn the_first_json_difference_is_named_by_its_path() {
        assert_eq!(
            compared(r#"{"count":3,"last":"x"}"#, r#"{"count":0,"last":"x"}"#),
            "differs: $.count: 3 -> 0"
        );
        assert_eq!(
            compared(
                r#"{"a":{"items":[1,2,{"k":true}]}}"#,
                r#"{"a":{"items":[1,2,{"k":false}]}}"#
            ),
            "differs: $.a.items[2].k: true -> false"
        );
        assert_eq!(
            compared(r#"{"a":1,"b":2}"#, r#"{"a":1}"#),
            "differs: $.b: 2 -> missing"
        );
        assert_eq!(
            compared(r#"{"a":1}"#, r#"{"a":1,"c":[]}"#),
            "differs: $.c: missing -> []"
        );
        assert_eq!(
            compared("[1,2]", "[1]"),
            "differs: $: an array of 2 -> an array of 1"
        );
        assert_eq!(compared("1", "\"1\""), "differs: $: 1 -> \"1\"");
    }

    #[test]
    fn other_bytes_differ_at_a_byte_or_in_length() {
        assert_eq!(
            Comparison::of(b"\x00\x01\x02", b"\x00\x09\x02").to_string(),
            "differs: byte 1: 0x01 -> 0x09"
        );
        assert_eq!(
            Comparison::of(b"\x00\x01", b"\x00\x01\x02").to_string(),
            "differs: 2 bytes -> 3 bytes"
        );
    }
}
