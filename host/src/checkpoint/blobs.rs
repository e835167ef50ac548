//! Content-addressed blobs: large executor states and large bodies queued for several
//! executors, kept beside checkpoint files in `<checkpoint dir>/blobs/<hex digest>`, so
//! that an unchanged state or a fanned-out body is written once however many
//! checkpoints and messages refer to it.

use super::{Checkpoint, Field};
use crate::error::{Result, bad_checkpoint, host};
use crate::hash::sha256_hex;
use crate::message::{BlobRef, Payload};
use bytes::Bytes;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// States and shared bodies of at least this many bytes go into blobs; smaller ones
/// stay in the file.
pub const BLOB_MIN_SIZE: usize = 64 * 1024;

/// Whether `digest` is `sha256:` and 64 lowercase hex digits; only such digests
/// name blob files, so a reference can never point outside the blob directory.
pub fn is_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Whether a store keeps the payload at `field` as a blob: an executor state or a
/// shared body of at least [`BLOB_MIN_SIZE`] bytes (queued bodies stay in the document).
pub(crate) fn goes_in_blob(field: Field, payload: &Payload) -> bool {
    !matches!(payload, Payload::Blob(_) | Payload::Shared(_))
        && !matches!(field, Field::QueuedBody(..))
        && payload.len() >= BLOB_MIN_SIZE
}

/// `checkpoint` as a store keeps it: each payload that [`goes_in_blob`] replaced by a
/// reference, handed to `put` (which stores it and returns the reference).
pub(crate) fn split_off_blobs<'c>(
    checkpoint: &'c Checkpoint,
    mut put: impl FnMut(Field, Bytes) -> Result<BlobRef>,
) -> Result<Cow<'c, Checkpoint>> {
    let mut document = Cow::Borrowed(checkpoint);
    if checkpoint
        .blob_capable()
        .any(|(field, payload)| goes_in_blob(field, payload))
    {
        for (field, payload) in document.to_mut().blob_capable_mut() {
            if goes_in_blob(field, payload) {
                let bytes = payload
                    .decode()
                    .map_err(|e| host(format!("{field}: {e}")))?;
                *payload = Payload::Blob(put(field, bytes)?);
            }
        }
    }
    Ok(document)
}

/// The reference to a blob of `bytes`.
pub(crate) fn blob_ref(bytes: &[u8]) -> BlobRef {
    BlobRef {
        digest: sha256_hex(bytes),
        size: bytes.len() as u64,
    }
}

/// Checks that `bytes`, read from `what`, are the blob `blob` names.
pub(crate) fn verify(blob: &BlobRef, bytes: &[u8], what: &str) -> std::result::Result<(), String> {
    let actual = sha256_hex(bytes);
    if bytes.len() as u64 != blob.size || actual != blob.digest {
        return Err(format!(
            "blob {what} is damaged: {} bytes hashing to {actual}, expected {} bytes hashing to {}",
            bytes.len(),
            blob.size,
            blob.digest
        ));
    }
    Ok(())
}

/// Replaces each blob reference in `checkpoint` (read from `origin`) with the blob,
/// which `fetch` reads and checks; a blob that several payloads share is read once.
pub(crate) fn inline_blobs(
    checkpoint: &mut Checkpoint,
    origin: &str,
    mut fetch: impl FnMut(&BlobRef) -> std::result::Result<Bytes, String>,
) -> Result<()> {
    let mut read: HashMap<String, Payload> = HashMap::new();
    for (field, payload) in checkpoint.blob_capable_mut() {
        if let Payload::Blob(blob) = payload {
            let contents = match read.get(&blob.digest) {
                Some(contents) => contents.clone(),
                None => {
                    let bytes = fetch(blob).map_err(|why| {
                        bad_checkpoint(origin.to_string(), format!("{field}: {why}"))
                    })?;
                    let contents = Payload::of(&bytes);
                    read.insert(blob.digest.clone(), contents.clone());
                    contents
                }
            };
            *payload = contents;
        }
    }
    Ok(())
}

/// Checks a blob reference found at `field`.
pub(crate) fn check_ref(field: &str, blob: &BlobRef) -> Result<(), String> {
    if is_digest(&blob.digest) {
        Ok(())
    } else {
        Err(format!(
            "{field}: blob digest '{}' is not sha256:<64 hex digits>",
            blob.digest
        ))
    }
}

/// The blob directory beside a checkpoint directory.
#[derive(Debug, Clone)]
pub struct BlobDir {
    dir: PathBuf,
}

impl BlobDir {
    /// The blobs of the checkpoints in `checkpoint_dir`.
    pub fn of(checkpoint_dir: &Path) -> BlobDir {
        BlobDir {
            dir: checkpoint_dir.join("blobs"),
        }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob with `digest` lives (`digest` must satisfy [`is_digest`]).
    pub fn path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join(hex)
    }

    /// Stores `bytes` durably unless a blob of that content is already there.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<BlobRef> {
        let blob = blob_ref(bytes);
        let path = self.path(&blob.digest);
        let present = std::fs::metadata(&path).is_ok_and(|m| m.len() == blob.size);
        if !present {
            super::durable_file::write_durably(&self.dir, &path, bytes)?;
        }
        Ok(blob)
    }

    /// Reads a blob and checks its size and digest.
    pub fn get(&self, blob: &BlobRef) -> Result<Bytes, String> {
        let path = self.path(&blob.digest);
        let bytes = crate::limited_read::read_at_most(&path, blob.size).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("blob {} is missing (it was deleted)", path.display())
            } else {
                format!("blob {} cannot be read: {e}", path.display())
            }
        })?;
        verify(blob, &bytes, &path.display().to_string())?;
        Ok(Bytes::from(bytes))
    }

    /// Whether a blob of the right size is present, without reading it.
    pub fn check_present(&self, blob: &BlobRef) -> Result<(), String> {
        let path = self.path(&blob.digest);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == blob.size => Ok(()),
            Ok(meta) => Err(format!(
                "blob {} is damaged: {} bytes, expected {}",
                path.display(),
                meta.len(),
                blob.size
            )),
            Err(_) => Err(format!(
                "blob {} is missing (it was deleted)",
                path.display()
            )),
        }
    }

    /// The digests of every blob present.
    pub fn digests(&self) -> std::io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut digests = Vec::new();
        for entry in entries {
            if let Some(name) = entry?.file_name().to_str() {
                let digest = format!("sha256:{name}");
                if is_digest(&digest) {
                    digests.push(digest);
                }
            }
        }
        Ok(digests)
    }

    /// Deletes the blob with `digest`.
    pub fn remove(&self, digest: &str) -> std::io::Result<()> {
        std::fs::remove_file(self.path(digest))
    }
}
