//! Where the commands find checkpoints: the one place that turns a `--store` location
//! (a directory or a PostgreSQL URL) into a store, and a checkpoint named on the
//! command line into a checkpoint.

use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use superstep::checkpoint::{
    Checkpoint, CheckpointStore, FileStore, PostgresStore, SigningKeys, is_postgres_url, read_file,
};
use superstep::error::{Result, invalid};
use superstep::manifest::Manifest;

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

/// The store option of commands that find a checkpoint file's lineage beside it, or
/// write beside it (`resume`, `checkpoints fork`, `replay`).
#[derive(Args, Clone)]
pub(super) struct BesideArgs {
    /// The store where ids are looked up (and new checkpoints go): a directory;
    /// defaults to the checkpoint file's directory, or ./checkpoints for an id.
    #[arg(
        long = "store",
        visible_alias = "dir",
        alias = "checkpoint-dir",
        env = "SUPERSTEP_STORE",
        value_name = "LOCATION"
    )]
    location: Option<String>,
}

impl BesideArgs {
    /// The store's location for `checkpoint` (a file, an id or a prefix): the one
    /// given, else the file's directory, else `./checkpoints`.
    pub(super) fn location_for(&self, checkpoint: &str) -> String {
        match (&self.location, named_file(checkpoint)) {
            (Some(location), _) => location.clone(),
            (None, Some(file)) => beside(file),
            (None, None) => DEFAULT_STORE.to_string(),
        }
    }
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

/// The manifest to go on from `checkpoint` with: `given`, else the one the checkpoint
/// records. A checkpoint is input like any file, so the recorded path must at least
/// name a `.toml` file: no other file is read because a checkpoint says so.
pub(super) fn manifest_for(checkpoint: &Checkpoint, given: Option<&Path>) -> Result<Manifest> {
    if let Some(path) = given {
        return Manifest::load(path);
    }
    let path = PathBuf::from(&checkpoint.manifest.path);
    if !path.is_absolute() || path.extension().is_none_or(|e| e != "toml") {
        return Err(invalid(format!(
            "checkpoint {} names the manifest '{}', which is not an absolute path to a .toml file; pass --manifest",
            checkpoint.checkpoint_id, checkpoint.manifest.path
        )));
    }
    Manifest::load_unquoted(&path, &format!("checkpoint {}", checkpoint.checkpoint_id))
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
fn named_file(name: &str) -> Option<&Path> {
    let path = Path::new(name);
    path.exists().then_some(path)
}

/// The directory of a checkpoint file, as a store location.
fn beside(file: &Path) -> String {
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    dir.display().to_string()
}
