//! The host side of the WIT `context` interface: what an executor may do while it
//! handles a message. Every effect is buffered here until the superstep's barrier.

use super::bindings::superstep::workflow::{context, types};
use crate::events::{Event, EventSink, Level};
use crate::grants::HttpPolicy;
use crate::graph::Graph;
use crate::limits::Limits;
use crate::message::{Message, request_id};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Shared state as committed at a barrier.
pub type SharedState = BTreeMap<String, Bytes>;

/// What one executor did in one superstep, applied at the barrier.
#[derive(Debug, Default)]
pub struct Effects {
    /// Messages sent, each with its receiving executor's index, in send order.
    pub sends: Vec<(usize, Message)>,
    /// Outputs yielded, in order.
    pub outputs: Vec<Message>,
    /// Shared-state writes (`None` deletes), last write per key wins.
    pub writes: BTreeMap<String, Option<Bytes>>,
    /// Requests for outside input, with their ids, in order.
    pub requests: Vec<(String, Message)>,
}

/// One executor's view of the run while it handles messages.
pub struct ExecutorContext {
    index: usize,
    id: String,
    graph: Arc<Graph>,
    sink: Arc<dyn EventSink>,
    limits: Limits,
    superstep: u64,
    committed: Arc<SharedState>,
    effects: Effects,
    /// Messages (sends per receiver, outputs, requests) in the current handler call.
    messages_this_call: u64,
    /// The limit the guest broke in the current call, if any; the call then traps.
    violation: Option<String>,
    /// Granted environment values long enough to be secrets, by variable name: they
    /// are masked in everything this executor reports (logs, failure reasons).
    secrets: Vec<(String, String)>,
}

impl ExecutorContext {
    /// A context for executor `index` of `graph` under `limits`, reporting to `sink`;
    /// the values of `env` (its granted variables) never appear in what it reports.
    pub fn new(
        index: usize,
        graph: Arc<Graph>,
        limits: Limits,
        env: &[(String, String)],
        sink: Arc<dyn EventSink>,
    ) -> ExecutorContext {
        let secrets = crate::grants::env::secrets(env);
        ExecutorContext {
            index,
            id: graph.id(index).to_string(),
            graph,
            sink,
            limits,
            superstep: 0,
            committed: Arc::default(),
            effects: Effects::default(),
            messages_this_call: 0,
            violation: None,
            secrets,
        }
    }

    /// `text` with every granted secret replaced by `[NAME]`.
    pub fn mask(&self, mut text: String) -> String {
        for (name, value) in &self.secrets {
            if text.contains(value.as_str()) {
                text = text.replace(value.as_str(), &format!("[{name}]"));
            }
        }
        text
    }

    /// Starts a handler call: its message count starts from zero.
    pub fn begin_call(&mut self) {
        self.messages_this_call = 0;
        self.violation = None;
    }

    /// The limit the last call broke, if it broke one.
    pub fn take_violation(&mut self) -> Option<String> {
        self.violation.take()
    }

    /// Counts `count` messages of `bytes` bytes each made by `what`; past a limit,
    /// records the violation and returns the trap that ends the call.
    fn admit(&mut self, what: &str, bytes: usize, count: u64) -> wasmtime::Result<()> {
        let limits = self.limits;
        let violation = if bytes as u64 > limits.max_message_bytes {
            Some(format!(
                "{what} of {bytes} bytes exceeds limits.max_message_bytes = {}",
                limits.max_message_bytes
            ))
        } else if self.messages_this_call + count > limits.max_messages_per_call {
            Some(format!(
                "{what} would make {} messages in one call, over limits.max_messages_per_call = {}",
                self.messages_this_call + count,
                limits.max_messages_per_call
            ))
        } else {
            None
        };
        match violation {
            Some(reason) => {
                self.violation = Some(reason.clone());
                Err(wasmtime::Error::msg(reason))
            }
            None => {
                self.messages_this_call += count;
                Ok(())
            }
        }
    }

    /// The executor's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Starts a superstep: reads now see `committed` and effects start empty.
    pub fn begin(&mut self, superstep: u64, committed: Arc<SharedState>) {
        self.superstep = superstep;
        self.committed = committed;
        self.effects = Effects::default();
    }

    /// Takes the superstep's effects and lets go of the committed state.
    pub fn finish(&mut self) -> Effects {
        self.committed = Arc::default();
        std::mem::take(&mut self.effects)
    }

    /// Emits a log event from this executor.
    pub fn log(&self, level: Level, text: String) {
        self.sink.emit(&Event::Log {
            superstep: self.superstep,
            executor: self.id.clone(),
            level,
            text: self.mask(text),
        });
    }
}

