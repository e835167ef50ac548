//! The superstep engine: a [`Runtime`] (sandbox and worker threads), a [`Workflow`]
//! (a manifest with its components compiled), and [`Run`]s of it, fresh or resumed.
//!
//! | module | what |
//! | --- | --- |
//! | `runner` | the [`Runner`]: many runs with one checkpoint writer, on a few threads |
//! | `run` | the run loop, the superstep and its barrier |
//! | `step` | one executor's turn, and its results as a journal record |
//! | `journal_writer` | the thread that journals a superstep's results as executors finish |
//! | `saving` | the `Saver`: checkpoints written behind the engine (by the run's own writer thread or one shared by a runner's runs), events held until durable |
//! | `snapshot` | a run's state to and from a checkpoint |
//! | `restore` | resuming: a checkpoint checked against the workflow, journals replayed |
//! | `replay` | replay: recorded supersteps run again in memory, compared with their checkpoints |
//! | `verify` | snapshot verification: a state restored and snapshotted again, compared |

mod journal_writer;
mod replay;
mod restore;
mod run;
mod runner;
mod saving;
mod snapshot;
mod step;
mod verify;

pub use crate::sandbox::tiers::{BASELINE_FROM_BYTES, Optimization, Tier};
pub use replay::Replayed;
pub use run::{Durability, Outcome, Run, Stopper};
pub use runner::{RunHandle, Runner, Stopped};
pub use saving::RunnerLimits;
pub use snapshot::{Output, PendingRequest};
pub use verify::Verified;

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::error::Result;
use crate::error::{host, invalid};
use crate::events::EventSink;
use crate::graph::Graph;
use crate::manifest::Manifest;
use crate::message::{Envelope, INPUT_SOURCE, Message};
use crate::sandbox::compile_cache::CompileCache;
use crate::sandbox::context::ExecutorContext;
use crate::sandbox::{CompiledComponent, ExecutorInstance, Sandbox};
use rayon::prelude::*;
use saving::Saver;
use snapshot::RunState;
use std::collections::HashMap;
use std::sync::Arc;

/// What workflows share: the sandbox (engine and linker) and the worker threads that
/// run a superstep's executors in parallel.
pub struct Runtime {
    sandbox: Sandbox,
    pool: rayon::ThreadPool,
}

impl Runtime {
    /// A runtime whose supersteps use up to `threads` worker threads (0: one per core);
    /// with `fuel`, executors can have fuel limits (see [`Manifest::uses_fuel`]).
    /// Compiled components are cached where [`COMPILE_CACHE_ENV`](crate::COMPILE_CACHE_ENV)
    /// says (see the README).
    pub fn new(threads: usize, fuel: bool) -> Result<Arc<Runtime>> {
        Runtime::build(threads, fuel, false)
    }

    /// [`Runtime::new`] for a host that lives long (a server, a worker): a component
    /// compiled by the baseline compiler to start fast is compiled again by the
    /// optimizing one in the background, and the instances made after that run the
    /// optimized code.
    pub fn long_lived(threads: usize, fuel: bool) -> Result<Arc<Runtime>> {
        Runtime::build(threads, fuel, true)
    }

    fn build(threads: usize, fuel: bool, background: bool) -> Result<Arc<Runtime>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("superstep-worker-{i}"))
            .build()
            .map_err(host)?;
        Ok(Arc::new(Runtime {
            sandbox: Sandbox::new(fuel, CompileCache::from_env(), background)?,
            pool,
        }))
    }

    /// Compiles each distinct component of `manifest` with the optimizing compiler into
    /// the compile cache, unless it is there already, one after another (a compile uses
    /// every thread of the runtime); `done` hears of each as it finishes. An error for
    /// a component that is not an executor, or when the compile cache is off.
    pub fn optimize(
        &self,
        manifest: &Manifest,
        mut done: impl FnMut(&std::path::Path, Optimization, std::time::Duration) -> Result<()>,
    ) -> Result<()> {
        for (path, origin) in distinct_components(manifest) {
            let started = std::time::Instant::now();
            let outcome = self.pool.install(|| self.sandbox.optimize(path, &origin))?;
            done(path, outcome, started.elapsed())?;
        }
        Ok(())
    }
}

/// Each component file of `manifest` once, in the order executors name them, with the
/// manifest field that names it first (for errors).
fn distinct_components(manifest: &Manifest) -> Vec<(&std::path::Path, String)> {
    let mut distinct: Vec<(&std::path::Path, String)> = Vec::new();
    for executor in &manifest.executors {
        if !distinct.iter().any(|(path, _)| *path == executor.component) {
            let origin = format!(
                "{}: {}",
                manifest.path.display(),
                executor.field("component")
            );
            distinct.push((&executor.component, origin));
        }
    }
    distinct
}

