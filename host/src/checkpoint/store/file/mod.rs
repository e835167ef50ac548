//! Checkpoints as files in one directory, large payloads as content-addressed blobs
//! beside them, journals as JSON Lines files.

use super::super::blobs::{BlobDir, inline_blobs, split_off_blobs};
use super::super::durable_file::{StagedFile, is_temp_file, sync_dir, sync_filesystem};
use super::super::journal::JournalRecord;
use super::super::{Checkpoint, PrunePolicy, SigningKeys, Summary, is_plain_id, plan_prune};
use super::{CheckpointStore, Listed, Pruned, sort_listing};
use crate::error::Result;
use crate::error::{Error, bad_checkpoint, host, invalid};
use crate::limited_read::{self, FileKind};
use crate::message::BlobRef;
use anyhow::Context as _;
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::SystemTime;

/// Checkpoints as `<id>.json` files in one directory, written atomically and durably:
/// temp file, fsync, rename, fsync of the directory. Executor states and shared bodies
/// of [`BLOB_MIN_SIZE`](crate::checkpoint::blobs::BLOB_MIN_SIZE) bytes or more are kept once each in `blobs/`, named by digest.
/// Saves hold a shared lock on `<dir>/.lock`; pruning holds it exclusively, so that it
/// never deletes a blob that a checkpoint being written is about to refer to.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    /// Serialises journal appends from the executor threads.
    journal_lock: Arc<Mutex<()>>,
    /// Syncs the files of a group of saves; started by the first group, it ends when
    /// the store (and its clones) are dropped. `None` if it could not be started.
    syncer: Arc<OnceLock<Option<Syncer>>>,
    /// Sign what is written, and refuse what they did not sign (see [`signing`]).
    ///
    /// [`signing`]: super::signing
    keys: Option<Arc<SigningKeys>>,
}

/// A thread that fsyncs the files handed to it, in order, and reports each outcome
/// where the file's sender asked: a group's files are synced while the next is written.
#[derive(Debug)]
struct Syncer {
    files: mpsc::Sender<SyncJob>,
}

/// A file to sync, and where its outcome goes.
type SyncJob = (File, mpsc::Sender<std::io::Result<()>>);

impl Syncer {
    fn start() -> std::io::Result<Syncer> {
        let (files, to_sync) = mpsc::channel::<SyncJob>();
        std::thread::Builder::new()
            .name("superstep-fsync".into())
            .spawn(move || {
                for (file, outcome) in to_sync {
                    // The saver may have stopped listening after a failure.
                    let _ = outcome.send(file.sync_all());
                }
            })?;
        Ok(Syncer { files })
    }

    /// Hands `file` over to be synced after those handed over before; its outcome goes
    /// to `outcome`. Returns the file if the thread is gone.
    fn sync(&self, file: File, outcome: &mpsc::Sender<std::io::Result<()>>) -> Option<File> {
        let job = (file, outcome.clone());
        self.files.send(job).err().map(|unsent| unsent.0.0)
    }
}

