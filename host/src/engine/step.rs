//! One executor's turn in a superstep: its inbox delivered in order (responses first),
//! its snapshot taken, its results handed to the journal writer; and the step it makes
//! as a journal record and back.

use super::journal_writer::{Finished, JournalFeed};
use super::run::Stopper;
use crate::checkpoint::journal::{JournalMessage, JournalRecord, JournalSend};
use crate::error::Result as HostResult;
use crate::events::{Event, EventSink};
use crate::graph::Graph;
use crate::limits::Limits;
use crate::message::{Envelope, Message, Payload, request_id};
use crate::retry::RetryPolicy;
use crate::sandbox::ExecutorInstance;
use crate::sandbox::context::{Effects, SharedState};
use crate::telemetry::Traced;
use bytes::Bytes;
use opentelemetry::KeyValue;
use std::sync::Arc;
use std::time::Instant;

/// What one executor produced in a superstep.
pub(super) struct Step {
    pub(super) effects: Effects,
    pub(super) state: Bytes,
}

impl Step {
    /// The step as a journal record.
    pub(super) fn to_journal(
        &self,
        superstep: u64,
        executor: &str,
        graph: &Graph,
    ) -> JournalRecord {
        let message = |m: &Message| JournalMessage {
            kind: m.kind.clone(),
            body: Payload::of(&m.body),
        };
        JournalRecord {
            superstep,
            executor: executor.to_string(),
            state: Payload::of(&self.state),
            sends: self
                .effects
                .sends
                .iter()
                .map(|(to, m)| JournalSend {
                    to: graph.id(*to).to_string(),
                    kind: m.kind.clone(),
                    body: Payload::of(&m.body),
                })
                .collect(),
            outputs: self.effects.outputs.iter().map(message).collect(),
            writes: self
                .effects
                .writes
                .iter()
                .map(|(key, value)| (key.clone(), value.as_ref().map(Payload::of)))
                .collect(),
            requests: self
                .effects
                .requests
                .iter()
                .map(|(id, m)| (id.clone(), message(m)))
                .collect(),
        }
    }

    /// The step a journal record of executor `from` describes, refused unless a live
    /// call could have made it: every send along an edge that carries its kind, every
    /// body and the state within the executor's limits, requests numbered as the host
    /// numbers them.
    pub(super) fn from_journal(
        record: &JournalRecord,
        from: usize,
        graph: &Graph,
        limits: &Limits,
    ) -> Result<Step, String> {
        let bytes =
            |payload: &Payload, field: &str| payload.decode().map_err(|e| format!("{field}: {e}"));
        let message = |kind: &str, body: &Payload, field: &str| -> Result<Message, String> {
            let body = bytes(body, field)?;
            if body.len() as u64 > limits.max_message_bytes {
                return Err(format!(
                    "{field}: a body of {} bytes exceeds limits.max_message_bytes = {}",
                    body.len(),
                    limits.max_message_bytes
                ));
            }
            Ok(Message {
                kind: kind.to_string(),
                body,
            })
        };
        let mut effects = Effects::default();
        for (n, send) in record.sends.iter().enumerate() {
            let field = format!("sends[{n}]");
            let to = graph
                .route(from, &send.kind, Some(&send.to))
                .map_err(|why| format!("{field}: {why}"))?[0];
            effects
                .sends
                .push((to, message(&send.kind, &send.body, &field)?));
        }
        for (n, output) in record.outputs.iter().enumerate() {
            let field = format!("outputs[{n}]");
            effects
                .outputs
                .push(message(&output.kind, &output.body, &field)?);
        }
        for (key, value) in &record.writes {
            let value = value.as_ref().map(|v| bytes(v, "writes")).transpose()?;
            effects.writes.insert(key.clone(), value);
        }
        for (n, (id, request)) in record.requests.iter().enumerate() {
            let field = format!("requests[{n}]");
            let expected = request_id(graph.id(from), record.superstep, n + 1);
            if *id != expected {
                return Err(format!(
                    "{field}: request id '{id}' is not the one the host gives ('{expected}')"
                ));
            }
            let request = message(&request.kind, &request.body, &field)?;
            effects.requests.push((id.clone(), request));
        }
        let state = bytes(&record.state, "state")?;
        if state.len() as u64 > limits.max_snapshot_bytes {
            return Err(format!(
                "state: {} bytes exceed limits.max_snapshot_bytes = {}",
                state.len(),
                limits.max_snapshot_bytes
            ));
        }
        Ok(Step { effects, state })
    }
}

