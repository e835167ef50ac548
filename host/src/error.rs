//! superstep's errors, sorted by who can fix them: what the user gave (a manifest, a
//! checkpoint, an argument), or the host (a disk that fails, a thread that cannot
//! start). Each kind has its exit code; a server would map the same kinds to its
//! statuses.

use std::path::PathBuf;

/// A superstep result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code of a command whose input was wrong: nothing was run or written.
pub const EXIT_INVALID: u8 = 2;
/// Exit code of a run that failed, or of a host-side failure.
pub const EXIT_FAILED: u8 = 1;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A manifest is wrong; `message` names the field at fault.
    #[error("{}: {message}", file.display())]
    Manifest {
        /// The manifest file.
        file: PathBuf,
        /// What is wrong, the field first.
        message: String,
    },
    /// A checkpoint or journal is wrong: damaged, changed, unsigned, or not one this
    /// workflow can resume. Nothing was written.
    #[error("{origin}: {message}")]
    Checkpoint {
        /// Where it is: a file, or `checkpoint <id>`.
        origin: String,
        /// What is wrong, the field first.
        message: String,
    },
    /// Something else the user gave is wrong: an argument, an input, a response, a
    /// setting. The message names it.
    #[error("{0}")]
    Invalid(String),
    /// The host could not do its part: a checkpoint that cannot be written, a file
    /// that cannot be read for a reason other than what it holds.
    #[error(transparent)]
    Host(anyhow::Error),
}

impl Error {
    /// Whether the user can fix it by giving something else (a manifest, a checkpoint,
    /// an argument), as opposed to the host failing.
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, Error::Host(_))
    }

    /// The CLI's exit code for it: 2 for input that is wrong, 1 for the host.
    pub fn exit_code(&self) -> u8 {
        if self.is_invalid_input() {
            EXIT_INVALID
        } else {
            EXIT_FAILED
        }
    }
}

/// An [`Error::Invalid`] with `message`.
pub fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid(message.into())
}

/// An [`Error::Checkpoint`] of the checkpoint or journal at `origin`.
pub fn bad_checkpoint(origin: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        origin: origin.into(),
        message: message.into(),
    }
}

/// An error whose cause is a superstep [`Error`] of the user's kind keeps that kind,
/// with the whole message (context included); anything else is the host's.
impl From<anyhow::Error> for Error {
    fn from(error: anyhow::Error) -> Error {
        let message = format!("{error:#}");
        match error.downcast_ref::<Error>() {
            Some(inner) if inner.is_invalid_input() && inner.to_string() == message => {
                error.downcast().expect("checked above")
            }
            Some(inner) if inner.is_invalid_input() => Error::Invalid(message),
            _ => Error::Host(error),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Error {
        Error::Host(error.into())
    }
}

impl From<wasmtime::Error> for Error {
    fn from(error: wasmtime::Error) -> Error {
        host(format!("{error:#}"))
    }
}

/// ` (did you mean '<candidate>'?)` for the candidate closest to `name`, when one is
/// close enough to be a slip of the keyboard; else nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let len = name.chars().count();
    // A third of the name may differ, never all of it.
    let close_enough = len.div_ceil(3).min(len.saturating_sub(1));
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= close_enough)
        .min()
        .map(|(_, candidate)| format!(" (did you mean '{candidate}'?)"))
        .unwrap_or_default()
}

/// How many characters to insert, delete or replace to turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let replace = diagonal + usize::from(x != *y);
            diagonal = row[j + 1];
            row[j + 1] = replace.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// The host's error, from anything printable.
pub fn host(message: impl std::fmt::Display) -> Error {
    Error::Host(anyhow::anyhow!("{message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn suggests_the_nearest_name_only_when_it_is_near() {
        let ids = ["wordcount", "upper", "lower"];
        assert_eq!(
            did_you_mean("wordcuont", ids),
            " (did you mean 'wordcount'?)"
        );
        assert_eq!(did_you_mean("uper", ids), " (did you mean 'upper'?)");
        assert_eq!(did_you_mean("finalize", ids), "");
        assert_eq!(
            did_you_mean("b", ["a"]),
            "",
            "not for a name that differs entirely"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn the_kind_survives_anyhow_and_its_context() {
        let plain: Error = anyhow::Error::from(invalid("bad --input")).into();
        assert!(matches!(&plain, Error::Invalid(m) if m == "bad --input"));
        assert_eq!(plain.exit_code(), EXIT_INVALID);
        let wrapped: Result<()> = Err(bad_checkpoint("c.json", "checksum mismatch"));
        let wrapped: Error = wrapped.context("cannot resume").unwrap_err().into();
        assert_eq!(
            wrapped.to_string(),
            "cannot resume: c.json: checksum mismatch"
        );
        assert_eq!(wrapped.exit_code(), EXIT_INVALID);
        let disk: Error = anyhow::anyhow!("No space left on device").into();
        assert!(matches!(disk, Error::Host(_)));
        let journal: Result<()> = Err(host("No space left on device"));
        let journal: Error = journal.context("not journaled").unwrap_err().into();
        assert_eq!(
            format!("{journal:#}"),
            "not journaled: No space left on device"
        );
        assert_eq!(journal.exit_code(), EXIT_FAILED);
        assert_eq!(disk.exit_code(), EXIT_FAILED);
        let io: Error = std::io::Error::other("EIO").into();
        assert_eq!(io.exit_code(), EXIT_FAILED);
    }
}
