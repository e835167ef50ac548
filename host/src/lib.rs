//! superstep: run workflows whose executors are WebAssembly components, in
//! checkpointed supersteps.
//!
//! Load a [`Manifest`], compile it into a [`Workflow`] on a [`Runtime`], then
//! [`Workflow::start`] or [`Workflow::resume`] a [`Run`] against any
//! [`CheckpointStore`] ([`FileStore`] or [`MemoryStore`]) and an [`EventSink`].

pub mod checkpoint;
pub mod engine;
pub mod error;
pub mod events;
pub mod grants;
pub mod graph;
pub mod hash;
pub mod limited_read;
pub mod limits;
pub mod manifest;
pub mod message;
pub mod pretty_json;
pub mod sandbox;

pub use sandbox::{compile_cache, context};

pub use checkpoint::{Checkpoint, CheckpointStore, FileStore, MemoryStore, Status};
pub use engine::{Durability, Outcome, Output, PendingRequest, Run, Runtime, Workflow};
pub use error::InvalidInput;
pub use events::{Event, EventSink, Level};
pub use manifest::Manifest;
pub use message::{Envelope, Message, Payload};
