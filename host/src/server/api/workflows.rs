//! `GET /v1/workflows`: what may be run.

use super::AppState;
use crate::server::catalog::WorkflowInfo;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

/// The workflows under the server's `--workflows` directory.
#[derive(Serialize, ToSchema)]
pub struct WorkflowList {
    /// Every manifest found, by id; those that cannot be run say why in `error`.
    workflows: Vec<WorkflowInfo>,
}

/// The workflows that may be run, with their graphs.
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows",
    responses((status = 200, body = WorkflowList)))]
pub async fn list(State(state): State<AppState>) -> Json<WorkflowList> {
    Json(WorkflowList {
        workflows: state.catalog.list(),
    })
}
