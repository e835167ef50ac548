//! `superstep serve`: the HTTP API and the web page, over the same engine and stores
//! as the command line.
//!
//! | module | what |
//! | --- | --- |
//! | [`catalog`] | the manifests under `--workflows`: the only workflows a request can name |
//! | [`runs`] | runs as the server sees them, and the ways they are run: [`runs::local`], [`runs::queued`] |
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
use crate::worker::{Worker, WorkerConfig, WorkerStopper};
use api::AppState;
use auth::Token;
use axum::Router;
use catalog::Catalog;
use runs::Runs;
use runs::local::LocalRuns;
use runs::queued::QueuedRuns;
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
    /// Where runs are run, and their checkpoints kept.
    pub backend: Backend,
}

/// Where a server's runs are run.
pub enum Backend {
    /// On this server's runner, checkpoints in `store`; at most `threads` runs execute
    /// at once (0: the runner's default).
    Local {
        /// Where checkpoints go.
        store: Arc<dyn CheckpointStore>,
        /// Runs executing at once.
        threads: usize,
    },
    /// In the queue of the database at `url`, run by the workers of every host on it;
    /// with `worker`, by one in this process too.
    Queue {
        /// The database.
        url: String,
        /// This process's worker, if it runs one.
        worker: Option<WorkerConfig>,
    },
}

/// A server bound to its address, not yet serving.
pub struct Server {
    /// The worker this process runs for a database.
    worker: Option<OwnWorker>,
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
        let elsewhere = matches!(config.backend, Backend::Queue { .. });
        let catalog = Arc::new(Catalog::scan(&config.workflows, elsewhere)?);
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
        let (runs, worker) = backend(config.backend, &catalog, runtime.handle())?;
        let state = AppState {
            runs,
            catalog: catalog.clone(),
        };
        let app = routes(state, token.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(config.listen))
            .map_err(|e| invalid(format!("--listen {}: {e}", config.listen)))?;
        Ok(Server {
            worker,
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
            worker,
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
        // The worker stops its runs at their next barriers and gives them back.
        if let Some((stopper, thread)) = worker {
            stopper.stop();
            thread
                .join()
                .map_err(|_| host("the server's worker panicked"))??;
        }
        Ok(())
    }
}

/// A worker this process runs for a database: what stops it, and its thread.
type OwnWorker = (WorkerStopper, std::thread::JoinHandle<Result<()>>);

/// The runs of `backend`, and the worker this process runs for it, if any.
fn backend(
    backend: Backend,
    catalog: &Arc<Catalog>,
    tasks: &tokio::runtime::Handle,
) -> Result<(Arc<dyn Runs>, Option<OwnWorker>)> {
    match backend {
        Backend::Local { store, threads } => {
            let mut limits = RunnerLimits::default();
            if threads > 0 {
                limits.threads = threads;
            }
            let runner = Runner::with_limits(store, limits)?;
            let runs = LocalRuns::new(catalog.clone(), runner, tasks.clone());
            runs.recover()?;
            Ok((Arc::new(runs), None))
        }
        Backend::Queue { url, worker } => {
            let runs = QueuedRuns::connect(&url, catalog.clone())?;
            let Some(config) = worker else {
                return Ok((Arc::new(runs), None));
            };
            let log = Arc::new(|_: &crate::Event| {});
            let notes = Arc::new(|note: &str| eprintln!("{note}"));
            let worker = Worker::connect(&url, config, log, notes)?;
            let stopper = worker.stopper();
            let thread = std::thread::Builder::new()
                .name("superstep-serve-worker".into())
                .spawn(move || worker.run())
                .map_err(|e| host(format!("cannot start the worker: {e}")))?;
            Ok((Arc::new(runs), Some((stopper, thread))))
        }
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
