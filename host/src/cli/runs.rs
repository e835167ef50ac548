//! `superstep runs` (list, show, wait for, follow the events of runs in the database)
//! and `superstep respond` (answer a paused one).

use super::run::answers_given;
use super::{EXIT_OK, EXIT_PAUSED, EXIT_RUN_FAILED, say};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;
use superstep::checkpoint::{CheckpointStore, PostgresStore, SigningKeys};
use superstep::error::{Result, invalid};
use superstep::queue::{RunFilter, RunQueue, RunRecord, RunStatus};

/// The database option of these commands.
#[derive(Args)]
pub(super) struct DatabaseArgs {
    /// The database: postgres://user@host:port/database.
    #[arg(long = "store", env = "SUPERSTEP_STORE", value_name = "URL")]
    store: String,
}

impl DatabaseArgs {
    fn queue(&self) -> Result<RunQueue> {
        RunQueue::connect(&super::db::postgres_url(&self.store)?)
    }
}

/// What `superstep runs` does.
#[derive(Subcommand)]
pub(super) enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only runs with this status (queued, running, paused, cancelled, completed,
        /// failed).
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// One JSON object per run.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// A run as JSON: its status, owner, lease, outputs and pending requests.
    Show {
        /// The run id.
        run: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Wait until a run completes (exit 0), fails (1), or pauses for input or is
    /// cancelled (3).
    Wait {
        /// The run id.
        run: String,
        /// Give up after this long (exit 2); default: wait as long as it takes.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// A run's events as JSON Lines, each with its sequence number (`seq`).
    Events {
        /// The run id.
        run: String,
        /// Go on printing events as they come until the run completes, fails or pauses.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// `superstep respond`.
#[derive(Args)]
pub(super) struct RespondArgs {
    /// The paused run.
    run: String,
    /// Answers: a pending request's id, `=`, the response as JSON.
    #[arg(value_name = "ID=JSON")]
    answers: Vec<String>,
    /// A JSON object of request id to response.
    #[arg(long, value_name = "FILE")]
    responses: Option<PathBuf>,
    #[command(flatten)]
    db: DatabaseArgs,
}

/// Runs a `runs` command.
pub(super) fn execute(command: RunsCommand) -> Result<u8> {
    match command {
        RunsCommand::List {
            status,
            workflow,
            json,
            db,
        } => list(&db.queue()?, status.as_deref(), workflow.as_deref(), json),
        RunsCommand::Show { run, db } => show(&db.queue()?, &run),
        RunsCommand::Wait { run, timeout, db } => wait(&db.queue()?, &run, timeout),
        RunsCommand::Events { run, follow, db } => events(&db.queue()?, &run, follow),
    }
}

fn list(queue: &RunQueue, status: Option<&str>, workflow: Option<&str>, json: bool) -> Result<u8> {
    let status = status
        .map(|s| {
            RunStatus::parse(s).ok_or_else(|| {
                invalid(format!(
                    "--status {s}: one of queued, running, paused, cancelled, completed, failed"
                ))
            })
        })
        .transpose()?;
    let filter = RunFilter {
        status,
        workflow: workflow.map(str::to_string),
        label: None,
    };
    let runs = queue.list(&filter)?;
    if json {
        for run in &runs {
            say!("{}", serde_json::to_string(run).expect("a run serialises"))?;
        }
        return Ok(EXIT_OK);
    }
    if runs.is_empty() {
        say!("no runs")?;
    }
    for run in &runs {
        say!(
            "{}  {:<9}  {}  epoch {}  {}",
            run.run_id,
            run.status.as_str(),
            run.workflow,
            run.epoch,
            run.updated_at
        )?;
    }
    Ok(EXIT_OK)
}

fn show(queue: &RunQueue, run_id: &str) -> Result<u8> {
    let record = queue.get(run_id)?;
    let mut shown = serde_json::to_value(&record).expect("a run serialises");
    let store = checkpoints(queue)?;
    if let Some(id) = &record.checkpoint {
        let checkpoint = store.load(id)?;
        shown["last_checkpoint"] = id.clone().into();
        shown["outputs"] = checkpoint
            .outputs
            .iter()
            .map(|o| serde_json::json!({"superstep": o.superstep, "executor": o.source, "kind": o.kind, "body": o.body.to_json_value()}))
            .collect();
        shown["pending"] = checkpoint
            .pending_requests
            .iter()
            .map(|r| serde_json::json!({"request_id": r.request_id, "executor": r.executor, "kind": r.kind, "body": r.body.to_json_value()}))
            .collect();
    }
    say!("{}", serde_json::to_string_pretty(&shown).expect("JSON"))?;
    Ok(EXIT_OK)
}

/// The checkpoints of `queue`'s database, signed and verified with the environment's
/// keys.
fn checkpoints(queue: &RunQueue) -> Result<PostgresStore> {
    Ok(queue
        .checkpoints()
        .with_signing_keys(SigningKeys::from_env()?))
}

/// The exit code of a run that stands at `record`, if it stopped.
fn exit_code(record: &RunRecord) -> Option<u8> {
    match record.status {
        RunStatus::Completed => Some(EXIT_OK),
        RunStatus::Failed => Some(EXIT_RUN_FAILED),
        RunStatus::Paused | RunStatus::Cancelled => Some(EXIT_PAUSED),
        RunStatus::Queued | RunStatus::Running => None,
    }
}

/// A channel that hears of changes to `run_id` (and of reconnections).
fn watch(queue: &RunQueue, run_id: &str) -> mpsc::Receiver<()> {
    let (changed, changes) = mpsc::channel();
    let changed = std::sync::Mutex::new(changed);
    let run_id = run_id.to_string();
    queue.watch(move |id| {
        if id.as_deref().is_none_or(|id| id == run_id) {
            let _ = changed.lock().expect("watch lock").send(());
        }
    });
    changes
}

/// How long to wait for a notification before looking again anyway.
const LOOK_AGAIN: Duration = Duration::from_secs(5);

fn wait(queue: &RunQueue, run_id: &str, timeout: Option<Duration>) -> Result<u8> {
    let changes = watch(queue, run_id);
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let record = queue.get(run_id)?;
        if let Some(code) = exit_code(&record) {
            say!("{}", record.status.as_str())?;
            return Ok(code);
        }
        let mut wait = LOOK_AGAIN;
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(invalid(format!(
                    "run {run_id} is still {} after {}",
                    record.status.as_str(),
                    humantime::format_duration(timeout.unwrap_or_default())
                )));
            }
            wait = wait.min(left);
        }
        let _ = changes.recv_timeout(wait);
    }
}

fn events(queue: &RunQueue, run_id: &str, follow: bool) -> Result<u8> {
    let changes = follow.then(|| watch(queue, run_id));
    queue.get(run_id)?;
    let mut after = -1;
    loop {
        // Read before the events, so that the events of a run that just stopped are in.
        let stopped = exit_code(&queue.get(run_id)?).is_some();
        for (seq, epoch, event) in queue.events(run_id, after)? {
            let mut event: serde_json::Value = serde_json::from_str(&event).expect("stored JSON");
            event["seq"] = seq.into();
            event["epoch"] = epoch.into();
            say!("{event}")?;
            after = seq;
        }
        match &changes {
            Some(changes) if !stopped => drop(changes.recv_timeout(LOOK_AGAIN)),
            _ => return Ok(EXIT_OK),
        }
    }
}

/// `superstep respond`: stores the answers and queues the run again.
pub(super) fn respond(args: RespondArgs) -> Result<u8> {
    let answers = answers_given("", &args.answers, args.responses.as_deref())?;
    if answers.is_empty() {
        return Err(invalid(
            "no answer given: <request-id>=<json>, or --responses <file>",
        ));
    }
    let queue = args.db.queue()?;
    let record = queue.get(&args.run)?;
    let store = checkpoints(&queue)?;
    let pending: Vec<String> = match &record.checkpoint {
        Some(id) => store
            .load(id)?
            .pending_requests
            .into_iter()
            .map(|r| r.request_id)
            .collect(),
        None => Vec::new(),
    };
    let answers = answers
        .into_iter()
        .map(|(id, body)| (id, String::from_utf8_lossy(&body).into_owned()))
        .collect();
    queue.respond(&args.run, answers, pending)?;
    say!("answered; run {} is queued", args.run)?;
    Ok(EXIT_OK)
}
