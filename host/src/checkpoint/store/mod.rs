//! Where checkpoints live: one trait, [`CheckpointStore`], with everything a command
//! does with checkpoints behind it (save, load, resolve an id or prefix, list with
//! filters, latest by lineage, prune, journals), a durable file store and an in-memory
//! store.

mod file;
mod memory;
mod postgres;

pub use file::{FileStore, read_file};
pub use memory::MemoryStore;
pub use postgres::{PostgresStore, is_postgres_url};

use super::durable_file::write_durably;
use super::journal::JournalRecord;
use super::{
    Checkpoint, PrunePolicy, SigningKeys, Status, Summary, is_plain_id, lineage, plan_prune,
};
use crate::error::Result;
use crate::error::invalid;
use anyhow::Context as _;
use std::path::Path;
use std::time::SystemTime;

/// Checkpoint storage: everything the engine and the commands do with checkpoints.
/// Implementations must make a saved checkpoint durable before `save` returns and must
/// never expose half of one. The provided methods work from [`CheckpointStore::list`];
/// a store that can answer them faster (an index, a query) overrides them.
pub trait CheckpointStore: Send + Sync {
    /// Where the store is, as a person would name it (a directory, a URL); by default
    /// the store's type.
    fn location(&self) -> String {
        std::any::type_name::<Self>().to_string()
    }
    /// Saves a checkpoint under its id; returns where it went (for events).
    fn save(&self, checkpoint: &Checkpoint) -> Result<String>;
    /// Saves `checkpoints` in order, as one `save` after the other would, and stops at
    /// the first that cannot be saved: one result per checkpoint tried, the last one
    /// the error if any. A store may make them durable together ([`FileStore`] syncs
    /// its directory once for all of them); each is durable when this returns.
    fn save_all(&self, checkpoints: &[&Checkpoint]) -> Vec<Result<String>> {
        save_in_turn(self, checkpoints)
    }
    /// Saves each group of checkpoints as [`CheckpointStore::save_all`] would, each
    /// independently of the others (a failure ends only its own group): one list of
    /// results per group. A store may make all of them durable together (the file store
    /// syncs its filesystem once and its directory once for all the groups); each is
    /// durable when this returns. The shared checkpoint writer of many runs calls it
    /// with one group per run.
    fn save_groups(&self, groups: &[Vec<&Checkpoint>]) -> Vec<Vec<Result<String>>> {
        groups.iter().map(|group| self.save_all(group)).collect()
    }
    /// Loads the checkpoint with exactly this id (see [`CheckpointStore::resolve`]).
    fn load(&self, id: &str) -> Result<Checkpoint>;
    /// A summary of every checkpoint in the store, oldest first; damaged ones are
    /// listed with why.
    fn list(&self) -> Result<Vec<Listed>>;
    /// Deletes the checkpoint with `id` (durably, for file storage).
    fn delete(&self, id: &str) -> Result<()>;
    /// Appends `records`, durably and in one write, to the journal of the superstep that
    /// starts from checkpoint `base`.
    fn append_journal(&self, base: &str, records: &[JournalRecord]) -> Result<()>;
    /// The records of `base`'s journal, in append order; empty when there is none.
    fn read_journal(&self, base: &str) -> Result<Vec<JournalRecord>>;
    /// Removes `base`'s journal, if there is one.
    fn remove_journal(&self, base: &str) -> Result<()>;
    /// The keys the store signs with and requires, if any (see
    /// [`signing`](super::signing)).
    fn signing_keys(&self) -> Option<&SigningKeys> {
        None
    }

    /// The ids of every checkpoint in the store, damaged ones too, in no order.
    fn ids(&self) -> Result<Vec<String>> {
        Ok(self.list()?.into_iter().map(|listed| listed.id).collect())
    }

    /// The ids of the checkpoints whose id starts with `prefix`, in no order.
    fn ids_starting_with(&self, prefix: &str) -> Result<Vec<String>> {
        let mut ids = self.ids()?;
        ids.retain(|id| id.starts_with(prefix));
        Ok(ids)
    }

    /// The full id of the checkpoint that `id` names: the id itself, or the one id it
    /// is a prefix of.
    fn resolve(&self, id: &str) -> Result<String> {
        if !is_plain_id(id) {
            return Err(invalid(format!(
                "'{id}' is neither a checkpoint file nor a checkpoint id (ids hold letters, digits and '-')"
            )));
        }
        match self.find(id)? {
            Found::One(one) => Ok(one),
            Found::None => Err(invalid(format!(
                "no checkpoint '{id}' in {}",
                self.location()
            ))),
            Found::Many(n) => Err(invalid(format!(
                "'{id}' names {n} checkpoints in {}; give more of the id",
                self.location()
            ))),
        }
    }

    /// What the id or id prefix `id` (a plain id, see [`is_plain_id`]) names: the
    /// checkpoint of that id, else the one it is a prefix of, or none, or several.
    fn find(&self, id: &str) -> Result<Found> {
        let ids = self.ids_starting_with(id)?;
        if ids.iter().any(|candidate| candidate == id) {
            return Ok(Found::One(id.to_string()));
        }
        let mut matches: Vec<String> = ids.into_iter().filter(|c| c.starts_with(id)).collect();
        Ok(match matches.len() {
            0 => Found::None,
            1 => Found::One(matches.remove(0)),
            n => Found::Many(n),
        })
    }