/// The runtimes of a host that loads many workflows: one with fuel metering and one
/// without, each made ([`Runtime::long_lived`]) when a workflow first needs it and
/// shared by all that do.
#[derive(Default)]
pub struct Runtimes([std::sync::Mutex<Option<Arc<Runtime>>>; 2]);

impl Runtimes {
    /// The runtime `manifest` runs on (see [`Manifest::uses_fuel`]).
    pub fn for_manifest(&self, manifest: &Manifest) -> Result<Arc<Runtime>> {
        let fuel = manifest.uses_fuel();
        let mut slot = self.0[usize::from(fuel)].lock().expect("runtimes lock");
        if let Some(runtime) = &*slot {
            return Ok(runtime.clone());
        }
        let runtime = Runtime::long_lived(0, fuel)?;
        *slot = Some(runtime.clone());
        Ok(runtime)
    }
}

/// A manifest with its components compiled and linked: ready to run any number of times.
/// Cloning it is cheap: clones share the compiled components, and each run holds one.
#[derive(Clone)]
pub struct Workflow {
    loaded: Arc<Loaded>,
}

/// What a [`Workflow`] shares between its clones and runs.
#[derive(Clone)]
struct Loaded {
    runtime: Arc<Runtime>,
    manifest: Manifest,
    graph: Arc<Graph>,
    /// Per executor index.
    components: Vec<Arc<CompiledComponent>>,
    /// Per executor index: the config passed to `init`, as JSON.
    configs: Vec<Vec<u8>>,
    /// Whether instances get their grants [sealed](crate::grants::Grants::sealed):
    /// nothing they do reaches outside the sandbox (for replay).
    sealed: bool,
}

impl Workflow {
    /// Compiles every component of `manifest` (each distinct file once) and checks that
    /// it implements the executor world.
    pub fn load(runtime: Arc<Runtime>, manifest: Manifest) -> Result<Workflow> {
        Workflow::load_checking(runtime, manifest, &|_, _| Ok(()))
    }

    /// [`Workflow::load`] to resume `checkpoint`: a component whose digest is not the one
    /// the checkpoint recorded is refused as it is read, before it is compiled (hashing
    /// costs little, compiling a big component many seconds). A checkpoint of another
    /// graph is left to [`Workflow::resume`], which says what differs.
    pub fn load_to_resume(
        runtime: Arc<Runtime>,
        manifest: Manifest,
        checkpoint: &Checkpoint,
    ) -> Result<Workflow> {
        if checkpoint.manifest.digest != Graph::new(&manifest).digest() {
            return Workflow::load(runtime, manifest);
        }
        // Each executor's component path, with its id.
        let components: Vec<(std::path::PathBuf, String)> = manifest
            .executors
            .iter()
            .map(|e| (e.component.clone(), e.id.clone()))
            .collect();
        let unchanged = |path: &std::path::Path, digest: &str| {
            for (_, id) in components.iter().filter(|(at, _)| at == path) {
                let recorded = checkpoint.executors.get(id);
                if recorded.is_some_and(|record| record.component != digest) {
                    return Err(restore::changed_component(checkpoint, id, digest, path));
                }
            }
            Ok(())
        };
        Workflow::load_checking(runtime, manifest, &unchanged)
    }

