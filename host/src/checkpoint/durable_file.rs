//! Writing files so that a reader, or the disk after a crash, sees either nothing or
//! the whole file: a temp file beside the place, written and synced, renamed into place,
//! and the directory synced.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` so that a reader sees either nothing or all of it, and the
/// file survives a crash once this returns.
pub(crate) fn write_durably(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    StagedFile::write(dir, path.to_path_buf(), bytes)?.commit()?;
    sync_dir(dir)
}

/// Makes every file written on the filesystem that holds `dir` durable, with one call
/// (`syncfs`): for many files at once, much cheaper than an fsync of each.
pub(crate) fn sync_filesystem(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = File::open(dir)?;
    // SAFETY: the descriptor is open for the duration of the call.
    match unsafe { libc::syncfs(dir.as_raw_fd()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Makes the renames and removals in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A file written and synced under a temp name beside its place: [`StagedFile::commit`]
/// renames it into place (durable once its directory is synced); dropped uncommitted,
/// it is removed.
pub(crate) struct StagedFile {
    temp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl StagedFile {
    pub(crate) fn write(dir: &Path, path: PathBuf, bytes: &[u8]) -> std::io::Result<StagedFile> {
        let (staged, file) = StagedFile::write_unsynced(dir, path, bytes)?;
        file.sync_all()?;
        Ok(staged)
    }

    /// [`StagedFile::write`] without the sync: also returns the file, to sync before
    /// the commit.
    pub(crate) fn write_unsynced(
        dir: &Path,
        path: PathBuf,
        bytes: &[u8],
    ) -> std::io::Result<(StagedFile, File)> {
        std::fs::create_dir_all(dir)?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("checkpoint");
        // Unique per process and write, so that concurrent writers never share a temp file.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let write = WRITES.fetch_add(1, Ordering::Relaxed);
        let staged = StagedFile {
            temp: dir.join(format!(".{name}.{}.{write}.tmp", std::process::id())),
            path,
            committed: false,
        };
        let mut file = File::create(&staged.temp)?;
        file.write_all(bytes)?;
        Ok((staged, file))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn commit(mut self) -> std::io::Result<()> {
        std::fs::rename(&self.temp, &self.path)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Whether `path` is the temp file of a [`StagedFile`].
pub(crate) fn is_temp_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"))
}
