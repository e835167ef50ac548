//! The superstep engine: loads a workflow's components once, then runs it
//! bulk-synchronously. In a superstep every executor with messages handles them in
//! delivery order (executors in parallel); at the barrier shared-state writes commit in
//! executor-id order, sends become the next superstep's inboxes, outputs are emitted and
//! a checkpoint is saved.

use crate::checkpoint::journal::{JournalMessage, JournalRecord, JournalSend};
use crate::checkpoint::{
    Checkpoint, CheckpointStore, ExecutorRecord, ManifestRef, OnDurable, OutputRecord,
    QueuedMessage, RequestRecord, ResponseRecord, SHARED_BODY_MIN_SIZE, SaveHandle, Status, Writer,
};
use crate::compile_cache::CompileCache;
use crate::context::{Effects, ExecutorContext, SharedState};
use crate::error::invalid;
use crate::events::{Event, EventSink, Gate};
use crate::graph::Graph;
use crate::limits::Limits;
use crate::manifest::Manifest;
use crate::message::{Envelope, INPUT_SOURCE, Message, Payload, request_id};
use crate::sandbox::{CompiledComponent, ExecutorInstance, Sandbox};
use anyhow::{Context as _, Result};
use bytes::Bytes;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

/// What workflows share: the sandbox (engine and linker) and the worker threads that
/// run a superstep's executors in parallel.
pub struct Runtime {
    sandbox: Sandbox,
    pool: rayon::ThreadPool,
}

impl Runtime {
    /// A runtime whose supersteps use up to `threads` worker threads (0: one per core);
    /// with `fuel`, executors can have fuel limits (see [`Manifest::uses_fuel`]).
    /// Compiled components are cached where [`CompileCache::from_env`] says.
    pub fn new(threads: usize, fuel: bool) -> Result<Arc<Runtime>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("superstep-worker-{i}"))
            .build()?;
        Ok(Arc::new(Runtime {
            sandbox: Sandbox::new(fuel, CompileCache::from_env())?,
            pool,
        }))
    }
}

/// A manifest with its components compiled and linked: ready to run any number of times.
pub struct Workflow {
    runtime: Arc<Runtime>,
    manifest: Manifest,
    graph: Arc<Graph>,
    /// Per executor index.
    components: Vec<Arc<CompiledComponent>>,
    /// Per executor index: the config passed to `init`, as JSON.
    configs: Vec<Vec<u8>>,
}

impl Workflow {
    /// Compiles every component of `manifest` (each distinct file once) and checks that
    /// it implements the executor world.
    pub fn load(runtime: Arc<Runtime>, manifest: Manifest) -> Result<Workflow> {
        if manifest.uses_fuel() && !runtime.sandbox.meters_fuel() {
            return Err(invalid(format!(
                "{}: an executor sets limits.fuel, but this runtime was created without fuel metering (Runtime::new(threads, true))",
                manifest.path.display()
            )));
        }
        let graph = Arc::new(Graph::new(&manifest));
        // Each distinct file once, in parallel: loading a big component from the compile
        // cache is mostly hashing and copying, which spreads across cores.
        let mut distinct: Vec<(&std::path::Path, &str)> = Vec::new();
        for executor in &manifest.executors {
            if !distinct.iter().any(|(path, _)| *path == executor.component) {
                distinct.push((&executor.component, &executor.id));
            }
        }
        let loaded: Vec<Result<CompiledComponent>> = runtime.pool.install(|| {
            distinct
                .par_iter()
                .map(|(path, executor)| runtime.sandbox.compile(path, executor))
                .collect()
        });
        let mut compiled: HashMap<&std::path::Path, Arc<CompiledComponent>> = HashMap::new();
        for ((path, _), component) in distinct.into_iter().zip(loaded) {
            compiled.insert(path, Arc::new(component?));
        }
        let components = manifest
            .executors
            .iter()
            .map(|executor| compiled[executor.component.as_path()].clone())
            .collect();
        let configs = manifest
            .executors
            .iter()
            .map(|e| serde_json::to_vec(&e.config).expect("config is JSON"))
            .collect();
        Ok(Workflow {
            runtime,
            manifest,
            graph,
            components,
            configs,
        })
    }