impl FileStore {
    /// A store in `dir`; the directory is created by the first save.
    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore {
            dir: dir.into(),
            journal_lock: Arc::default(),
            syncer: Arc::default(),
            keys: None,
        }
    }

    /// The store, signing every checkpoint and journal record it writes with `keys`
    /// and refusing to read any they did not sign; `None` neither signs nor checks.
    pub fn with_signing_keys(mut self, keys: Option<SigningKeys>) -> FileStore {
        self.keys = keys.map(Arc::new);
        self
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the journal of the superstep that starts from checkpoint `base`.
    pub fn journal_path(&self, base: &str) -> PathBuf {
        self.dir.join(format!("{base}.journal"))
    }

    /// The path of checkpoint `id`.
    pub fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Reads the summary of one checkpoint file in the store: verifies its checksum,
    /// its name and that its blobs are present, but decodes no state.
    fn read_summary(&self, id: &str) -> Result<Summary, String> {
        let path = self.path_of(id);
        let origin = path.display().to_string();
        let bytes = limited_read::read(&path, FileKind::Checkpoint)
            .map_err(|e| format!("cannot read: {e}"))?;
        let summary = Summary::read_verified(&bytes, &origin, self.signing_keys())
            .map_err(|e| e.to_string())?;
        if summary.checkpoint_id != id {
            return Err(misnamed(&path, &summary.checkpoint_id).to_string());
        }
        let blobs = BlobDir::of(&self.dir);
        for blob in &summary.blobs {
            blobs.check_present(blob)?;
        }
        Ok(summary)
    }

    /// Writes and syncs `checkpoints` in order under temp names: each file is written
    /// by this thread and synced by the store's [`Syncer`], so that the disk syncs one
    /// while the next is encoded and written (a lone checkpoint is synced here). Stops
    /// at the first that cannot be written or synced: returns the files before it, and
    /// its error. Files written after it are removed.
    fn stage_all(&self, checkpoints: &[&Checkpoint]) -> (Vec<StagedFile>, Option<Error>) {
        let syncer = match checkpoints {
            [_] => None,
            _ => self.syncer.get_or_init(|| Syncer::start().ok()).as_ref(),
        };
        let (outcome, outcomes) = mpsc::channel();
        let mut staged = Vec::with_capacity(checkpoints.len());
        let mut failure = None;
        for checkpoint in checkpoints {
            match self.stage(checkpoint) {
                Ok((file, handle)) => {
                    staged.push(file);
                    // Synced here when there is no thread to sync it.
                    let unsent = match syncer {
                        Some(syncer) => syncer.sync(handle, &outcome),
                        None => Some(handle),
                    };
                    if let Some(handle) = unsent {
                        outcome
                            .send(handle.sync_all())
                            .expect("the receiver is here");
                    }
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        drop(outcome);
        // One outcome per staged file, in order: the first failure ends the group there.
        let synced: Vec<std::io::Result<()>> = outcomes.iter().take(staged.len()).collect();
        let unsynced = synced.iter().position(Result::is_err).or(
            // Fewer outcomes than files: the syncer stopped.
            (synced.len() < staged.len()).then_some(synced.len()),
        );
        if let Some(n) = unsynced {
            let why = match synced.into_iter().nth(n) {
                Some(Err(error)) => error.to_string(),
                _ => "the fsync thread stopped".to_string(),
            };
            failure = Some(host(format!(
                "cannot write checkpoint {}: {why}",
                staged[n].path().display()
            )));
            // Dropped, the files from the unsynced one on are removed.
            staged.truncate(n);
        }
        (staged, failure)
    }

    /// Writes `checkpoints` in order under temp names, none synced: the files before
    /// the first that cannot be written, and its error.
    fn stage_unsynced(&self, checkpoints: &[&Checkpoint]) -> (Vec<StagedFile>, Option<Error>) {
        let mut staged = Vec::with_capacity(checkpoints.len());
        for checkpoint in checkpoints {
            match self.stage(checkpoint) {
                Ok((file, _)) => staged.push(file),
                Err(error) => return (staged, Some(error)),
            }
        }
        (staged, None)
    }

    /// Writes `checkpoint` (its large payloads as blobs) to a temp file, not yet synced
    /// nor in place; returns the file too, to sync.
    fn stage(&self, checkpoint: &Checkpoint) -> Result<(StagedFile, File)> {
        let path = self.path_of(&checkpoint.checkpoint_id);
        let blobs = BlobDir::of(&self.dir);
        let document = split_off_blobs(checkpoint, |field, bytes| -> Result<BlobRef> {
            let blob = blobs.put(&bytes);
            Ok(blob.with_context(|| format!("cannot write the blob of {field}"))?)
        })?;
        let bytes = document.encode_signed(self.signing_keys());
        Ok(StagedFile::write_unsynced(&self.dir, path.clone(), &bytes)
            .with_context(|| format!("cannot write checkpoint {}", path.display()))?)
    }

    /// Takes the directory lock: shared for saving, exclusive for pruning. The lock is
    /// held until the returned file is dropped.
    fn lock(&self, exclusive: bool) -> Result<File> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let path = self.dir.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        }
        .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(file)
    }
}

/// Reads and verifies one checkpoint file (its signature too, when `keys` are
/// given), with the blobs it refers to (from the `blobs/` directory beside it), into
/// a self-contained checkpoint.
pub fn read_file(path: &Path, keys: Option<&SigningKeys>) -> Result<Checkpoint> {
    let origin = path.display().to_string();
    let bytes = limited_read::read(path, FileKind::Checkpoint)
        .map_err(|e| bad_checkpoint(origin.to_string(), format!("cannot read checkpoint: {e}")))?;
    let mut checkpoint = Checkpoint::decode_verified(&bytes, &origin, keys)?;
    let blobs = BlobDir::of(path.parent().unwrap_or(Path::new(".")));
    inline_blobs(&mut checkpoint, &origin, |blob| blobs.get(blob))?;
    Ok(checkpoint)
}

fn misnamed(path: &Path, checkpoint_id: &str) -> Error {
    invalid(format!(
        "{}: the file holds checkpoint '{checkpoint_id}' under another name; files in a checkpoint directory are named <checkpoint_id>.json",
        path.display()
    ))
}

impl CheckpointStore for FileStore {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn signing_keys(&self) -> Option<&SigningKeys> {
        self.keys.as_deref()
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

    /// Deletes what `policy` selects (see [`plan_prune`]), then every blob that no
    /// remaining checkpoint refers to, then temp files left by writers that were killed
    /// (no writer is active while the exclusive lock is held). With `dry_run`, only
    /// reports what would go.
    fn prune(&self, policy: &PrunePolicy, now: SystemTime, dry_run: bool) -> Result<Pruned> {
        if !self.dir.is_dir() {
            return Err(invalid(format!(
                "{}: no such checkpoint directory",
                self.dir.display()
            )));
        }
        let _lock = self.lock(true)?;
        let listing = self.list()?;
        let doomed = plan_prune(&listing, policy, now);
        let damaged = listing.iter().filter(|l| l.summary.is_err()).count();
        let doomed_set: BTreeSet<&str> = doomed.iter().map(String::as_str).collect();
        let referenced: BTreeSet<&str> = listing
            .iter()
            .filter_map(|l| l.summary.as_ref().ok())
            .filter(|s| !doomed_set.contains(s.checkpoint_id.as_str()))
            .flat_map(|s| s.blobs.iter().map(|b| b.digest.as_str()))
            .collect();
        let blobs = BlobDir::of(&self.dir);
        // A damaged checkpoint's blobs are unknown: keep every blob while one is there.
        let unreferenced: Vec<String> = if damaged > 0 {
            Vec::new()
        } else {
            blobs
                .digests()?
                .into_iter()
                .filter(|digest| !referenced.contains(digest.as_str()))
                .collect()
        };
        let leftovers: Vec<PathBuf> = [self.dir.clone(), blobs.dir().to_path_buf()]
            .iter()
            .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
            .map(|entry| entry.path())
            .filter(|path| is_temp_file(path) || self.is_orphan_journal(path, &doomed_set))
            .collect();
        if !dry_run {
            for id in &doomed {
                self.delete(id)?;
            }
            for digest in &unreferenced {
                blobs
                    .remove(digest)
                    .with_context(|| format!("cannot delete blob {digest}"))?;
            }
            for path in &leftovers {
                std::fs::remove_file(path)
                    .with_context(|| format!("cannot delete {}", path.display()))?;
            }
        }
        Ok(Pruned {
            deleted: doomed,
            blobs_deleted: unreferenced.len(),
            leftovers_deleted: leftovers.len(),
            listed: listing.len(),
            damaged,
        })
    }
    fn save(&self, checkpoint: &Checkpoint) -> Result<String> {
        self.save_all(&[checkpoint])
            .pop()
            .expect("one result per checkpoint tried")
    }

    /// Writes and syncs each checkpoint under a temp name,
    /// renames them into place in order, then syncs the directory once for all of them.
    fn save_all(&self, checkpoints: &[&Checkpoint]) -> Vec<Result<String>> {
        let _lock = match self.lock(false) {
            Ok(lock) => lock,
            Err(error) => return vec![Err(error)],
        };
        let (staged, mut failure) = self.stage_all(checkpoints);
        let mut placed = Vec::with_capacity(staged.len());
        for file in staged {
            let location = file.path().display().to_string();
            match file.commit() {
                Ok(()) => placed.push(location),
                Err(error) => {
                    // The later files are dropped here, which removes them.
                    failure = Some(host(format!("cannot write checkpoint {location}: {error}")));
                    break;
                }
            }
        }
        if !placed.is_empty()
            && let Err(error) = sync_dir(&self.dir)
        {
            // None of them is known to be durable.
            let why = format!(
                "cannot write checkpoint: cannot sync directory {}: {error}",
                self.dir.display()
            );
            return vec![Err(host(why))];
        }
        let mut saved: Vec<Result<String>> = placed.into_iter().map(Ok).collect();
        saved.extend(failure.map(Err));
        saved
    }

    /// Writes every group's files under temp names (each group stopping at its first
    /// failure), makes them all durable with one sync of the filesystem, renames each
    /// group's into place in order, then syncs the directory once.
    fn save_groups(&self, groups: &[Vec<&Checkpoint>]) -> Vec<Vec<Result<String>>> {
        let fail_all = |why: String| -> Vec<Vec<Result<String>>> {
            let fail = |group: &Vec<&Checkpoint>| match group.is_empty() {
                true => Vec::new(),
                false => vec![Err(host(&why))],
            };
            groups.iter().map(fail).collect()
        };
        let _lock = match self.lock(false) {
            Ok(lock) => lock,
            Err(error) => return fail_all(format!("{error:#}")),
        };
        let staged: Vec<(Vec<StagedFile>, Option<Error>)> = groups
            .iter()
            .map(|group| self.stage_unsynced(group))
            .collect();
        if staged.iter().any(|(files, _)| !files.is_empty())
            && let Err(error) = sync_filesystem(&self.dir)
        {
            let dir = self.dir.display();
            return fail_all(format!(
                "cannot write checkpoint: cannot sync {dir}: {error}"
            ));
        }
        let mut saved: Vec<Vec<Result<String>>> = Vec::with_capacity(groups.len());
        for (files, mut failure) in staged {
            let mut placed = Vec::with_capacity(files.len());
            for file in files {
                let location = file.path().display().to_string();
                if let Err(error) = file.commit() {
                    // The later files of the group are dropped here, which removes them.
                    failure = Some(host(format!("cannot write checkpoint {location}: {error}")));
                    break;
                }
                placed.push(Ok(location));
            }
            placed.extend(failure.map(Err));
            saved.push(placed);
        }
        if saved.iter().flatten().any(Result::is_ok)
            && let Err(error) = sync_dir(&self.dir)
        {
            let dir = self.dir.display();
            return fail_all(format!(
                "cannot write checkpoint: cannot sync directory {dir}: {error}"
            ));
        }
        saved
    }

    fn load(&self, id: &str) -> Result<Checkpoint> {
        let path = self.path_of(&self.resolve(id)?);
        let checkpoint = read_file(&path, self.signing_keys())?;
        if path.file_stem().and_then(|s| s.to_str()) != Some(&checkpoint.checkpoint_id) {
            return Err(misnamed(&path, &checkpoint.checkpoint_id));
        }
        Ok(checkpoint)
    }

    fn list(&self) -> Result<Vec<Listed>> {
        // Each file is read and hashed in full: spread that over the cores.
        let mut listing: Vec<Listed> = self
            .ids()?
            .into_par_iter()
            .map(|id| Listed {
                summary: self.read_summary(&id),
                location: self.path_of(&id).display().to_string(),
                id,
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

    fn append_journal(&self, base: &str, records: &[JournalRecord]) -> Result<()> {
        let path = self.journal_path(base);
        let keys = self.signing_keys();
        let lines: Vec<u8> = records.iter().flat_map(|r| r.encode(keys)).collect();
        let _appending = self.journal_lock.lock().expect("journal lock");
        let append = || -> std::io::Result<()> {
            let created = !path.exists();
            std::fs::create_dir_all(&self.dir)?;
            let mut file = File::options()
                .create(true)
                .read(true)
                .append(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)?;
            cut_to_last_record(&mut file)?;
            file.write_all(&lines)?;
            file.sync_data()?;
            if created {
                File::open(&self.dir)?.sync_all()?;
            }
            Ok(())
        };
        Ok(append().with_context(|| format!("cannot append to journal {}", path.display()))?)
    }

    fn read_journal(&self, base: &str) -> Result<Vec<JournalRecord>> {
        let path = self.journal_path(base);
        match limited_read::read(&path, FileKind::Journal) {
            Ok(bytes) => {
                JournalRecord::decode_all(&bytes, &path.display().to_string(), self.signing_keys())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(invalid(format!(
                "{}: cannot read journal: {e}",
                path.display()
            ))),
        }
    }

    fn remove_journal(&self, base: &str) -> Result<()> {
        let path = self.journal_path(base);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(host(format!(
                "cannot delete journal {}: {e}",
                path.display()
            ))),
            _ => Ok(()),
        }
    }
}

impl FileStore {
    /// Whether `path` is a journal whose base checkpoint is gone or about to go.
    fn is_orphan_journal(&self, path: &Path, doomed: &BTreeSet<&str>) -> bool {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        name.strip_suffix(".journal")
            .is_some_and(|base| doomed.contains(base) || !self.path_of(base).exists())
    }
}

/// Cuts a journal back to its last complete record (durably), so that appending goes
/// on from there: a crash while appending leaves a last line without its newline,
/// which the next record must not be glued to.
fn cut_to_last_record(file: &mut File) -> std::io::Result<()> {
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the journal is not a regular file",
        ));
    }
    let mut end = metadata.len();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut last_byte = [0u8; 1];
    if end == 0 || (file.read_exact_at(&mut last_byte, end - 1).is_ok() && last_byte[0] == b'\n') {
        return Ok(());
    }
    // Find the last newline, reading backwards.
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(chunk.len() as u64);
        let chunk = &mut chunk[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(at) = chunk.iter().rposition(|&b| b == b'\n') {
            break start + at as u64 + 1;
        }
        end = start;
    };
    file.set_len(keep)?;
    file.sync_data()
}

#[cfg(test)]
mod tests;
