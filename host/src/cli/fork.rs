//! `superstep checkpoints fork`: a checkpoint made from another with executor states,
//! shared values and queued messages edited (time travel). Prints the new checkpoint's
//! id, which `superstep resume` takes.

use super::store::{self, load_named};
use super::{EXIT_OK, say};
use bytes::Bytes;
use clap::Args;
use std::path::PathBuf;
use superstep::checkpoint::fork::{Edits, QueueEdit, fork};
use superstep::error::{Result, invalid};
use superstep::graph::Graph;

#[derive(Args)]
pub(super) struct ForkArgs {
    /// A checkpoint file, or a checkpoint id (or unique prefix) in the store.
    checkpoint: String,
    #[command(flatten)]
    store: store::BesideArgs,
    /// The manifest the checkpoint was taken with, for its edges; defaults to the one
    /// recorded in the checkpoint.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Replace an executor's state: EXECUTOR=JSON, or EXECUTOR=@FILE for the file's
    /// bytes as they are (repeatable).
    #[arg(long, value_name = "EXECUTOR=JSON|@FILE")]
    state: Vec<String>,
    /// Set a shared-state value: KEY=JSON or KEY=@FILE (repeatable).
    #[arg(long, value_name = "KEY=JSON|@FILE")]
    shared: Vec<String>,
    /// Drop the messages queued for an executor (repeatable; done before --queue).
    #[arg(long, value_name = "EXECUTOR")]
    drop_queued: Vec<String>,
    /// Queue a message for an executor: EXECUTOR=JSON, or EXECUTOR:KIND=JSON (or
    /// =@FILE). It comes from the first executor whose edge carries it (the run's input
    /// for the start executor); the kind defaults to the only one the edges into the
    /// executor carry (repeatable).
    #[arg(long, value_name = "EXECUTOR[:KIND]=JSON|@FILE")]
    queue: Vec<String>,
}

/// Writes the fork into the store and prints its id; what changed goes to stderr.
pub(super) fn fork_checkpoint(args: ForkArgs) -> Result<u8> {
    let edits = edits(&args)?;
    let store = store::open(&args.store.location_for(&args.checkpoint))?;
    let parent = load_named(&args.checkpoint, store.as_ref())?;
    let manifest = store::manifest_for(&parent, args.manifest.as_deref())?;
    let graph = Graph::new(&manifest);
    if graph.digest() != parent.manifest.digest {
        return Err(invalid(format!(
            "checkpoint {} was taken with another workflow graph than {}; pass --manifest with the manifest it was taken with",
            parent.checkpoint_id,
            manifest.path.display()
        )));
    }
    let child = fork(&parent, &edits, &graph)?;
    store.save(&child)?;
    eprintln!(
        "forked checkpoint {} into {} ({}):",
        parent.checkpoint_id,
        child.checkpoint_id,
        child.status.as_str()
    );
    for change in child.edit.iter().flat_map(|edit| &edit.changes) {
        eprintln!("  {change}");
    }
    say!("{}", child.checkpoint_id)?;
    Ok(EXIT_OK)
}

/// The edits the options ask for, each value read and checked.
fn edits(args: &ForkArgs) -> Result<Edits> {
    let mut edits = Edits {
        drop_queued: args.drop_queued.clone(),
        ..Edits::default()
    };
    for given in &args.state {
        let (executor, body) = assignment("--state", given, "EXECUTOR")?;
        if edits.states.iter().any(|(e, _)| *e == executor) {
            return Err(invalid(format!("--state {executor}: given twice")));
        }
        edits.states.push((executor, body));
    }
    for given in &args.shared {
        let (key, body) = assignment("--shared", given, "KEY")?;
        if edits.shared.iter().any(|(k, _)| *k == key) {
            return Err(invalid(format!("--shared {key}: given twice")));
        }
        edits.shared.push((key, body));
    }
    for given in &args.queue {
        let (target, body) = assignment("--queue", given, "EXECUTOR[:KIND]")?;
        let (executor, kind) = match target.split_once(':') {
            Some((executor, kind)) if !kind.is_empty() => (executor, Some(kind.to_string())),
            Some(_) => return Err(invalid(format!("--queue {target}: the kind is empty"))),
            None => (target.as_str(), None),
        };
        edits.queue.push(QueueEdit {
            executor: executor.to_string(),
            kind,
            body,
        });
    }
    Ok(edits)
}

/// `NAME=JSON` (checked to be JSON) or `NAME=@FILE` (the file's bytes as they are),
/// given to `option`; `name` says what NAME is, in errors.
fn assignment(option: &str, given: &str, name: &str) -> Result<(String, Bytes)> {
    let Some((target, value)) = given.split_once('=').filter(|(t, _)| !t.is_empty()) else {
        return Err(invalid(format!(
            "{option} '{given}': expected {name}=<json> or {name}=@<file>"
        )));
    };
    let body = match value.strip_prefix('@') {
        Some(file) => Bytes::from(
            std::fs::read(file).map_err(|e| invalid(format!("{option} {target}: {file}: {e}")))?,
        ),
        None => {
            serde_json::from_str::<serde::de::IgnoredAny>(value).map_err(|e| {
                invalid(format!(
                    "{option} {target}: not JSON ({e}); to pass a string, quote it: {target}='\"{value}\"'"
                ))
            })?;
            Bytes::from(value.trim().to_string())
        }
    };
    Ok((target.to_string(), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_take_json_or_a_file() {
        let (name, body) = assignment("--state", "a={\"n\": 1}", "EXECUTOR").unwrap();
        assert_eq!((name.as_str(), &body[..]), ("a", &b"{\"n\": 1}"[..]));
        let err = assignment("--state", "a=hello", "EXECUTOR").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--state a: not JSON (expected value at line 1 column 1); to pass a string, quote it: a='\"hello\"'"),
            "{err}"
        );
        let err = assignment("--shared", "=1", "KEY").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--shared '=1': expected KEY=<json> or KEY=@<file>"
        );
        let err = assignment("--queue", "b=@/no/such/file", "EXECUTOR").unwrap_err();
        assert!(
            err.to_string().starts_with("--queue b: /no/such/file: "),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.bin");
        std::fs::write(&file, b"\xff\x00").unwrap();
        let (_, body) = assignment("--state", &format!("a=@{}", file.display()), "X").unwrap();
        assert_eq!(&body[..], b"\xff\x00");
    }
}