    /// The manifest the workflow was loaded from.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The workflow's graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Starts a fresh run that delivers `input` to the start executor in superstep 0.
    pub fn start(
        &self,
        input: Message,
        store: Arc<dyn CheckpointStore>,
        sink: Arc<dyn EventSink>,
    ) -> Result<Run<'_>> {
        let gate = Arc::new(Gate::new(sink));
        let sink: Arc<dyn EventSink> = gate.clone();
        let mut instances = self.instantiate(&sink)?;
        let mut states = Vec::with_capacity(instances.len());
        for (i, instance) in instances.iter_mut().enumerate() {
            let id = self.graph.id(i);
            instance
                .init(&self.configs[i])
                .and_then(|()| instance.snapshot())
                .map(|state| states.push(state))
                .map_err(|reason| anyhow::anyhow!("executor '{id}': {reason}"))?;
        }
        let mut queues = vec![Vec::new(); instances.len()];
        queues[self.graph.start()].push(Envelope {
            source: INPUT_SOURCE.to_string(),
            message: input,
        });
        let run = Run {
            workflow: self,
            writer: Writer::new(store.clone()),
            store,
            gate,
            sink,
            in_flight: VecDeque::new(),
            run_id: uuid::Uuid::now_v7().to_string(),
            superstep: 0,
            queues,
            responses: vec![Vec::new(); instances.len()],
            pending: Vec::new(),
            unsaved: true,
            durability: Durability::default(),
            replay: Vec::new(),
            instances,
            shared: Arc::default(),
            states,
            outputs: Vec::new(),
            last_checkpoint: None,
            failure: None,
        };
        run.announce(None);
        Ok(run)
    }

    /// Resumes a run from `checkpoint` after checking that it belongs to this
    /// workflow: same graph and, unless `allow_changed_components`, the same
    /// components. Every executor is initialised and then restored to its state.
    pub fn resume(
        &self,
        checkpoint: Checkpoint,
        allow_changed_components: bool,
        store: Arc<dyn CheckpointStore>,
        sink: Arc<dyn EventSink>,
    ) -> Result<Run<'_>> {
        self.check_fits(&checkpoint, allow_changed_components)?;
        let gate = Arc::new(Gate::new(sink));
        let sink: Arc<dyn EventSink> = gate.clone();
        let origin = format!("checkpoint {}", checkpoint.checkpoint_id);
        let decode = |payload: &Payload, field: String| {
            payload
                .decode()
                .map_err(|e| invalid(format!("{origin}: {field}: {e}")))
        };

        let mut queues = vec![Vec::new(); self.graph.ids().len()];
        for (id, queue) in &checkpoint.queued {
            let to = self.graph.index_of(id).expect("checked by check_fits");
            for (n, queued) in queue.iter().enumerate() {
                queues[to].push(Envelope {
                    source: queued.source.clone(),
                    message: Message {
                        kind: queued.kind.clone(),
                        body: decode(&queued.body, format!("queued.{id}[{n}].body"))?,
                    },
                });
            }
        }
        let mut shared = SharedState::new();
        for (key, value) in &checkpoint.shared_state {
            shared.insert(key.clone(), decode(value, format!("shared_state.{key}"))?);
        }
        let mut outputs = Vec::with_capacity(checkpoint.outputs.len());
        for (n, output) in checkpoint.outputs.iter().enumerate() {
            outputs.push(Output {
                superstep: output.superstep,
                source: output.source.clone(),
                message: Message {
                    kind: output.kind.clone(),
                    body: decode(&output.body, format!("outputs[{n}].body"))?,
                },
            });
        }
        let mut pending = Vec::with_capacity(checkpoint.pending_requests.len());
        for (n, request) in checkpoint.pending_requests.iter().enumerate() {
            pending.push(PendingRequest {
                request_id: request.request_id.clone(),
                executor: request.executor.clone(),
                superstep: request.superstep,
                message: Message {
                    kind: request.kind.clone(),
                    body: decode(&request.body, format!("pending_requests[{n}].body"))?,
                },
            });
        }
        let mut responses = vec![Vec::new(); self.graph.ids().len()];
        for (id, queue) in &checkpoint.responses {
            let to = self.graph.index_of(id).expect("checked by check_fits");
            for (n, response) in queue.iter().enumerate() {
                let body = decode(&response.body, format!("responses.{id}[{n}].body"))?;
                let message = Message {
                    kind: response.kind.clone(),
                    body,
                };
                responses[to].push((response.request_id.clone(), message));
            }
        }
        let mut states = Vec::with_capacity(self.graph.ids().len());
        for id in self.graph.ids() {
            states.push(decode(
                &checkpoint.executors[id].state,
                format!("executors.{id}.state"),
            )?);
        }

        let instances = (0..states.len())
            .map(|i| self.restored_instance(i, &sink, &states[i], &origin))
            .collect::<Result<Vec<_>>>()?;
        let replay = self.journaled_steps(&checkpoint, &store, &queues, &responses)?;

        let run = Run {
            workflow: self,
            writer: Writer::new(store.clone()),
            store,
            gate,
            sink,
            in_flight: VecDeque::new(),
            instances,
            run_id: checkpoint.run_id,
            superstep: checkpoint.superstep,
            queues,
            responses,
            pending,
            unsaved: false,
            durability: Durability::default(),
            replay,
            shared: Arc::new(shared),
            states,
            outputs,
            last_checkpoint: Some(checkpoint.checkpoint_id),
            failure: None,
        };
        run.announce(run.last_checkpoint.clone());
        Ok(run)
    }

    /// A fresh instance of executor `i`, initialised and restored to `state`; `origin`
    /// names where the state comes from in errors.
    fn restored_instance(
        &self,
        i: usize,
        sink: &Arc<dyn EventSink>,
        state: &[u8],
        origin: &str,
    ) -> Result<ExecutorInstance> {
        let id = self.graph.id(i);
        let mut instance = self.instance(i, sink)?;
        instance
            .init(&self.configs[i])
            .map_err(|reason| anyhow::anyhow!("executor '{id}': {reason}"))?;
        instance.restore(state).map_err(|reason| {
            invalid(format!(
                "{origin}: executor '{id}' did not accept its checkpointed state: {reason}"
            ))
        })?;
        Ok(instance)
    }

    /// The results that the journal of `checkpoint` holds for the superstep starting
    /// from it (left by a host that died before the barrier), per executor index.
    fn journaled_steps(
        &self,
        checkpoint: &Checkpoint,
        store: &Arc<dyn CheckpointStore>,
        queues: &[Vec<Envelope>],
        responses: &[Vec<(String, Message)>],
    ) -> Result<Vec<Option<Step>>> {
        let mut steps: Vec<Option<Step>> = (0..queues.len()).map(|_| None).collect();
        let records = store.read_journal(&checkpoint.checkpoint_id)?;
        let origin = format!("journal of checkpoint {}", checkpoint.checkpoint_id);
        for record in records {
            let bad =
                |why: String| invalid(format!("{origin}: executor '{}': {why}", record.executor));
            if record.superstep != checkpoint.superstep {
                return Err(bad(format!(
                    "journaled for superstep {}, but the checkpoint starts superstep {}",
                    record.superstep, checkpoint.superstep
                )));
            }
            let Some(i) = self.graph.index_of(&record.executor) else {
                return Err(bad("not an executor of this workflow".into()));
            };
            if queues[i].is_empty() && responses[i].is_empty() {
                return Err(bad("has nothing to handle in this superstep".into()));
            }
            if steps[i].is_some() {
                return Err(bad("journaled twice".into()));
            }
            let limits = &self.manifest.executors[i].limits;
            steps[i] = Some(Step::from_journal(&record, i, &self.graph, limits).map_err(bad)?);
        }
        Ok(steps)
    }

    fn instantiate(&self, sink: &Arc<dyn EventSink>) -> Result<Vec<ExecutorInstance>> {
        (0..self.components.len())
            .map(|i| self.instance(i, sink))
            .collect()
    }

    /// Whether executor `i` may make outbound HTTP requests. Its results are journaled
    /// even when it is alone in its superstep: its calls may cost money.
    fn pays(&self, i: usize) -> bool {
        self.manifest.executors[i].grants.makes_http_calls()
    }

    /// A new, uninitialised instance of executor `i` with its grants and limits.
    fn instance(&self, i: usize, sink: &Arc<dyn EventSink>) -> Result<ExecutorInstance> {
        let spec = &self.manifest.executors[i];
        let ctx = ExecutorContext::new(
            i,
            self.graph.clone(),
            spec.limits,
            &spec.grants.env,
            sink.clone(),
        );
        ExecutorInstance::new(&self.components[i], ctx, &spec.grants, spec.limits)
    }

    /// Refuses a checkpoint that was not taken with this workflow, saying what differs.
    fn check_fits(&self, checkpoint: &Checkpoint, allow_changed_components: bool) -> Result<()> {
        let origin = format!("checkpoint {}", checkpoint.checkpoint_id);
        let manifest = self.manifest.path.display();
        if checkpoint.manifest.digest != self.graph.digest() {
            let ours: BTreeSet<&str> = self.graph.ids().iter().map(String::as_str).collect();
            let theirs: BTreeSet<&str> = checkpoint.executors.keys().map(String::as_str).collect();
            let mut differences = Vec::new();
            if checkpoint.workflow != self.manifest.name {
                differences.push(format!(
                    "workflow '{}' in the checkpoint, '{}' in the manifest",
                    checkpoint.workflow, self.manifest.name
                ));
            }
            let missing: Vec<&str> = theirs.difference(&ours).copied().collect();
            if !missing.is_empty() {
                differences.push(format!(
                    "executors not in the manifest: {}",
                    missing.join(", ")
                ));
            }
            let added: Vec<&str> = ours.difference(&theirs).copied().collect();
            if !added.is_empty() {
                differences.push(format!(
                    "executors not in the checkpoint: {}",
                    added.join(", ")
                ));
            }
            if differences.is_empty() {
                differences.push("the edges or the start executor differ".into());
            }
            return Err(invalid(format!(
                "{origin} was taken with a different workflow graph than {manifest} ({}); resume with the manifest the run started with ({})",
                differences.join("; "),
                checkpoint.manifest.path
            )));
        }
        // Also checked when a file is read; again here for checkpoints made in code.
        checkpoint
            .check_references()
            .map_err(|why| invalid(format!("{origin}: {why}")))?;
        self.check_executors(checkpoint, allow_changed_components)?;
        self.check_queues(checkpoint)?;
        let cap = self.manifest.max_supersteps;
        if checkpoint.superstep > cap {
            return Err(invalid(format!(
                "{origin}: superstep: {} is past workflow.max_supersteps = {cap} of {manifest}",
                checkpoint.superstep
            )));
        }
        Ok(())
    }

    /// Refuses a checkpoint whose executors are not exactly the workflow's, or whose
    /// components changed (unless `allow_changed_components`).
    fn check_executors(
        &self,
        checkpoint: &Checkpoint,
        allow_changed_components: bool,
    ) -> Result<()> {
        let origin = format!("checkpoint {}", checkpoint.checkpoint_id);
        if let Some(id) = checkpoint
            .executors
            .keys()
            .find(|id| self.graph.index_of(id).is_none())
        {
            return Err(invalid(format!(
                "{origin}: executors: '{id}' is not an executor of {}",
                self.manifest.path.display()
            )));
        }
        for (i, id) in self.graph.ids().iter().enumerate() {
            let Some(record) = checkpoint.executors.get(id) else {
                return Err(invalid(format!(
                    "{origin}: executors: executor '{id}' has no record (no state to restore)"
                )));
            };
            let component = &self.components[i];
            if record.component != component.digest && !allow_changed_components {
                return Err(invalid(format!(
                    "{origin}: executor '{id}': its component changed since the checkpoint (checkpoint {}, now {} at {}); pass --allow-changed-components to restore the old state into the new component",
                    record.component,
                    component.digest,
                    component.path.display()
                )));
            }
        }
        Ok(())
    }

    /// Refuses a queued message that no edge of the workflow could have carried (the
    /// run's input may only be queued for the start executor).
    fn check_queues(&self, checkpoint: &Checkpoint) -> Result<()> {
        let origin = format!("checkpoint {}", checkpoint.checkpoint_id);
        for (id, queue) in &checkpoint.queued {
            for (n, message) in queue.iter().enumerate() {
                let carried = if message.source == INPUT_SOURCE {
                    match self.graph.index_of(id) == Some(self.graph.start()) {
                        true => Ok(()),
                        false => Err(format!(
                            "the run's input goes to the start executor '{}' only",
                            self.graph.id(self.graph.start())
                        )),
                    }
                } else {
                    let from = self.graph.index_of(&message.source);
                    let from = from.expect("a checkpoint's sources are its executors");
                    self.graph.route(from, &message.kind, Some(id)).map(drop)
                };
                carried.map_err(|why| {
                    invalid(format!(
                        "{origin}: queued.{id}[{n}]: a message of kind '{}' from '{}' that the workflow cannot carry: {why}",
                        message.kind, message.source
                    ))
                })?;
            }
        }
        Ok(())
    }
}

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

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No message is queued and no request is pending: the run is over.
    Completed,
    /// Only requests for outside input are left: the run waits for responses
    /// ([`Run::respond`], or `resume --respond` from its last checkpoint).
    Paused {
        /// The ids of the pending requests, oldest first.
        pending: Vec<String>,
    },
    /// An executor failed or a limit was hit; the last checkpoint stays valid.
    Failed {
        /// What went wrong, naming the executor or limit.
        reason: String,
    },
}

