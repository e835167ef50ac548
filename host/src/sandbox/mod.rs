//! Where executors run: the wasmtime engine and linker, compiled components, and one
//! isolated store per executor instance with no capabilities but those the manifest
//! grants (directories, environment variables, HTTP hosts), under its limits (memory,
//! time per call through epoch interruption, optional fuel, message and snapshot
//! sizes). A guest's stdout and stderr become log events.

use crate::error::Result;
use crate::error::invalid;
use crate::events::Level;
use crate::grants::Grants;
use crate::hash::sha256_hex;
use crate::limited_read::{self, FileKind};
use crate::limits::Limits;
use crate::message::{Envelope, Message};
use crate::retry::{Failure, FailureKind};
use bytes::Bytes;
use compile_cache::CompileCache;
use context::{ExecutorContext, HostState};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tiers::{Optimization, Tier, Tiers};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

pub mod bindings;
pub mod compile_cache;
pub mod context;
pub mod tiers;

use bindings::Executor as ExecutorBindings;
use bindings::ExecutorPre;
use bindings::superstep::workflow::types;

/// The world every executor implements, with its package's version.
pub const WORLD: &str = "superstep:workflow/executor@0.1.0";

/// The WIT package (and version) whose world [`WORLD`] is.
const PACKAGE: &str = "superstep:workflow@0.1.0";

/// What to say of a linking error that names the `superstep:workflow` package at
/// another version than this host's: which it was built against, and which this host
/// provides.
fn other_version(error: &str) -> Option<String> {
    let (_, after) = error.split_once("superstep:workflow/")?;
    let (_, version) = after.split_once('@')?;
    let version: String = version
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
        .collect();
    let built = format!("superstep:workflow@{version}");
    (built != PACKAGE).then(|| {
        format!(
            " (it was built against {built}; this host provides {PACKAGE}: rebuild it against this host's WIT, which every SDK carries)"
        )
    })
}

/// The most bytes of a guest's stdout (and as much of its stderr) kept per call;
/// the rest is dropped with a note.
pub const STDIO_LIMIT: usize = 64 * 1024;

/// How often the epoch advances: the granularity of call time limits.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The wasmtime engines (one per compiler tier) with the linkers that provide WASI and
/// the `context` interface.
pub struct Sandbox {
    tiers: Tiers,
    fuel: bool,
    /// Dropping it stops the epoch ticker.
    _ticker: EpochTicker,
}

/// Why a call ended when its run was stopped at once.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the run was stopped at once")
    }
}

impl std::error::Error for Interrupted {}

/// A thread that advances the engines' epochs every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Option<std::sync::mpsc::Sender<()>>,
}

impl EpochTicker {
    fn start(engines: [Engine; 2]) -> Result<EpochTicker> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("superstep-epoch".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })?;
        Ok(EpochTicker { stop: Some(stop) })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}

