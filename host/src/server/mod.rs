//! `superstep serve`: the HTTP API and the web page, over the same engine and stores
//! as the command line.
//!
//! | module | what |
//! | --- | --- |
//! | [`catalog`] | the manifests under `--workflows`: the only workflows a request can name |
//! | [`runs`] | runs as the server sees them, and the way they are run: [`runs::local`] |
//! | `api` | the `/v1` routes, one module per resource, and their OpenAPI document |
//! | `page` | the web page, its files built into the binary |
//! | `auth` | the token every call needs |
//! | [`problem`] | errors as statuses with a JSON body |

mod api;
mod auth;
pub mod catalog;
mod page;
pub mod problem;
pub mod runs;

pub use auth::TOKEN_ENV;

use crate::checkpoint::CheckpointStore;
use crate::engine::{Runner, RunnerLimits};
use crate::error::{Result, host, invalid};
use api::AppState;
use auth::Token;
use axum::Router;
use catalog::Catalog;
use runs::Runs;
use runs::local::LocalRuns;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// What a server serves, and where.
pub struct ServeConfig {
    /// The address to listen on (port 0: any free one).
    pub listen: SocketAddr,
    /// The directory whose manifests may be run.
    pub workflows: PathBuf,
    /// Where the runs' checkpoints go.
    pub store: Arc<dyn CheckpointStore>,
    /// How many runs execute at once (0: the runner's default).
    pub workers: usize,
}

/// A server bound to its address, not yet serving.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: Router,
    token: Arc<Token>,
    /// Whether the token was made here (and so must be shown once).
    token_generated: bool,
    runtime: tokio::runtime::Runtime,
    catalog: Arc<Catalog>,
}

impl Server {
    /// Loads the catalog, binds the address and readies the routes; the token comes
    /// from `SUPERSTEP_TOKEN` or is made now.
    pub fn bind(config: ServeConfig) -> Result<Server> {
        let catalog = Arc::new(Catalog::scan(&config.workflows)?);
        let (token, token_generated) = match Token::from_env()? {
            Some(token) => (token, false),
            None => (Token::generate()?, true),
        };
        let token = Arc::new(token);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("superstep-server")
            .enable_all()
            .build()
            .map_err(|e| host(format!("cannot start the server's threads: {e}")))?;
        let mut limits = RunnerLimits::default();
        if config.workers > 0 {
            limits.threads = config.workers;
        }
        let runner = Runner::with_limits(config.store, limits)?;
        let runs: Arc<dyn Runs> = Arc::new(LocalRuns::new(
            catalog.clone(),
            runner,
            runtime.handle().clone(),
        ));
        let state = AppState {
            runs,
            catalog: catalog.clone(),
        };
        let app = routes(state, token.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(config.listen))
            .map_err(|e| invalid(format!("--listen {}: {e}", config.listen)))?;
        Ok(Server {
            listener,
            app,
            token,
            token_generated,
            runtime,
            catalog,
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(host)
    }

    /// The page's URL: with the token in it when the token was made here (it is shown
    /// nowhere else), without when it came from the environment.
    pub fn page_url(&self) -> Result<String> {
        let address = self.address()?;
        Ok(match self.token_generated {
            true => format!("http://{address}/?token={}", self.token.reveal()),
            false => format!("http://{address}/"),
        })
    }

    /// The catalog served.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Serves until `shutdown` completes.
    pub fn serve_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Server {
            listener,
            app,
            runtime,
            ..
        } = self;
        runtime
            .block_on(async move {
                let stopping = Arc::new(tokio::sync::Notify::new());
                let stopped = stopping.clone();
                let graceful = axum::serve(listener, app).with_graceful_shutdown(async move {
                    shutdown.await;
                    stopped.notify_one();
                });
                // Event streams stay open as long as their clients do: they get a
                // moment, not a veto.
                let grace = async {
                    stopping.notified().await;
                    tokio::time::sleep(GRACE).await;
                };
                tokio::select! {
                    served = graceful.into_future() => served,
                    () = grace => Ok(()),
                }
            })
            .map_err(|e| host(format!("the server failed: {e}")))?;
        // Event streams still open are cut.
        runtime.shutdown_background();
        Ok(())
    }
}

/// How long requests in flight may go on once the server is asked to stop.
const GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Every route: `/healthz` and the page's files open, the rest behind the token.
fn routes(state: AppState, token: Arc<Token>) -> Router {
    let guarded = api::router(state)
        .merge(page::router())
        .layer(axum::middleware::from_fn_with_state(token, auth::require));
    Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .merge(page::assets())
        .merge(guarded)
}

/// `GET /healthz`: the server is up (no token needed; it says nothing else).
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}
