//! The checkpoint document: what a barrier saves and a resume reads back.
//!
//! A checkpoint file is one JSON document:
//! `{"format": "superstep-checkpoint", "format_version": 2, "checksum": "sha256:…",
//! "checkpoint": {…}}`, where the checksum covers the exact bytes of the `checkpoint`
//! value. Reading checks the format, the version and the checksum before anything
//! inside is trusted. A body queued for several executors is written once, in
//! `shared_bodies`. A file store may keep large executor states and shared bodies
//! beside the file as content-addressed blobs (see [`blobs`]).

pub mod blobs;
mod checks;
mod codec;
mod diff;
mod durable_file;
pub mod fork;
pub mod journal;
pub mod lineage;
mod prune;
pub mod signing;
mod store;
mod summary;

pub use checks::is_plain_id;
pub use diff::{Comparison, diff};
pub use prune::{PrunePolicy, plan as plan_prune};
pub use signing::SigningKeys;
#[cfg(test)]
pub(crate) use store::save_in_turn;
pub use store::{
    CheckpointStore, FileStore, Found, ListFilter, Listed, MemoryStore, PostgresStore, Pruned,
    export, is_postgres_url, read_file,
};
pub use summary::Summary;

use crate::message::{BlobRef, Payload};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `format` field of every checkpoint file.
pub const FORMAT: &str = "superstep-checkpoint";
/// The checkpoint format version this build writes.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest checkpoint format version this build reads (version 2 added
/// `shared_bodies`).
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// A body of at least this many bytes queued for more than one executor (a fan-out) is
/// written once, in `shared_bodies`, instead of once per receiver.
pub const SHARED_BODY_MIN_SIZE: usize = 1024;

/// Where the run stood when the checkpoint was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Messages or responses are queued for the next superstep.
    Running,
    /// Nothing is queued but requests for outside input are pending: the run is paused
    /// until they are answered.
    AwaitingInput,
    /// Nothing is queued or pending: the run is over.
    Completed,
}

impl Status {
    /// The status as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::AwaitingInput => "awaiting-input",
            Status::Completed => "completed",
        }
    }

    /// The status of a run with this much left to do.
    pub fn of(queued: usize, pending: usize) -> Status {
        match (queued, pending) {
            (0, 0) => Status::Completed,
            (0, _) => Status::AwaitingInput,
            _ => Status::Running,
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
    #[serde(deserialize_with = "unique_keys")]
    pub executors: BTreeMap<String, ExecutorRecord>,
    /// The committed shared state.
    #[serde(deserialize_with = "unique_keys")]
    pub shared_state: BTreeMap<String, Payload>,
    /// Messages queued for the next superstep, per receiving executor, in delivery order.
    #[serde(deserialize_with = "unique_keys")]
    pub queued: BTreeMap<String, Vec<QueuedMessage>>,
    /// Bodies queued for several executors, each written once: a queued body
    /// `{"shared": n}` is entry `n`. Only in checkpoints being written: reading one puts
    /// each body in its place and leaves this empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_bodies: Vec<Payload>,
    /// Requests for outside input that have no response yet, oldest first.
    #[serde(default)]
    pub pending_requests: Vec<RequestRecord>,
    /// Responses to deliver in the next superstep, per requesting executor, in order.
    #[serde(default, deserialize_with = "unique_keys")]
    pub responses: BTreeMap<String, Vec<ResponseRecord>>,
    /// Every output emitted since the run began.
    pub outputs: Vec<OutputRecord>,
    /// In a checkpoint made by [`fork::fork`] only: what was edited, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit: Option<fork::Edit>,
}

/// Reads a JSON object into a map, refusing a key that appears twice (which a plain map
/// would take the last of, silently).
pub(super) fn unique_keys<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object with distinct keys")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, V>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!(
                        "key '{key}' appears twice"
                    )));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Unique(std::marker::PhantomData))
}

/// A request for outside input that waits for its response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRecord {
    /// The request id (`<executor>:<superstep>:<n>`).
    pub request_id: String,
    /// The executor that asked.
    pub executor: String,
    /// The superstep it asked in.
    pub superstep: u64,
    /// The request's kind.
    pub kind: String,
    /// What it asked, as the executor wrote it.
    pub body: Payload,
}

