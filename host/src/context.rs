//! The host side of the WIT `context` interface: what an executor may do while it
//! handles a message. Every effect is buffered here until the superstep's barrier.

use crate::events::{Event, EventSink, Level};
use crate::graph::Graph;
use crate::message::Message;
use crate::sandbox::bindings::superstep::workflow::{context, types};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

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

/// The id of an executor's `n`th request (from 1) in a superstep: stable across
/// resumes, because supersteps are deterministic.
pub fn request_id(executor: &str, superstep: u64, n: usize) -> String {
    format!("{executor}:{superstep}:{n}")
}

/// One executor's view of the run while it handles messages.
pub struct ExecutorContext {
    index: usize,
    id: String,
    graph: Arc<Graph>,
    sink: Arc<dyn EventSink>,
    superstep: u64,
    committed: Arc<SharedState>,
    effects: Effects,
}

impl ExecutorContext {
    /// A context for executor `index` of `graph`, reporting to `sink`.
    pub fn new(index: usize, graph: Arc<Graph>, sink: Arc<dyn EventSink>) -> ExecutorContext {
        ExecutorContext {
            index,
            id: graph.id(index).to_string(),
            graph,
            sink,
            superstep: 0,
            committed: Arc::default(),
            effects: Effects::default(),
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
            text,
        });
    }
}

/// The data of an executor's wasmtime store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The executor's view of the run.
    pub ctx: ExecutorContext,
}

impl HostState {
    /// Store data for an executor with the given WASI context.
    pub fn new(wasi: WasiCtx, ctx: ExecutorContext) -> HostState {
        HostState {
            wasi,
            table: ResourceTable::new(),
            ctx,
        }
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
