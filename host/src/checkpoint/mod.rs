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
mod diff;
mod durable_file;
pub mod journal;
pub mod lineage;
mod prune;
pub mod signing;
mod store;

pub use diff::diff;
pub use prune::{PrunePolicy, plan as plan_prune};
pub use signing::SigningKeys;
#[cfg(test)]
pub(crate) use store::save_in_turn;
pub use store::{
    CheckpointStore, FileStore, ListFilter, Listed, MemoryStore, Pruned, export, read_file,
};

use crate::error::invalid;
use crate::hash::sha256_hex;
use crate::message::{BlobRef, INPUT_SOURCE, Payload, parse_request_id};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet};

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
}

/// Reads a JSON object into a map, refusing a key that appears twice (which a plain map
/// would take the last of, silently).
fn unique_keys<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
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

#[derive(Deserialize)]
struct DocumentIn<'a> {
    format: Option<String>,
    format_version: Option<serde_json::Value>,
    checksum: Option<String>,
    signature: Option<String>,
    #[serde(borrow)]
    checkpoint: Option<&'a RawValue>,
}

impl Checkpoint {
    /// The checkpoint as a file's bytes, unsigned.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_signed(None)
    }

    /// The checkpoint as a file's bytes, signed with the signing key of `keys` if any.
    pub fn encode_signed(&self, keys: Option<&SigningKeys>) -> Vec<u8> {
        // The envelope is written by hand around the content, which serde_json writes:
        // the checksum (and signature) cover exactly the bytes that follow
        // `"checkpoint": `. The head goes first with placeholders of the same length,
        // replaced once the content is hashed, so that the content is written once, in
        // place.
        let head = |checksum: &str, signature: Option<&str>| {
            let signature = signature
                .map(|s| format!("\n  \"signature\": \"{s}\","))
                .unwrap_or_default();
            format!(
                "{{\n  \"format\": \"{FORMAT}\",\n  \"format_version\": {FORMAT_VERSION},\n  \"checksum\": \"{checksum}\",{signature}\n  \"checkpoint\": "
            )
        };
        let unsigned = keys.map(|keys| "0".repeat(keys.signature_len()));
        let placeholder = head(&sha256_hex(b""), unsigned.as_deref());
        let mut bytes = Vec::with_capacity(placeholder.len() + self.size_hint());
        bytes.extend_from_slice(placeholder.as_bytes());
        serde_json::to_writer_pretty(&mut bytes, self).expect("a checkpoint serialises");
        let content = &bytes[placeholder.len()..];
        let signature = keys.map(|keys| keys.sign(content));
        let head = head(&sha256_hex(content), signature.as_deref());
        debug_assert_eq!(head.len(), placeholder.len());
        bytes[..head.len()].copy_from_slice(head.as_bytes());
        bytes.extend_from_slice(b"\n}\n");
        bytes
    }

    /// About how many bytes the encoded checkpoint takes (without blobs), to allocate
    /// once.
    pub(crate) fn size_hint(&self) -> usize {
        let payloads: usize = self.blob_capable().map(|(_, p)| p.len()).sum::<usize>()
            + self.outputs.iter().map(|o| o.body.len()).sum::<usize>();
        1024 + payloads + 256 * (self.executors.len() + self.queued_count() + self.outputs.len())
    }

    /// Reads a checkpoint from a file's bytes; `origin` names the file in errors.
    /// Refuses anything that is not a complete, unaltered checkpoint of a format
    /// version this build reads. Shared bodies are put in place; blob references are
    /// left for the store to resolve.
    pub fn decode(bytes: &[u8], origin: &str) -> Result<Checkpoint> {
        Checkpoint::decode_verified(bytes, origin, None)
    }

    /// [`Checkpoint::decode`], also refusing, when `keys` are given, a file that they
    /// did not sign (see [`signing`]).
    pub fn decode_verified(
        bytes: &[u8],
        origin: &str,
        keys: Option<&SigningKeys>,
    ) -> Result<Checkpoint> {
        let inner = verified_content(bytes, origin, keys)?;
        let mut checkpoint: Checkpoint = serde_json::from_str(inner)
            .map_err(|e| invalid(format!("{origin}: malformed checkpoint content: {e}")))?;
        checkpoint
            .check()
            .map_err(|why| invalid(format!("{origin}: {why}")))?;
        checkpoint.inline_shared_bodies();
        Ok(checkpoint)
    }

    /// Puts each shared body in the place of the references to it (checked to exist).
    fn inline_shared_bodies(&mut self) {
        let shared = std::mem::take(&mut self.shared_bodies);
        for message in self.queued.values_mut().flatten() {
            if let Payload::Shared(n) = message.body {
                message.body = shared[n].clone();
            }
        }
    }

    /// Consistency checks that the JSON schema alone does not make.
    fn check(&self) -> Result<(), String> {
        check_ids(&self.checkpoint_id, self.parent_id.as_deref())?;
        for (field, payload) in self.blob_capable() {
            match payload {
                Payload::Blob(blob) => blobs::check_ref(&field.to_string(), blob)?,
                Payload::Shared(n) if matches!(field, Field::QueuedBody(..)) => {
                    if *n >= self.shared_bodies.len() {
                        return Err(format!(
                            "{field}: shared body {n} does not exist (there are {})",
                            self.shared_bodies.len()
                        ));
                    }
                }
                _ => drop(payload.decode().map_err(|e| format!("{field}: {e}"))?),
            }
        }
        let payloads = self
            .shared_state
            .iter()
            .map(|(k, v)| (format!("shared_state.{k}"), v))
            .chain(
                self.pending_requests
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("pending_requests[{i}].body"), &r.body)),
            )
            .chain(self.responses.iter().flat_map(|(id, responses)| {
                responses
                    .iter()
                    .enumerate()
                    .map(move |(i, r)| (format!("responses.{id}[{i}].body"), &r.body))
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
        self.check_references()?;
        let expected = Status::of(self.queued_count(), self.pending_requests.len());
        if self.status != expected {
            return Err(format!(
                "status is {} but {} message(s) or response(s) are queued and {} request(s) pending (that is {})",
                self.status.as_str(),
                self.queued_count(),
                self.pending_requests.len(),
                expected.as_str()
            ));
        }
        Ok(())
    }

    /// Checks that everything the checkpoint names is in it: queues, requests, responses
    /// and outputs name its executors, and happened before its superstep.
    pub(crate) fn check_references(&self) -> Result<(), String> {
        let known = |id: &str| self.executors.contains_key(id);
        let before = |field: &str, superstep: u64| {
            if superstep < self.superstep {
                Ok(())
            } else {
                Err(format!(
                    "{field}: superstep {superstep} is not before the checkpoint's own ({})",
                    self.superstep
                ))
            }
        };
        for (id, queue) in &self.queued {
            if !known(id) {
                return Err(format!("queued: messages for unknown executor '{id}'"));
            }
            for (i, message) in queue.iter().enumerate() {
                let input = message.source == INPUT_SOURCE && self.superstep == 0;
                if !input && !known(&message.source) {
                    return Err(format!(
                        "queued.{id}[{i}].source: unknown executor '{}'",
                        message.source
                    ));
                }
            }
        }
        let mut asked = BTreeSet::new();
        for (i, request) in self.pending_requests.iter().enumerate() {
            let field = format!("pending_requests[{i}]");
            if !known(&request.executor) {
                return Err(format!(
                    "{field}.executor: unknown executor '{}'",
                    request.executor
                ));
            }
            before(&format!("{field}.superstep"), request.superstep)?;
            let made_by = parse_request_id(&request.request_id)
                .is_some_and(|(e, s, _)| e == request.executor && s == request.superstep);
            if !made_by {
                return Err(format!(
                    "{field}.request_id: '{}' is not the id of a request that executor '{}' made in superstep {}",
                    request.request_id, request.executor, request.superstep
                ));
            }
            if !asked.insert(request.request_id.as_str()) {
                return Err(format!(
                    "{field}.request_id: request '{}' is listed twice",
                    request.request_id
                ));
            }
        }
        for (id, responses) in &self.responses {
            if !known(id) {
                return Err(format!("responses: responses for unknown executor '{id}'"));
            }
            for (i, response) in responses.iter().enumerate() {
                let field = format!("responses.{id}[{i}].request_id");
                let superstep = parse_request_id(&response.request_id)
                    .filter(|(executor, _, _)| executor == id)
                    .map(|(_, superstep, _)| superstep)
                    .ok_or_else(|| {
                        format!(
                            "{field}: '{}' is not the id of a request of executor '{id}'",
                            response.request_id
                        )
                    })?;
                before(&field, superstep)?;
                if !asked.insert(response.request_id.as_str()) {
                    return Err(format!(
                        "{field}: request '{}' is answered twice, or both answered and pending",
                        response.request_id
                    ));
                }
            }
        }
        for (i, output) in self.outputs.iter().enumerate() {
            if !known(&output.source) {
                return Err(format!(
                    "outputs[{i}].source: unknown executor '{}'",
                    output.source
                ));
            }
            before(&format!("outputs[{i}].superstep"), output.superstep)?;
        }
        Ok(())
    }

    /// How many messages and responses are queued for the next superstep.
    pub fn queued_count(&self) -> usize {
        self.queued.values().map(Vec::len).sum::<usize>()
            + self.responses.values().map(Vec::len).sum::<usize>()
    }

    /// The checkpoint's listing summary.
    pub fn summary(&self) -> Summary {
        Summary {
            checkpoint_id: self.checkpoint_id.clone(),
            parent_id: self.parent_id.clone(),
            run_id: self.run_id.clone(),
            workflow: self.workflow.clone(),
            superstep: self.superstep,
            created_at: self.created_at.clone(),
            status: self.status,
            executors: self.executors.keys().cloned().collect(),
            shared_keys: self.shared_state.keys().cloned().collect(),
            queued: self.queued_count(),
            pending: self.pending_requests.len(),
            outputs: self.outputs.len(),
            blobs: distinct(self.blob_refs().cloned().collect()),
        }
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

/// What a listing shows of a checkpoint; read without decoding any state, message or
/// output (but only after the file's checksum is verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The checkpoint's id.
    pub checkpoint_id: String,
    /// The checkpoint the superstep started from.
    pub parent_id: Option<String>,
    /// The run it belongs to.
    pub run_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// Supersteps completed.
    pub superstep: u64,
    /// When it was taken (RFC 3339, UTC).
    pub created_at: String,
    /// Where the run stood.
    pub status: Status,
    /// Executor ids.
    pub executors: Vec<String>,
    /// Shared-state keys.
    pub shared_keys: Vec<String>,
    /// How many messages and responses are queued.
    pub queued: usize,
    /// How many requests for outside input are pending.
    pub pending: usize,
    /// How many outputs were emitted so far.
    pub outputs: usize,
    /// The blobs it refers to (for executor states and shared bodies), by digest.
    pub blobs: Vec<BlobRef>,
}

/// The header fields of a checkpoint, everything else skipped by the raw JSON scanner.
#[derive(Deserialize)]
struct SummaryView<'a> {
    checkpoint_id: String,
    parent_id: Option<String>,
    run_id: String,
    workflow: String,
    superstep: u64,
    created_at: String,
    status: Status,
    #[serde(borrow, deserialize_with = "unique_keys")]
    executors: BTreeMap<String, ExecutorView<'a>>,
    #[serde(deserialize_with = "unique_keys")]
    shared_state: BTreeMap<String, serde::de::IgnoredAny>,
    #[serde(borrow, deserialize_with = "unique_keys")]
    queued: BTreeMap<String, Vec<QueuedView<'a>>>,
    #[serde(default, borrow)]
    shared_bodies: Vec<&'a RawValue>,
    #[serde(default)]
    pending_requests: Vec<serde::de::IgnoredAny>,
    #[serde(default, deserialize_with = "unique_keys")]
    responses: BTreeMap<String, Vec<serde::de::IgnoredAny>>,
    outputs: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ExecutorView<'a> {
    #[serde(borrow)]
    state: &'a RawValue,
}

#[derive(Deserialize)]
struct QueuedView<'a> {
    #[serde(borrow)]
    body: &'a RawValue,
}

