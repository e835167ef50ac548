//! The checkpoint document: what a barrier saves and a resume reads back.
//!
//! A checkpoint file is one JSON document:
//! `{"format": "superstep-checkpoint", "format_version": 1, "checksum": "sha256:…",
//! "checkpoint": {…}}`, where the checksum covers the exact bytes of the `checkpoint`
//! value. Reading checks the format, the version and the checksum before anything
//! inside is trusted.

mod diff;
mod prune;
mod store;

pub use diff::diff;
pub use prune::{PrunePolicy, plan as plan_prune};
pub use store::{CheckpointStore, FileStore, Listed, MemoryStore};

use crate::error::invalid;
use crate::graph::sha256_hex;
use crate::message::Payload;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The `format` field of every checkpoint file.
pub const FORMAT: &str = "superstep-checkpoint";
/// The checkpoint format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Where the run stood when the checkpoint was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Messages are queued for the next superstep.
    Running,
    /// Nothing is queued: the run is over.
    Completed,
}

impl Status {
    /// The status as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
        }
    }
}

/// One checkpoint: everything a fresh process needs to carry the run on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// This checkpoint's id (also its file name, with `.json`).
    pub checkpoint_id: String,
    /// The checkpoint the superstep started from; `None` for a run's first.
    pub parent_id: Option<String>,
    /// The run this checkpoint belongs to; branches keep their run's id.
    pub run_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// Supersteps completed so far: the next superstep to run.
    pub superstep: u64,
    /// When the checkpoint was taken (RFC 3339, UTC).
    pub created_at: String,
    /// Where the run stood.
    pub status: Status,
    /// The manifest the run uses.
    pub manifest: ManifestRef,
    /// Per executor: its component's digest and its snapshot.
    pub executors: BTreeMap<String, ExecutorRecord>,
    /// The committed shared state.
    pub shared_state: BTreeMap<String, Payload>,
    /// Messages queued for the next superstep, per receiving executor, in delivery order.
    pub queued: BTreeMap<String, Vec<QueuedMessage>>,
    /// Every output emitted since the run began.
    pub outputs: Vec<OutputRecord>,
}

/// The manifest a checkpoint was taken with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRef {
    /// The manifest's absolute path when the checkpoint was taken.
    pub path: String,
    /// SHA-256 of the workflow graph (name, start, executors, edges).
    pub digest: String,
}

/// One executor's record in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorRecord {
    /// SHA-256 of the component file that produced the state.
    pub component: String,
    /// What the executor's `snapshot` returned.
    pub state: Payload,
}

/// A message waiting for the next superstep.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuedMessage {
    /// The sending executor.
    pub source: String,
    /// The message kind.
    pub kind: String,
    /// The message body.
    pub body: Payload,
}

/// A workflow output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputRecord {
    /// The superstep that emitted it.
    pub superstep: u64,
    /// The executor that yielded it.
    pub source: String,
    /// The message kind.
    pub kind: String,
    /// The body.
    pub body: Payload,
}

#[derive(Serialize)]
struct DocumentOut<'a> {
    format: &'static str,
    format_version: u32,
    checksum: String,
    checkpoint: &'a RawValue,
}

#[derive(Deserialize)]
struct DocumentIn<'a> {
    format: Option<String>,
    format_version: Option<serde_json::Value>,
    checksum: Option<String>,
    #[serde(borrow)]
    checkpoint: Option<&'a RawValue>,
}

