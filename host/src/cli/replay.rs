//! `superstep replay`: the recorded supersteps of a run's lineage run again in memory,
//! with the components of a manifest (a new version of one, say), each compared with
//! the checkpoint that recorded it. What a user runs before upgrading a component that
//! live runs use.

use super::display::human_line;
use super::store::{self, load_named};
use super::{EXIT_DIFFERS, EXIT_OK, say};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use superstep::checkpoint::{Checkpoint, CheckpointStore, ListFilter, Summary, lineage};
use superstep::engine::{Replayed, Runtime, Workflow};
use superstep::error::{Result, invalid};
use superstep::events::Event;

#[derive(Args)]
pub(super) struct ReplayArgs {
    /// The checkpoint to replay from: a file, or a checkpoint id (or unique prefix) in
    /// the store.
    checkpoint: String,
    #[command(flatten)]
    store: store::BesideArgs,
    /// The manifest whose components to replay with; defaults to the one recorded in
    /// the checkpoint. Its graph must be the recorded one.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// The last checkpoint to compare with (an id or unique prefix), a descendant of
    /// the first; defaults to the end of the lineage, which must not branch.
    #[arg(long, value_name = "CHECKPOINT")]
    until: Option<String>,
}

/// Replays each stretch of the lineage and prints how it compared; stops at the first
/// that differs, with the differences, and exits 4. Writes nothing.
pub(super) fn replay(args: ReplayArgs) -> Result<u8> {
    let store = store::open(&args.store.location_for(&args.checkpoint))?;
    let first = load_named(&args.checkpoint, store.as_ref())?;
    let chain = chain(store.as_ref(), &first, args.until.as_deref())?;
    let manifest = store::manifest_for(&first, args.manifest.as_deref())?;
    let workflow = Workflow::load(Runtime::new(0, manifest.uses_fuel())?, manifest)?;
    say!(
        "replaying run {} from checkpoint {} (superstep {}) to {} (superstep {}) with {}",
        first.run_id,
        first.checkpoint_id,
        first.superstep,
        chain.last().map_or("", |s| s.checkpoint_id.as_str()),
        chain.last().map_or(0, |s| s.superstep),
        workflow.manifest().path.display()
    )?;
    // What the guests log goes to stderr; the replayed run's other events are its own.
    let sink = Arc::new(|event: &Event| {
        if let Event::Log { .. } = event
            && let Some(line) = human_line(event, "")
        {
            eprintln!("{line}");
        }
    });
    let mut before = first;
    for summary in &chain[1..] {
        let after = store.load(&summary.checkpoint_id)?;
        if after.superstep == before.superstep {
            say!("{}", between_supersteps(&after))?;
        } else {
            let replayed = workflow.replay(&before, &after, sink.clone())?;
            say!("{}", verdict(&replayed, &after))?;
            if !replayed.is_identical() {
                for line in &replayed.differences {
                    say!("  {line}")?;
                }
                return Ok(EXIT_DIFFERS);
            }
        }
        before = after;
    }
    Ok(EXIT_OK)
}

/// The lineage from `first` to the checkpoint `until` names (or the lineage's end).
fn chain(
    store: &dyn CheckpointStore,
    first: &Checkpoint,
    until: Option<&str>,
) -> Result<Vec<Summary>> {
    let until = until.map(|name| store.resolve(name)).transpose()?;
    let listing = store.list_matching(&ListFilter {
        run: Some(first.run_id.clone()),
        ..ListFilter::default()
    })?;
    let summaries: Vec<&Summary> = listing
        .iter()
        .filter_map(|l| l.summary.as_ref().ok())
        .collect();
    let chain = lineage::chain(&summaries, &first.checkpoint_id, until.as_deref())
        .map_err(|why| invalid(format!("{}: {why} (--until)", store.location())))?;
    if chain.len() < 2 {
        return Err(invalid(format!(
            "checkpoint {} is the last of its lineage in {}: nothing comes after it to replay",
            first.checkpoint_id,
            store.location()
        )));
    }
    Ok(chain.into_iter().cloned().collect())
}

/// The line for a checkpoint written between two supersteps: responses given, or a fork.
fn between_supersteps(checkpoint: &Checkpoint) -> String {
    let what = match &checkpoint.edit {
        Some(edit) => {
            let changes: Vec<String> = edit.changes.iter().map(ToString::to_string).collect();
            format!("forked ({})", changes.join("; "))
        }
        None => "responses given".to_string(),
    };
    format!(
        "checkpoint {} (before superstep {}): {what}; taken as recorded",
        checkpoint.checkpoint_id, checkpoint.superstep
    )
}

/// The line for a replayed stretch compared with checkpoint `after`.
fn verdict(replayed: &Replayed, after: &Checkpoint) -> String {
    let range = &replayed.supersteps;
    let supersteps = match range.end - range.start {
        1 => format!("superstep {}", range.start),
        _ => format!("supersteps {} to {}", range.start, range.end - 1),
    };
    let verdict = match replayed.is_identical() {
        true => "identical".to_string(),
        false => format!("differs from checkpoint {}:", after.checkpoint_id),
    };
    let recorded = match replayed.recorded.as_slice() {
        [] => String::new(),
        ids => format!(" (recorded results of {}, not run)", ids.join(", ")),
    };
    format!("{supersteps}{recorded}: {verdict}")
}