impl Sandbox {
    /// A sandbox; with `fuel`, the engines meter fuel (executors without a fuel limit
    /// get unlimited fuel, at some cost in speed). Compiled components are kept in
    /// `cache`, if given; with `background`, components on baseline code are optimized
    /// in the background (see [`tiers`]).
    pub fn new(fuel: bool, cache: Option<CompileCache>, background: bool) -> Result<Sandbox> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(fuel);
        let tiers = Tiers::new(
            &config,
            cache,
            tiers::BASELINE_FROM_BYTES,
            background,
            |engine| {
                let mut linker = Linker::new(engine);
                wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
                crate::grants::http::add_to_linker(&mut linker)?;
                ExecutorBindings::add_to_linker::<HostState, HasSelf<HostState>>(
                    &mut linker,
                    |state| state,
                )?;
                Ok(linker)
            },
        )?;
        let ticker = EpochTicker::start(tiers.engines())?;
        Ok(Sandbox {
            tiers,
            fuel,
            _ticker: ticker,
        })
    }

    /// Whether the engine meters fuel.
    pub fn meters_fuel(&self) -> bool {
        self.fuel
    }

    /// Reads and compiles the component at `path`, checking that it implements the
    /// `executor` world. `origin` names the manifest field that gave the path, in errors.
    /// `before_compiling` sees the component's digest first, and may refuse it.
    pub fn compile(
        &self,
        path: &Path,
        origin: &str,
        before_compiling: &(dyn Fn(&str) -> Result<()> + Sync),
    ) -> Result<CompiledComponent> {
        let bytes = read_component(path, origin)?;
        let digest = sha256_hex(&bytes);
        before_compiling(&digest)?;
        let not_an_executor = |e: wasmtime::Error| not_an_executor(path, origin, e);
        let (component, tier) = self
            .tiers
            .component(&digest, &bytes)
            .map_err(not_an_executor)?;
        let instance_pre = self
            .tiers
            .linked(tier)
            .linker
            .instantiate_pre(&component)
            .map_err(not_an_executor)?;
        let pre = ExecutorPre::new(instance_pre).map_err(not_an_executor)?;
        let code = Arc::new(RwLock::new(Code { tier, pre }));
        if tier == Tier::Baseline {
            // Instances made once the optimized code is in place run it.
            let slot = Arc::downgrade(&code);
            self.tiers
                .optimize_later(&digest, &bytes, move |linked, component| {
                    let Some(slot) = slot.upgrade() else { return };
                    let linked = linked.linker.instantiate_pre(&component);
                    if let Ok(pre) = linked.and_then(ExecutorPre::new) {
                        let optimized = Code {
                            tier: Tier::Optimized,
                            pre,
                        };
                        *slot.write().expect("code lock") = optimized;
                    }
                });
        }
        Ok(CompiledComponent {
            path: path.to_path_buf(),
            digest,
            code,
            meters_fuel: self.fuel,
        })
    }

    /// Compiles the component at `path` with the optimizing compiler into the compile
    /// cache, unless the cache has it already; checked as [`Sandbox::compile`] checks.
    /// `origin` names the manifest field that gave the path, in errors.
    pub fn optimize(&self, path: &Path, origin: &str) -> Result<Optimization> {
        let bytes = read_component(path, origin)?;
        let digest = sha256_hex(&bytes);
        let check = |linked: &tiers::Linked, component: &Component| -> wasmtime::Result<()> {
            ExecutorPre::new(linked.linker.instantiate_pre(component)?)?;
            Ok(())
        };
        match self.tiers.optimize(&digest, &bytes, check) {
            Some(done) => done.map_err(|e| not_an_executor(path, origin, e)),
            None => Err(invalid(format!(
                "the compile cache is off ({}=off): there is nowhere to keep compiled code",
                compile_cache::CACHE_ENV
            ))),
        }
    }
}

/// The error of a component at `path` (from manifest field `origin`) that does not
/// compile or link as an executor.
fn not_an_executor(path: &Path, origin: &str, e: wasmtime::Error) -> crate::error::Error {
    let why = format!("{e:#}");
    invalid(format!(
        "{origin}: {} does not implement the {WORLD} world of this host: {why}{}",
        path.display(),
        other_version(&why).unwrap_or_default()
    ))
}

/// The bytes of the component at `path`; `origin` names the manifest field that gave
/// the path, in errors.
fn read_component(path: &Path, origin: &str) -> Result<Vec<u8>> {
    limited_read::read(path, FileKind::Component).map_err(|e| {
        invalid(format!(
            "{origin}: cannot read component {}: {e}",
            path.display()
        ))
    })
}

/// A component compiled and linked, ready to instantiate any number of times.
pub struct CompiledComponent {
    /// Where it was read from.
    pub path: PathBuf,
    /// SHA-256 of the component file.
    pub digest: String,
    /// Its code, which the optimizer may replace with faster code.
    code: Arc<RwLock<Code>>,
    meters_fuel: bool,
}

