//! The HTTP API, one module per resource; each handler is described for the OpenAPI
//! document (`GET /v1/openapi.json`) by its `#[utoipa::path]`, so the document is
//! generated from the routes themselves.

mod body;
mod checkpoints;
mod events;
mod requests;
mod runs;
mod workflows;

pub use body::JsonBody;

use super::catalog::SharedCatalog;
use super::problem::{Answer, ErrorBody, Problem};
use super::runs::Runs;
use axum::Json;
use axum::routing::get;
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The runs.
    pub runs: Arc<dyn Runs>,
    /// The workflows that may be run.
    pub catalog: SharedCatalog,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "superstep",
        description = "Start, follow, answer, resume and cancel workflow runs whose executors are WebAssembly components; read their checkpoints. Every call needs the server's token as `Authorization: Bearer <token>`."
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerToken),
    security(("token" = []))
)]
struct ApiDoc;

/// Declares the bearer token every call needs.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        components.add_security_scheme("token", SecurityScheme::Http(scheme));
    }
}

/// The API's routes (under `/v1`), and `/v1/openapi.json` describing them.
pub fn router(state: AppState) -> axum::Router {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(workflows::list))
        .routes(routes!(runs::start, runs::list))
        .routes(routes!(runs::get))
        .routes(routes!(runs::resume))
        .routes(routes!(runs::cancel))
        .routes(routes!(events::stream))
        .routes(routes!(requests::list))
        .routes(routes!(requests::answer))
        .routes(routes!(checkpoints::tree))
        .routes(routes!(checkpoints::show))
        .with_state(state)
        .split_for_parts();
    let openapi = Arc::new(openapi);
    router.route(
        "/v1/openapi.json",
        get(move || async move { Json(openapi.as_ref().clone()) }),
    )
}

/// Runs `work` (which may block on a file or the database) on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Answer<T> + Send + 'static,
) -> Answer<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(Problem::internal(format!("the request's work failed: {e}"))))
}

/// Refuses a run id that is not one (ids hold letters, digits and `-`).
fn check_run_id(run_id: &str) -> Answer<()> {
    if crate::checkpoint::is_plain_id(run_id) {
        Ok(())
    } else {
        Err(Problem::unprocessable(format!(
            "'{run_id}' is not a run id (ids hold letters, digits and '-')"
        )))
    }
}