/// One run of a workflow, fresh or resumed.
pub struct Run<'w> {
    workflow: &'w Workflow,
    store: Arc<dyn CheckpointStore>,
    /// In front of the caller's sink: holds a superstep's events back while the
    /// previous barrier's checkpoint is still being written.
    gate: Arc<Gate>,
    /// The gate, as the sink that instances and the engine emit to.
    sink: Arc<dyn EventSink>,
    /// Writes checkpoints behind the engine, in order.
    writer: Writer,
    /// Checkpoints being written, oldest first (during `run` only).
    in_flight: VecDeque<InFlight>,
    instances: Vec<ExecutorInstance>,
    run_id: String,
    /// Supersteps completed: the next one to run.
    superstep: u64,
    /// Per executor index: messages to deliver in the next superstep, in order.
    queues: Vec<Vec<Envelope>>,
    /// Per executor index: responses (with their request ids) to deliver in the next
    /// superstep, before its messages.
    responses: Vec<Vec<(String, Message)>>,
    /// Requests waiting for a response, oldest first.
    pending: Vec<PendingRequest>,
    /// Something happened since the last checkpoint (a barrier, or responses).
    unsaved: bool,
    /// When checkpoints are written.
    durability: Durability,
    /// Per executor index (empty when none): results of the next superstep journaled
    /// by an earlier attempt that died before the barrier.
    replay: Vec<Option<Step>>,
    shared: Arc<SharedState>,
    /// Per executor index: the latest snapshot.
    states: Vec<Bytes>,
    outputs: Vec<Output>,
    /// The latest checkpoint, counting one still in flight.
    last_checkpoint: Option<String>,
    /// Set when the run failed: its instances may be mid-superstep, so it cannot go on.
    failure: Option<String>,
}

