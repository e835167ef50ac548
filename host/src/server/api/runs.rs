//! `/v1/runs`: start runs, list them, look at one, resume it from a checkpoint, cancel
//! it.

use super::{AppState, JsonBody, blocking, check_run_id};
use crate::hash::sha256_hex;
use crate::message::Message;
use crate::server::problem::{Answer, ErrorBody, Problem};
use crate::server::runs::{Idempotency, NewRun, RunDetail, RunStatus, RunSummary, Started};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/runs`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The workflow's id (see `GET /v1/workflows`).
    workflow: String,
    /// The input message's body: any JSON.
    #[schema(value_type = Object)]
    input: Box<RawValue>,
    /// The input message's kind.
    #[serde(default = "input_kind")]
    input_kind: String,
}

fn input_kind() -> String {
    "input".to_string()
}

/// The longest `Idempotency-Key` taken.
const MAX_KEY: usize = 255;

/// Starts a run. With an `Idempotency-Key`, a retried request returns the run the
/// first one started (200 instead of 201); the same key with another request is 422.
#[utoipa::path(post, path = "/v1/runs", tag = "runs",
    request_body = StartRun,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried POST return the same run")),
    responses(
        (status = 201, description = "Started", body = Started),
        (status = 200, description = "Started earlier with the same Idempotency-Key", body = Started),
        (status = 413, body = ErrorBody),
        (status = 422, description = "Unknown workflow, bad input kind, key reused", body = ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<StartRun>,
) -> Answer<Response> {
    if body.input_kind.is_empty() || body.input_kind.len() > 128 {
        return Err(Problem::unprocessable(
            "input_kind: 1 to 128 characters, e.g. \"input\"",
        ));
    }
    let idempotency = idempotency(&headers, &body)?;
    let new = NewRun {
        workflow: body.workflow,
        input: Message {
            kind: body.input_kind,
            body: bytes::Bytes::from(body.input.get().as_bytes().to_vec()),
        },
        idempotency,
    };
    let runs = state.runs.clone();
    let started = blocking(move || runs.start(new)).await?;
    let status = if started.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/v1/runs/{}", started.run_id);
    Ok((status, [(header::LOCATION, location)], Json(started)).into_response())
}

/// The request's `Idempotency-Key`, if it has one, with a digest of what it asks.
fn idempotency(headers: &HeaderMap, body: &StartRun) -> Answer<Option<Idempotency>> {
    let Some(key) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY)
        .ok_or_else(|| {
            Problem::unprocessable(format!(
                "Idempotency-Key: 1 to {MAX_KEY} visible ASCII characters"
            ))
        })?;
    let request = [&body.workflow, &body.input_kind, body.input.get()].map(|s| s.as_bytes());
    Ok(Some(Idempotency {
        key: key.to_string(),
        request: sha256_hex(&request.join(&0u8)),
    }))
}

/// `GET /v1/runs` filters.
#[derive(Deserialize, IntoParams)]
pub struct RunFilter {
    /// Only runs with this status: queued, running, paused, cancelled, completed,
    /// failed.
    status: Option<String>,
    /// Only runs of this workflow id.
    workflow: Option<String>,
}

/// The runs, newest first.
#[derive(Serialize, ToSchema)]
pub struct RunList {
    runs: Vec<RunSummary>,
}

/// The runs, newest first.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(RunFilter),
    responses((status = 200, body = RunList), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Query(filter): Query<RunFilter>,
) -> Answer<Json<RunList>> {
    let status = filter
        .status
        .as_deref()
        .map(|s| {
            RunStatus::parse(s).ok_or_else(|| {
                let names: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
                Problem::unprocessable(format!("status '{s}': one of {}", names.join(", ")))
            })
        })
        .transpose()?;
    let runs = state.runs.clone();
    let listed = blocking(move || runs.list(status, filter.workflow.as_deref())).await?;
    Ok(Json(RunList { runs: listed }))
}

/// A run: where it stands, its outputs, its pending requests, its last checkpoint.
#[utoipa::path(get, path = "/v1/runs/{run_id}", tag = "runs",
    params(("run_id" = String, Path, description = "The run")),
    responses((status = 200, body = RunDetail), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> Answer<Json<RunDetail>> {
    check_run_id(&run_id)?;
    let runs = state.runs.clone();
    let detail = blocking(move || runs.detail(&run_id)).await?;
    Ok(Json(detail))
}

/// `POST /v1/runs/{id}/resume`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRun {
    /// The checkpoint to go on from (an id or unique prefix; one of this run's):
    /// an older one starts a branch. Default: the run's newest.
    checkpoint: Option<String>,
}

/// A run resumed.
#[derive(Serialize, ToSchema)]
pub struct Resumed {
    run_id: String,
    /// The checkpoint it goes on from.
    checkpoint: String,
}

/// Runs a stopped run on from one of its checkpoints: an older one starts a branch
/// (the checkpoint tree shows it). 409 while the run is running.
#[utoipa::path(post, path = "/v1/runs/{run_id}/resume", tag = "runs",
    params(("run_id" = String, Path, description = "The run")),
    request_body = ResumeRun,
    responses((status = 202, body = Resumed), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn resume(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    JsonBody(body): JsonBody<ResumeRun>,
) -> Answer<(StatusCode, Json<Resumed>)> {
    check_run_id(&run_id)?;
    let runs = state.runs.clone();
    let id = run_id.clone();
    let checkpoint = blocking(move || runs.resume(&id, body.checkpoint.as_deref())).await?;
    Ok((StatusCode::ACCEPTED, Json(Resumed { run_id, checkpoint })))
}

/// A cancel taken.
#[derive(Serialize, ToSchema)]
pub struct Cancelling {
    run_id: String,
}

/// Stops a running run at its next barrier, its checkpoint saved: it ends
/// `cancelled`, and `resume` goes on from there. 409 if it is not running.
#[utoipa::path(post, path = "/v1/runs/{run_id}/cancel", tag = "runs",
    params(("run_id" = String, Path, description = "The run")),
    responses((status = 202, body = Cancelling), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> Answer<(StatusCode, Json<Cancelling>)> {
    check_run_id(&run_id)?;
    let runs = state.runs.clone();
    let id = run_id.clone();
    blocking(move || runs.cancel(&id)).await?;
    Ok((StatusCode::ACCEPTED, Json(Cancelling { run_id })))
}