/// The blob a payload's raw JSON refers to, if it is `{"blob": …}`; checked.
fn blob_in(raw: &RawValue, field: &str) -> Result<Option<BlobRef>, String> {
    // A payload is a one-key object: `{"json": …}`, `{"base64": …}` or `{"blob": …}`.
    let text = raw.get();
    let key = text.strip_prefix('{').map(str::trim_start);
    if !key.is_some_and(|key| key.starts_with("\"blob\"")) {
        return Ok(None);
    }
    match serde_json::from_str(text) {
        Ok(Payload::Blob(blob)) => blobs::check_ref(field, &blob).map(|()| Some(blob)),
        Ok(_) => Ok(None),
        Err(e) => Err(format!("{field}: {e}")),
    }
}

impl Summary {
    /// Verifies a checkpoint file's bytes like [`Checkpoint::decode`] and reads its
    /// summary without decoding states, messages or outputs.
    pub fn read(bytes: &[u8], origin: &str) -> Result<Summary> {
        Summary::read_verified(bytes, origin, None)
    }

    /// [`Summary::read`], also refusing, when `keys` are given, a file that they did
    /// not sign.
    pub fn read_verified(
        bytes: &[u8],
        origin: &str,
        keys: Option<&SigningKeys>,
    ) -> Result<Summary> {
        let inner = verified_content(bytes, origin, keys)?;
        let bad =
            |e: serde_json::Error| invalid(format!("{origin}: malformed checkpoint content: {e}"));
        let view: SummaryView = serde_json::from_str(inner).map_err(bad)?;
        let states = view
            .executors
            .iter()
            .map(|(id, e)| (format!("executors.{id}.state"), e.state));
        let shared = view
            .shared_bodies
            .iter()
            .enumerate()
            .map(|(n, body)| (format!("shared_bodies[{n}]"), *body));
        let bodies = view.queued.iter().flat_map(|(id, queue)| {
            queue
                .iter()
                .enumerate()
                .map(move |(i, m)| (format!("queued.{id}[{i}].body"), m.body))
        });
        let mut blobs = Vec::new();
        for (field, raw) in states.chain(shared).chain(bodies) {
            if let Some(blob) =
                blob_in(raw, &field).map_err(|why| invalid(format!("{origin}: {why}")))?
            {
                blobs.push(blob);
            }
        }
        check_ids(&view.checkpoint_id, view.parent_id.as_deref())
            .map_err(|why| invalid(format!("{origin}: {why}")))?;
        Ok(Summary {
            checkpoint_id: view.checkpoint_id,
            parent_id: view.parent_id,
            run_id: view.run_id,
            workflow: view.workflow,
            superstep: view.superstep,
            created_at: view.created_at,
            status: view.status,
            executors: view.executors.into_keys().collect(),
            shared_keys: view.shared_state.into_keys().collect(),
            queued: view.queued.values().map(Vec::len).sum::<usize>()
                + view.responses.values().map(Vec::len).sum::<usize>(),
            pending: view.pending_requests.len(),
            outputs: view.outputs.len(),
            blobs: distinct(blobs),
        })
    }
}