/// Results of the next superstep that stand in for running some of its executors: a
/// journal left by an attempt that died before the barrier, or a replay's recording.
pub(super) struct Recorded {
    /// Per executor index: its results, when recorded.
    pub(super) steps: Vec<Option<Step>>,
    /// Where they come from, for errors (`journal of checkpoint <id>`).
    pub(super) origin: String,
    /// Why those executors are not run, for their `executor_skipped` events.
    pub(super) reason: String,
}

/// What an executor gets in a superstep: responses to its requests, then messages.
pub(super) struct Inbox {
    pub(super) responses: Vec<(String, Message)>,
    pub(super) messages: Vec<Envelope>,
}

/// One executor's turn in a superstep.
pub(super) struct Turn<'a> {
    /// The run, whose id keys the executor's outbound requests.
    pub(super) run_id: &'a str,
    pub(super) superstep: u64,
    pub(super) index: usize,
    pub(super) graph: &'a Graph,
    /// Where to send the results for the journal; the journal writer then reports the
    /// executor complete once they are durable.
    pub(super) journal: Option<JournalFeed<'a>>,
    /// Whether the executor may make outbound HTTP requests.
    pub(super) makes_http_calls: bool,
    /// How its failed calls are retried.
    pub(super) retry: &'a RetryPolicy,
    /// Makes a fresh instance of an executor (by index) in its state before the
    /// superstep, to retry on.
    pub(super) restart: &'a (dyn Fn(usize) -> HostResult<ExecutorInstance> + Sync),
    /// The run's stopper: a stop cuts the wait before a retry short; after an
    /// interrupt nothing is retried.
    pub(super) stopper: &'a Stopper,
    /// The superstep's span, parent of the call's.
    pub(super) span: &'a Traced,
    /// SHA-256 of the executor's component.
    pub(super) component_digest: &'a str,
}

