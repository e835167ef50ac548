//! The `superstep` command line: argument parsing, commands and event display.

use anyhow::Result;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use superstep::checkpoint::{
    Checkpoint, CheckpointStore, FileStore, Listed, PrunePolicy, SigningKeys, Summary, diff,
    export, lineage,
};
use superstep::engine::{Durability, Outcome, Run, Runtime, Workflow};
use superstep::error::{invalid, is_invalid_input};
use superstep::events::{Event, EventSink};
use superstep::manifest::Manifest;
use superstep::message::{Message, Payload};
use superstep::pretty_json;

/// Exit code: the run completed (or the command succeeded).
pub const EXIT_OK: u8 = 0;
/// Exit code: the run failed (executor error, trap, limit, superstep cap, I/O).
pub const EXIT_RUN_FAILED: u8 = 1;
/// Exit code: bad usage, manifest or checkpoint; nothing was run or written.
pub const EXIT_INVALID: u8 = 2;
/// Exit code: the run paused for outside input; resume it with the responses.
pub const EXIT_PAUSED: u8 = 3;

/// The kind of every response given on the command line.
const RESPONSE_KIND: &str = "response";

#[derive(Parser)]
#[command(
    name = "superstep",
    version,
    about = "Run workflows of WebAssembly component executors in checkpointed supersteps",
    after_help = "Exit codes: 0 completed, 1 run failed, 2 bad usage, manifest or checkpoint, 3 paused for input."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workflow from its start executor; outputs go to stdout.
    Run(RunArgs),
    /// Resume a run from a checkpoint, in this process; outputs go to stdout.
    Resume(ResumeArgs),
    /// List and inspect checkpoints.
    #[command(subcommand)]
    Checkpoints(CheckpointsCommand),
    /// Check a manifest and its components without running anything.
    Validate {
        /// The workflow manifest (TOML).
        manifest: PathBuf,
    },
    /// Print the workflow graph as Mermaid or Graphviz DOT source.
    Graph {
        /// The workflow manifest (TOML).
        manifest: PathBuf,
        /// The output language.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("input-source").required(true))]
struct RunArgs {
    /// The workflow manifest (TOML).
    manifest: PathBuf,
    /// The run's input message body, as JSON (e.g. '"hello world"').
    #[arg(long, group = "input-source")]
    input: Option<String>,
    /// Read the input message body from a file (any bytes; JSON by convention).
    #[arg(long, group = "input-source", value_name = "PATH")]
    input_file: Option<PathBuf>,
    /// The kind of the input message.
    #[arg(long, default_value = "input")]
    input_kind: String,
    /// Where checkpoints are written.
    #[arg(long, default_value = "checkpoints", value_name = "DIR")]
    checkpoint_dir: PathBuf,
    #[command(flatten)]
    exec: ExecArgs,
}

#[derive(Args)]
struct ResumeArgs {
    /// A checkpoint file, or a checkpoint id (or unique prefix) in --checkpoint-dir.
    checkpoint: String,
    /// The manifest to resume with; defaults to the one recorded in the checkpoint.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Where new checkpoints go (and where ids are looked up); defaults to the
    /// checkpoint file's directory, or ./checkpoints for an id.
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Restore the checkpointed states into components whose digest changed.
    #[arg(long)]
    allow_changed_components: bool,
    /// Answer a pending request: its id, `=`, the response as JSON (repeatable).
    #[arg(long, value_name = "ID=JSON")]
    respond: Vec<String>,
    /// Answer pending requests from a JSON file: an object of request id to response.
    #[arg(long, value_name = "FILE")]
    responses: Option<PathBuf>,
    #[command(flatten)]
    exec: ExecArgs,
}

#[derive(Args)]
struct ExecArgs {
    /// When the run would pause and stdin is a terminal, ask for each response at a
    /// prompt and go on instead of exiting.
    #[arg(long)]
    interactive: bool,
    /// How events are shown: readable lines on stderr, JSON Lines on stdout, or none.
    #[arg(long, value_enum, default_value_t = EventsFormat::Human)]
    events: EventsFormat,
    /// Worker threads for the executors of a superstep (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// When checkpoints are written: at every superstep (a crash loses at most the
    /// superstep in flight), once when the run stops (a crash loses the whole
    /// process's work), or never (the run cannot be resumed).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Superstep)]
    durability: DurabilityArg,
}

#[derive(Subcommand)]
enum CheckpointsCommand {
    /// List the checkpoints in a directory, newest first.
    List {
        /// The checkpoint directory.
        #[arg(long, default_value = "checkpoints")]
        dir: PathBuf,
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
        /// The checkpoint directory.
        #[arg(long, default_value = "checkpoints")]
        dir: PathBuf,
        /// The run (an id or a prefix of one); defaults to the run that saved last.
        #[arg(long)]
        run: Option<String>,
    },
    /// Print one checkpoint in full, after verifying it.
    Show {
        /// A checkpoint file, or a checkpoint id (or unique prefix) in --dir.
        checkpoint: String,
        /// The checkpoint directory, for ids.
        #[arg(long, default_value = "checkpoints")]
        dir: PathBuf,
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
        /// A checkpoint file, or a checkpoint id (or unique prefix) in --dir.
        checkpoint: String,
        /// The checkpoint directory, for ids.
        #[arg(long, default_value = "checkpoints")]
        dir: PathBuf,
        /// The file to write.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Delete old checkpoints, then blobs no checkpoint refers to. Never deleted: the newest checkpoint of each run, one
    /// that a kept checkpoint names as parent, and damaged files.
    #[command(group = clap::ArgGroup::new("rule").required(true).multiple(true))]
    Prune {
        /// The checkpoint directory.
        #[arg(long, default_value = "checkpoints")]
        dir: PathBuf,
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

#[derive(Clone, Copy, ValueEnum)]
enum EventsFormat {
    /// Readable lines on stderr; outputs on stdout.
    Human,
    /// One JSON object per event on stdout (outputs are `output` events).
    Jsonl,
    /// No events; outputs on stdout.
    Quiet,
}

#[derive(Clone, Copy, ValueEnum)]
enum DurabilityArg {
    /// A durable checkpoint at every superstep, with the superstep journal.
    Superstep,
    /// One durable checkpoint when the run completes, pauses or fails.
    Exit,
    /// No checkpoint at all.
    Off,
}

impl From<DurabilityArg> for Durability {
    fn from(arg: DurabilityArg) -> Durability {
        match arg {
            DurabilityArg::Superstep => Durability::Superstep,
            DurabilityArg::Exit => Durability::Exit,
            DurabilityArg::Off => Durability::Off,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

/// `println!` that returns the write error (a closed pipe) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)
    };
}

/// Parses the arguments, runs the command and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`superstep checkpoints list | head`): nothing to report.
        Err(error) if is_broken_pipe(&error) => ExitCode::from(EXIT_OK),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(if is_invalid_input(&error) {
                EXIT_INVALID
            } else {
                EXIT_RUN_FAILED
            })
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn execute(command: Command) -> Result<u8> {
    match command {
        Command::Run(args) => run(args),
        Command::Resume(args) => resume(args),
        Command::Checkpoints(CheckpointsCommand::Latest { dir, run }) => {
            latest(&dir, run.as_deref())
        }
        Command::Checkpoints(CheckpointsCommand::List {
            dir,
            json,
            tree,
            workflow,
            run,
            status,
        }) => list(&dir, ListFormat::of(json, tree), |c: &Summary| {
            workflow.as_ref().is_none_or(|w| &c.workflow == w)
                && run
                    .as_ref()
                    .is_none_or(|r| c.run_id.starts_with(r.as_str()))
                && status.as_ref().is_none_or(|s| c.status.as_str() == s)
        }),
        Command::Checkpoints(CheckpointsCommand::Show {
            checkpoint,
            dir,
            state,
            diff,
        }) => show(&checkpoint, &dir, state.as_deref(), diff.as_deref()),
        Command::Checkpoints(CheckpointsCommand::Export {
            checkpoint,
            dir,
            output,
        }) => export_to(&checkpoint, &dir, &output),
        Command::Checkpoints(CheckpointsCommand::Prune {
            dir,
            keep_last,
            older_than,
            run,
            dry_run,
        }) => prune(
            &dir,
            &PrunePolicy {
                keep_last,
                older_than,
                run,
            },
            dry_run,
        ),
        Command::Validate { manifest } => validate(&manifest),
        Command::Graph { manifest, format } => {
            let manifest = Manifest::load(&manifest)?;
            let graph = superstep::graph::Graph::new(&manifest);
            write!(
                std::io::stdout().lock(),
                "{}",
                match format {
                    GraphFormat::Mermaid => graph.to_mermaid(),
                    GraphFormat::Dot => graph.to_dot(),
                }
            )?;
            Ok(EXIT_OK)
        }
    }
}

fn run(args: RunArgs) -> Result<u8> {
    let body = match (&args.input, &args.input_file) {
        (Some(text), _) => {
            serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| {
                invalid(format!(
                    "--input: not JSON ({e}); to pass a string, quote it: --input '\"{text}\"'"
                ))
            })?;
            Bytes::from(text.trim().to_string())
        }
        (None, Some(path)) => Bytes::from(
            std::fs::read(path)
                .map_err(|e| invalid(format!("--input-file {}: {e}", path.display())))?,
        ),
        (None, None) => unreachable!("clap requires one input source"),
    };
    let workflow = load(Manifest::load(&args.manifest)?, args.exec.threads)?;
    let store = Arc::new(file_store(args.checkpoint_dir)?);
    let sink = sink_for(args.exec.events);
    let input = Message {
        kind: args.input_kind,
        body,
    };
    let mut run = workflow.start(input, store, sink)?;
    run.set_durability(args.exec.durability.into());
    drive(&mut run, args.exec.interactive)
}

fn resume(args: ResumeArgs) -> Result<u8> {
    let default_dir = PathBuf::from("checkpoints");
    let file = locate(
        &args.checkpoint,
        args.checkpoint_dir.as_ref().unwrap_or(&default_dir),
    )?;
    let keys = SigningKeys::from_env()?;
    let checkpoint = FileStore::read_file(&file, keys.as_ref())?;
    let dir = match args.checkpoint_dir {
        Some(dir) => dir,
        None => file.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let manifest = match args.manifest {
        Some(manifest) => Manifest::load(&manifest)?,
        None => Manifest::load_unquoted(
            &recorded_manifest(&checkpoint)?,
            &format!("checkpoint {}", checkpoint.checkpoint_id),
        )?,
    };
    let workflow = load(manifest, args.exec.threads)?;
    let store = Arc::new(FileStore::new(dir).with_signing_keys(keys));
    let sink = sink_for(args.exec.events);
    let responses = responses_given(&args.respond, args.responses.as_deref())?;
    let mut run = workflow.resume(checkpoint, args.allow_changed_components, store, sink)?;
    run.set_durability(args.exec.durability.into());
    for (request_id, body) in responses {
        let response = Message {
            kind: RESPONSE_KIND.to_string(),
            body,
        };
        run.respond(&request_id, response)?;
    }
    drive(&mut run, args.exec.interactive)
}

/// The manifest a checkpoint names. A checkpoint is input like any file, so the path
/// must at least name a `.toml` file: no other file is read because a checkpoint says so.
fn recorded_manifest(checkpoint: &Checkpoint) -> Result<PathBuf> {
    let path = PathBuf::from(&checkpoint.manifest.path);
    if path.is_absolute() && path.extension().is_some_and(|e| e == "toml") {
        Ok(path)
    } else {
        Err(invalid(format!(
            "checkpoint {} names the manifest '{}', which is not an absolute path to a .toml file; pass --manifest",
            checkpoint.checkpoint_id, checkpoint.manifest.path
        )))
    }
}

fn load(manifest: Manifest, threads: usize) -> Result<Workflow> {
    let fuel = manifest.uses_fuel();
    Workflow::load(Runtime::new(threads, fuel)?, manifest)
}

/// Runs until the run completes, fails or pauses; with `interactive` and a terminal on
/// stdin, a pause asks for the responses and goes on.
fn drive(run: &mut Run, interactive: bool) -> Result<u8> {
    loop {
        match run.run()? {
            Outcome::Completed => return Ok(EXIT_OK),
            Outcome::Failed { .. } => return Ok(EXIT_RUN_FAILED),
            Outcome::Paused { .. } if interactive && std::io::stdin().is_terminal() => {
                ask_for_responses(run)?;
            }
            Outcome::Paused { .. } => return Ok(EXIT_PAUSED),
        }
    }
}

/// Prints each pending request on stderr and reads its response (JSON, one line) from
/// stdin, asking again until the line is JSON.
fn ask_for_responses(run: &mut Run) -> Result<()> {
    let requests = run.pending_requests().to_vec();
    let mut lines = std::io::stdin().lock().lines();
    for request in requests {
        eprintln!(
            "request {} from {} ({}): {}",
            request.request_id,
            request.executor,
            request.message.kind,
            Payload::encode(&request.message.body).to_text()
        );
        let body = loop {
            eprint!("response to {} (JSON)> ", request.request_id);
            std::io::stderr().flush()?;
            let Some(line) = lines.next().transpose()? else {
                return Err(invalid(
                    "stdin closed before every pending request was answered; the run stays paused at its last checkpoint",
                ));
            };
            match serde_json::from_str::<serde::de::IgnoredAny>(&line) {
                Ok(_) => break line.trim().to_string(),
                Err(e) => eprintln!("not JSON ({e}); a string needs quotes, e.g. \"yes\""),
            }
        };
        let response = Message {
            kind: RESPONSE_KIND.to_string(),
            body: Bytes::from(body),
        };
        run.respond(&request.request_id, response)?;
    }
    Ok(())
}

/// The responses given by `--respond ID=JSON` and `--responses FILE`, in that order;
/// refuses malformed ones and an id answered twice.
fn responses_given(respond: &[String], file: Option<&Path>) -> Result<Vec<(String, Bytes)>> {
    let mut responses: Vec<(String, Bytes)> = Vec::new();
    for given in respond {
        let Some((id, json)) = given.split_once('=') else {
            return Err(invalid(format!(
                "--respond '{given}': expected <request-id>=<json>"
            )));
        };
        serde_json::from_str::<serde::de::IgnoredAny>(json).map_err(|e| {
            invalid(format!(
                "--respond {id}: the response is not JSON ({e}); to pass a string, quote it: {id}='\"{json}\"'"
            ))
        })?;
        responses.push((id.to_string(), Bytes::from(json.trim().to_string())));
    }
    if let Some(path) = file {
        let origin = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("--responses {origin}: {e}")))?;
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| {
                invalid(format!(
                    "--responses {origin}: expected a JSON object of request id to response: {e}"
                ))
            })?;
        for (id, value) in object {
            let body = serde_json::to_vec(&value).expect("a JSON value serialises");
            responses.push((id, Bytes::from(body)));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (id, _) in &responses {
        if !seen.insert(id.as_str()) {
            return Err(invalid(format!("request '{id}' is answered twice")));
        }
    }
    Ok(responses)
}

fn validate(path: &Path) -> Result<u8> {
    let manifest = Manifest::load(path)?;
    let fuel = manifest.uses_fuel();
    let workflow = Workflow::load(Runtime::new(1, fuel)?, manifest)?;
    let manifest = workflow.manifest();
    say!(
        "{}: workflow '{}' is valid: {} executors, {} edges, start '{}'; every component implements superstep:workflow/executor",
        manifest.path.display(),
        manifest.name,
        manifest.executors.len(),
        manifest.edges.len(),
        manifest.start
    )?;
    Ok(EXIT_OK)
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

fn list(dir: &Path, format: ListFormat, wanted: impl Fn(&Summary) -> bool) -> Result<u8> {
    let mut listing = file_store(dir)?.list()?;
    listing.reverse();
    // Damaged files stay listed: they match no filter but must not go unnoticed.
    listing.retain(|entry| entry.summary.as_ref().map_or(true, &wanted));
    if format == ListFormat::Json {
        for entry in &listing {
            say!("{}", listing_json(entry))?;
        }
        return Ok(EXIT_OK);
    }
    if listing.is_empty() {
        say!("no checkpoints in {}", dir.display())?;
        return Ok(EXIT_OK);
    }
    if format == ListFormat::Tree {
        let summaries: Vec<&Summary> = listing
            .iter()
            .filter_map(|l| l.summary.as_ref().ok())
            .collect();
        let lines = lineage::tree(&summaries, |c| {
            format!(
                "{}  superstep {}  {}{}",
                c.checkpoint_id,
                c.superstep,
                c.status.as_str(),
                if c.pending > 0 {
                    format!(" ({} pending)", c.pending)
                } else {
                    String::new()
                }
            )
        });
        for line in lines {
            say!("{line}")?;
        }
        for entry in &listing {
            if let Err(why) = &entry.summary {
                say!("{}  DAMAGED: {why}", entry.id)?;
            }
        }
        return Ok(EXIT_OK);
    }
    say!(
        "{:<36}  {:<8}  {:>9}  {:<9}  {:>6}  {:<30}  SHARED",
        "CHECKPOINT",
        "RUN",
        "SUPERSTEP",
        "STATUS",
        "QUEUED",
        "STATES"
    )?;
    for entry in &listing {
        match &entry.summary {
            Ok(c) => say!(
                "{:<36}  {:<8}  {:>9}  {:<14}  {:>6}  {:>7}  {:<30}  {}",
                c.checkpoint_id,
                short(&c.run_id),
                c.superstep,
                c.status.as_str(),
                c.queued,
                c.pending,
                c.executors.join(","),
                c.shared_keys.join(",")
            )?,
            Err(why) => say!("{:<36}  DAMAGED: {why}", entry.id)?,
        }
    }
    Ok(EXIT_OK)
}

fn latest(dir: &Path, run: Option<&str>) -> Result<u8> {
    let listing = file_store(dir)?.list()?;
    let summaries: Vec<&Summary> = listing
        .iter()
        .filter_map(|l| l.summary.as_ref().ok())
        .collect();
    let Some(newest) = lineage::latest(&summaries, run) else {
        return Err(invalid(match run {
            Some(run) => format!("no checkpoint of run '{run}' in {}", dir.display()),
            None => format!("no checkpoints in {}", dir.display()),
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
            "location": entry.location,
        }),
        Err(why) => serde_json::json!({
            "checkpoint_id": entry.id,
            "damaged": why,
            "location": entry.location,
        }),
    }
}

/// The file store in `dir`, signing and verifying with the keys the environment
/// configures (see [`SigningKeys::from_env`]).
fn file_store(dir: impl Into<PathBuf>) -> Result<FileStore> {
    Ok(FileStore::new(dir).with_signing_keys(SigningKeys::from_env()?))
}

/// The file of a checkpoint named by a file path, or by an id or id prefix in `dir`.
fn locate(name: &str, dir: &Path) -> Result<PathBuf> {
    // Any file that is there (a FIFO too, which reading then refuses), not only
    // regular ones: a path is never taken for an id.
    if Path::new(name).exists() {
        Ok(PathBuf::from(name))
    } else {
        FileStore::new(dir).resolve(name)
    }
}

/// Reads and verifies the checkpoint that `name` names (see [`locate`]).
fn read_named(name: &str, dir: &Path) -> Result<Checkpoint> {
    FileStore::read_file(&locate(name, dir)?, SigningKeys::from_env()?.as_ref())
}

fn show(name: &str, dir: &Path, state: Option<&str>, other: Option<&str>) -> Result<u8> {
    let checkpoint = read_named(name, dir)?;
    if let Some(id) = state {
        let record = checkpoint.executors.get(id).ok_or_else(|| {
            invalid(format!(
                "checkpoint {} has no executor '{id}' (executors: {})",
                checkpoint.checkpoint_id,
                checkpoint
                    .executors
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        // A JSON state is printed indented; other bytes as they are.
        let bytes = record.state.decode().map_err(|e| anyhow::anyhow!(e))?;
        match Payload::encode(&bytes) {
            Payload::Json(raw) => say!("{}", pretty_json::indent(raw.get()))?,
            _ => std::io::stdout().write_all(&bytes)?,
        }
        return Ok(EXIT_OK);
    }
    if let Some(other) = other {
        let other = read_named(other, dir)?;
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
    let compact = serde_json::to_string(&checkpoint)?;
    say!("{}", pretty_json::indent(&compact))?;
    Ok(EXIT_OK)
}

fn prune(dir: &Path, policy: &PrunePolicy, dry_run: bool) -> Result<u8> {
    let store = file_store(dir)?;
    let pruned = store.prune(policy, std::time::SystemTime::now(), dry_run)?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    for id in &pruned.deleted {
        say!("{verb} {}", store.path_of(id).display())?;
    }
    say!(
        "{verb} {} of {} checkpoint(s), {} unreferenced blob(s) and {} leftover temp or journal file(s){}",
        pruned.deleted.len(),
        pruned.listed,
        pruned.blobs_deleted,
        pruned.leftovers_deleted,
        if pruned.damaged > 0 {
            format!(
                "; {} damaged file(s) left alone, and every blob with them",
                pruned.damaged
            )
        } else {
            String::new()
        }
    )?;
    Ok(EXIT_OK)
}

fn export_to(name: &str, dir: &Path, out: &Path) -> Result<u8> {
    let checkpoint = read_named(name, dir)?;
    export(&checkpoint, out, SigningKeys::from_env()?.as_ref())?;
    say!(
        "exported checkpoint {} to {}",
        checkpoint.checkpoint_id,
        out.display()
    )?;
    Ok(EXIT_OK)
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn sink_for(format: EventsFormat) -> Arc<dyn EventSink> {
    match format {
        EventsFormat::Human => Arc::new(human_event),
        EventsFormat::Jsonl => Arc::new(|event: &Event| {
            let line = serde_json::to_string(event).expect("events serialise");
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }),
        EventsFormat::Quiet => Arc::new(|event: &Event| print_output(event)),
    }
}

/// Prints an output event's body on stdout, as text when it is UTF-8.
fn print_output(event: &Event) {
    if let Event::Output { body, .. } = event {
        let bytes = body.decode().unwrap_or_default();
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&bytes);
        let _ = writeln!(out);
        let _ = out.flush();
    }
}

/// The readable event display: one line per event on stderr.
fn human_event(event: &Event) {
    print_output(event);
    let line = match event {
        Event::RunStarted {
            run_id,
            workflow,
            resumed_from,
            superstep,
        } => match resumed_from {
            Some(from) => format!(
                "run {run_id} of '{workflow}' resumed from checkpoint {from} at superstep {superstep}"
            ),
            None => format!("run {run_id} of '{workflow}' started"),
        },
        Event::SuperstepStarted {
            superstep,
            executors,
            ..
        } => {
            format!("superstep {superstep}: {}", executors.join(", "))
        }
        Event::ExecutorInvoked { .. } => return,
        Event::ExecutorCompleted {
            executor,
            duration_us,
            ..
        } => {
            format!(
                "  {executor} done in {:.1} ms",
                *duration_us as f64 / 1000.0
            )
        }
        Event::ExecutorFailed {
            executor, reason, ..
        } => format!("  {executor} FAILED: {reason}"),
        Event::ExecutorSkipped {
            executor, reason, ..
        } => format!("  {executor} skipped: {reason}"),
        Event::RequestInfo {
            request_id,
            executor,
            kind,
            body,
            ..
        } => format!(
            "  request {request_id} from {executor} ({kind}): {}",
            body.to_text()
        ),
        Event::Log {
            executor,
            level,
            text,
            ..
        } => {
            format!("  {executor} {}: {text}", level.as_str())
        }
        Event::Output { executor, body, .. } => {
            format!("  output from {executor}: {}", body.to_text())
        }
        Event::CheckpointSaved {
            location, status, ..
        } => format!("  checkpoint saved: {location} ({status})"),
        Event::SuperstepCompleted { .. } => return,
        Event::RunCompleted {
            supersteps,
            outputs,
            ..
        } => {
            format!("run completed after {supersteps} supersteps with {outputs} output(s)")
        }
        Event::RunPaused {
            checkpoint_id,
            pending,
            ..
        } => format!(
            "run paused for input: {}\n  answer with: superstep resume {} --respond <request-id>=<json>",
            pending.join(", "),
            checkpoint_id.as_deref().unwrap_or("<checkpoint>")
        ),
        Event::RunFailed {
            reason,
            last_checkpoint,
            ..
        } => match last_checkpoint {
            Some(id) => format!(
                "run FAILED: {reason}\n  resume from the last checkpoint: superstep resume {id}"
            ),
            None => format!("run FAILED: {reason}"),
        },
    };
    eprintln!("{line}");
}
