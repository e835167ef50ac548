//! Errors the user can fix: bad arguments, manifests and checkpoint files.

/// An input the user gave is wrong: an argument, a manifest or a checkpoint file. The
/// message names the file and the field at fault. The CLI exits with code 2 for it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// Builds an [`InvalidInput`] error.
pub fn invalid(message: impl Into<String>) -> anyhow::Error {
    InvalidInput(message.into()).into()
}

/// Whether `error` (or anything in its chain) is an [`InvalidInput`].
pub fn is_invalid_input(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<InvalidInput>())
}
