//! Snapshot verification: whether an executor's `snapshot` gives back the state its
//! `restore` took. A guest whose snapshot and restore lose or change state is the
//! commonest bug of hand-written executors, in any language.

use super::Workflow;
use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::error::bad_checkpoint;
use crate::events::EventSink;
use serde_json::Value;
use std::sync::Arc;

/// How faithfully a state came back from `restore` then `snapshot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fidelity {
    /// The same bytes.
    Identical,
    /// Other bytes holding the same JSON value (key order or spacing differ).
    EqualAsJson,
    /// Not the same: the first difference, in words.
    Differs(String),
}

impl Fidelity {
    /// How `again` (the snapshot after a restore) compares with `stored`.
    pub fn of(stored: &[u8], again: &[u8]) -> Fidelity {
        if stored == again {
            return Fidelity::Identical;
        }
        let json = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).ok();
        match (json(stored), json(again)) {
            (Some(x), Some(y)) if x == y => Fidelity::EqualAsJson,
            (Some(x), Some(y)) => Fidelity::Differs(
                first_json_difference("$", &x, &y).expect("unequal values differ somewhere"),
            ),
            _ => Fidelity::Differs(first_byte_difference(stored, again)),
        }
    }

    /// Whether the state survived (as bytes or as JSON).
    pub fn is_faithful(&self) -> bool {
        !matches!(self, Fidelity::Differs(_))
    }
}

impl std::fmt::Display for Fidelity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fidelity::Identical => f.write_str("identical"),
            Fidelity::EqualAsJson => f.write_str("equal as JSON (the bytes differ)"),
            Fidelity::Differs(how) => write!(f, "differs: {how}"),
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

/// One executor's verdict in [`Workflow::verify_snapshots`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The executor.
    pub executor: String,
    /// How its state came back.
    pub fidelity: Fidelity,
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
    ) -> Result<Fidelity> {
        let mut instance = self.restored_instance(i, sink, state, origin)?;
        let again = instance
            .snapshot()
            .map_err(|reason| anyhow::anyhow!("executor '{}': {reason}", self.graph().id(i)))?;
        Ok(Fidelity::of(state, &again))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(x: &str, y: &str) -> String {
        Fidelity::of(x.as_bytes(), y.as_bytes()).to_string()
    }

    #[test]
    fn states_compare_as_bytes_then_as_json() {
        assert_eq!(of(r#"{"a":1}"#, r#"{"a":1}"#), "identical");
        assert_eq!(
            of(r#"{"a":1,"b":2}"#, r#"{"b": 2, "a": 1}"#),
            "equal as JSON (the bytes differ)"
        );
        assert!(Fidelity::of(b"{}", b"{ }").is_faithful());
        assert!(!Fidelity::of(b"{}", b"[]").is_faithful());
    }

    #[test]
    fn the_first_json_difference_is_named_by_its_path() {
        assert_eq!(
            of(r#"{"count":3,"last":"x"}"#, r#"{"count":0,"last":"x"}"#),
            "differs: $.count: 3 -> 0"
        );
        assert_eq!(
            of(
                r#"{"a":{"items":[1,2,{"k":true}]}}"#,
                r#"{"a":{"items":[1,2,{"k":false}]}}"#
            ),
            "differs: $.a.items[2].k: true -> false"
        );
        assert_eq!(
            of(r#"{"a":1,"b":2}"#, r#"{"a":1}"#),
            "differs: $.b: 2 -> missing"
        );
        assert_eq!(
            of(r#"{"a":1}"#, r#"{"a":1,"c":[]}"#),
            "differs: $.c: missing -> []"
        );
        assert_eq!(
            of("[1,2]", "[1]"),
            "differs: $: an array of 2 -> an array of 1"
        );
        assert_eq!(of("1", "\"1\""), "differs: $: 1 -> \"1\"");
    }

    #[test]
    fn other_bytes_differ_at_a_byte_or_in_length() {
        assert_eq!(
            Fidelity::of(b"\x00\x01\x02", b"\x00\x09\x02").to_string(),
            "differs: byte 1: 0x01 -> 0x09"
        );
        assert_eq!(
            Fidelity::of(b"\x00\x01", b"\x00\x01\x02").to_string(),
            "differs: 2 bytes -> 3 bytes"
        );
    }
}
