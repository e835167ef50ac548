//! `superstep submit`: a run stored in the database's queue for a worker to run.

use super::run::input_body;
use super::{EXIT_OK, say};
use clap::Args;
use std::path::PathBuf;
use superstep::error::Result;
use superstep::queue::RunQueue;
use superstep::{Manifest, Message};

/// `superstep submit`.
#[derive(Args)]
pub(super) struct SubmitArgs {
    /// The workflow manifest (TOML); it and its components are stored in the database.
    manifest: PathBuf,
    /// The run's input message body, as JSON (e.g. '"hello world"').
    #[arg(long, group = "input-source", required = true)]
    input: Option<String>,
    /// Read the input message body from a file (any bytes; JSON by convention).
    #[arg(long, group = "input-source", value_name = "PATH")]
    input_file: Option<PathBuf>,
    /// The kind of the input message.
    #[arg(long, default_value = "input")]
    input_kind: String,
    /// The database: postgres://user@host:port/database.
    #[arg(long = "store", env = "SUPERSTEP_STORE", value_name = "URL")]
    store: String,
}

/// Stores the run, prints its id and returns at once.
pub(super) fn submit(args: SubmitArgs) -> Result<u8> {
    let body = input_body(args.input.as_deref(), args.input_file.as_deref())?;
    let manifest = Manifest::load_to_submit(&args.manifest)?;
    let queue = RunQueue::connect(&super::db::postgres_url(&args.store)?)?;
    let input = Message {
        kind: args.input_kind,
        body,
    };
    say!("{}", queue.submit(&manifest, input)?)?;
    Ok(EXIT_OK)
}
