//! Reading the files superstep is given (manifests, checkpoints, journals, blobs,
//! components): regular files only, opened without blocking, and never more than a
//! size limit. A path may come from a checkpoint, which anyone could have written: a
//! FIFO must not hang the host, nor `/dev/zero` fill its memory.

use std::fs::File;
use std::io::{Error, ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What a file is for; each kind has its own size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A workflow manifest (TOML): at most 1 MiB.
    Manifest,
    /// A checkpoint file: at most 1 GiB unless `SUPERSTEP_MAX_CHECKPOINT_BYTES` says
    /// otherwise (an exported checkpoint holds every state inline).
    Checkpoint,
    /// A superstep journal: at most 1 GiB unless `SUPERSTEP_MAX_JOURNAL_BYTES` says
    /// otherwise.
    Journal,
    /// A Wasm component: at most 256 MiB unless `SUPERSTEP_MAX_COMPONENT_BYTES` says
    /// otherwise.
    Component,
}

const MIB: u64 = 1 << 20;

impl FileKind {
    /// The noun errors use.
    pub fn noun(self) -> &'static str {
        match self {
            FileKind::Manifest => "manifest",
            FileKind::Checkpoint => "checkpoint",
            FileKind::Journal => "journal",
            FileKind::Component => "component",
        }
    }

    /// The environment variable that overrides the limit, if it can be overridden.
    pub fn limit_env(self) -> Option<&'static str> {
        match self {
            FileKind::Manifest => None,
            FileKind::Checkpoint => Some("SUPERSTEP_MAX_CHECKPOINT_BYTES"),
            FileKind::Journal => Some("SUPERSTEP_MAX_JOURNAL_BYTES"),
            FileKind::Component => Some("SUPERSTEP_MAX_COMPONENT_BYTES"),
        }
    }

    fn default_limit(self) -> u64 {
        match self {
            FileKind::Manifest => MIB,
            FileKind::Checkpoint | FileKind::Journal => 1024 * MIB,
            FileKind::Component => 256 * MIB,
        }
    }

    /// The size limit in bytes: the default, or the overriding variable's value.
    pub fn limit(self) -> std::io::Result<u64> {
        let Some(name) = self.limit_env() else {
            return Ok(self.default_limit());
        };
        match std::env::var(name) {
            Err(std::env::VarError::NotPresent) => Ok(self.default_limit()),
            Ok(value) => match value.trim().parse::<u64>() {
                Ok(limit) if limit > 0 => Ok(limit),
                _ => Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("{name}='{value}': expected a positive number of bytes"),
                )),
            },
            Err(e) => Err(Error::new(ErrorKind::InvalidInput, format!("{name}: {e}"))),
        }
    }
}

/// Reads the regular file at `path`, refusing anything else and any file over `kind`'s
/// limit. The error says which (an [`ErrorKind::NotFound`] stays one).
pub fn read(path: &Path, kind: FileKind) -> std::io::Result<Vec<u8>> {
    read_at_most(path, kind.limit()?).map_err(|e| match (e.kind(), kind.limit_env()) {
        (ErrorKind::FileTooLarge, Some(name)) => {
            Error::new(e.kind(), format!("{e} (raise {name} to read it)"))
        }
        _ => e,
    })
}

/// Reads the regular file at `path` if it holds at most `limit` bytes. Opening never
/// blocks (a FIFO is refused, not waited on), and a file that grows while it is read
/// is refused too.
pub fn read_at_most(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let metadata = file.metadata()?;
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        let what = if file_type.is_dir() {
            "a directory"
        } else if file_type.is_fifo() {
            "a FIFO"
        } else if file_type.is_char_device() {
            "a character device"
        } else if file_type.is_block_device() {
            "a block device"
        } else if file_type.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("it is {what}, not a regular file"),
        ));
    }
    let too_large = |size: u64| {
        Error::new(
            ErrorKind::FileTooLarge,
            format!("it holds {size} bytes, over the limit of {limit}"),
        )
    };
    if metadata.len() > limit {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    (&mut file).take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_to_string(path: &Path, kind: FileKind) -> std::io::Result<String> {
    String::from_utf8(read(path, kind)?)
        .map_err(|_| Error::new(ErrorKind::InvalidData, "it is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(path: &Path, limit: u64) -> Error {
        read_at_most(path, limit).unwrap_err()
    }

    #[test]
    fn reads_regular_files_within_the_limit_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.toml");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_at_most(&file, 5).unwrap(), b"12345");
        let too_large = error(&file, 4);
        assert_eq!(too_large.kind(), ErrorKind::FileTooLarge);
        assert_eq!(
            too_large.to_string(),
            "it holds 5 bytes, over the limit of 4"
        );
        assert_eq!(
            error(dir.path(), 100).to_string(),
            "it is a directory, not a regular file"
        );
        assert_eq!(
            error(&dir.path().join("none"), 100).kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn refuses_devices_and_fifos_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let zero = dir.path().join("zero.toml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert_eq!(
            error(&zero, u64::MAX).to_string(),
            "it is a character device, not a regular file"
        );
        let fifo = dir.path().join("fifo.toml");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        // No writer ever opens it: a blocking open would hang here.
        assert_eq!(
            error(&fifo, u64::MAX).to_string(),
            "it is a FIFO, not a regular file"
        );
    }

    #[test]
    fn a_sparse_file_over_the_limit_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let sparse = dir.path().join("huge.json");
        File::create(&sparse).unwrap().set_len(1 << 40).unwrap();
        assert_eq!(error(&sparse, MIB).kind(), ErrorKind::FileTooLarge);
    }
}
