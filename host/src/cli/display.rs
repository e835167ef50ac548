//! How `run` and `resume` show a run's events: readable lines on stderr, JSON Lines on
//! stdout, or only the outputs.

use super::store::DEFAULT_STORE;
use clap::ValueEnum;
use std::io::Write;
use std::sync::Arc;
use superstep::events::{Event, EventSink};

/// How events are shown.
#[derive(Clone, Copy, ValueEnum)]
pub(super) enum EventsFormat {
    /// Readable lines on stderr; outputs on stdout.
    Human,
    /// One JSON object per event on stdout (outputs are `output` events).
    Jsonl,
    /// No events; outputs on stdout.
    Quiet,
}

/// The sink that shows events as `format` says; hints name the store at `location`
/// unless it is the default one.
pub(super) fn sink_for(format: EventsFormat, location: &str) -> Arc<dyn EventSink> {
    match format {
        EventsFormat::Human => {
            let store = (location != DEFAULT_STORE).then(|| format!(" --store {location}"));
            let store = store.unwrap_or_default();
            Arc::new(move |event: &Event| {
                print_output(event);
                if let Some(line) = human_line(event, &store) {
                    eprintln!("{line}");
                }
            })
        }
        EventsFormat::Jsonl => Arc::new(|event: &Event| {
            let line = serde_json::to_string(event).expect("events serialise");
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }),
        EventsFormat::Quiet => Arc::new(print_output),
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

/// The readable line of an event, if it has one; `store` is what a hint to resume
/// adds to name the store (empty for the default).
pub(super) fn human_line(event: &Event, store: &str) -> Option<String> {
    executor_line(event).or_else(|| run_line(event, store))
}

/// The line of an event about one executor.
fn executor_line(event: &Event) -> Option<String> {
    Some(match event {
        Event::ExecutorCompleted {
            executor,
            duration_us,
            ..
        } => format!(
            "  {executor} done in {:.1} ms",
            *duration_us as f64 / 1000.0
        ),
        Event::ExecutorFailed {
            executor, reason, ..
        } => format!("  {executor} FAILED: {reason}"),
        Event::ExecutorRetrying {
            executor,
            attempt,
            max_attempts,
            reason,
            backoff_ms,
            ..
        } => format!(
            "  {executor} attempt {attempt} of {max_attempts} failed, retrying in {backoff_ms} ms: {reason}"
        ),
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
        } => format!("  {executor} {}: {text}", level.as_str()),
        Event::Output { executor, body, .. } => {
            format!("  output from {executor}: {}", body.to_text())
        }
        _ => return None,
    })
}

/// The line of an event about the run, its supersteps and checkpoints.
fn run_line(event: &Event, store: &str) -> Option<String> {
    Some(match event {
        Event::RunStarted {
            run_id,
            workflow,
            resumed_from: Some(from),
            superstep,
        } => format!(
            "run {run_id} of '{workflow}' resumed from checkpoint {from} at superstep {superstep}"
        ),
        Event::RunStarted {
            run_id, workflow, ..
        } => format!("run {run_id} of '{workflow}' started"),
        Event::SuperstepStarted {
            superstep,
            executors,
            ..
        } => format!("superstep {superstep}: {}", executors.join(", ")),
        Event::CheckpointSaved {
            location, status, ..
        } => format!("  checkpoint saved: {location} ({status})"),
        Event::RunCompleted {
            supersteps,
            outputs,
            ..
        } => format!("run completed after {supersteps} supersteps with {outputs} output(s)"),
        Event::RunPaused {
            checkpoint_id,
            pending,
            ..
        } => format!(
            "run paused for input: {}\n  answer with: superstep resume {}{store} --respond <request-id>=<json>",
            pending.join(", "),
            checkpoint_id.as_deref().unwrap_or("<checkpoint>")
        ),
        Event::RunFailed {
            reason,
            last_checkpoint: Some(id),
            ..
        } => format!(
            "run FAILED: {reason}\n  resume from the last checkpoint: superstep resume {id}{store}"
        ),
        Event::RunFailed { reason, .. } => format!("run FAILED: {reason}"),
        Event::RunStopped { checkpoint_id, .. } => format!(
            "run stopped; go on with: superstep resume {}{store}",
            checkpoint_id.as_deref().unwrap_or("<checkpoint>")
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_to_resume_name_the_store_they_need() {
        let paused = Event::RunPaused {
            run_id: "r".into(),
            checkpoint_id: Some("c1".into()),
            pending: vec!["a:0:1".into()],
        };
        let line = human_line(&paused, " --store /tmp/cps").unwrap();
        assert!(
            line.ends_with(
                "answer with: superstep resume c1 --store /tmp/cps --respond <request-id>=<json>"
            ),
            "{line}"
        );
        let failed = Event::RunFailed {
            run_id: "r".into(),
            reason: "boom".into(),
            last_checkpoint: Some("c2".into()),
        };
        assert_eq!(
            human_line(&failed, "").unwrap(),
            "run FAILED: boom\n  resume from the last checkpoint: superstep resume c2"
        );
        let completed = Event::SuperstepCompleted {
            superstep: 1,
            queued: 0,
        };
        assert_eq!(human_line(&completed, ""), None);
    }
}