/// When a run writes checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Durably at every barrier (and before delivering responses), with the superstep
    /// journal. The next supersteps may run while a barrier's checkpoint is written
    /// (up to 32 barriers ahead of the disk), their events held back until the
    /// checkpoint before them is durable: a crash loses at most the unfinished
    /// executors of the running superstep and the barriers whose checkpoints were still
    /// being written.
    #[default]
    Superstep,
    /// Once, when the run stops (completes, pauses or fails, at its last good barrier):
    /// a crash loses everything since the run started or resumed.
    Exit,
    /// Never: the run cannot be resumed. For measurements and throwaway runs.
    Off,
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

/// What one executor produced in a superstep.
struct Step {
    effects: Effects,
    state: Bytes,
}

impl Step {
    /// The step as a journal record.
    fn to_journal(&self, superstep: u64, executor: &str, graph: &Graph) -> JournalRecord {
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
    fn from_journal(
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

impl Run<'_> {
    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Every output since the run began (including before a resume).
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// Each executor's latest snapshot, by id.
    pub fn states(&self) -> BTreeMap<&str, &Bytes> {
        self.workflow
            .graph
            .ids()
            .iter()
            .map(String::as_str)
            .zip(&self.states)
            .collect()
    }

    /// The committed shared state.
    pub fn shared_state(&self) -> &SharedState {
        &self.shared
    }

    /// Sets when checkpoints are written (by default at every superstep).
    pub fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    /// Requests waiting for a response, oldest first.
    pub fn pending_requests(&self) -> &[PendingRequest] {
        &self.pending
    }

    /// Answers pending request `request_id`: the response reaches the asking executor's
    /// `on-response` in the next superstep (and is saved in a checkpoint before it
    /// runs). Refuses, changing nothing, an id that is not pending.
    pub fn respond(&mut self, request_id: &str, response: Message) -> Result<()> {
        let Some(at) = self.pending.iter().position(|r| r.request_id == request_id) else {
            let pending: Vec<&str> = self.pending.iter().map(|r| r.request_id.as_str()).collect();
            return Err(invalid(format!(
                "request '{request_id}' is not pending in run {} (never asked, or already answered); pending: {}",
                self.run_id,
                if pending.is_empty() {
                    "none".to_string()
                } else {
                    pending.join(", ")
                }
            )));
        };
        let request = self.pending.remove(at);
        let to = self
            .workflow
            .graph
            .index_of(&request.executor)
            .expect("requests come from the graph's executors");
        self.responses[to].push((request.request_id, response));
        self.unsaved = true;
        // The next superstep now delivers responses: a journal of an earlier attempt
        // at it, made without them, does not describe it.
        self.replay.clear();
        Ok(())
    }

    /// The id of the latest checkpoint of this run, if any.
    pub fn last_checkpoint(&self) -> Option<&str> {
        self.last_checkpoint.as_deref()
    }

    /// Runs supersteps until no message is queued, an executor fails or the superstep
    /// cap is reached. An `Err` is a host-side failure (such as a checkpoint that
    /// cannot be written); the last saved checkpoint stays valid either way. A run that
    /// failed cannot go on: resume its last checkpoint instead.
    pub fn run(&mut self) -> Result<Outcome> {
        if let Some(reason) = &self.failure {
            anyhow::bail!(
                "run {} already failed ({reason}); resume from its last checkpoint instead",
                self.run_id
            );
        }
        let mut outcome = self.run_supersteps();
        // A checkpoint that could not be saved comes first: the work after it is lost.
        if let Err(error) = self.settle() {
            outcome = Err(error);
        }
        if self.durability == Durability::Exit
            && self.unsaved
            && let Ok(Outcome::Completed | Outcome::Paused { .. } | Outcome::Failed { .. }) =
                outcome
            && let Err(error) = self.save_checkpoint()
        {
            outcome = Err(error);
        }
        let reason = match &outcome {
            Ok(Outcome::Completed) => {
                self.sink.emit(&Event::RunCompleted {
                    run_id: self.run_id.clone(),
                    supersteps: self.superstep,
                    outputs: self.outputs.len(),
                });
                return outcome;
            }
            Ok(Outcome::Paused { pending }) => {
                self.sink.emit(&Event::RunPaused {
                    run_id: self.run_id.clone(),
                    checkpoint_id: self.last_checkpoint.clone(),
                    pending: pending.clone(),
                });
                return outcome;
            }
            Ok(Outcome::Failed { reason }) => reason.clone(),
            Err(error) => format!("{error:#}"),
        };
        self.failure = Some(reason.clone());
        self.sink.emit(&Event::RunFailed {
            run_id: self.run_id.clone(),
            reason,
            last_checkpoint: self.last_checkpoint.clone(),
        });
        outcome
    }

    fn run_supersteps(&mut self) -> Result<Outcome> {
        let unsaved_responses = self.unsaved && self.responses.iter().any(|r| !r.is_empty());
        if unsaved_responses && self.durability == Durability::Superstep {
            self.save_checkpoint()?;
        }
        let cap = self.workflow.manifest.max_supersteps;
        while self.has_work() {
            if self.superstep >= cap {
                return Ok(Outcome::Failed {
                    reason: format!(
                        "superstep cap reached: {cap} supersteps run and messages are still queued (raise workflow.max_supersteps in {} and resume)",
                        self.workflow.manifest.path.display()
                    ),
                });
            }
            if let Some(reason) = self.superstep()? {
                return Ok(Outcome::Failed { reason });
            }
        }
        if self.pending.is_empty() {
            Ok(Outcome::Completed)
        } else {
            Ok(Outcome::Paused {
                pending: self.pending.iter().map(|r| r.request_id.clone()).collect(),
            })
        }
    }

    /// Whether the next superstep has anything to deliver.
    fn has_work(&self) -> bool {
        self.with_work().next().is_some()
    }

    /// The indices of the executors with messages or responses for the next superstep.
    fn with_work(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.queues.len())
            .filter(|&i| !self.queues[i].is_empty() || !self.responses[i].is_empty())
    }

    /// Emits `run_started` and, for a resumed run, every request still pending.
    fn announce(&self, resumed_from: Option<String>) {
        self.sink.emit(&Event::RunStarted {
            run_id: self.run_id.clone(),
            workflow: self.workflow.manifest.name.clone(),
            resumed_from,
            superstep: self.superstep,
        });
        for request in &self.pending {
            self.emit_request(request);
        }
    }

    fn emit_request(&self, request: &PendingRequest) {
        self.sink.emit(&Event::RequestInfo {
            request_id: request.request_id.clone(),
            executor: request.executor.clone(),
            superstep: request.superstep,
            kind: request.message.kind.clone(),
            body: Payload::of(&request.message.body),
        });
    }

    /// Runs one superstep and its barrier; returns the failure reason if an executor
    /// failed, in which case nothing of the superstep is applied.
    fn superstep(&mut self) -> Result<Option<String>> {
        let superstep = self.superstep;
        let graph = &self.workflow.graph;
        let active: Vec<usize> = self.with_work().collect();
        let workflow = self.workflow;
        // Work that reaches outside the sandbox waits until the previous barrier is
        // durable, so that no crash can make it run twice; other work runs while that
        // checkpoint is written, its events held back until it is durable.
        let reaches_outside = active
            .iter()
            .any(|&i| workflow.manifest.executors[i].grants.reaches_outside());
        // A journal needs a checkpoint to start from: a run whose first superstep may
        // pay for calls saves itself as it starts (the input queued) before that.
        if self.last_checkpoint.is_none()
            && self.durability == Durability::Superstep
            && active.iter().any(|&i| workflow.pays(i))
        {
            self.start_save(None);
        }
        if reaches_outside {
            self.settle()?;
        }
        // With more than one executor, or one that makes HTTP requests, each one's
        // results are journaled as it finishes, so that a crash before the barrier does
        // not cost the finished ones' work (or their paid calls) again.
        let journal = match &self.last_checkpoint {
            Some(base)
                if (active.len() > 1 || active.iter().any(|&i| workflow.pays(i)))
                    && self.durability == Durability::Superstep =>
            {
                Some(base.clone())
            }
            _ => None,
        };
        let active = active.iter().map(|&i| graph.id(i).to_string()).collect();
        self.sink.emit(&Event::SuperstepStarted {
            superstep,
            from_checkpoint: self.last_checkpoint.clone(),
            executors: active,
        });

        // Without a checkpoint per superstep, a failure must leave the inboxes as they
        // were, so that the state saved at exit is the last good barrier's.
        let inboxes = (self.durability == Durability::Exit)
            .then(|| (self.queues.clone(), self.responses.clone()));
        let mut results: Vec<(usize, Result<Step, String>)> = Vec::new();
        let replay = std::mem::take(&mut self.replay);
        let replayed = replay.iter().any(Option::is_some);
        for (i, step) in replay.into_iter().enumerate() {
            let (Some(step), Some(base)) = (step, &self.last_checkpoint) else {
                continue;
            };
            self.queues[i].clear();
            self.responses[i].clear();
            // A fresh instance in the state the finished attempt left.
            let origin = format!("journal of checkpoint {base}");
            self.instances[i] =
                self.workflow
                    .restored_instance(i, &self.sink, &step.state, &origin)?;
            self.sink.emit(&Event::ExecutorSkipped {
                superstep,
                executor: graph.id(i).to_string(),
                reason: format!(
                    "its results for this superstep are in the {origin}, left by an attempt that stopped before the barrier"
                ),
            });
            results.push((i, Ok(step)));
        }

        let work: Vec<(usize, &mut ExecutorInstance, Inbox)> = self
            .instances
            .iter_mut()
            .zip(self.queues.iter_mut().zip(self.responses.iter_mut()))
            .enumerate()
            .filter(|(_, (_, (queue, responses)))| !queue.is_empty() || !responses.is_empty())
            .map(|(i, (instance, (queue, responses)))| {
                let inbox = Inbox {
                    responses: std::mem::take(responses),
                    messages: std::mem::take(queue),
                };
                (i, instance, inbox)
            })
            .collect();
        let shared = &self.shared;
        let sink = &self.sink;
        let store = self.store.as_ref();
        let pool = &self.workflow.runtime.pool;
        let base_save = self.in_flight.back().map(|f| f.save.clone());
        type Executed = Vec<(usize, Result<Step, String>)>;
        let (executed, unreported) =
            std::thread::scope(|scope| -> Result<(Executed, Vec<(usize, u64)>)> {
                let (finished, journaled) = mpsc::channel::<Finished>();
                let writer = journal.as_deref().map(|base| {
                    let sink = sink.as_ref();
                    scope.spawn(move || {
                        let journal = Journal {
                            store,
                            base,
                            base_save,
                            superstep,
                            graph,
                            sink,
                        };
                        journal.write(journaled)
                    })
                });
                let journal_to = writer.as_ref().map(|writer| JournalFeed {
                    finished: &finished,
                    writer: writer.thread(),
                });
                let execute = |(i, instance, inbox): (usize, &mut ExecutorInstance, Inbox)| {
                    let executor = Executing {
                        superstep,
                        index: i,
                        graph,
                        journal: journal_to,
                        pays: workflow.pays(i),
                    };
                    (i, executor.run(instance, &inbox, shared, sink.as_ref()))
                };
                let executed: Vec<_> = if work.len() == 1 {
                    work.into_iter().map(execute).collect()
                } else {
                    pool.install(|| work.into_par_iter().map(execute).collect())
                };
                drop(finished);
                let unreported = match writer {
                    Some(writer) => {
                        // Every executor finished: the writer need not wait any longer.
                        writer.thread().unpark();
                        writer.join().expect("the journal writer does not panic")?
                    }
                    None => Vec::new(),
                };
                Ok((executed, unreported))
            })?;
        results.extend(executed);
        results.sort_by_key(|(i, _)| *i);
        if results.iter().any(|(_, result)| result.is_err()) {
            self.settle()?;
        } else {
            self.settle_finished()?;
        }

        let failures: Vec<String> = results
            .iter()
            .filter_map(|(i, result)| {
                result
                    .as_ref()
                    .err()
                    .map(|reason| format!("executor '{}': {reason}", graph.id(*i)))
            })
            .collect();
        if !failures.is_empty() {
            report_completed(self.sink.as_ref(), superstep, graph, &unreported);
            if let Some((queues, responses)) = inboxes {
                self.queues = queues;
                self.responses = responses;
            }
            return Ok(Some(failures.join("; ")));
        }

        // The barrier: executor-id order throughout, so that delivery is by sender id
        // and then send order, and shared-state writes commit deterministically.
        let mut next: Vec<Vec<Envelope>> = vec![Vec::new(); self.queues.len()];
        for (i, result) in results {
            let Step { effects, state } = result.expect("failures returned above");
            let source = graph.id(i);
            if !effects.writes.is_empty() {
                let shared = Arc::make_mut(&mut self.shared);
                for (key, value) in effects.writes {
                    match value {
                        Some(value) => shared.insert(key, value),
                        None => shared.remove(&key),
                    };
                }
            }
            for (to, message) in effects.sends {
                next[to].push(Envelope {
                    source: source.to_string(),
                    message,
                });
            }
            for (request_id, message) in effects.requests {
                let request = PendingRequest {
                    request_id,
                    executor: source.to_string(),
                    superstep,
                    message,
                };
                self.emit_request(&request);
                self.pending.push(request);
            }
            for message in effects.outputs {
                self.sink.emit(&Event::Output {
                    superstep,
                    executor: source.to_string(),
                    kind: message.kind.clone(),
                    body: Payload::of(&message.body),
                });
                self.outputs.push(Output {
                    superstep,
                    source: source.to_string(),
                    message,
                });
            }
            self.states[i] = state;
        }
        self.queues = next;
        self.superstep += 1;
        self.unsaved = true;
        let queued = self.queues.iter().map(Vec::len).sum();
        if self.durability == Durability::Superstep {
            // Written by the checkpoint writer while the next supersteps run, and
            // reported as soon as it is durable.
            let barrier = Barrier {
                superstep,
                queued,
                unreported,
                journal_to_remove: self
                    .last_checkpoint
                    .clone()
                    .filter(|_| journal.is_some() || replayed),
            };
            self.start_save(Some(barrier));
        } else {
            self.sink
                .emit(&Event::SuperstepCompleted { superstep, queued });
        }
        Ok(None)
    }

    /// Waits until every checkpoint being written is durable (each is reported as it
    /// becomes durable, see [`Run::on_durable`]). If one could not be saved, the run's
    /// last checkpoint is the one before it, and the later ones and every held event
    /// (work that built on the lost barrier) are dropped.
    fn settle(&mut self) -> Result<()> {
        self.settle_while(|_| true)
    }

    /// Forgets the checkpoints that are already durable, oldest first, without waiting;
    /// then waits for the oldest while too many are being written, or more than one
    /// and too many bytes.
    fn settle_finished(&mut self) -> Result<()> {
        self.settle_while(|in_flight| {
            in_flight.front().is_some_and(|f| f.save.is_done())
                || too_far_ahead(in_flight.iter().map(|f| f.bytes))
        })
    }

    fn settle_while(&mut self, go_on: impl Fn(&VecDeque<InFlight>) -> bool) -> Result<()> {
        while go_on(&self.in_flight) {
            let Some(in_flight) = self.in_flight.pop_front() else {
                return Ok(());
            };
            if let Err(error) = self.report(in_flight) {
                // The later saves fail (their parent is lost) or are left unreported;
                // either way nothing is written once the run reports its failure.
                for later in self.in_flight.drain(..) {
                    let _ = later.save.wait();
                }
                self.gate.discard();
                return Err(error);
            }
        }
        Ok(())
    }

    /// Waits until `in_flight` is durable; it is reported by then (see
    /// [`Run::on_durable`]).
    fn report(&mut self, in_flight: InFlight) -> Result<()> {
        in_flight.save.wait().map(drop).map_err(|reason| {
            // A durable checkpoint stays the last one when what came after it failed.
            self.last_checkpoint = if in_flight.durable.load(Ordering::Acquire) {
                Some(in_flight.checkpoint_id)
            } else {
                in_flight.parent_id
            };
            anyhow::anyhow!(reason)
        })
    }

    /// Saves the run as it stands, now.
    fn save_checkpoint(&mut self) -> Result<()> {
        self.start_save(None);
        self.settle()
    }

    /// Starts saving the run as it stands: a barrier's checkpoint (and any save while
    /// others are in flight, to go after them) by the writer thread, whose saves overlap
    /// the next supersteps and are made durable together when they queue up; any
    /// other save here. Either way it is reported once durable ([`Run::on_durable`]),
    /// and [`Run::settle`] waits for it.
    fn start_save(&mut self, barrier: Option<Barrier>) {
        let checkpoint = self.checkpoint();
        let what = match &barrier {
            Some(barrier) => format!("superstep {}: checkpoint not saved", barrier.superstep),
            None => format!("checkpoint before superstep {}: not saved", self.superstep),
        };
        self.last_checkpoint = Some(checkpoint.checkpoint_id.clone());
        self.unsaved = false;
        // What happens from now on is reported once this checkpoint is durable.
        self.gate.hold(&checkpoint.checkpoint_id);
        let handed_over = barrier.is_some() || !self.in_flight.is_empty();
        let durable = Arc::new(AtomicBool::new(false));
        let on_durable = self.on_durable(&checkpoint, barrier, durable.clone());
        let in_flight = InFlight {
            bytes: checkpoint.size_hint(),
            checkpoint_id: checkpoint.checkpoint_id.clone(),
            parent_id: checkpoint.parent_id.clone(),
            durable,
            save: if handed_over {
                self.writer.save(checkpoint, what, on_durable)
            } else {
                SaveHandle::now(self.store.as_ref(), &checkpoint, &what, on_durable)
            },
        };
        self.in_flight.push_back(in_flight);
    }

    /// What reports `checkpoint` as soon as it is durable, on the thread that saved it
    /// (the next supersteps may be running): sets `durable`, removes the journal the
    /// barrier makes obsolete, then lets `checkpoint_saved` through (for a barrier, then
    /// the executors it made durable complete and `superstep_completed`) and the events
    /// held behind it. If the journal cannot be removed, the events held are dropped.
    fn on_durable(
        &self,
        checkpoint: &Checkpoint,
        barrier: Option<Barrier>,
        durable: Arc<AtomicBool>,
    ) -> OnDurable {
        let (gate, store) = (self.gate.clone(), self.store.clone());
        let checkpoint_id = checkpoint.checkpoint_id.clone();
        let parent_id = checkpoint.parent_id.clone();
        let (superstep, status) = (checkpoint.superstep, checkpoint.status.as_str());
        let (made_durable, completed, journal_to_remove) = match barrier {
            Some(barrier) => {
                let graph = &self.workflow.graph;
                let made_durable: Vec<Event> =
                    completed_events(barrier.superstep, graph, &barrier.unreported).collect();
                let completed = Event::SuperstepCompleted {
                    superstep: barrier.superstep,
                    queued: barrier.queued,
                };
                (made_durable, Some(completed), barrier.journal_to_remove)
            }
            None => (Vec::new(), None, None),
        };
        Box::new(move |location| {
            durable.store(true, Ordering::Release);
            let saved = Event::CheckpointSaved {
                checkpoint_id: checkpoint_id.clone(),
                parent_id,
                superstep,
                status: status.to_string(),
                location: location.to_string(),
            };
            let mut events: Vec<Event> = std::iter::once(saved).chain(made_durable).collect();
            if let Some(base) = journal_to_remove
                && let Err(error) = store.remove_journal(&base)
            {
                gate.release_alone(&checkpoint_id, &events);
                return Err(format!("{error:#}"));
            }
            events.extend(completed);
            gate.release(&checkpoint_id, &events);
            Ok(())
        })
    }

    /// The run as it stands, as a checkpoint whose parent is the latest one.
    fn checkpoint(&self) -> Checkpoint {
        let graph = &self.workflow.graph;
        let queued = self.queues.iter().map(Vec::len).sum::<usize>()
            + self.responses.iter().map(Vec::len).sum::<usize>();
        let status = Status::of(queued, self.pending.len());
        let mut bodies = BodyPayloads::new(self.queues.iter().flatten().map(|e| &e.message.body));
        Checkpoint {
            checkpoint_id: uuid::Uuid::now_v7().to_string(),
            parent_id: self.last_checkpoint.clone(),
            run_id: self.run_id.clone(),
            workflow: self.workflow.manifest.name.clone(),
            superstep: self.superstep,
            created_at: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            status,
            manifest: ManifestRef {
                path: self.workflow.manifest.path.display().to_string(),
                digest: graph.digest().to_string(),
            },
            executors: graph
                .ids()
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let record = ExecutorRecord {
                        component: self.workflow.components[i].digest.clone(),
                        state: Payload::of(&self.states[i]),
                    };
                    (id.clone(), record)
                })
                .collect(),
            shared_state: self
                .shared
                .iter()
                .map(|(key, value)| (key.clone(), Payload::encode(value)))
                .collect(),
            queued: self
                .queues
                .iter()
                .enumerate()
                .filter(|(_, queue)| !queue.is_empty())
                .map(|(i, queue)| {
                    let messages = queue
                        .iter()
                        .map(|envelope| QueuedMessage {
                            source: envelope.source.clone(),
                            kind: envelope.message.kind.clone(),
                            body: bodies.payload(&envelope.message.body),
                        })
                        .collect();
                    (graph.id(i).to_string(), messages)
                })
                .collect(),
            shared_bodies: bodies.shared,
            pending_requests: self
                .pending
                .iter()
                .map(|request| RequestRecord {
                    request_id: request.request_id.clone(),
                    executor: request.executor.clone(),
                    superstep: request.superstep,
                    kind: request.message.kind.clone(),
                    body: Payload::of(&request.message.body),
                })
                .collect(),
            responses: self
                .responses
                .iter()
                .enumerate()
                .filter(|(_, responses)| !responses.is_empty())
                .map(|(i, responses)| {
                    let records = responses
                        .iter()
                        .map(|(request_id, message)| ResponseRecord {
                            request_id: request_id.clone(),
                            kind: message.kind.clone(),
                            body: Payload::of(&message.body),
                        })
                        .collect();
                    (graph.id(i).to_string(), records)
                })
                .collect(),
            outputs: self
                .outputs
                .iter()
                .map(|output| OutputRecord {
                    superstep: output.superstep,
                    source: output.source.clone(),
                    kind: output.message.kind.clone(),
                    body: Payload::of(&output.message.body),
                })
                .collect(),
        }
    }
}

