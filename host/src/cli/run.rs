//! `superstep run` and `superstep resume`: a run in this process, to its end, a pause
//! or a failure.

use super::display::{EventsFormat, sink_for};
use super::store::{self, StoreArgs};
use super::{EXIT_OK, EXIT_PAUSED, EXIT_RUN_FAILED};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use superstep::engine::{Durability, Outcome, Run, Runtime, Workflow};
use superstep::error::Result;
use superstep::error::invalid;
use superstep::manifest::Manifest;
use superstep::message::{Message, Payload, RESPONSE_KIND};

#[derive(Args)]
#[command(group = clap::ArgGroup::new("input-source").required(true))]
pub(super) struct RunArgs {
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
    /// Run the executors' `build` commands first (see `superstep build`).
    #[arg(long)]
    build: bool,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    exec: ExecArgs,
}

#[derive(Args)]
pub(super) struct ResumeArgs {
    /// A checkpoint file, or a checkpoint id (or unique prefix) in the store.
    checkpoint: String,
    /// The manifest to resume with; defaults to the one recorded in the checkpoint.
    #[arg(long)]
    manifest: Option<PathBuf>,
    #[command(flatten)]
    store: store::BesideArgs,
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
    /// At every barrier, restore each new state into a fresh instance and snapshot it
    /// again; a state that does not come back fails the run (an instance per executor
    /// per superstep).
    #[arg(long)]
    verify_snapshots: bool,
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

/// `superstep run`: a fresh run of a manifest on an input.
pub(super) fn run(args: RunArgs) -> Result<u8> {
    let body = input_body(args.input.as_deref(), args.input_file.as_deref())?;
    let manifest = Manifest::load(&args.manifest)?;
    if args.build {
        super::build::build_components(&manifest)?;
    }
    let workflow = load(manifest, args.exec.threads)?;
    let store = args.store.open()?;
    let sink = sink_for(args.exec.events, &args.store.location);
    let input = Message {
        kind: args.input_kind,
        body,
    };
    let mut run = workflow.start(input, store, sink)?;
    run.set_durability(args.exec.durability.into());
    run.set_verify_snapshots(args.exec.verify_snapshots);
    drive(&mut run, args.exec.interactive)
}

/// `superstep resume`: a run carried on from a checkpoint, with responses to its
/// pending requests.
pub(super) fn resume(args: ResumeArgs) -> Result<u8> {
    let location = args.store.location_for(&args.checkpoint);
    let store = store::open(&location)?;
    let checkpoint = store::load_named(&args.checkpoint, store.as_ref())?;
    let manifest = store::manifest_for(&checkpoint, args.manifest.as_deref())?;
    let workflow = if args.allow_changed_components {
        load(manifest, args.exec.threads)?
    } else {
        let runtime = Runtime::new(args.exec.threads, manifest.uses_fuel())?;
        Workflow::load_to_resume(runtime, manifest, &checkpoint)?
    };
    let sink = sink_for(args.exec.events, &location);
    let responses = responses_given(&args.respond, args.responses.as_deref())?;
    let mut run = workflow.resume(checkpoint, args.allow_changed_components, store, sink)?;
    run.set_durability(args.exec.durability.into());
    run.set_verify_snapshots(args.exec.verify_snapshots);
    for (request_id, body) in responses {
        let response = Message {
            kind: RESPONSE_KIND.to_string(),
            body,
        };
        run.respond(&request_id, response)?;
    }
    drive(&mut run, args.exec.interactive)
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
            // Nothing stops a run of the command line but the run's own end.
            Outcome::Paused { .. } | Outcome::Stopped => return Ok(EXIT_PAUSED),
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

/// A run's input body: `--input` (JSON, checked) or the bytes of `--input-file`.
pub(super) fn input_body(input: Option<&str>, file: Option<&Path>) -> Result<Bytes> {
    match (input, file) {
        (Some(text), _) => {
            serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| {
                invalid(format!(
                    "--input: not JSON ({e}); to pass a string, quote it: --input '\"{text}\"'"
                ))
            })?;
            Ok(Bytes::from(text.trim().to_string()))
        }
        (None, Some(path)) => {
            Ok(Bytes::from(std::fs::read(path).map_err(|e| {
                invalid(format!("--input-file {}: {e}", path.display()))
            })?))
        }
        (None, None) => unreachable!("clap requires one input source"),
    }
}

/// The responses given by `--respond ID=JSON` and `--responses FILE`, in that order;
/// refuses malformed ones and an id answered twice.
fn responses_given(respond: &[String], file: Option<&Path>) -> Result<Vec<(String, Bytes)>> {
    answers_given("--respond ", respond, file)
}

/// The answers given as `ID=JSON` (named `label` in errors) and in `file` (a JSON
/// object of request id to response), in that order; refuses malformed ones and an id
/// answered twice.
pub(super) fn answers_given(
    label: &str,
    respond: &[String],
    file: Option<&Path>,
) -> Result<Vec<(String, Bytes)>> {
    let mut responses: Vec<(String, Bytes)> = Vec::new();
    for given in respond {
        let Some((id, json)) = given.split_once('=') else {
            return Err(invalid(format!(
                "{label}'{given}': expected <request-id>=<json>"
            )));
        };
        serde_json::from_str::<serde::de::IgnoredAny>(json).map_err(|e| {
            invalid(format!(
                "{label}{id}: the response is not JSON ({e}); to pass a string, quote it: {id}='\"{json}\"'"
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

#[cfg(test)]
mod tests {
    use super::*;

    fn given(respond: &[&str]) -> Result<Vec<(String, Bytes)>> {
        let respond: Vec<String> = respond.iter().map(|s| s.to_string()).collect();
        responses_given(&respond, None)
    }

    #[test]
    fn responses_are_json_bodies_by_request_id() {
        let responses = given(&["a:0:1={\"ok\": true}", "b:1:1= \"yes\" "]).unwrap();
        assert_eq!(
            responses[0],
            ("a:0:1".into(), Bytes::from("{\"ok\": true}"))
        );
        assert_eq!(responses[1], ("b:1:1".into(), Bytes::from("\"yes\"")));
        let error = |respond: &[&str]| given(respond).unwrap_err().to_string();
        assert_eq!(
            error(&["a:0:1"]),
            "--respond 'a:0:1': expected <request-id>=<json>"
        );
        assert!(error(&["a:0:1=yes"]).contains("to pass a string, quote it: a:0:1='\"yes\"'"));
        assert_eq!(error(&["a=1", "a=2"]), "request 'a' is answered twice");
    }

    #[test]
    fn a_responses_file_is_an_object_of_request_id_to_response() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.json");
        std::fs::write(&file, r#"{"a:0:1": {"approved": true}}"#).unwrap();
        let responses = responses_given(&["b=2".into()], Some(&file)).unwrap();
        assert_eq!(
            responses[1],
            ("a:0:1".into(), Bytes::from("{\"approved\":true}"))
        );
        let twice = responses_given(&["a:0:1=2".into()], Some(&file)).unwrap_err();
        assert_eq!(twice.to_string(), "request 'a:0:1' is answered twice");
        std::fs::write(&file, "[1]").unwrap();
        let error = responses_given(&[], Some(&file)).unwrap_err().to_string();
        assert!(
            error.contains("expected a JSON object of request id to response"),
            "{error}"
        );
    }
}
