//! What a checkpoint holds of a run ([`RunState`]), and the conversions between the
//! two: a run's state as a checkpoint at a barrier, a checkpoint back into a run's
//! state on resume.

use super::Workflow;
use crate::checkpoint::{
    Checkpoint, ExecutorRecord, ManifestRef, OutputRecord, QueuedMessage, RequestRecord,
    ResponseRecord, SHARED_BODY_MIN_SIZE, Status,
};
use crate::error::Result;
use crate::error::bad_checkpoint;
use crate::graph::Graph;
use crate::message::{Envelope, Message, Payload};
use crate::sandbox::context::SharedState;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

/// A workflow output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The superstep that emitted it.
    pub superstep: u64,
    /// The executor that yielded it.
    pub source: String,
    /// What it yielded.
    pub message: Message,
}

/// A request for outside input waiting for its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    /// The request id (`<executor>:<superstep>:<n>`), stable across resumes.
    pub request_id: String,
    /// The executor that asked.
    pub executor: String,
    /// The superstep it asked in.
    pub superstep: u64,
    /// What it asked.
    pub message: Message,
}

/// A run between supersteps: everything its checkpoints hold but the executors'
/// instances.
pub(crate) struct RunState {
    pub(crate) run_id: String,
    /// Supersteps completed: the next one to run.
    pub(crate) superstep: u64,
    /// Per executor index: messages to deliver in the next superstep, in order.
    pub(crate) queues: Vec<Vec<Envelope>>,
    /// Per executor index: responses (with their request ids) to deliver in the next
    /// superstep, before its messages.
    pub(crate) responses: Vec<Vec<(String, Message)>>,
    /// Requests waiting for a response, oldest first.
    pub(crate) pending: Vec<PendingRequest>,
    /// The committed shared state.
    pub(crate) shared: Arc<SharedState>,
    /// Per executor index: the latest snapshot.
    pub(crate) states: Vec<Bytes>,
    /// Every output since the run began.
    pub(crate) outputs: Vec<Output>,
}

impl RunState {
    /// The run's state before its first superstep: `states` from each executor's
    /// `init`, and nothing queued.
    pub(crate) fn fresh(run_id: Option<String>, executors: usize, states: Vec<Bytes>) -> RunState {
        RunState {
            run_id: run_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            superstep: 0,
            queues: vec![Vec::new(); executors],
            responses: vec![Vec::new(); executors],
            pending: Vec::new(),
            shared: Arc::default(),
            states,
            outputs: Vec::new(),
        }
    }

    /// How many messages and responses are queued for the next superstep.
    pub(crate) fn queued(&self) -> usize {
        self.queues.iter().map(Vec::len).sum::<usize>()
            + self.responses.iter().map(Vec::len).sum::<usize>()
    }

    /// The run's state in `checkpoint` (checked to fit `graph`): every payload decoded,
    /// the error naming the field that does not decode.
    pub(crate) fn from_checkpoint(checkpoint: &Checkpoint, graph: &Graph) -> Result<RunState> {
        let origin = format!("checkpoint {}", checkpoint.checkpoint_id);
        let decode = |payload: &Payload, field: String| {
            payload
                .decode()
                .map_err(|e| bad_checkpoint(origin.to_string(), format!("{field}: {e}")))
        };
        let message = |kind: &str, body: &Payload, field: String| -> Result<Message> {
            Ok(Message {
                kind: kind.to_string(),
                body: decode(body, field)?,
            })
        };
        let index = |id: &str| graph.index_of(id).expect("checked to fit the graph");
        let mut queues = vec![Vec::new(); graph.ids().len()];
        for (id, queue) in &checkpoint.queued {
            for (n, queued) in queue.iter().enumerate() {
                let field = format!("queued.{id}[{n}].body");
                queues[index(id)].push(Envelope {
                    source: queued.source.clone(),
                    message: message(&queued.kind, &queued.body, field)?,
                });
            }
        }
        let mut responses = vec![Vec::new(); graph.ids().len()];
        for (id, queue) in &checkpoint.responses {
            for (n, response) in queue.iter().enumerate() {
                let field = format!("responses.{id}[{n}].body");
                let response_message = message(&response.kind, &response.body, field)?;
                responses[index(id)].push((response.request_id.clone(), response_message));
            }
        }
        let mut shared = SharedState::new();
        for (key, value) in &checkpoint.shared_state {
            shared.insert(key.clone(), decode(value, format!("shared_state.{key}"))?);
        }
        let outputs = checkpoint.outputs.iter().enumerate().map(|(n, output)| {
            Ok(Output {
                superstep: output.superstep,
                source: output.source.clone(),
                message: message(&output.kind, &output.body, format!("outputs[{n}].body"))?,
            })
        });
        let pending = checkpoint
            .pending_requests
            .iter()
            .enumerate()
            .map(|(n, request)| {
                let field = format!("pending_requests[{n}].body");
                Ok(PendingRequest {
                    request_id: request.request_id.clone(),
                    executor: request.executor.clone(),
                    superstep: request.superstep,
                    message: message(&request.kind, &request.body, field)?,
                })
            });
        let states = graph.ids().iter().map(|id| {
            decode(
                &checkpoint.executors[id].state,
                format!("executors.{id}.state"),
            )
        });
        Ok(RunState {
            run_id: checkpoint.run_id.clone(),
            superstep: checkpoint.superstep,
            queues,
            responses,
            pending: pending.collect::<Result<_>>()?,
            shared: Arc::new(shared),
            states: states.collect::<Result<_>>()?,
            outputs: outputs.collect::<Result<_>>()?,
        })
    }

