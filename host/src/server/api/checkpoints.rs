//! A run's checkpoint tree, and one checkpoint in full (as `checkpoints show` prints
//! it) or one executor's state in it.

use super::{AppState, blocking, check_run_id};
use crate::checkpoint::{ListFilter, Summary, lineage};
use crate::error::did_you_mean;
use crate::message::Payload;
use crate::server::problem::{Answer, ErrorBody, Problem};
use crate::server::runs::resolve;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One checkpoint of a tree.
#[derive(Serialize, ToSchema)]
pub struct CheckpointNode {
    checkpoint_id: String,
    /// The checkpoint its superstep started from: the tree's edge.
    parent_id: Option<String>,
    /// Supersteps completed.
    superstep: u64,
    /// `running`, `awaiting-input` or `completed`.
    status: String,
    /// When it was taken (RFC 3339).
    created_at: String,
    /// The executors whose states it holds.
    executors: Vec<String>,
    /// Messages and responses queued.
    queued: usize,
    /// Requests pending.
    pending: usize,
    /// Outputs emitted so far.
    outputs: usize,
    /// What was edited, in words, when it was made by `checkpoints fork`; else empty.
    edits: Vec<String>,
}

impl From<&Summary> for CheckpointNode {
    fn from(summary: &Summary) -> CheckpointNode {
        CheckpointNode {
            checkpoint_id: summary.checkpoint_id.clone(),
            parent_id: summary.parent_id.clone(),
            superstep: summary.superstep,
            status: summary.status.as_str().to_string(),
            created_at: summary.created_at.clone(),
            executors: summary.executors.clone(),
            queued: summary.queued,
            pending: summary.pending,
            outputs: summary.outputs,
            edits: summary
                .edit
                .iter()
                .flat_map(|edit| edit.changes.iter().map(ToString::to_string))
                .collect(),
        }
    }
}

/// A run's checkpoints: a tree by `parent_id`, branching where an older checkpoint
/// was resumed.
#[derive(Serialize, ToSchema)]
pub struct CheckpointTree {
    run_id: String,
    /// The end of the longest chain: where the run goes on from.
    latest: Option<String>,
    /// Oldest first.
    checkpoints: Vec<CheckpointNode>,
}

/// The run's checkpoints, as a tree by `parent_id`.
#[utoipa::path(get, path = "/v1/runs/{run_id}/checkpoints", tag = "checkpoints",
    params(("run_id" = String, Path, description = "The run")),
    responses((status = 200, body = CheckpointTree), (status = 404, body = ErrorBody)))]
pub async fn tree(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> Answer<Json<CheckpointTree>> {
    check_run_id(&run_id)?;
    let runs = state.runs.clone();
    let tree = blocking(move || {
        runs.get(&run_id)?;
        let filter = ListFilter {
            run: Some(run_id.clone()),
            ..ListFilter::default()
        };
        let listed = runs.store().list_matching(&filter)?;
        let summaries: Vec<&Summary> = listed
            .iter()
            .filter_map(|l| l.summary.as_ref().ok())
            .filter(|s| s.run_id == run_id)
            .collect();
        let latest = lineage::latest(&summaries, Some(&run_id)).map(|s| s.checkpoint_id.clone());
        let mut checkpoints: Vec<CheckpointNode> =
            summaries.iter().map(|s| CheckpointNode::from(*s)).collect();
        checkpoints.sort_by(|a, b| (a.superstep, &a.created_at).cmp(&(b.superstep, &b.created_at)));
        Ok(CheckpointTree {
            run_id,
            latest,
            checkpoints,
        })
    })
    .await?;
    Ok(Json(tree))
}

/// What of a checkpoint to show.
#[derive(Deserialize, IntoParams)]
pub struct Part {
    /// Only this executor's state: as JSON when it is JSON, else its bytes.
    state: Option<String>,
}

/// One checkpoint in full, verified, as `superstep checkpoints show` prints it; or one
/// executor's state in it.
#[utoipa::path(get, path = "/v1/checkpoints/{checkpoint_id}", tag = "checkpoints",
    params(("checkpoint_id" = String, Path, description = "A checkpoint id or unique prefix"), Part),
    responses(
        (status = 200, description = "The checkpoint document", body = Object),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Path(checkpoint_id): Path<String>,
    Query(part): Query<Part>,
) -> Answer<Response> {
    let runs = state.runs.clone();
    blocking(move || {
        let store = runs.store();
        let id = resolve(&*store, &checkpoint_id)?;
        let checkpoint = store.load(&id)?;
        let Some(executor) = part.state else {
            let json =
                serde_json::to_string(&checkpoint).map_err(|e| Problem::internal(e.to_string()))?;
            return Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response());
        };
        let record = checkpoint.executors.get(&executor).ok_or_else(|| {
            let ids = checkpoint.executors.keys().map(String::as_str);
            Problem::not_found(format!(
                "checkpoint {id} has no executor '{executor}'{} (executors: {})",
                did_you_mean(&executor, ids.clone()),
                ids.collect::<Vec<_>>().join(", ")
            ))
        })?;
        let bytes = record.state.decode().map_err(Problem::internal)?;
        let kind = match Payload::encode(&bytes) {
            Payload::Json(_) => "application/json",
            _ => "application/octet-stream",
        };
        Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
    })
    .await
}