/// A component's code, linked, and the compiler that made it.
struct Code {
    tier: Tier,
    pre: ExecutorPre<HostState>,
}

impl CompiledComponent {
    /// Which compiler made the code that new instances run.
    pub fn tier(&self) -> Tier {
        self.code.read().expect("code lock").tier
    }
}

/// One live executor: its own store, memory and WASI context.
pub struct ExecutorInstance {
    store: Store<HostState>,
    bindings: ExecutorBindings,
    stdout: Capture,
    stderr: Capture,
    limits: Limits,
    meters_fuel: bool,
    /// How the last call that failed failed, until taken.
    failure: Option<Failure>,
}

impl ExecutorInstance {
    /// Instantiates `component` with clocks, randomness and what `grants` gives: no
    /// other file, variable, socket or stdin is reachable.
    pub fn new(
        component: &CompiledComponent,
        ctx: ExecutorContext,
        grants: &Grants,
        limits: Limits,
    ) -> Result<ExecutorInstance> {
        let id = ctx.id().to_string();
        let stdout = Capture::default();
        let stderr = Capture::default();
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        grants.wire(&mut wasi, &id)?;
        let pre = component.code.read().expect("code lock").pre.clone();
        let engine = pre.engine();
        let http = grants.http_policy(&limits);
        let mut store = Store::new(engine, HostState::new(wasi.build(), http, ctx));
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            if state.interrupt.load(std::sync::atomic::Ordering::Acquire) {
                return Err(Interrupted.into());
            }
            match state.ticks_left {
                0 | 1 => Err(wasmtime::Trap::Interrupt.into()),
                _ => {
                    state.ticks_left -= 1;
                    Ok(wasmtime::UpdateDeadline::Continue(1))
                }
            }
        });
        let meters_fuel = component.meters_fuel;
        Self::arm(&mut store, limits, meters_fuel)?;
        let bindings = pre
            .instantiate(&mut store)
            .map_err(|e| anyhow::anyhow!("executor '{id}': cannot instantiate: {e:#}"))?;
        Ok(ExecutorInstance {
            store,
            bindings,
            stdout,
            stderr,
            limits,
            meters_fuel,
            failure: None,
        })
    }

    /// Sets the time (and fuel) budget of the next call.
    fn arm(store: &mut Store<HostState>, limits: Limits, meters_fuel: bool) -> Result<()> {
        let ticks = limits
            .call_timeout_ms
            .div_ceil(EPOCH_TICK.as_millis() as u64)
            // The current tick may be about to end: one more, so no call gets less.
            + 1;
        // One tick at a time, so that an interruption ends the call within a tick.
        store.data_mut().ticks_left = ticks;
        store.set_epoch_deadline(1);
        if meters_fuel {
            store.set_fuel(limits.fuel.unwrap_or(u64::MAX))?;
        }
        store.data_mut().ctx.begin_call();
        store.data_mut().limiter.violation = None;
        Ok(())
    }

    /// Makes `interrupt` end this executor's running call at its next epoch tick once
    /// it is set.
    pub fn interrupt_on(&mut self, interrupt: Arc<std::sync::atomic::AtomicBool>) {
        self.store.data_mut().interrupt = interrupt;
    }

    /// Starts attempt `attempt` (from 1) of superstep `superstep` of run `run_id` over
    /// the `committed` shared state: its effects collected anew, its outbound requests
    /// keyed by run, superstep and executor, and the attempt after the first (see
    /// [`HttpPolicy::begin`]).
    pub fn begin(
        &mut self,
        (run_id, superstep, attempt): (&str, u64, u32),
        committed: Arc<context::SharedState>,
    ) {
        let state = self.store.data_mut();
        state.ctx.begin(superstep, committed);
        let key = match attempt {
            0 | 1 => format!("{run_id}:{superstep}:{}", state.ctx.id()),
            _ => format!("{run_id}:{superstep}:{}:attempt-{attempt}", state.ctx.id()),
        };
        state.http_policy.begin(key);
    }

    /// Sets the W3C `traceparent` that the executor's HTTP requests carry from now on.
    pub fn set_traceparent(&mut self, traceparent: Option<&str>) {
        self.store
            .data_mut()
            .http_policy
            .set_traceparent(traceparent);
    }

    /// How the last failed call failed (since this was last asked).
    pub fn take_failure(&mut self) -> Option<Failure> {
        self.failure.take()
    }

    /// The executor's context, to start and finish supersteps.
    pub fn context(&mut self) -> &mut ExecutorContext {
        &mut self.store.data_mut().ctx
    }

    /// Calls the guest's `init` with the manifest config.
    pub fn init(&mut self, config: &[u8]) -> Result<(), String> {
        let id = self.store.data().ctx.id().to_string();
        self.arm_call()?;
        let result = self.bindings.call_init(&mut self.store, &id, config);
        self.call_outcome("init", result)
    }

    /// Calls the guest's `restore` with a checkpointed snapshot.
    pub fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        self.arm_call()?;
        let result = self.bindings.call_restore(&mut self.store, state);
        self.call_outcome("restore", result)
    }

    /// Delivers one message to the guest's `handle`.
    pub fn handle(&mut self, envelope: &Envelope) -> Result<(), String> {
        let wit = types::Envelope {
            source: envelope.source.clone(),
            message: types::Message {
                kind: envelope.message.kind.clone(),
                body: envelope.message.body.to_vec(),
            },
        };
        self.arm_call()?;
        let result = self.bindings.call_handle(&mut self.store, &wit);
        self.call_outcome("handle", result)
    }

    /// Delivers the response to request `request_id` to the guest's `on-response`.
    pub fn on_response(&mut self, request_id: &str, response: &Message) -> Result<(), String> {
        let wit = types::Message {
            kind: response.kind.clone(),
            body: response.body.to_vec(),
        };
        self.arm_call()?;
        let result = self
            .bindings
            .call_on_response(&mut self.store, request_id, &wit);
        self.call_outcome("on-response", result)
    }

    /// Asks the guest for its state, which may not exceed `limits.max_snapshot_bytes`.
    pub fn snapshot(&mut self) -> Result<Bytes, String> {
        self.arm_call()?;
        let result = self
            .bindings
            .call_snapshot(&mut self.store)
            .map(|state| Ok(Bytes::from(state)));
        let state = self.call_outcome("snapshot", result)?;
        let limit = self.limits.max_snapshot_bytes;
        if state.len() as u64 > limit {
            self.failure = Some(Failure {
                kind: FailureKind::Limit,
                http_status: None,
            });
            return Err(format!(
                "snapshot of {} bytes exceeds limits.max_snapshot_bytes = {limit}",
                state.len()
            ));
        }
        Ok(state)
    }

    /// Sets the budget of the next call; a failure here is the host's.
    fn arm_call(&mut self) -> Result<(), String> {
        Self::arm(&mut self.store, self.limits, self.meters_fuel)
            .map_err(|e| format!("cannot set the call's limits: {e:#}"))
    }

    /// Turns a call's outcome into a failure reason, after reporting its stdio.
    fn call_outcome<T>(
        &mut self,
        call: &str,
        result: wasmtime::Result<Result<T, String>>,
    ) -> Result<T, String> {
        let outcome = self.call_outcome_unmasked(call, result);
        outcome.map_err(|(kind, reason)| {
            let http_status = self.store.data_mut().http_policy.take_error_status();
            self.failure = Some(Failure { kind, http_status });
            self.store.data().ctx.mask(reason)
        })
    }

    /// [`Self::call_outcome`] before granted secrets are masked in the reason, which
    /// comes with how the call failed.
    fn call_outcome_unmasked<T>(
        &mut self,
        call: &str,
        result: wasmtime::Result<Result<T, String>>,
    ) -> Result<T, (FailureKind, String)> {
        self.report_stdio();
        let state = self.store.data_mut();
        for note in state.http_policy.take_notes() {
            state.ctx.log(Level::Warn, note);
        }
        let trap = match result {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(message)) => {
                let reason = format!("{call} returned an error: {message}");
                return Err((FailureKind::Error, reason));
            }
            Err(trap) => trap,
        };
        let state = self.store.data_mut();
        let broken = state
            .ctx
            .take_violation()
            .or(state.limiter.violation.take());
        if let Some(limit) = broken {
            return Err((FailureKind::Limit, format!("{call} stopped: {limit}")));
        }
        if trap.downcast_ref::<Interrupted>().is_some() {
            let reason = format!("{call} interrupted: {Interrupted}");
            return Err((FailureKind::Interrupted, reason));
        }
        match trap.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => Err((
                FailureKind::Timeout,
                format!(
                    "{call} stopped: exceeded limits.call_timeout_ms = {} (the call ran too long)",
                    self.limits.call_timeout_ms
                ),
            )),
            Some(wasmtime::Trap::OutOfFuel) => Err((
                FailureKind::Limit,
                format!(
                    "{call} stopped: ran out of fuel (limits.fuel = {})",
                    self.limits.fuel.unwrap_or(u64::MAX)
                ),
            )),
            Some(cause) => {
                let backtrace = trap
                    .downcast_ref::<wasmtime::WasmBacktrace>()
                    .map(|backtrace| format!("\n{backtrace}"))
                    .unwrap_or_default();
                Err((
                    FailureKind::Trap,
                    format!("{call} trapped: {cause}{backtrace}"),
                ))
            }
            None => Err((FailureKind::Trap, format!("{call} trapped: {trap:#}"))),
        }
    }

    /// Emits what the guest wrote to stdout (info) and stderr (warn) as log events.
    fn report_stdio(&mut self) {
        for (capture, name, level) in [
            (&self.stdout, "stdout", Level::Info),
            (&self.stderr, "stderr", Level::Warn),
        ] {
            let (text, dropped) = capture.take();
            let ctx = &self.store.data().ctx;
            for line in text.lines() {
                ctx.log(level, line.to_string());
            }
            if dropped > 0 {
                ctx.log(
                    Level::Warn,
                    format!("{dropped} more bytes of {name} dropped (at most {STDIO_LIMIT} bytes are kept per call)"),
                );
            }
        }
    }
}

