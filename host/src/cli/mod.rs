//! The `superstep` command line: one module per group of commands, the store chosen in
//! one place ([`store`]), events shown by [`display`].

mod build;
mod checkpoints;
mod db;
mod display;
mod fork;
mod new;
mod pretty_json;
mod replay;
mod run;
mod runs;
mod serve;
mod store;
mod submit;
mod verify;
mod worker;
mod workflow;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use superstep::error::{EXIT_FAILED, Error};
use superstep::telemetry::Telemetry;

/// Exit code: the run completed (or the command succeeded).
pub const EXIT_OK: u8 = 0;
/// Exit code: the run failed (executor error, trap, limit, superstep cap, I/O).
pub const EXIT_RUN_FAILED: u8 = EXIT_FAILED;
/// Exit code: the run paused for outside input; resume it with the responses.
pub const EXIT_PAUSED: u8 = 3;
/// Exit code: a check found a difference (a state that does not come back as stored).
pub const EXIT_DIFFERS: u8 = 4;

#[derive(Parser)]
#[command(
    name = "superstep",
    version,
    about = "Run workflows of WebAssembly component executors in checkpointed supersteps",
    after_help = "Exit codes: 0 completed, 1 run failed, 2 bad usage, manifest or checkpoint, 3 paused for input, 4 a check found a difference."
)]
struct Cli {
    /// Export OpenTelemetry traces (a span per run, superstep and executor call) to
    /// this OTLP/HTTP collector, such as http://127.0.0.1:4318 [default:
    /// $OTEL_EXPORTER_OTLP_ENDPOINT, when it is an http:// URL]
    #[arg(long, global = true, value_name = "URL")]
    otlp: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workflow from its start executor; outputs go to stdout.
    Run(run::RunArgs),
    /// Resume a run from a checkpoint, in this process; outputs go to stdout.
    Resume(run::ResumeArgs),
    /// Run the recorded supersteps of a run again in memory with a manifest's
    /// components and compare each with its checkpoint; exits 4 at the first that
    /// differs. Writes nothing and reaches no network.
    Replay(replay::ReplayArgs),
    /// List and inspect checkpoints.
    #[command(subcommand)]
    Checkpoints(checkpoints::CheckpointsCommand),
    /// Check a manifest and its components without running anything.
    Validate(workflow::ValidateArgs),
    /// Compile each component of a manifest with the optimizing compiler into the
    /// compile cache, ahead of the runs that use it.
    Compile(workflow::CompileArgs),
    /// Start an executor project (Rust, Python or JavaScript) with a workflow that runs
    /// it.
    New(new::NewArgs),
    /// Run the `build` command of each executor of a manifest (at the same time) and
    /// say which components changed.
    Build(build::BuildArgs),
    /// Print the workflow graph as Mermaid or Graphviz DOT source.
    Graph(workflow::GraphArgs),
    /// Manage the PostgreSQL database that `--store postgres://...` names.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Store a run in the database for a worker to run; prints its id.
    Submit(submit::SubmitArgs),
    /// Claim runs from the database and run them, until SIGTERM.
    Worker(worker::WorkerArgs),
    /// List, show, wait for and follow runs in the database.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Answer pending requests of a paused run in the database, queuing it again.
    Respond(runs::RespondArgs),
    /// Serve the HTTP API and the web page: start, follow, answer, resume and cancel
    /// runs of the workflows under a directory.
    Serve(serve::ServeArgs),
}

/// `println!` that returns the write error (a closed pipe) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub(crate) use say;

/// Parses the arguments, runs the command and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = match telemetry(cli.otlp.as_deref()) {
        Ok(telemetry) => telemetry,
        Err(error) => return failed(&error),
    };
    let outcome = execute(cli.command);
    if let Some(telemetry) = telemetry
        && let Err(error) = telemetry.shutdown()
    {
        eprintln!("warning: {error:#}");
    }
    match outcome {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`superstep checkpoints list | head`): nothing to report.
        Err(error) if is_broken_pipe(&error) => ExitCode::from(EXIT_OK),
        Err(error) => failed(&error),
    }
}

/// The exporter of traces to the collector `--otlp` names (an error if it cannot be),
/// else to the one `OTEL_EXPORTER_OTLP_ENDPOINT` names: the variable may be set for
/// other programs, so an endpoint there that cannot be used is only warned of.
fn telemetry(otlp: Option<&str>) -> superstep::error::Result<Option<Telemetry>> {
    if let Some(endpoint) = otlp {
        return Telemetry::otlp(endpoint).map(Some);
    }
    let from_env = std::env::var(superstep::telemetry::ENDPOINT_ENV).ok();
    let Some(endpoint) = from_env.filter(|url| !url.is_empty()) else {
        return Ok(None);
    };
    match Telemetry::otlp(&endpoint) {
        Ok(telemetry) => Ok(Some(telemetry)),
        Err(error) => {
            let variable = superstep::telemetry::ENDPOINT_ENV;
            eprintln!("warning: {variable}: {error:#}; no traces are sent");
            Ok(None)
        }
    }
}

/// Reports `error` and gives its exit code.
fn failed(error: &Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::from(error.exit_code())
}

/// Runs one command.
fn execute(command: Command) -> superstep::error::Result<u8> {
    match command {
        Command::Run(args) => run::run(args),
        Command::Resume(args) => run::resume(args),
        Command::Replay(args) => replay::replay(args),
        Command::Checkpoints(command) => checkpoints::execute(command),
        Command::Validate(args) => workflow::validate(args),
        Command::Compile(args) => workflow::compile(args),
        Command::Build(args) => build::build(args),
        Command::New(args) => new::new(args),
        Command::Graph(args) => workflow::graph(args),
        Command::Db(command) => db::execute(command),
        Command::Submit(args) => submit::submit(args),
        Command::Worker(args) => worker::worker(args),
        Command::Runs(command) => runs::execute(command),
        Command::Respond(args) => runs::respond(args),
        Command::Serve(args) => serve::serve(args),
    }
}

/// Whether stdout's reader went away: the one host error that is no failure.
fn is_broken_pipe(error: &Error) -> bool {
    let Error::Host(error) = error else {
        return false;
    };
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