    /// [`Workflow::load`], `before_compiling` seeing each component's path and digest
    /// first, and refusing it if it errs.
    fn load_checking(
        runtime: Arc<Runtime>,
        manifest: Manifest,
        before_compiling: &(dyn Fn(&std::path::Path, &str) -> Result<()> + Sync),
    ) -> Result<Workflow> {
        if manifest.uses_fuel() && !runtime.sandbox.meters_fuel() {
            return Err(invalid(format!(
                "{}: an executor sets limits.fuel, but this runtime was created without fuel metering (Runtime::new(threads, true))",
                manifest.path.display()
            )));
        }
        let graph = Arc::new(Graph::new(&manifest));
        // Each distinct file once, in parallel: loading a big component from the compile
        // cache is mostly hashing and copying, which spreads across cores.
        let distinct = distinct_components(&manifest);
        let loaded: Vec<Result<CompiledComponent>> = runtime.pool.install(|| {
            distinct
                .par_iter()
                .map(|(path, origin)| {
                    let check = |digest: &str| before_compiling(path, digest);
                    runtime.sandbox.compile(path, origin, &check)
                })
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
        let loaded = Loaded {
            runtime,
            manifest,
            graph,
            components,
            configs,
            sealed: false,
        };
        Ok(Workflow {
            loaded: Arc::new(loaded),
        })
    }

    /// This workflow with its executors' grants sealed (see
    /// [`Grants::sealed`](crate::grants::Grants::sealed)), sharing its compiled
    /// components.
    fn sealed(&self) -> Workflow {
        let sealed = Loaded {
            sealed: true,
            ..Loaded::clone(&self.loaded)
        };
        Workflow {
            loaded: Arc::new(sealed),
        }
    }

    /// The manifest the workflow was loaded from.
    pub fn manifest(&self) -> &Manifest {
        &self.loaded.manifest
    }

    /// Which compiler made the code of each executor's component, by executor id.
    pub fn tiers(&self) -> impl Iterator<Item = (&str, Tier)> {
        let ids = self.loaded.manifest.executors.iter().map(|e| e.id.as_str());
        ids.zip(self.loaded.components.iter().map(|c| c.tier()))
    }

    /// The workflow's graph.
    pub fn graph(&self) -> &Graph {
        &self.loaded.graph
    }

    /// Starts a fresh run that delivers `input` to the start executor in superstep 0.
    pub fn start(
        &self,
        input: Message,
        store: Arc<dyn CheckpointStore>,
        sink: Arc<dyn EventSink>,
    ) -> Result<Run> {
        self.start_saving(None, input, Saver::new(store, sink, None))
    }

    /// [`Workflow::start`], its checkpoints saved by `saver`, the run's id `run_id` if
    /// given (else a new one).
    fn start_saving(&self, run_id: Option<String>, input: Message, saver: Saver) -> Result<Run> {
        let mut instances = self.instantiate(&saver.sink())?;
        let mut states = Vec::with_capacity(instances.len());
        for (i, instance) in instances.iter_mut().enumerate() {
            let id = self.loaded.graph.id(i);
            instance
                .init(&self.loaded.configs[i])
                .and_then(|()| instance.snapshot())
                .map(|state| states.push(state))
                .map_err(|reason| anyhow::anyhow!("executor '{id}': {reason}"))?;
        }
        let mut state = RunState::fresh(run_id, instances.len(), states);
        state.queues[self.loaded.graph.start()].push(Envelope {
            source: INPUT_SOURCE.to_string(),
            message: input,
        });
        Ok(Run::fresh(self, state, instances, saver))
    }

    /// A fresh instance of executor `i`, initialised and restored to `state`; `origin`
    /// names where the state comes from in errors.
    pub(super) fn restored_instance(
        &self,
        i: usize,
        sink: &Arc<dyn EventSink>,
        state: &[u8],
        origin: &str,
    ) -> Result<ExecutorInstance> {
        let id = self.loaded.graph.id(i);
        let mut instance = self.instance(i, sink)?;
        instance
            .init(&self.loaded.configs[i])
            .map_err(|reason| anyhow::anyhow!("executor '{id}': {reason}"))?;
        instance.restore(state).map_err(|reason| {
            invalid(format!(
                "{origin}: executor '{id}' did not accept its checkpointed state: {reason}"
            ))
        })?;
        Ok(instance)
    }

    fn instantiate(&self, sink: &Arc<dyn EventSink>) -> Result<Vec<ExecutorInstance>> {
        (0..self.loaded.components.len())
            .map(|i| self.instance(i, sink))
            .collect()
    }

    /// Whether executor `i` may make outbound HTTP requests. Its results are journaled
    /// even when it is alone in its superstep: its calls may cost money.
    fn makes_http_calls(&self, i: usize) -> bool {
        self.loaded.manifest.executors[i].grants.makes_http_calls()
    }

    /// Whether executor `i` can change something outside its sandbox (see
    /// [`Grants::reaches_outside`](crate::grants::Grants::reaches_outside)).
    fn reaches_outside(&self, i: usize) -> bool {
        self.loaded.manifest.executors[i].grants.reaches_outside()
    }

    /// SHA-256 of executor `i`'s component file.
    fn component_digest(&self, i: usize) -> &str {
        &self.loaded.components[i].digest
    }

    /// The worker threads that run a superstep's executors.
    fn pool(&self) -> &rayon::ThreadPool {
        &self.loaded.runtime.pool
    }

    /// A new, uninitialised instance of executor `i` with its grants and limits.
    fn instance(&self, i: usize, sink: &Arc<dyn EventSink>) -> Result<ExecutorInstance> {
        let spec = &self.loaded.manifest.executors[i];
        let ctx = ExecutorContext::new(
            i,
            self.loaded.graph.clone(),
            spec.limits,
            &spec.grants.env,
            sink.clone(),
        );
        let component = &self.loaded.components[i];
        match self.loaded.sealed {
            true => ExecutorInstance::new(component, ctx, &spec.grants.sealed(), spec.limits),
            false => ExecutorInstance::new(component, ctx, &spec.grants, spec.limits),
        }
    }
}
