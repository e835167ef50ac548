//! `superstep checkpoints list|latest|show|export|prune|fork|verify`: the checkpoints
//! of a store (`fork` and `verify` in modules of their own).

use super::pretty_json;
use super::store::{StoreArgs, load_named};
use super::{EXIT_OK, say};
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;
use superstep::checkpoint::{
    CheckpointStore, ListFilter, Listed, PrunePolicy, Status, Summary, diff, export, lineage,
};
use superstep::error::Result;
use superstep::error::{did_you_mean, invalid};
use superstep::message::Payload;

#[derive(Subcommand)]
pub(super) enum CheckpointsCommand {
    /// List the checkpoints of a store, newest first.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON (one object per checkpoint) instead of a table.
        #[arg(long, conflicts_with = "tree")]
        json: bool,
        /// Draw each run's checkpoints as a tree of parents and children: branches
        /// show where an older checkpoint was resumed.
        #[arg(long)]
        tree: bool,
        /// Only checkpoints of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only checkpoints of this run (an id or a prefix of one).
        #[arg(long)]
        run: Option<String>,
        /// Only checkpoints with this status.
        #[arg(long, value_parser = ["running", "awaiting-input", "completed"])]
        status: Option<String>,
    },
    /// Print the id of a run's newest checkpoint by lineage (the end of its longest
    /// chain of parents), not by file time.
    Latest {
        #[command(flatten)]
        store: StoreArgs,
        /// The run (an id or a prefix of one); defaults to the run that saved last.
        #[arg(long)]
        run: Option<String>,
    },
    /// Print one checkpoint in full, after verifying it.
    Show {
        /// A checkpoint file, or a checkpoint id (or unique prefix) in the store.
        checkpoint: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Print only this executor's state (JSON indented; other bytes as they are).
        #[arg(long, value_name = "EXECUTOR", conflicts_with = "diff")]
        state: Option<String>,
        /// Print what changed from this checkpoint to another (file, id or prefix).
        #[arg(long, value_name = "OTHER")]
        diff: Option<String>,
    },
    /// Write one checkpoint, with every state it refers to, into one self-contained
    /// file that `superstep resume <file>` accepts on any machine.
    Export {
        /// A checkpoint file, or a checkpoint id (or unique prefix) in the store.
        checkpoint: String,
        #[command(flatten)]
        store: StoreArgs,
        /// The file to write.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Write a new checkpoint from another with edited states, shared values or queued
    /// messages, and print its id: `superstep resume <id>` goes on from the edits.
    Fork(super::fork::ForkArgs),
    /// Restore each executor's state into a fresh instance, snapshot it again and
    /// compare: identical, equal as JSON, or the first difference (exit 4).
    Verify(super::verify::VerifyArgs),
    /// Delete old checkpoints, then blobs no checkpoint refers to. Never deleted: the
    /// newest checkpoint of each run, one that a kept checkpoint names as parent, and
    /// damaged files.
    #[command(group = clap::ArgGroup::new("rule").required(true).multiple(true))]
    Prune {
        #[command(flatten)]
        store: StoreArgs,
        /// Keep the N newest checkpoints of each run.
        #[arg(long, value_name = "N", group = "rule")]
        keep_last: Option<usize>,
        /// Delete checkpoints older than this (e.g. 30m, 12h, 7d).
        #[arg(long, value_name = "DURATION", group = "rule", value_parser = humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
        /// Only prune this run (an id or a prefix of one).
        #[arg(long)]
        run: Option<String>,
        /// Print what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs one `checkpoints` command.
pub(super) fn execute(command: CheckpointsCommand) -> Result<u8> {
    match command {
        CheckpointsCommand::List {
            store,
            json,
            tree,
            workflow,
            run,
            status,
        } => {
            let filter = ListFilter {
                workflow,
                run,
                status: status.as_deref().map(status_named),
            };
            list(store.open()?.as_ref(), &filter, ListFormat::of(json, tree))
        }
        CheckpointsCommand::Latest { store, run } => latest(store.open()?.as_ref(), run.as_deref()),
        CheckpointsCommand::Show {
            checkpoint,
            store,
            state,
            diff,
        } => show(
            store.open()?.as_ref(),
            &checkpoint,
            state.as_deref(),
            diff.as_deref(),
        ),
        CheckpointsCommand::Export {
            checkpoint,
            store,
            output,
        } => export_to(store.open()?.as_ref(), &checkpoint, &output),
        CheckpointsCommand::Fork(args) => super::fork::fork_checkpoint(args),
        CheckpointsCommand::Verify(args) => super::verify::verify(args),
        CheckpointsCommand::Prune {
            store,
            keep_last,
            older_than,
            run,
            dry_run,
        } => {
            let policy = PrunePolicy {
                keep_last,
                older_than,
                run,
            };
            prune(store.open()?.as_ref(), &policy, dry_run)
        }
    }
}

fn status_named(name: &str) -> Status {
    match name {
        "running" => Status::Running,
        "awaiting-input" => Status::AwaitingInput,
        _ => Status::Completed,
    }
}

/// How `checkpoints list` prints.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ListFormat {
    Table,
    Json,
    Tree,
}

impl ListFormat {
    fn of(json: bool, tree: bool) -> ListFormat {
        match (json, tree) {
            (true, _) => ListFormat::Json,
            (_, true) => ListFormat::Tree,
            _ => ListFormat::Table,
        }
    }
}

fn list(store: &dyn CheckpointStore, filter: &ListFilter, format: ListFormat) -> Result<u8> {
    let mut listing = store.list_matching(filter)?;
    listing.reverse();
    if format == ListFormat::Json {
        for entry in &listing {
            say!("{}", listing_json(entry))?;
        }
        return Ok(EXIT_OK);
    }
    if listing.is_empty() {
        say!("no checkpoints in {}", store.location())?;
        return Ok(EXIT_OK);
    }
    let lines = match format {
        ListFormat::Tree => tree_lines(&listing),
        _ => table_lines(&listing),
    };
    for line in lines {
        say!("{line}")?;
    }
    Ok(EXIT_OK)
}

/// Each run's checkpoints as a tree, then the damaged files.
fn tree_lines(listing: &[Listed]) -> Vec<String> {
    let summaries: Vec<&Summary> = listing
        .iter()
        .filter_map(|l| l.summary.as_ref().ok())
        .collect();
    let mut lines = lineage::tree(&summaries, |c| {
        let pending = match c.pending {
            0 => String::new(),
            n => format!(" ({n} pending)"),
        };
        let forked = match &c.edit {
            Some(edit) => {
                let changes: Vec<String> = edit.changes.iter().map(ToString::to_string).collect();
                format!("  forked: {}", changes.join("; "))
            }
            None => String::new(),
        };
        format!(
            "{}  superstep {}  {}{pending}{forked}",
            c.checkpoint_id,
            c.superstep,
            c.status.as_str()
        )
    });
    for entry in listing {
        if let Err(why) = &entry.summary {
            lines.push(format!("{}  DAMAGED: {why}", entry.id));
        }
    }
    lines
}

/// A header and one line per checkpoint.
fn table_lines(listing: &[Listed]) -> Vec<String> {
    let header = format!(
        "{:<36}  {:<8}  {:>9}  {:<14}  {:>6}  {:>7}  {:<30}  SHARED",
        "CHECKPOINT", "RUN", "SUPERSTEP", "STATUS", "QUEUED", "PENDING", "STATES"
    );
    let rows = listing.iter().map(|entry| match &entry.summary {
        Ok(c) => format!(
            "{:<36}  {:<8}  {:>9}  {:<14}  {:>6}  {:>7}  {:<30}  {}",
            c.checkpoint_id,
            c.run_id.get(..8).unwrap_or(&c.run_id),
            c.superstep,
            c.status.as_str(),
            c.queued,
            c.pending,
            c.executors.join(","),
            c.shared_keys.join(",")
        ),
        Err(why) => format!("{:<36}  DAMAGED: {why}", entry.id),
    });
    std::iter::once(header).chain(rows).collect()
}

fn latest(store: &dyn CheckpointStore, run: Option<&str>) -> Result<u8> {
    let Some(newest) = store.latest(run)? else {
        return Err(invalid(match run {
            Some(run) => format!("no checkpoint of run '{run}' in {}", store.location()),
            None => format!("no checkpoints in {}", store.location()),
        }));
    };
    say!("{}", newest.checkpoint_id)?;
    Ok(EXIT_OK)
}

fn listing_json(entry: &Listed) -> serde_json::Value {
    match &entry.summary {
        Ok(c) => serde_json::json!({
            "checkpoint_id": c.checkpoint_id,
            "parent_id": c.parent_id,
            "run_id": c.run_id,
            "workflow": c.workflow,
            "superstep": c.superstep,
            "status": c.status.as_str(),
            "created_at": c.created_at,
            "queued": c.queued,
            "pending": c.pending,
            "outputs": c.outputs,
            "executors": c.executors,
            "shared_state": c.shared_keys,
            "blobs": c.blobs.len(),
            "edit": c.edit,
            "location": entry.location,
        }),
        Err(why) => serde_json::json!({
            "checkpoint_id": entry.id,
            "damaged": why,
            "location": entry.location,
        }),
    }
}

fn show(
    store: &dyn CheckpointStore,
    name: &str,
    state: Option<&str>,
    other: Option<&str>,
) -> Result<u8> {
    let checkpoint = load_named(name, store)?;
    if let Some(id) = state {
        let record = checkpoint.executors.get(id).ok_or_else(|| {
            let ids: Vec<&str> = checkpoint.executors.keys().map(String::as_str).collect();
            invalid(format!(
                "checkpoint {} has no executor '{id}'{} (executors: {})",
                checkpoint.checkpoint_id,
                did_you_mean(id, ids.iter().copied()),
                ids.join(", ")
            ))
        })?;
        // A JSON state is printed indented; other bytes as they are.
        let bytes = record.state.decode().map_err(superstep::error::invalid)?;
        match Payload::encode(&bytes) {
            Payload::Json(raw) => say!("{}", pretty_json::indent(raw.get()))?,
            _ => std::io::stdout().write_all(&bytes)?,
        }
        return Ok(EXIT_OK);
    }
    if let Some(other) = other {
        let other = load_named(other, store)?;
        say!("{} -> {}", checkpoint.checkpoint_id, other.checkpoint_id)?;
        let lines = diff(&checkpoint, &other);
        if lines.is_empty() {
            say!("no differences in run state")?;
        }
        for line in lines {
            say!("{line}")?;
        }
        return Ok(EXIT_OK);
    }
    // Indented as text, so that JSON states are indented like the rest, and any JSON
    // that resume accepts prints (a Value has a depth limit and no room for 1e999).
    let compact = serde_json::to_string(&checkpoint).map_err(superstep::error::host)?;
    say!("{}", pretty_json::indent(&compact))?;
    Ok(EXIT_OK)
}

fn prune(store: &dyn CheckpointStore, policy: &PrunePolicy, dry_run: bool) -> Result<u8> {
    let pruned = store.prune(policy, std::time::SystemTime::now(), dry_run)?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    for id in &pruned.deleted {
        say!("{verb} checkpoint {id}")?;
    }
    let damaged = match pruned.damaged {
        0 => String::new(),
        n => format!("; {n} damaged file(s) left alone, and every blob with them"),
    };
    say!(
        "{verb} {} of {} checkpoint(s), {} unreferenced blob(s) and {} leftover temp or journal file(s){damaged}",
        pruned.deleted.len(),
        pruned.listed,
        pruned.blobs_deleted,
        pruned.leftovers_deleted,
    )?;
    Ok(EXIT_OK)
}

fn export_to(store: &dyn CheckpointStore, name: &str, out: &std::path::Path) -> Result<u8> {
    let checkpoint = load_named(name, store)?;
    export(&checkpoint, out, store.signing_keys())?;
    say!(
        "exported checkpoint {} to {}",
        checkpoint.checkpoint_id,
        out.display()
    )?;
    Ok(EXIT_OK)
}
