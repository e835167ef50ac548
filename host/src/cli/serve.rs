//! `superstep serve`: the HTTP API and the web page, until SIGTERM or SIGINT.

use super::store::StoreArgs;
use super::{EXIT_OK, say};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use superstep::error::Result;
use superstep::server::{ServeConfig, Server};

/// `superstep serve`.
#[derive(Args)]
pub(super) struct ServeArgs {
    /// The directory whose workflow manifests may be run (searched a few levels deep);
    /// requests name them by path without `.toml`, e.g. `plan_review`.
    #[arg(long, value_name = "DIR")]
    workflows: PathBuf,
    /// The address to listen on; port 0 takes any free port.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDRESS")]
    listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// How many runs execute at once; default: four per core.
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

/// Serves until SIGTERM or SIGINT.
pub(super) fn serve(args: ServeArgs) -> Result<u8> {
    let config = ServeConfig {
        listen: args.listen,
        workflows: args.workflows,
        store: args.store.open()?,
        workers: args.workers,
    };
    let server = Server::bind(config)?;
    for (file, error) in server.catalog().errors() {
        eprintln!("warning: {file} cannot be run: {error}");
    }
    let workflows = server.catalog().list().len();
    say!(
        "superstep serve: {workflows} workflow(s) from {}; checkpoints in {}",
        server.catalog().dir().display(),
        superstep::db::without_password(&args.store.location)
    )?;
    say!("open {}", server.page_url()?)?;
    server.serve_until(stop_signal())?;
    eprintln!("superstep serve: stopped");
    Ok(EXIT_OK)
}

/// Completes on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    match (terminate, interrupt) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