/// How many checkpoints may be in flight at once: the engine runs at most this many
/// barriers ahead of the disk. Only supersteps quicker than a save get that far ahead
/// (on the machine of the README's benchmarks, a save takes about 1 ms); saves that
/// queue up are written together.
const MAX_SAVES_IN_FLIGHT: usize = 32;

/// How many bytes the checkpoints in flight may hold together, their payloads counted
/// in full (one checkpoint on its own may hold more).
const MAX_BYTES_IN_FLIGHT: usize = 256 << 20;

/// Whether the engine must wait for the oldest save before it goes on, given the sizes
/// of the checkpoints in flight: [`MAX_SAVES_IN_FLIGHT`] of them, or more than one
/// holding more than [`MAX_BYTES_IN_FLIGHT`] together.
fn too_far_ahead(sizes: impl ExactSizeIterator<Item = usize>) -> bool {
    let count = sizes.len();
    count >= MAX_SAVES_IN_FLIGHT || (count > 1 && sizes.sum::<usize>() > MAX_BYTES_IN_FLIGHT)
}

/// A checkpoint while it is being written.
struct InFlight {
    /// About how many bytes the checkpoint holds.
    bytes: usize,
    save: SaveHandle,
    checkpoint_id: String,
    /// The checkpoint before: the run's last one if this save fails.
    parent_id: Option<String>,
    /// Set once the checkpoint is durable, even if reporting it failed afterwards.
    durable: Arc<AtomicBool>,
}