/// A response waiting to be delivered to the executor that asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseRecord {
    /// The request it answers.
    pub request_id: String,
    /// The response's kind.
    pub kind: String,
    /// The response.
    pub body: Payload,
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

impl Checkpoint {
    /// How many messages and responses are queued for the next superstep.
    pub fn queued_count(&self) -> usize {
        self.queued.values().map(Vec::len).sum::<usize>()
            + self.responses.values().map(Vec::len).sum::<usize>()
    }

    /// The blobs that executor states and queued bodies refer to.
    pub fn blob_refs(&self) -> impl Iterator<Item = &BlobRef> {
        self.blob_capable()
            .filter_map(|(_, payload)| match payload {
                Payload::Blob(blob) => Some(blob),
                _ => None,
            })
    }

    /// The payloads a file store may keep as blobs, with their fields: executor states,
    /// shared bodies and (in files of format version 1) queued message bodies.
    pub fn blob_capable(&self) -> impl Iterator<Item = (Field<'_>, &Payload)> {
        let states = self
            .executors
            .iter()
            .map(|(id, e)| (Field::State(id), &e.state));
        let shared = self
            .shared_bodies
            .iter()
            .enumerate()
            .map(|(n, body)| (Field::SharedBody(n), body));
        let bodies = self.queued.iter().flat_map(|(id, queue)| {
            queue
                .iter()
                .enumerate()
                .map(move |(i, m)| (Field::QueuedBody(id, i), &m.body))
        });
        states.chain(shared).chain(bodies)
    }

    /// [`Checkpoint::blob_capable`], to change.
    pub fn blob_capable_mut(&mut self) -> impl Iterator<Item = (Field<'_>, &mut Payload)> {
        let states = self
            .executors
            .iter_mut()
            .map(|(id, e)| (Field::State(id), &mut e.state));
        let shared = self
            .shared_bodies
            .iter_mut()
            .enumerate()
            .map(|(n, body)| (Field::SharedBody(n), body));
        let bodies = self.queued.iter_mut().flat_map(|(id, queue)| {
            queue
                .iter_mut()
                .enumerate()
                .map(move |(i, m)| (Field::QueuedBody(id, i), &mut m.body))
        });
        states.chain(shared).chain(bodies)
    }
}

/// Where a payload that may be kept as a blob sits in a checkpoint; displayed as
/// errors name it (`executors.<id>.state`, `shared_bodies[n]`, `queued.<id>[i].body`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// The state of the executor with this id.
    State(&'a str),
    /// Entry `n` of `shared_bodies`.
    SharedBody(usize),
    /// The body of message `i` queued for the executor with this id.
    QueuedBody(&'a str, usize),
}

impl std::fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::State(id) => write!(f, "executors.{id}.state"),
            Field::SharedBody(n) => write!(f, "shared_bodies[{n}]"),
            Field::QueuedBody(id, i) => write!(f, "queued.{id}[{i}].body"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A summary of checkpoint `id` of `run`, made at `created_at`, with nothing in it.
    pub(crate) fn bare_summary(
        id: &str,
        parent: Option<&str>,
        run: &str,
        created_at: &str,
    ) -> Summary {
        Summary {
            checkpoint_id: id.into(),
            parent_id: parent.map(str::to_string),
            run_id: run.into(),
            workflow: "w".into(),
            superstep: 0,
            created_at: created_at.into(),
            status: Status::Running,
            executors: vec![],
            shared_keys: vec![],
            queued: 0,
            pending: 0,
            outputs: 0,
            blobs: vec![],
            edit: None,
        }
    }

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
            shared_bodies: vec![],
            pending_requests: vec![],
            responses: BTreeMap::new(),
            outputs: vec![],
            edit: None,
        }
    }

    /// `sample` with one body queued for `a` and `b` written once.
    pub(crate) fn fanned_out(body: &[u8]) -> Checkpoint {
        let mut checkpoint = sample();
        let message = |body| QueuedMessage {
            source: "a".into(),
            kind: "big".into(),
            body,
        };
        let b = checkpoint.executors["a"].clone();
        checkpoint.executors.insert("b".into(), b);
        checkpoint.shared_bodies = vec![Payload::encode(body)];
        checkpoint.queued = BTreeMap::from([
            ("a".to_string(), vec![message(Payload::Shared(0))]),
            ("b".to_string(), vec![message(Payload::Shared(0))]),
        ]);
        checkpoint
    }
}