/// A bounded buffer behind a guest's stdout or stderr: it keeps the first
/// [`STDIO_LIMIT`] bytes written per call and counts the rest.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Captured>>);

#[derive(Default)]
struct Captured {
    kept: Vec<u8>,
    dropped: usize,
}

impl Capture {
    fn write(&self, bytes: &[u8]) {
        let mut captured = self.0.lock().expect("stdio capture lock");
        let room = STDIO_LIMIT.saturating_sub(captured.kept.len());
        let keep = bytes.len().min(room);
        captured.kept.extend_from_slice(&bytes[..keep]);
        captured.dropped += bytes.len() - keep;
    }

    fn take(&self) -> (String, usize) {
        let mut captured = self.0.lock().expect("stdio capture lock");
        let text = String::from_utf8_lossy(&captured.kept).into_owned();
        captured.kept.clear();
        (text, std::mem::take(&mut captured.dropped))
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        Capture::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(STDIO_LIMIT)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Capture::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::other_version;

    #[test]
    fn a_component_of_another_package_version_is_told_which_this_host_provides() {
        let error = "component imports instance `superstep:workflow/context@0.0.9`, but a matching implementation was not found in the linker";
        let hint = other_version(error).unwrap();
        assert!(
            hint.contains("built against superstep:workflow@0.0.9"),
            "{hint}"
        );
        assert!(
            hint.contains("this host provides superstep:workflow@0.1.0"),
            "{hint}"
        );
        let same = "component imports instance `superstep:workflow/context@0.1.0`, but ...";
        assert_eq!(other_version(same), None);
        assert_eq!(other_version("no package named"), None);
    }
}