/// What reports a barrier complete once its checkpoint is durable.
struct Barrier {
    /// The superstep whose barrier it is.
    superstep: u64,
    /// Messages queued for the next superstep.
    queued: usize,
    /// Executors of the superstep whose completion the checkpoint makes durable (index,
    /// duration in µs).
    unreported: Vec<(usize, u64)>,
    /// The journal that the checkpoint makes obsolete.
    journal_to_remove: Option<String>,
}

/// What an executor gets in a superstep: responses to its requests, then messages.
struct Inbox {
    responses: Vec<(String, Message)>,
    messages: Vec<Envelope>,
}

/// One executor's turn in a superstep.
struct Executing<'a> {
    superstep: u64,
    index: usize,
    graph: &'a Graph,
    /// Where to send the results for the journal; the journal writer then reports the
    /// executor complete once they are durable.
    journal: Option<JournalFeed<'a>>,
    /// Whether the executor may make outbound HTTP requests.
    pays: bool,
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

/// A finished executor's results on their way into the journal.
struct Finished {
    index: usize,
    record: JournalRecord,
    duration_us: u64,
    /// Whether the executor may have made paid calls: then its results are written even
    /// in the superstep's last batch.
    pays: bool,
}

/// Where executors hand their results to the superstep's journal writer. The writer
/// gathers them until its deadline without being woken by each one (a wakeup per
/// executor would take a core from the others); only an executor that pays wakes it,
/// and the engine does once every executor finished.
#[derive(Clone, Copy)]
struct JournalFeed<'a> {
    finished: &'a mpsc::Sender<Finished>,
    writer: &'a std::thread::Thread,
}

