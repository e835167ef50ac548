//! Write superstep executors in Rust.
//!
//! An executor is a type with a serde state and a [`Executor::handle`] method; the
//! [`export_executor!`] macro turns it into a component of the `executor` world, with
//! `snapshot` and `restore` done for you (the state as JSON).
//!
//! ```ignore
//! #[derive(Default, Serialize, Deserialize)]
//! struct Upper { count: u64 }
//!
//! impl Executor for Upper {
//!     fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
//!         let text: String = message.json()?;
//!         self.count += 1;
//!         ctx.send("text", &text.to_uppercase())
//!     }
//! }
//! superstep_guest::export_executor!(Upper);
//! ```
//!
//! A project's `Cargo.toml` names this crate and serde (for the derives); the component
//! is built for `wasm32-wasip2` as a `cdylib`:
//!
//! ```toml
//! [package]
//! name = "upper"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! superstep-guest = { path = "<superstep>/sdk/rust" }   # or a git dependency
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! `cargo build --release --target wasm32-wasip2` then writes
//! `target/wasm32-wasip2/release/upper.wasm`. The crate carries its WIT world
//! (`wit/superstep.wit`); [`serde`] and [`serde_json`] are re-exported at the versions
//! it uses.

pub use serde;
pub use serde_json;

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::cell::RefCell;

/// Bindings generated from the WIT world this crate carries.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "executor",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_executor_world",
        default_bindings_module: "superstep_guest::bindings",
    });
}

use bindings::superstep::workflow::context as host;
pub use bindings::superstep::workflow::types::Level;

/// A message delivered to an executor.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The executor that sent it (`$input` for the run's input).
    pub source: String,
    /// The routing kind.
    pub kind: String,
    /// The body bytes, JSON by convention.
    pub body: Vec<u8>,
}

impl Incoming {
    /// Decodes the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "message of kind '{}' from '{}' is not the expected JSON: {e}",
                self.kind, self.source
            )
        })
    }
}

/// What an executor may do while it handles a message; every effect is buffered by
/// the host until the superstep's barrier.
pub struct Context {
    executor_id: String,
    config: serde_json::Value,
}

impl Context {
    /// This executor's id in the manifest.
    pub fn executor_id(&self) -> &str {
        &self.executor_id
    }

    /// The manifest's `config` table for this executor, decoded into `T`.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, String> {
        T::deserialize(&self.config)
            .map_err(|e| format!("bad config for executor '{}': {e}", self.executor_id))
    }

    /// Sends `body` as JSON along every outgoing edge that accepts `kind`.
    pub fn send<T: Serialize + ?Sized>(&self, kind: &str, body: &T) -> Result<(), String> {
        self.send_bytes(kind, to_json(body)?, None)
    }

    /// Sends `body` as JSON to `target` only; an edge must connect the two.
    pub fn send_to<T: Serialize + ?Sized>(
        &self,
        target: &str,
        kind: &str,
        body: &T,
    ) -> Result<(), String> {
        self.send_bytes(kind, to_json(body)?, Some(target))
    }

    /// Sends raw body bytes, to `target` or along every matching edge.
    pub fn send_bytes(
        &self,
        kind: &str,
        body: Vec<u8>,
        target: Option<&str>,
    ) -> Result<(), String> {
        host::send_message(&message(kind, body), target)
    }

    /// Emits `body` as JSON as a workflow output.
    pub fn yield_output<T: Serialize + ?Sized>(&self, kind: &str, body: &T) -> Result<(), String> {
        host::yield_output(&message(kind, to_json(body)?));
        Ok(())
    }

    /// Reads a shared-state value as JSON: the value committed at the last barrier, or
    /// this executor's own write in this superstep.
    pub fn get_shared<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        match host::get_shared(key) {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("shared state '{key}' is not the expected JSON: {e}")),
        }
    }

    /// Writes a shared-state value as JSON; other executors see it after the barrier.
    pub fn set_shared<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), String> {
        host::set_shared(key, &to_json(value)?);
        Ok(())
    }

    /// Deletes a shared-state value at the barrier.
    pub fn delete_shared(&self, key: &str) {
        host::delete_shared(key);
    }

    /// Asks for outside input (a person, another system) with `body` as JSON; returns
    /// the request id. The run pauses once nothing else is left to do, and the
    /// response reaches [`Executor::on_response`] in a later superstep.
    pub fn request_info<T: Serialize + ?Sized>(
        &self,
        kind: &str,
        body: &T,
    ) -> Result<String, String> {
        Ok(host::request_info(&message(kind, to_json(body)?)))
    }

    /// Emits a log event.
    pub fn log(&self, level: Level, text: &str) {
        host::log(level, text);
    }
}

