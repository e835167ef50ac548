//! Where the commands find checkpoints: the one place that turns a `--store` location
//! (a directory or a PostgreSQL URL) into a store, and a checkpoint named on the
//! command line into a checkpoint.

use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use superstep::checkpoint::{
    Checkpoint, CheckpointStore, FileStore, PostgresStore, SigningKeys, is_postgres_url, read_file,
};
use superstep::error::Result;

/// The store option every command that reads or writes checkpoints takes.
#[derive(Args, Clone)]
pub(super) struct StoreArgs {
    /// Where checkpoints are kept: a directory, or a PostgreSQL database
    /// (postgres://user@host:port/database) whose schema `superstep db migrate` made.
    #[arg(
        long = "store",
        visible_alias = "dir",
        alias = "checkpoint-dir",
        env = "SUPERSTEP_STORE",
        default_value = DEFAULT_STORE,
        value_name = "LOCATION"
    )]
    pub(super) location: String,
}

/// The store when none is given: `./checkpoints`.
pub(super) const DEFAULT_STORE: &str = "checkpoints";

impl StoreArgs {
    /// The store at the location, signing and verifying with the keys the
    /// environment configures.
    pub(super) fn open(&self) -> Result<Arc<dyn CheckpointStore>> {
        open(&self.location)
    }
}

/// The store at `location` (a directory or a `postgres://` URL), with the
/// environment's signing keys ([`SigningKeys::from_env`]).
pub(super) fn open(location: &str) -> Result<Arc<dyn CheckpointStore>> {
    let keys = SigningKeys::from_env()?;
    if is_postgres_url(location) {
        return Ok(Arc::new(
            PostgresStore::connect(location)?.with_signing_keys(keys),
        ));
    }
    Ok(Arc::new(FileStore::new(location).with_signing_keys(keys)))
}

/// A checkpoint named on the command line: a file (any file that is there, a FIFO too,
/// which reading refuses, so that a path is never taken for an id), or an id or unique
/// id prefix in `store`.
pub(super) fn load_named(name: &str, store: &dyn CheckpointStore) -> Result<Checkpoint> {
    match named_file(name) {
        Some(path) => read_file(path, store.signing_keys()),
        None => store.load(&store.resolve(name)?),
    }
}

/// `name` as a path, if a file is there.
pub(super) fn named_file(name: &str) -> Option<&Path> {
    let path = Path::new(name);
    path.exists().then_some(path)
}

/// The directory of a checkpoint file, as a store location.
pub(super) fn beside(file: &Path) -> String {
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    dir.display().to_string()
}
