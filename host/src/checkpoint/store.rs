//! Where checkpoints live: one trait, a durable file store and an in-memory store.

use super::{Checkpoint, is_plain_id};
use crate::error::invalid;
use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Checkpoint storage. Implementations must make a saved checkpoint durable before
/// `save` returns and must never expose half of one.
pub trait CheckpointStore: Send + Sync {
    /// Saves a checkpoint under its id; returns where it went (for events).
    fn save(&self, checkpoint: &Checkpoint) -> Result<String>;
    /// Loads the checkpoint with `id`.
    fn load(&self, id: &str) -> Result<Checkpoint>;
    /// Every checkpoint in the store, oldest first; damaged ones are listed with why.
    fn list(&self) -> Result<Vec<Listed>>;
    /// Deletes the checkpoint with `id` (durably, for file storage).
    fn delete(&self, id: &str) -> Result<()>;
}

/// One entry of [`CheckpointStore::list`].
#[derive(Debug)]
pub struct Listed {
    /// The checkpoint id (from the file name for file storage).
    pub id: String,
    /// Where it is.
    pub location: String,
    /// The checkpoint, or why it cannot be read.
    pub checkpoint: std::result::Result<Checkpoint, String>,
}

fn sort_listing(listing: &mut [Listed]) {
    let key = |l: &Listed| match &l.checkpoint {
        Ok(c) => (c.created_at.clone(), c.superstep, l.id.clone()),
        Err(_) => (String::new(), 0, l.id.clone()),
    };
    listing.sort_by_key(key);
}

/// Checkpoints as `<id>.json` files in one directory, written atomically and durably:
/// temp file, fsync, rename, fsync of the directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// A store in `dir`; the directory is created by the first save.
    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore { dir: dir.into() }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of checkpoint `id`.
    pub fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Reads and verifies one checkpoint file.
    pub fn read_file(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path)
            .map_err(|e| invalid(format!("{}: cannot read checkpoint: {e}", path.display())))?;
        let checkpoint = Checkpoint::decode(&bytes, &path.display().to_string())?;
        let named = path.file_stem().and_then(|s| s.to_str());
        if named != Some(checkpoint.checkpoint_id.as_str()) {
            return Err(invalid(format!(
                "{}: the file holds checkpoint '{}' under another name; checkpoint files are named <checkpoint_id>.json",
                path.display(),
                checkpoint.checkpoint_id
            )));
        }
        Ok(checkpoint)
    }

    /// Finds the checkpoint that `id` names: a full id, or a unique prefix of one.
    pub fn resolve(&self, id: &str) -> Result<PathBuf> {
        if !is_plain_id(id) {
            return Err(invalid(format!(
                "'{id}' is neither a checkpoint file nor a checkpoint id (ids hold letters, digits and '-')"
            )));
        }
        let exact = self.path_of(id);
        if exact.is_file() {
            return Ok(exact);
        }
        let matches: Vec<String> = self
            .ids()?
            .into_iter()
            .filter(|candidate| candidate.starts_with(id))
            .collect();
        match matches.as_slice() {
            [one] => Ok(self.path_of(one)),
            [] => Err(invalid(format!(
                "no checkpoint '{id}' in {}",
                self.dir.display()
            ))),
            many => Err(invalid(format!(
                "'{id}' names {} checkpoints in {}; give more of the id",
                many.len(),
                self.dir.display()
            ))),
        }
    }

    /// Ids of the checkpoint files in the directory (temp files are skipped).
    fn ids(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(invalid(format!(
                    "{}: cannot list checkpoints: {e}",
                    self.dir.display()
                )));
            }
        };
        let mut ids = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name.strip_suffix(".json")
                && is_plain_id(id)
            {
                ids.push(id.to_string());
            }
        }
        Ok(ids)
    }
}

impl CheckpointStore for FileStore {
    fn save(&self, checkpoint: &Checkpoint) -> Result<String> {
        let path = self.path_of(&checkpoint.checkpoint_id);
        write_durably(&self.dir, &path, &checkpoint.encode())
            .with_context(|| format!("cannot write checkpoint {}", path.display()))?;
        Ok(path.display().to_string())
    }

    fn load(&self, id: &str) -> Result<Checkpoint> {
        Self::read_file(&self.resolve(id)?)
    }

    fn list(&self) -> Result<Vec<Listed>> {
        let mut listing: Vec<Listed> = self
            .ids()?
            .into_iter()
            .map(|id| {
                let path = self.path_of(&id);
                Listed {
                    checkpoint: Self::read_file(&path).map_err(|e| e.to_string()),
                    location: path.display().to_string(),
                    id,
                }
            })
            .collect();
        sort_listing(&mut listing);
        Ok(listing)
    }

    fn delete(&self, id: &str) -> Result<()> {
        if !is_plain_id(id) {
            return Err(invalid(format!("'{id}' is not a checkpoint id")));
        }
        let path = self.path_of(id);
        std::fs::remove_file(&path).with_context(|| format!("cannot delete {}", path.display()))?;
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

/// Writes `bytes` to `path` so that a reader sees either nothing or all of it, and the
/// file survives a crash once this returns.
fn write_durably(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("checkpoint");
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    File::open(dir)?.sync_all()
}

/// Checkpoints kept in memory, encoded exactly as files are; for embedding and tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    documents: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl CheckpointStore for MemoryStore {
    fn save(&self, checkpoint: &Checkpoint) -> Result<String> {
        let id = checkpoint.checkpoint_id.clone();
        self.documents
            .lock()
            .expect("checkpoint map lock")
            .insert(id.clone(), checkpoint.encode());
        Ok(format!("memory:{id}"))
    }

    fn load(&self, id: &str) -> Result<Checkpoint> {
        let documents = self.documents.lock().expect("checkpoint map lock");
        let bytes = documents
            .get(id)
            .ok_or_else(|| invalid(format!("no checkpoint '{id}' in memory")))?;
        Checkpoint::decode(bytes, &format!("memory:{id}"))
    }

    fn list(&self) -> Result<Vec<Listed>> {
        let documents = self.documents.lock().expect("checkpoint map lock");
        let mut listing: Vec<Listed> = documents
            .iter()
            .map(|(id, bytes)| Listed {
                id: id.clone(),
                location: format!("memory:{id}"),
                checkpoint: Checkpoint::decode(bytes, &format!("memory:{id}"))
                    .map_err(|e| e.to_string()),
            })
            .collect();
        sort_listing(&mut listing);
        Ok(listing)
    }

    fn delete(&self, id: &str) -> Result<()> {
        let mut documents = self.documents.lock().expect("checkpoint map lock");
        documents
            .remove(id)
            .map(drop)
            .ok_or_else(|| invalid(format!("no checkpoint '{id}' in memory")))
    }
}
