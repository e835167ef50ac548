//! What a listing shows of a checkpoint, read from a file's bytes without decoding any
//! state, message or output (only after the file's checksum is verified).

use super::checks::check_ids;
use super::codec::verified_content;
use super::fork::Edit;
use super::{Checkpoint, SigningKeys, Status, blobs, unique_keys};
use crate::error::Result;
use crate::error::bad_checkpoint;
use crate::message::{BlobRef, Payload};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

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
    /// What was edited, in a checkpoint made by forking another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit: Option<Edit>,
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
    #[serde(default)]
    edit: Option<Edit>,
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
        let bad = |e: serde_json::Error| {
            bad_checkpoint(
                origin.to_string(),
                format!("malformed checkpoint content: {e}"),
            )
        };
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
                blob_in(raw, &field).map_err(|why| bad_checkpoint(origin.to_string(), why))?
            {
                blobs.push(blob);
            }
        }
        check_ids(&view.checkpoint_id, view.parent_id.as_deref())
            .map_err(|why| bad_checkpoint(origin.to_string(), why))?;
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
            edit: view.edit,
        })
    }
}

/// `blobs` sorted by digest, each once.
fn distinct(mut blobs: Vec<BlobRef>) -> Vec<BlobRef> {
    blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
    blobs.dedup();
    blobs
}

impl Checkpoint {
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
            edit: self.edit.clone(),
        }
    }
}