fn message(kind: &str, body: Vec<u8>) -> host::Message {
    host::Message {
        kind: kind.to_string(),
        body,
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("cannot encode JSON: {e}"))
}

/// An executor: its fields are its state, saved in every checkpoint as JSON.
pub trait Executor: Default + Serialize + DeserializeOwned + 'static {
    /// Handles one message delivered in the current superstep.
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String>;

    /// Handles the response to an earlier [`Context::request_info`]; `response.source`
    /// is the request id. Executors that never ask need not implement it.
    fn on_response(&mut self, ctx: &Context, response: Incoming) -> Result<(), String> {
        let _ = ctx;
        Err(format!(
            "this executor asked for nothing, yet got a response to request '{}'",
            response.source
        ))
    }
}

struct Instance<E> {
    ctx: Context,
    state: E,
}

thread_local! {
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn with_instance<E: Executor, R>(f: impl FnOnce(&mut Instance<E>) -> R) -> R {
    INSTANCE.with_borrow_mut(|slot| {
        let instance = slot
            .as_mut()
            .and_then(|any| any.downcast_mut::<Instance<E>>())
            .expect("the host calls init before any other export");
        f(instance)
    })
}

/// The glue behind [`export_executor!`]; not for direct use.
#[doc(hidden)]
pub mod runtime {
    use super::*;

    pub fn init<E: Executor>(executor_id: String, config: Vec<u8>) -> Result<(), String> {
        let config = if config.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&config).map_err(|e| format!("config is not JSON: {e}"))?
        };
        let instance = Instance {
            ctx: Context {
                executor_id,
                config,
            },
            state: E::default(),
        };
        INSTANCE.with_borrow_mut(|slot| *slot = Some(Box::new(instance)));
        Ok(())
    }

    pub fn handle<E: Executor>(envelope: bindings::Envelope) -> Result<(), String> {
        let message = Incoming {
            source: envelope.source,
            kind: envelope.message.kind,
            body: envelope.message.body,
        };
        with_instance(|instance: &mut Instance<E>| instance.state.handle(&instance.ctx, message))
    }

    pub fn on_response<E: Executor>(
        request_id: String,
        response: bindings::Message,
    ) -> Result<(), String> {
        let response = Incoming {
            source: request_id,
            kind: response.kind,
            body: response.body,
        };
        with_instance(|instance: &mut Instance<E>| {
            instance.state.on_response(&instance.ctx, response)
        })
    }

    pub fn snapshot<E: Executor>() -> Vec<u8> {
        with_instance(|instance: &mut Instance<E>| {
            serde_json::to_vec(&instance.state).expect("executor state serialises to JSON")
        })
    }

    pub fn restore<E: Executor>(state: Vec<u8>) -> Result<(), String> {
        let restored: E = serde_json::from_slice(&state)
            .map_err(|e| format!("checkpointed state does not fit this executor: {e}"))?;
        with_instance(|instance: &mut Instance<E>| instance.state = restored);
        Ok(())
    }
}

/// Exports `$ty` (an [`Executor`]) as this component's implementation of the
/// `executor` world.
#[macro_export]
macro_rules! export_executor {
    ($ty:ty) => {
        struct __SuperstepExecutor;

        impl $crate::bindings::Guest for __SuperstepExecutor {
            fn init(executor_id: String, config: Vec<u8>) -> Result<(), String> {
                $crate::runtime::init::<$ty>(executor_id, config)
            }
            fn handle(envelope: $crate::bindings::Envelope) -> Result<(), String> {
                $crate::runtime::handle::<$ty>(envelope)
            }
            fn on_response(
                request_id: String,
                response: $crate::bindings::Message,
            ) -> Result<(), String> {
                $crate::runtime::on_response::<$ty>(request_id, response)
            }
            fn snapshot() -> Vec<u8> {
                $crate::runtime::snapshot::<$ty>()
            }
            fn restore(state: Vec<u8>) -> Result<(), String> {
                $crate::runtime::restore::<$ty>(state)
            }
        }

        $crate::bindings::__export_executor_world!(__SuperstepExecutor with_types_in $crate::bindings);
    };
}
