//! superstep: run workflows whose executors are WebAssembly components, in
//! checkpointed supersteps.
//!
//! Load a [`Manifest`], compile it into a [`Workflow`] on a [`Runtime`], then
//! [`Workflow::start`] or [`Workflow::resume`] a [`Run`] against any
//! [`CheckpointStore`] ([`FileStore`], [`PostgresStore`](checkpoint::PostgresStore) or
//! [`MemoryStore`]) and an [`EventSink`]; many runs at once go through a [`Runner`],
//! and runs shared by hosts through a database's [`queue`] and its [`worker`]s:
//!
//! ```no_run
//! use std::sync::Arc;
//! use superstep::{FileStore, Manifest, Message, Outcome, Runtime, Workflow};
//!
//! # fn main() -> anyhow::Result<()> {
//! let manifest = Manifest::load("guest-examples/pipeline.toml".as_ref())?;
//! let workflow = Workflow::load(Runtime::new(0, false)?, manifest)?;
//! let input = Message { kind: "input".into(), body: "\"hello world\"".into() };
//! let store = Arc::new(FileStore::new("checkpoints"));
//! let mut run = workflow.start(input, store, Arc::new(|_: &superstep::Event| {}))?;
//! assert_eq!(run.run()?, Outcome::Completed);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! Data flows one way: a manifest becomes a workflow; a run of it calls into the
//! sandbox, and hands checkpoints to a store; a worker takes runs from the queue and
//! drives them.
//!
//! | module | what |
//! | --- | --- |
//! | [`manifest`] | the TOML manifest: parsing and validation |
//! | [`limits`] | an executor's resource limits and their defaults |
//! | [`retry`] | retry policies of failed executor calls, and how a call failed |
//! | [`telemetry`] | OpenTelemetry spans of runs, supersteps and calls, exported over OTLP/HTTP |
//! | [`grants`] | capability grants, one module each: `dirs`, `env`, `http` |
//! | [`graph`] | executors by index, edges, routing, the graph digest, Mermaid and DOT |
//! | [`engine`] | the runtime, workflows and runs: supersteps, barriers, journals, saving |
//! | `sandbox` | wasmtime: the engine and linker, the WIT bindings, the host side of the `context` interface, instances under their limits, the compile cache |
//! | [`checkpoint`] | the checkpoint document, its checks and signing, journals, stores |
//! | [`db`] | PostgreSQL: the connection under the blocking APIs, the versioned schema |
//! | [`queue`] | runs as rows: submit, claim with lease and epoch, finish, respond, events |
//! | [`worker`] | claims runs from the queue and drives them on a runner |
//! | [`server`] | `superstep serve`: the HTTP API, its runs, the web page |
//! | [`events`] | what a run reports, and the sink trait |
//! | [`message`] | messages, envelopes, payloads as checkpoints write them, request ids |
//! | [`hash`] | content digests |
//! | [`error`] | the error a user can fix, and how to tell it |
//! | `limited_read` | reading files: regular ones only, within size limits |

#![deny(missing_docs)]

pub mod checkpoint;
pub mod db;
pub mod engine;
pub mod error;
pub mod events;
pub mod grants;
pub mod graph;
pub mod hash;
mod limited_read;
pub mod limits;
pub mod manifest;
pub mod message;
pub mod queue;
pub mod retry;
mod sandbox;
pub mod server;
pub mod telemetry;
pub mod worker;

pub use checkpoint::{Checkpoint, CheckpointStore, FileStore, MemoryStore, Status};
pub use engine::{
    Durability, Outcome, Output, PendingRequest, Run, RunHandle, Runner, RunnerLimits, Runtime,
    Runtimes, Stopped, Stopper, Workflow,
};
pub use error::{Error, Result};
pub use events::{Event, EventSink, Level};
pub use limited_read::FileKind;
pub use manifest::Manifest;
pub use message::{Envelope, Message, Payload};
pub use sandbox::compile_cache::CACHE_ENV as COMPILE_CACHE_ENV;
pub use sandbox::context::SharedState;