    /// The run as it stands, as a new checkpoint of `workflow` whose parent is
    /// `parent_id`. Payloads are held as the bytes they are, encoded by whoever writes
    /// the checkpoint.
    pub(crate) fn to_checkpoint(
        &self,
        workflow: &Workflow,
        parent_id: Option<String>,
    ) -> Checkpoint {
        let graph = workflow.graph();
        let mut bodies = BodyPayloads::new(self.queues.iter().flatten().map(|e| &e.message.body));
        let by_executor = |i: usize| graph.id(i).to_string();
        Checkpoint {
            checkpoint_id: uuid::Uuid::now_v7().to_string(),
            parent_id,
            run_id: self.run_id.clone(),
            workflow: workflow.manifest().name.clone(),
            superstep: self.superstep,
            created_at: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            status: Status::of(self.queued(), self.pending.len()),
            manifest: ManifestRef {
                path: workflow.manifest().path.display().to_string(),
                digest: graph.digest().to_string(),
            },
            executors: (0..self.states.len())
                .map(|i| {
                    let record = ExecutorRecord {
                        component: workflow.component_digest(i).to_string(),
                        state: Payload::of(&self.states[i]),
                    };
                    (by_executor(i), record)
                })
                .collect(),
            shared_state: self
                .shared
                .iter()
                .map(|(key, value)| (key.clone(), Payload::encode(value)))
                .collect(),
            queued: non_empty(&self.queues)
                .map(|(i, queue)| {
                    let messages = queue
                        .iter()
                        .map(|envelope| QueuedMessage {
                            source: envelope.source.clone(),
                            kind: envelope.message.kind.clone(),
                            body: bodies.payload(&envelope.message.body),
                        })
                        .collect();
                    (by_executor(i), messages)
                })
                .collect(),
            shared_bodies: bodies.shared,
            pending_requests: self.pending.iter().map(RequestRecord::from).collect(),
            responses: non_empty(&self.responses)
                .map(|(i, responses)| {
                    let records = responses.iter().map(ResponseRecord::from).collect();
                    (by_executor(i), records)
                })
                .collect(),
            outputs: self.outputs.iter().map(OutputRecord::from).collect(),
            edit: None,
        }
    }
}

/// The queues of `queues` that hold something, with their executor index.
fn non_empty<T>(queues: &[Vec<T>]) -> impl Iterator<Item = (usize, &Vec<T>)> {
    queues
        .iter()
        .enumerate()
        .filter(|(_, queue)| !queue.is_empty())
}

impl From<&PendingRequest> for RequestRecord {
    fn from(request: &PendingRequest) -> RequestRecord {
        RequestRecord {
            request_id: request.request_id.clone(),
            executor: request.executor.clone(),
            superstep: request.superstep,
            kind: request.message.kind.clone(),
            body: Payload::of(&request.message.body),
        }
    }
}

impl From<&(String, Message)> for ResponseRecord {
    fn from((request_id, message): &(String, Message)) -> ResponseRecord {
        ResponseRecord {
            request_id: request_id.clone(),
            kind: message.kind.clone(),
            body: Payload::of(&message.body),
        }
    }
}

impl From<&Output> for OutputRecord {
    fn from(output: &Output) -> OutputRecord {
        OutputRecord {
            superstep: output.superstep,
            source: output.source.clone(),
            kind: output.message.kind.clone(),
            body: Payload::of(&output.message.body),
        }
    }
}

/// Payloads of queued message bodies, made once per body buffer. A fanned-out message
/// is one buffer queued for many receivers: if it has [`SHARED_BODY_MIN_SIZE`] bytes or
/// more, it is written once, in the checkpoint's `shared_bodies`, and each receiver's
/// queue refers to it.
struct BodyPayloads {
    /// How many times each buffer (address, length) is queued.
    receivers: HashMap<(usize, usize), usize>,
    made: HashMap<(usize, usize), Payload>,
    shared: Vec<Payload>,
}

impl BodyPayloads {
    fn new<'a>(queued: impl Iterator<Item = &'a Bytes>) -> BodyPayloads {
        let mut receivers = HashMap::new();
        for body in queued {
            *receivers.entry(buffer(body)).or_default() += 1;
        }
        BodyPayloads {
            receivers,
            made: HashMap::new(),
            shared: Vec::new(),
        }
    }

    fn payload(&mut self, body: &Bytes) -> Payload {
        let key = buffer(body);
        if let Some(made) = self.made.get(&key) {
            return made.clone();
        }
        let payload = if body.len() >= SHARED_BODY_MIN_SIZE && self.receivers[&key] > 1 {
            self.shared.push(Payload::of(body));
            Payload::Shared(self.shared.len() - 1)
        } else {
            Payload::of(body)
        };
        self.made.insert(key, payload.clone());
        payload
    }
}

/// Identifies a body's buffer: clones of one message share it.
fn buffer(body: &Bytes) -> (usize, usize) {
    (body.as_ptr() as usize, body.len())
}
