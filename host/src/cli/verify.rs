//! `superstep checkpoints verify`: each executor's state in a checkpoint restored into a
//! fresh instance and snapshotted again, compared with what the checkpoint holds.

use super::display::human_line;
use super::store::{StoreArgs, load_named, manifest_for};
use super::{EXIT_DIFFERS, EXIT_OK, say};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use superstep::engine::{Runtime, Workflow};
use superstep::error::Result;
use superstep::events::Event;

#[derive(Args)]
pub(super) struct VerifyArgs {
    /// A checkpoint file, or a checkpoint id (or unique prefix) in the store.
    checkpoint: String,
    #[command(flatten)]
    store: StoreArgs,
    /// The manifest whose components to verify with; defaults to the one recorded in
    /// the checkpoint.
    #[arg(long)]
    manifest: Option<PathBuf>,
}

/// Prints one line per executor: `identical`, `equal as JSON`, or the first
/// difference; exits 4 when a state did not come back.
pub(super) fn verify(args: VerifyArgs) -> Result<u8> {
    let store = args.store.open()?;
    let checkpoint = load_named(&args.checkpoint, store.as_ref())?;
    let manifest = manifest_for(&checkpoint, args.manifest.as_deref())?;
    let workflow = Workflow::load(Runtime::new(0, manifest.uses_fuel())?, manifest)?;
    // What the guests print while they restore and snapshot goes to stderr.
    let sink = Arc::new(|event: &Event| {
        if let Some(line) = human_line(event, "") {
            eprintln!("{line}");
        }
    });
    let report = workflow.verify_snapshots(&checkpoint, sink)?;
    for verified in &report {
        let changed = match verified.component_changed {
            true => " (its component changed since the checkpoint)",
            false => "",
        };
        say!("{}: {}{changed}", verified.executor, verified.fidelity)?;
    }
    match report.iter().all(|v| v.fidelity.is_faithful()) {
        true => Ok(EXIT_OK),
        false => Ok(EXIT_DIFFERS),
    }
}