    /// The checkpoints `filter` selects, oldest first; damaged ones always (they match
    /// no filter but must not go unnoticed).
    fn list_matching(&self, filter: &ListFilter) -> Result<Vec<Listed>> {
        let mut listing = self.list()?;
        listing.retain(|entry| entry.summary.as_ref().map_or(true, |s| filter.matches(s)));
        Ok(listing)
    }

    /// The newest checkpoint by lineage (the end of the longest chain of parents; ties
    /// go to the one created last) of the run that `run` names (an id or a prefix), or
    /// of the run that saved last; `None` when there is none.
    fn latest(&self, run: Option<&str>) -> Result<Option<Summary>> {
        let listing = self.list()?;
        let summaries: Vec<&Summary> = listing
            .iter()
            .filter_map(|l| l.summary.as_ref().ok())
            .collect();
        Ok(lineage::latest(&summaries, run).cloned())
    }

    /// Deletes what `policy` selects (see [`plan_prune`]); with `dry_run`, only says
    /// what would go. A store with more than checkpoints to collect (blobs, temp files)
    /// collects them too.
    fn prune(&self, policy: &PrunePolicy, now: SystemTime, dry_run: bool) -> Result<Pruned> {
        let listing = self.list()?;
        let doomed = plan_prune(&listing, policy, now);
        if !dry_run {
            for id in &doomed {
                self.delete(id)?;
            }
        }
        Ok(Pruned {
            deleted: doomed,
            blobs_deleted: 0,
            leftovers_deleted: 0,
            listed: listing.len(),
            damaged: listing.iter().filter(|l| l.summary.is_err()).count(),
        })
    }
}

/// What an id prefix names in a store (see [`CheckpointStore::find`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// One checkpoint: its full id.
    One(String),
    /// None.
    None,
    /// This many.
    Many(usize),
}

/// Which checkpoints a listing shows; every field unset shows all.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only checkpoints of this workflow.
    pub workflow: Option<String>,
    /// Only checkpoints of runs whose id starts with this.
    pub run: Option<String>,
    /// Only checkpoints with this status.
    pub status: Option<Status>,
}

impl ListFilter {
    /// Whether the checkpoint that `summary` describes is selected.
    pub fn matches(&self, summary: &Summary) -> bool {
        self.workflow
            .as_ref()
            .is_none_or(|w| &summary.workflow == w)
            && self
                .run
                .as_ref()
                .is_none_or(|r| summary.run_id.starts_with(r.as_str()))
            && self.status.is_none_or(|s| summary.status == s)
    }
}

/// What [`CheckpointStore::prune`] deleted (or, in a dry run, would delete).
#[derive(Debug)]
pub struct Pruned {
    /// The checkpoints, oldest first.
    pub deleted: Vec<String>,
    /// How many blobs no remaining checkpoint referred to.
    pub blobs_deleted: usize,
    /// How many temp files of killed writers and journals of deleted checkpoints.
    pub leftovers_deleted: usize,
    /// How many checkpoints were there.
    pub listed: usize,
    /// How many of them are damaged (and left alone, with every blob).
    pub damaged: usize,
}

/// Saves `checkpoints` one `save` after the other, stopping at the first that cannot be
/// saved: [`CheckpointStore::save_all`] for a store with no faster way.
pub(crate) fn save_in_turn<S: CheckpointStore + ?Sized>(
    store: &S,
    checkpoints: &[&Checkpoint],
) -> Vec<Result<String>> {
    until_failed(checkpoints, |checkpoint| store.save(checkpoint))
}

/// `step` of each of `items` in turn, stopping after the first that fails: one result
/// per item tried, the last one the error if any.
pub(crate) fn until_failed<T, R>(
    items: impl IntoIterator<Item = T>,
    mut step: impl FnMut(T) -> Result<R>,
) -> Vec<Result<R>> {
    let mut results = Vec::new();
    for item in items {
        let result = step(item);
        let failed = result.is_err();
        results.push(result);
        if failed {
            break;
        }
    }
    results
}

/// One entry of [`CheckpointStore::list`].
#[derive(Debug)]
pub struct Listed {
    /// The checkpoint id (from the file name for file storage).
    pub id: String,
    /// Where it is.
    pub location: String,
    /// The checkpoint's summary, or why it cannot be read.
    pub summary: std::result::Result<Summary, String>,
}

fn sort_listing(listing: &mut [Listed]) {
    let key = |l: &Listed| match &l.summary {
        Ok(c) => (c.created_at.clone(), c.superstep, l.id.clone()),
        Err(_) => (String::new(), 0, l.id.clone()),
    };
    listing.sort_by_key(key);
}

/// Writes `checkpoint` to `path` as one self-contained file (every state in it, no
/// blobs), durably, signed with the signing key of `keys` if any; `superstep resume
/// <path>` accepts it anywhere (where the same keys are configured, if signed).
pub fn export(checkpoint: &Checkpoint, path: &Path, keys: Option<&SigningKeys>) -> Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Ok(write_durably(dir, path, &checkpoint.encode_signed(keys))
        .with_context(|| format!("cannot write {}", path.display()))?)
}