impl JournalFeed<'_> {
    fn send(&self, finished: Finished) {
        let wake = finished.pays;
        // A closed channel means the writer failed; it reports why.
        let _ = self.finished.send(finished);
        if wake {
            self.writer.unpark();
        }
    }
}

/// How long the journal writer gathers finished executors before one durable append:
/// many quick executors cost one fsync, and a completion event waits at most this long.
const JOURNAL_WINDOW: Duration = Duration::from_millis(2);

/// Nothing is journaled before the superstep has run this long, unless an executor that
/// makes HTTP requests finished: redoing a few milliseconds of work after a crash costs
/// less than the fsyncs of a journal, and a quick superstep needs none.
const JOURNAL_DELAY: Duration = Duration::from_millis(10);

/// The journal of one superstep: where finished executors' results go before the
/// barrier.
struct Journal<'a> {
    store: &'a dyn CheckpointStore,
    /// The checkpoint the superstep starts from.
    base: &'a str,
    /// The save of `base` while it is still being written: nothing is appended before
    /// it is durable.
    base_save: Option<SaveHandle>,
    superstep: u64,
    graph: &'a Graph,
    sink: &'a dyn EventSink,
}

impl Journal<'_> {
    /// Appends finished executors' results in batches (one durable write each, none
    /// before [`JOURNAL_DELAY`] unless an HTTP executor finished) and reports each
    /// executor complete once its results are durable. Returns when every
    /// executor of the superstep has finished, with the last batch unwritten when the
    /// superstep ended within its window and no executor in it makes HTTP requests: the
    /// barrier's checkpoint, written next, makes those results durable, and the caller
    /// reports them (index and duration) then.
    fn write(mut self, finished: mpsc::Receiver<Finished>) -> Result<Vec<(usize, u64)>> {
        let started = Instant::now();
        while let Ok(first) = finished.recv() {
            let mut batch = vec![first];
            let window = Instant::now() + JOURNAL_WINDOW;
            // Until the deadline, what finished is taken whenever this thread wakes (see
            // `JournalFeed` for who wakes it).
            let last = loop {
                match finished.try_recv() {
                    Ok(next) => {
                        batch.push(next);
                        continue;
                    }
                    Err(mpsc::TryRecvError::Disconnected) => break true,
                    Err(mpsc::TryRecvError::Empty) => {}
                }
                let deadline = if batch.iter().any(|f| f.pays) {
                    window
                } else {
                    window.max(started + JOURNAL_DELAY)
                };
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    break false;
                };
                std::thread::park_timeout(left);
            };
            if last && !batch.iter().any(|f| f.pays) {
                return Ok(batch.iter().map(|f| (f.index, f.duration_us)).collect());
            }
            if let Some(save) = self.base_save.take()
                && save.wait().is_err()
            {
                // The run fails with the reason the base was not saved (see
                // `Run::settle`); a journal without its base would be of no use.
                return Ok(Vec::new());
            }
            let (done, records): (Vec<(usize, u64)>, Vec<JournalRecord>) = batch
                .into_iter()
                .map(|f| ((f.index, f.duration_us), f.record))
                .unzip();
            self.store
                .append_journal(self.base, &records)
                .context("the superstep's results could not be journaled")?;
            report_completed(self.sink, self.superstep, self.graph, &done);
        }
        Ok(Vec::new())
    }
}