/// The data of an executor's wasmtime store.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    /// The executor's outbound HTTP allowlist and limits.
    pub http_policy: HttpPolicy,
    table: ResourceTable,
    /// The executor's view of the run.
    pub ctx: ExecutorContext,
    /// Caps the guest's memories and tables.
    pub limiter: MemoryLimiter,
    /// Epoch ticks left to the running call (see `ExecutorInstance::arm`).
    pub ticks_left: u64,
    /// Set to end the running call at its next tick (the run was stopped at once).
    pub interrupt: Arc<std::sync::atomic::AtomicBool>,
}

impl HostState {
    /// Store data for an executor with the given WASI context.
    pub fn new(wasi: WasiCtx, http_policy: HttpPolicy, ctx: ExecutorContext) -> HostState {
        let limiter = MemoryLimiter::new(ctx.limits.memory_mib);
        HostState {
            wasi,
            http: WasiHttpCtx::new(),
            http_policy,
            table: ResourceTable::new(),
            ctx,
            limiter,
            ticks_left: 0,
            interrupt: Arc::default(),
        }
    }
}

/// The memory limit of one executor: its linear memories together may not grow past
/// `limits.memory_mib`; growing past it traps, and the reason is kept for the report.
pub struct MemoryLimiter {
    memory_mib: u64,
    used: usize,
    /// Why the last growth was refused, if it was.
    pub violation: Option<String>,
}

/// Table elements allowed per table; generous, but not unbounded.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl MemoryLimiter {
    fn new(memory_mib: u64) -> MemoryLimiter {
        MemoryLimiter {
            memory_mib,
            used: 0,
            violation: None,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let cap = self.memory_mib.saturating_mul(1 << 20);
        let total = (self.used - current.min(self.used)) as u64 + desired as u64;
        if total > cap {
            let reason = format!(
                "exceeded limits.memory_mib = {}: linear memory would grow to {} MiB",
                self.memory_mib,
                total.div_ceil(1 << 20)
            );
            self.violation = Some(reason.clone());
            return Err(wasmtime::Error::msg(reason));
        }
        self.used = self.used - current.min(self.used) + desired;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            let reason =
                format!("a table would grow to {desired} elements, over {MAX_TABLE_ELEMENTS}");
            self.violation = Some(reason.clone());
            return Err(wasmtime::Error::msg(reason));
        }
        Ok(true)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_policy,
        }
    }
}

impl types::Host for HostState {}

impl context::Host for HostState {
    fn send_message(
        &mut self,
        message: types::Message,
        target: Option<String>,
    ) -> wasmtime::Result<Result<(), String>> {
        let ctx = &mut self.ctx;
        let targets = match ctx.graph.route(ctx.index, &message.kind, target.as_deref()) {
            Ok(targets) => targets,
            Err(refusal) => return Ok(Err(refusal)),
        };
        ctx.admit("a message", message.body.len(), targets.len() as u64)?;
        let message = Message {
            kind: message.kind,
            body: Bytes::from(message.body),
        };
        for to in targets {
            ctx.effects.sends.push((to, message.clone()));
        }
        Ok(Ok(()))
    }

    fn yield_output(&mut self, message: types::Message) -> wasmtime::Result<()> {
        self.ctx.admit("an output", message.body.len(), 1)?;
        self.ctx.effects.outputs.push(Message {
            kind: message.kind,
            body: Bytes::from(message.body),
        });
        Ok(())
    }

    fn get_shared(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let ctx = &self.ctx;
        let value = match ctx.effects.writes.get(&key) {
            Some(own) => own.as_ref(),
            None => ctx.committed.get(&key),
        };
        Ok(value.map(|bytes| bytes.to_vec()))
    }

    fn set_shared(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        self.ctx
            .effects
            .writes
            .insert(key, Some(Bytes::from(value)));
        Ok(())
    }

    fn delete_shared(&mut self, key: String) -> wasmtime::Result<()> {
        self.ctx.effects.writes.insert(key, None);
        Ok(())
    }

    fn request_info(&mut self, request: types::Message) -> wasmtime::Result<String> {
        let ctx = &mut self.ctx;
        ctx.admit("a request", request.body.len(), 1)?;
        let id = request_id(&ctx.id, ctx.superstep, ctx.effects.requests.len() + 1);
        let request = Message {
            kind: request.kind,
            body: Bytes::from(request.body),
        };
        ctx.effects.requests.push((id.clone(), request));
        Ok(id)
    }

    fn log(&mut self, level: types::Level, text: String) -> wasmtime::Result<()> {
        let level = match level {
            types::Level::Trace => Level::Trace,
            types::Level::Debug => Level::Debug,
            types::Level::Info => Level::Info,
            types::Level::Warn => Level::Warn,
            types::Level::Error => Level::Error,
        };
        self.ctx.log(level, text);
        Ok(())
    }
}