impl Checkpoint {
    /// The checkpoint as a file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let inner = serde_json::to_string_pretty(self).expect("a checkpoint serialises");
        let inner: Box<RawValue> = RawValue::from_string(inner).expect("serde_json wrote JSON");
        let document = DocumentOut {
            format: FORMAT,
            format_version: FORMAT_VERSION,
            checksum: sha256_hex(inner.get().as_bytes()),
            checkpoint: &inner,
        };
        let mut bytes = serde_json::to_vec_pretty(&document).expect("a checkpoint serialises");
        bytes.push(b'\n');
        bytes
    }

    /// Reads a checkpoint from a file's bytes; `origin` names the file in errors.
    /// Refuses anything that is not a complete, unaltered checkpoint of this format
    /// version.
    pub fn decode(bytes: &[u8], origin: &str) -> Result<Checkpoint> {
        let bad = |why: String| invalid(format!("{origin}: {why}"));
        let text = std::str::from_utf8(bytes)
            .map_err(|_| bad("not a superstep checkpoint (not UTF-8 text)".into()))?;
        let document: DocumentIn = serde_json::from_str(text).map_err(|e| {
            if e.is_eof() {
                bad(format!(
                    "truncated checkpoint file (the JSON ends early: {e})"
                ))
            } else {
                bad(format!("not a superstep checkpoint (not valid JSON: {e})"))
            }
        })?;
        if document.format.as_deref() != Some(FORMAT) {
            return Err(bad(format!(
                "not a superstep checkpoint (no \"format\": \"{FORMAT}\")"
            )));
        }
        let version = document.format_version.unwrap_or_default();
        if version.as_u64() != Some(u64::from(FORMAT_VERSION)) {
            return Err(bad(format!(
                "checkpoint format version {version} is not supported (this superstep reads version {FORMAT_VERSION})"
            )));
        }
        let (Some(checksum), Some(inner)) = (document.checksum, document.checkpoint) else {
            return Err(bad(
                "incomplete checkpoint (\"checksum\" or \"checkpoint\" is missing)".into(),
            ));
        };
        let actual = sha256_hex(inner.get().as_bytes());
        if checksum != actual {
            return Err(bad(format!(
                "checksum mismatch: the file says {checksum} but its content hashes to {actual}; it was changed or damaged after it was written"
            )));
        }
        let checkpoint: Checkpoint = serde_json::from_str(inner.get())
            .map_err(|e| bad(format!("malformed checkpoint content: {e}")))?;
        checkpoint.check().map_err(bad)?;
        Ok(checkpoint)
    }

    /// Consistency checks that the JSON schema alone does not make.
    fn check(&self) -> Result<(), String> {
        if !is_plain_id(&self.checkpoint_id) {
            return Err(format!(
                "checkpoint_id '{}' is not a plain id",
                self.checkpoint_id
            ));
        }
        if let Some(parent) = &self.parent_id
            && !is_plain_id(parent)
        {
            return Err(format!("parent_id '{parent}' is not a plain id"));
        }
        let payloads = self
            .executors
            .iter()
            .map(|(id, e)| (format!("executors.{id}.state"), &e.state))
            .chain(
                self.shared_state
                    .iter()
                    .map(|(k, v)| (format!("shared_state.{k}"), v)),
            )
            .chain(self.queued.iter().flat_map(|(id, queue)| {
                queue
                    .iter()
                    .enumerate()
                    .map(move |(i, m)| (format!("queued.{id}[{i}].body"), &m.body))
            }))
            .chain(
                self.outputs
                    .iter()
                    .enumerate()
                    .map(|(i, o)| (format!("outputs[{i}].body"), &o.body)),
            );
        for (field, payload) in payloads {
            payload.decode().map_err(|e| format!("{field}: {e}"))?;
        }
        match (self.status, self.queued.values().all(Vec::is_empty)) {
            (Status::Completed, false) => Err("status is completed but messages are queued".into()),
            (Status::Running, true) => Err("status is running but no message is queued".into()),
            _ => Ok(()),
        }
    }

    /// How many messages are queued.
    pub fn queued_count(&self) -> usize {
        self.queued.values().map(Vec::len).sum()
    }
}

/// Checkpoint ids name files: only ASCII letters, digits and `-`.
pub fn is_plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Checkpoint {
        Checkpoint {
            checkpoint_id: "0190-abc".into(),
            parent_id: None,
            run_id: "run-1".into(),
            workflow: "w".into(),
            superstep: 1,
            created_at: "2026-01-01T00:00:00Z".into(),
            status: Status::Running,
            manifest: ManifestRef {
                path: "/m.toml".into(),
                digest: "sha256:00".into(),
            },
            executors: BTreeMap::from([(
                "a".to_string(),
                ExecutorRecord {
                    component: "sha256:11".into(),
                    state: Payload::encode(br#"{"count":1}"#),
                },
            )]),
            shared_state: BTreeMap::from([("k".to_string(), Payload::encode(b"\x00\x01"))]),
            queued: BTreeMap::from([(
                "a".to_string(),
                vec![QueuedMessage {
                    source: "a".into(),
                    kind: "text".into(),
                    body: Payload::encode(b"\"hi\""),
                }],
            )]),
            outputs: vec![],
        }
    }

    #[test]
    fn round_trips() {
        let bytes = sample().encode();
        let back = Checkpoint::decode(&bytes, "f").unwrap();
        assert_eq!(back.encode(), bytes);
        assert_eq!(
            back.executors["a"].state.decode().unwrap(),
            &br#"{"count":1}"#[..]
        );
    }

    #[test]
    fn refuses_damage() {
        let bytes = sample().encode();
        let err = |b: &[u8]| Checkpoint::decode(b, "f.json").unwrap_err().to_string();
        assert!(err(&bytes[..bytes.len() / 2]).contains("f.json: truncated checkpoint file"));
        assert!(err(b"hello").contains("not valid JSON"));
        assert!(err(b"{\"a\":1}").contains("not a superstep checkpoint"));
        let text = String::from_utf8(bytes.clone()).unwrap();
        let v2 = text.replace("\"format_version\": 1", "\"format_version\": 2");
        assert!(err(v2.as_bytes()).contains("format version 2 is not supported"));
        let tampered = text.replace("\"count\":1", "\"count\":2");
        assert!(err(tampered.as_bytes()).contains("checksum mismatch"));
    }
}