/// Emits `executor_completed` for each (executor index, duration in µs).
fn report_completed(sink: &dyn EventSink, superstep: u64, graph: &Graph, done: &[(usize, u64)]) {
    for event in completed_events(superstep, graph, done) {
        sink.emit(&event);
    }
}

/// `executor_completed` for each (executor index, duration in µs).
fn completed_events<'a>(
    superstep: u64,
    graph: &'a Graph,
    done: &'a [(usize, u64)],
) -> impl Iterator<Item = Event> + 'a {
    done.iter()
        .map(move |&(index, duration_us)| Event::ExecutorCompleted {
            superstep,
            executor: graph.id(index).to_string(),
            duration_us,
        })
}

impl Executing<'_> {
    /// Delivers the inbox in order, takes the snapshot and journals the results; emits
    /// the executor's events.
    fn run(
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
        let outcome = deliver(self.superstep, instance, inbox, shared);
        let duration_us = started.elapsed().as_micros() as u64;
        match (&outcome, self.journal) {
            (Ok(step), Some(journal)) => {
                let finished = Finished {
                    index: self.index,
                    record: step.to_journal(self.superstep, id, self.graph),
                    duration_us,
                    pays: self.pays,
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
}

/// Delivers one executor's inbox in order (responses first) and takes its snapshot.
fn deliver(
    superstep: u64,
    instance: &mut ExecutorInstance,
    inbox: &Inbox,
    shared: &Arc<SharedState>,
) -> Result<Step, String> {
    instance.context().begin(superstep, shared.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_waits_for_the_disk_when_too_many_checkpoints_or_bytes_are_in_flight() {
        const MIB: usize = 1 << 20;
        assert!(!too_far_ahead([1024; MAX_SAVES_IN_FLIGHT - 1].into_iter()));
        assert!(too_far_ahead([1024; MAX_SAVES_IN_FLIGHT].into_iter()));
        // One checkpoint larger than the bound is written on its own, not refused.
        assert!(!too_far_ahead([1024 * MIB].into_iter()));
        assert!(!too_far_ahead([100 * MIB, 100 * MIB].into_iter()));
        assert!(too_far_ahead([200 * MIB, 100 * MIB].into_iter()));
        assert!(too_far_ahead([1024 * MIB, 1024].into_iter()));
    }
}