/// `blobs` sorted by digest, each once.
fn distinct(mut blobs: Vec<BlobRef>) -> Vec<BlobRef> {
    blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
    blobs.dedup();
    blobs
}

/// Checks a checkpoint file's envelope (text, JSON, format, version, checksum, and the
/// signature when `keys` are given) and returns the exact text of its `checkpoint`
/// value.
fn verified_content<'a>(
    bytes: &'a [u8],
    origin: &str,
    keys: Option<&SigningKeys>,
) -> Result<&'a str> {
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
    let readable = u64::from(OLDEST_FORMAT_VERSION)..=u64::from(FORMAT_VERSION);
    if !version.as_u64().is_some_and(|v| readable.contains(&v)) {
        return Err(bad(format!(
            "checkpoint format version {version} is not supported (this superstep reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
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
    if let Some(keys) = keys {
        keys.verify(document.signature.as_deref(), inner.get().as_bytes())
            .map_err(bad)?;
    }
    Ok(inner.get())
}

/// Checks that a checkpoint's own id and its parent's can name files.
fn check_ids(checkpoint_id: &str, parent_id: Option<&str>) -> Result<(), String> {
    if !is_plain_id(checkpoint_id) {
        return Err(format!("checkpoint_id '{checkpoint_id}' is not a plain id"));
    }
    match parent_id {
        Some(parent) if !is_plain_id(parent) => {
            Err(format!("parent_id '{parent}' is not a plain id"))
        }
        _ => Ok(()),
    }
}

/// Checkpoint ids name files: only ASCII letters, digits and `-`.
pub fn is_plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
pub(crate) mod tests {
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
            shared_bodies: vec![],
            pending_requests: vec![],
            responses: BTreeMap::new(),
            outputs: vec![],
        }
    }

    /// `sample` with one body queued for `a` and `b` written once.
    fn fanned_out(body: &[u8]) -> Checkpoint {
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

    #[test]
    fn a_shared_body_is_written_once_and_read_into_each_queue() {
        let body = format!("\"{}\"", "x".repeat(2000));
        let bytes = fanned_out(body.as_bytes()).encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.matches(&"x".repeat(2000)).count(), 1);
        assert_eq!(text.matches("\"shared\": 0").count(), 2);
        let back = Checkpoint::decode(&bytes, "f").unwrap();
        assert!(back.shared_bodies.is_empty());
        for id in ["a", "b"] {
            assert_eq!(back.queued[id][0].body.decode().unwrap(), body.as_bytes());
        }
        assert_eq!(Summary::read(&bytes, "f").unwrap().queued, 2);
    }

    #[test]
    fn refuses_a_shared_body_that_is_missing_or_out_of_place() {
        let err = |c: Checkpoint| {
            Checkpoint::decode(&c.encode(), "f.json")
                .unwrap_err()
                .to_string()
        };
        let mut missing = fanned_out(b"[1]");
        missing.queued.get_mut("b").unwrap()[0].body = Payload::Shared(1);
        assert!(
            err(missing)
                .contains("f.json: queued.b[0].body: shared body 1 does not exist (there are 1)")
        );
        let mut in_state = fanned_out(b"[1]");
        in_state.executors.get_mut("a").unwrap().state = Payload::Shared(0);
        assert!(err(in_state).contains("executors.a.state: a reference to shared body 0"));
        let mut nested = fanned_out(b"[1]");
        nested.shared_bodies[0] = Payload::Shared(0);
        assert!(err(nested).contains("shared_bodies[0]: a reference to shared body 0"));
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
        let v1 = text.replace("\"format_version\": 2", "\"format_version\": 1");
        assert!(Checkpoint::decode(v1.as_bytes(), "f.json").is_ok());
        let v3 = text.replace("\"format_version\": 2", "\"format_version\": 3");
        assert!(
            err(v3.as_bytes()).contains(
                "format version 3 is not supported (this superstep reads versions 1 to 2)"
            )
        );
        let tampered = text.replace("\"count\":1", "\"count\":2");
        assert!(err(tampered.as_bytes()).contains("checksum mismatch"));
    }

    fn refusal(checkpoint: &Checkpoint) -> String {
        Checkpoint::decode(&checkpoint.encode(), "f.json")
            .unwrap_err()
            .to_string()
    }

    fn request(executor: &str, superstep: u64, n: usize) -> RequestRecord {
        RequestRecord {
            request_id: crate::message::request_id(executor, superstep, n),
            executor: executor.into(),
            superstep,
            kind: "ask".into(),
            body: Payload::encode(b"1"),
        }
    }

    #[test]
    fn refuses_references_to_executors_it_does_not_hold() {
        let mut queue_for_stranger = sample();
        let queue = queue_for_stranger.queued.remove("a").unwrap();
        queue_for_stranger.queued.insert("z".into(), queue);
        assert!(
            refusal(&queue_for_stranger).ends_with("queued: messages for unknown executor 'z'")
        );
        let mut from_stranger = sample();
        from_stranger.queued.get_mut("a").unwrap()[0].source = "z".into();
        assert!(refusal(&from_stranger).ends_with("queued.a[0].source: unknown executor 'z'"));
        let mut late_input = sample();
        late_input.queued.get_mut("a").unwrap()[0].source = INPUT_SOURCE.into();
        assert!(refusal(&late_input).ends_with("queued.a[0].source: unknown executor '$input'"));
        let mut output = sample();
        output.outputs.push(OutputRecord {
            superstep: 0,
            source: "z".into(),
            kind: "k".into(),
            body: Payload::encode(b"1"),
        });
        assert!(refusal(&output).ends_with("outputs[0].source: unknown executor 'z'"));
        output.outputs[0].source = "a".into();
        output.outputs[0].superstep = 1;
        assert!(
            refusal(&output).ends_with(
                "outputs[0].superstep: superstep 1 is not before the checkpoint's own (1)"
            )
        );
    }

    #[test]
    fn refuses_requests_and_responses_that_no_executor_could_have_made() {
        let with = |requests: Vec<RequestRecord>, responses: Vec<(&str, &str)>| {
            let mut checkpoint = sample();
            checkpoint.pending_requests = requests;
            for (executor, id) in responses {
                checkpoint
                    .responses
                    .entry(executor.into())
                    .or_default()
                    .push(ResponseRecord {
                        request_id: id.into(),
                        kind: "response".into(),
                        body: Payload::encode(b"true"),
                    });
            }
            checkpoint
        };
        assert!(
            Checkpoint::decode(
                &with(vec![request("a", 0, 1)], vec![("a", "a:0:2")]).encode(),
                "f"
            )
            .is_ok()
        );
        assert!(
            refusal(&with(vec![request("z", 0, 1)], vec![]))
                .ends_with("pending_requests[0].executor: unknown executor 'z'")
        );
        assert!(refusal(&with(vec![request("a", 1, 1)], vec![])).ends_with(
            "pending_requests[0].superstep: superstep 1 is not before the checkpoint's own (1)"
        ));
        let mut misnamed = request("a", 0, 1);
        misnamed.request_id = "b:0:1".into();
        assert!(refusal(&with(vec![misnamed], vec![])).ends_with(
            "pending_requests[0].request_id: 'b:0:1' is not the id of a request that executor 'a' made in superstep 0"
        ));
        assert!(
            refusal(&with(vec![request("a", 0, 1), request("a", 0, 1)], vec![]))
                .ends_with("pending_requests[1].request_id: request 'a:0:1' is listed twice")
        );
        assert!(
            refusal(&with(vec![], vec![("z", "z:0:1")]))
                .ends_with("responses: responses for unknown executor 'z'")
        );
        assert!(refusal(&with(vec![], vec![("a", "b:0:1")])).ends_with(
            "responses.a[0].request_id: 'b:0:1' is not the id of a request of executor 'a'"
        ));
        assert!(refusal(&with(vec![], vec![("a", "a:1:1")])).ends_with(
            "responses.a[0].request_id: superstep 1 is not before the checkpoint's own (1)"
        ));
        assert!(
            refusal(&with(vec![request("a", 0, 1)], vec![("a", "a:0:1")]))
                .ends_with("request 'a:0:1' is answered twice, or both answered and pending")
        );
    }

    #[test]
    fn refuses_a_key_given_twice() {
        let text = String::from_utf8(sample().encode()).unwrap();
        let start = text.find("\"checkpoint\": ").unwrap() + "\"checkpoint\": ".len();
        let end = text.rfind('}').unwrap();
        let content = &text[start..end].trim_end();
        let doubled = content.replacen(
            "\"executors\": {",
            "\"executors\": {\"a\": {\"component\": \"sha256:11\", \"state\": {\"json\": 2}},",
            1,
        );
        let file = format!(
            "{{\"format\": \"{FORMAT}\", \"format_version\": 2, \"checksum\": \"{}\", \"checkpoint\": {doubled}}}",
            sha256_hex(doubled.as_bytes())
        );
        let error = Checkpoint::decode(file.as_bytes(), "f.json")
            .unwrap_err()
            .to_string();
        assert!(error.contains("key 'a' appears twice"), "{error}");
        let error = Summary::read(file.as_bytes(), "f.json")
            .unwrap_err()
            .to_string();
        assert!(error.contains("key 'a' appears twice"), "{error}");
    }

    #[test]
    fn a_signed_checkpoint_reads_only_with_a_key_that_signed_it() {
        let keys = |text: &str| SigningKeys::parse(text, "keys").unwrap();
        let current = keys("k2:0123456789abcdef-two\nk1:0123456789abcdef-one");
        let retired = keys("k2:0123456789abcdef-two");
        let old = keys("k1:0123456789abcdef-one");
        let signed = sample().encode_signed(Some(&old));
        let read = |bytes: &[u8], keys: &SigningKeys| {
            Checkpoint::decode_verified(bytes, "f.json", Some(keys)).map(|c| c.encode())
        };
        assert_eq!(read(&signed, &current).unwrap(), sample().encode());
        assert!(
            Checkpoint::decode(&signed, "f.json").is_ok(),
            "without keys, nothing is checked"
        );
        let error = read(&signed, &retired).unwrap_err().to_string();
        assert!(
            error.contains("f.json: signed with key 'k1', which is not configured"),
            "{error}"
        );
        let error = read(&sample().encode(), &current).unwrap_err().to_string();
        assert!(error.contains("f.json: not signed"), "{error}");
        // Changed, with the checksum made right again: only the signature tells.
        let text = String::from_utf8(signed).unwrap();
        let content_at = text.find("\"checkpoint\": ").unwrap() + "\"checkpoint\": ".len();
        let changed = text[content_at..text.len() - 3].replace("\"count\":1", "\"count\":9");
        let checksum_at = text.find("sha256:").unwrap();
        let forged = format!(
            "{}{}{}{changed}\n}}\n",
            &text[..checksum_at],
            sha256_hex(changed.as_bytes()),
            &text[checksum_at + 71..content_at]
        );
        assert!(Checkpoint::decode(forged.as_bytes(), "f.json").is_ok());
        let error = read(forged.as_bytes(), &current).unwrap_err().to_string();
        assert!(
            error.contains("the signature does not verify with key 'k1'"),
            "{error}"
        );
        let summary = Summary::read_verified(forged.as_bytes(), "f.json", Some(&current));
        assert!(summary.is_err());
    }
}
