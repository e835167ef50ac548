//! `/v1/runs/{id}/requests`: a run's requests for outside input, and answering them.

use super::{AppState, JsonBody, blocking, check_run_id};
use crate::message::{Message, RESPONSE_KIND, parse_request_id};
use crate::server::problem::{Answer, ErrorBody, Problem};
use crate::server::runs::RequestView;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// A run's pending requests.
#[derive(Serialize, ToSchema)]
pub struct RequestList {
    requests: Vec<RequestView>,
}

/// The run's requests waiting for an answer, oldest first.
#[utoipa::path(get, path = "/v1/runs/{run_id}/requests", tag = "requests",
    params(("run_id" = String, Path, description = "The run")),
    responses((status = 200, body = RequestList), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> Answer<Json<RequestList>> {
    check_run_id(&run_id)?;
    let runs = state.runs.clone();
    let requests = blocking(move || runs.pending(&run_id)).await?;
    Ok(Json(RequestList { requests }))
}

/// An answer.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// The response: any JSON, as the asking executor expects it.
    #[schema(value_type = Object)]
    response: Box<RawValue>,
}

/// An answer taken.
#[derive(Serialize, ToSchema)]
pub struct Answered {
    run_id: String,
    request_id: String,
}

/// Answers one pending request; a paused run goes on at once. 409 if the request is
/// not pending (never asked, or answered already).
#[utoipa::path(post, path = "/v1/runs/{run_id}/requests/{request_id}", tag = "requests",
    params(("run_id" = String, Path, description = "The run"),
        ("request_id" = String, Path, description = "The request (`<executor>:<superstep>:<n>`)")),
    request_body = AnswerRequest,
    responses((status = 202, body = Answered), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn answer(
    State(state): State<AppState>,
    Path((run_id, request_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<AnswerRequest>,
) -> Answer<(StatusCode, Json<Answered>)> {
    check_run_id(&run_id)?;
    if parse_request_id(&request_id).is_none() {
        return Err(Problem::unprocessable(format!(
            "'{request_id}' is not a request id (<executor>:<superstep>:<n>)"
        )));
    }
    let response = Message {
        kind: RESPONSE_KIND.to_string(),
        body: bytes::Bytes::from(body.response.get().as_bytes().to_vec()),
    };
    let runs = state.runs.clone();
    let (run, request) = (run_id.clone(), request_id.clone());
    blocking(move || runs.respond(&run, &request, response)).await?;
    Ok((StatusCode::ACCEPTED, Json(Answered { run_id, request_id })))
}