impl Turn<'_> {
    /// Delivers the inbox in order, takes the snapshot and journals the results; emits
    /// the executor's events.
    pub(super) fn run(
        &self,
        instance: &mut ExecutorInstance,
        inbox: &Inbox,
        shared: &Arc<SharedState>,
        sink: &dyn EventSink,
    ) -> Result<Step, String> {
        let id = self.graph.id(self.index);
        let started = Instant::now();
        sink.emit(&Event::ExecutorInvoked {
            superstep: self.superstep,
            executor: id.to_string(),
            messages: inbox.responses.len() + inbox.messages.len(),
        });
        let mut span = self.call_span();
        let (outcome, attempts) = self.attempts(instance, inbox, shared, (sink, &span));
        span.set(KeyValue::new("superstep.attempts", i64::from(attempts)));
        match &outcome {
            Ok(_) => span.end("completed", None),
            Err(reason) => span.end("failed", Some(reason)),
        }
        let duration_us = started.elapsed().as_micros() as u64;
        match (&outcome, self.journal) {
            (Ok(step), Some(journal)) => {
                let finished = Finished {
                    index: self.index,
                    record: step.to_journal(self.superstep, id, self.graph),
                    duration_us,
                    makes_http_calls: self.makes_http_calls,
                };
                journal.send(finished);
            }
            (Ok(_), None) => sink.emit(&Event::ExecutorCompleted {
                superstep: self.superstep,
                executor: id.to_string(),
                duration_us,
            }),
            (Err(reason), _) => sink.emit(&Event::ExecutorFailed {
                superstep: self.superstep,
                executor: id.to_string(),
                reason: reason.clone(),
            }),
        }
        outcome
    }

    /// Delivers the inbox, and again on a fresh instance after each failure that the
    /// retry policy retries, until an attempt succeeds or the attempts are spent; with
    /// the number of attempts made.
    fn attempts(
        &self,
        instance: &mut ExecutorInstance,
        inbox: &Inbox,
        shared: &Arc<SharedState>,
        (sink, span): (&dyn EventSink, &Traced),
    ) -> (Result<Step, String>, u32) {
        let mut attempt = 1;
        let traceparent = span.traceparent();
        loop {
            instance.set_traceparent(traceparent.as_deref());
            let reason = match deliver(
                (self.run_id, self.superstep, attempt),
                instance,
                inbox,
                shared,
            ) {
                Ok(step) => return (Ok(step), attempt),
                Err(reason) => reason,
            };
            let failure = instance.take_failure();
            let retried = failure
                .filter(|f| self.retry.retries(attempt, f) && !self.stopper.is_interrupted());
            let Some(failure) = retried else {
                let reason = match attempt {
                    1 => reason,
                    n => format!("attempt {n} of {}: {reason}", self.retry.max_attempts),
                };
                return (Err(reason), attempt);
            };
            let backoff = self.retry.backoff(attempt);
            sink.emit(&Event::ExecutorRetrying {
                superstep: self.superstep,
                executor: self.graph.id(self.index).to_string(),
                attempt,
                max_attempts: self.retry.max_attempts,
                failure: failure.kind.as_str(),
                http_status: failure.http_status,
                reason: reason.clone(),
                backoff_ms: backoff.as_millis() as u64,
            });
            self.stopper.wait_unless_stopped(backoff);
            *instance = match (self.restart)(self.index) {
                Ok(fresh) => fresh,
                Err(e) => {
                    let reason = format!("{reason}; no fresh instance to retry on: {e:#}");
                    return (Err(reason), attempt);
                }
            };
            attempt += 1;
        }
    }

    /// The span of the executor's call, in the superstep's.
    fn call_span(&self) -> Traced {
        if !self.span.is_recording() {
            return Traced::default();
        }
        let id = self.graph.id(self.index).to_string();
        self.span.child(
            "executor call",
            vec![
                KeyValue::new("superstep.run_id", self.run_id.to_string()),
                KeyValue::new("superstep.number", self.superstep as i64),
                KeyValue::new("superstep.executor", id),
                KeyValue::new(
                    "superstep.component_digest",
                    self.component_digest.to_string(),
                ),
            ],
        )
    }
}

/// Delivers one executor's inbox in order (responses first) and takes its snapshot,
/// as attempt `attempt` of the superstep.
fn deliver(
    (run_id, superstep, attempt): (&str, u64, u32),
    instance: &mut ExecutorInstance,
    inbox: &Inbox,
    shared: &Arc<SharedState>,
) -> Result<Step, String> {
    instance.begin((run_id, superstep, attempt), shared.clone());
    let responded = inbox
        .responses
        .iter()
        .try_for_each(|(request_id, response)| {
            instance
                .on_response(request_id, response)
                .map_err(|reason| {
                    format!(
                        "response to request '{request_id}' (kind '{}'): {reason}",
                        response.kind
                    )
                })
        });
    let handled = responded
        .and_then(|()| {
            let count = inbox.messages.len();
            inbox
                .messages
                .iter()
                .enumerate()
                .try_for_each(|(n, envelope)| {
                    instance.handle(envelope).map_err(|reason| {
                        format!(
                            "message {} of {count} (kind '{}' from '{}'): {reason}",
                            n + 1,
                            envelope.message.kind,
                            envelope.source
                        )
                    })
                })
        })
        .and_then(|()| instance.snapshot());
    let effects = instance.context().finish();
    handled.map(|state| Step { effects, state })
}
