//! The two compilers a component can be compiled with, and which one compiles it.
//!
//! Cranelift, the optimizing tier, makes the fastest code but takes tens of seconds on
//! a component that carries an interpreter (CPython or SpiderMonkey, 12-18 MB). Winch,
//! the baseline tier, compiles such a component several times faster into code that
//! runs a fifth to a third slower. So:
//!
//! - a component is loaded from the compile cache at the best tier found there;
//! - one not cached is compiled now by Cranelift when it is smaller than
//!   [`BASELINE_FROM_BYTES`], else by Winch;
//! - in a long-lived host (the server, a worker), one that runs on Winch code is
//!   compiled again by Cranelift in the background, on one thread at the lowest CPU
//!   priority, into the cache, and the instances made after that run optimized code;
//! - [`Tiers::optimize`] (`superstep compile`) puts optimized code in the cache ahead of
//!   any run. A command-line run does not optimize in the background: it would be
//!   stopped at the run's end, every time, before it is done.

use super::compile_cache::CompileCache;
use super::context::HostState;
use std::sync::Arc;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Strategy};

/// Components at least this large are compiled by the baseline compiler first, when
/// the cache has no optimized code for them: Cranelift compiles smaller ones in about
/// a second.
pub const BASELINE_FROM_BYTES: usize = 4 << 20;

/// Which compiler made a component's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Cranelift: slower to compile, faster to run.
    Optimized,
    /// Winch: fast to compile, slower to run.
    Baseline,
}

impl Tier {
    /// The tier a component of `size` bytes that is not in the cache is compiled at,
    /// when components from `baseline_from` bytes start at the baseline tier.
    fn first_for(size: usize, baseline_from: usize) -> Tier {
        if size >= baseline_from {
            Tier::Baseline
        } else {
            Tier::Optimized
        }
    }
}

/// One compiler's engine, with the linker that provides the host's imports.
pub(super) struct Linked {
    pub(super) engine: Engine,
    pub(super) linker: Linker<HostState>,
}

/// What compiling a component ahead with the optimizing compiler did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimization {
    /// The cache had the optimized code already.
    Cached,
    /// It compiled the optimized code and stored it.
    Compiled,
}

/// Both compilers, the cache, and the background thread that optimizes.
pub(super) struct Tiers {
    optimized: Arc<Linked>,
    baseline: Linked,
    cache: Option<CompileCache>,
    /// One thread at the lowest priority, in a long-lived host.
    optimizer: Option<rayon::ThreadPool>,
    /// Components from this many bytes start at the baseline tier.
    baseline_from: usize,
}

impl Tiers {
    /// Both compilers on `config` (its strategy is set here), each linked by `link`;
    /// components from `baseline_from` bytes start at the baseline tier; with
    /// `background`, baseline code is optimized in the background.
    pub(super) fn new(
        config: &Config,
        cache: Option<CompileCache>,
        baseline_from: usize,
        background: bool,
        link: impl Fn(&Engine) -> anyhow::Result<Linker<HostState>>,
    ) -> anyhow::Result<Tiers> {
        let linked = |strategy: Strategy| -> anyhow::Result<Linked> {
            let mut config = config.clone();
            config.strategy(strategy);
            let engine = Engine::new(&config)?;
            let linker = link(&engine)?;
            Ok(Linked { engine, linker })
        };
        let optimizer = match background {
            true => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(|_| "superstep-optimizer".into())
                    .start_handler(|_| lowest_priority())
                    .build()?,
            ),
            false => None,
        };
        Ok(Tiers {
            optimized: Arc::new(linked(Strategy::Cranelift)?),
            baseline: linked(Strategy::Winch)?,
            cache,
            optimizer,
            baseline_from,
        })
    }

    /// Both engines, whose epochs the sandbox advances.
    pub(super) fn engines(&self) -> [Engine; 2] {
        [self.optimized.engine.clone(), self.baseline.engine.clone()]
    }

    /// The compiler of `tier`.
    pub(super) fn linked(&self, tier: Tier) -> &Linked {
        match tier {
            Tier::Optimized => &self.optimized,
            Tier::Baseline => &self.baseline,
        }
    }

    /// The component with SHA-256 `digest` and bytes `wasm`, at the best tier the cache
    /// has, else compiled now at the first tier for its size (and stored).
    pub(super) fn component(
        &self,
        digest: &str,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, Tier)> {
        let first = Tier::first_for(wasm.len(), self.baseline_from);
        let cached = self.cache.as_ref().and_then(|cache| {
            let optimized = || cache.load(&self.optimized.engine, digest);
            let baseline = || cache.load(&self.baseline.engine, digest);
            match first {
                Tier::Optimized => optimized().map(|c| (c, Tier::Optimized)),
                Tier::Baseline => optimized()
                    .map(|c| (c, Tier::Optimized))
                    .or_else(|| baseline().map(|c| (c, Tier::Baseline))),
            }
        });
        match cached {
            Some(found) => Ok(found),
            None => {
                let engine = &self.linked(first).engine;
                let component = compile_and_keep(self.cache.as_ref(), engine, digest, wasm)?;
                Ok((component, first))
            }
        }
    }

    /// Compiles the component with `digest` and bytes `wasm` by Cranelift into the cache,
    /// unless it is there already; `check` sees the compiled component before it is
    /// stored. `None` when there is no cache to compile into.
    pub(super) fn optimize(
        &self,
        digest: &str,
        wasm: &[u8],
        check: impl FnOnce(&Linked, &Component) -> wasmtime::Result<()>,
    ) -> Option<wasmtime::Result<Optimization>> {
        let cache = self.cache.as_ref()?;
        let engine = &self.optimized.engine;
        if cache.load(engine, digest).is_some() {
            return Some(Ok(Optimization::Cached));
        }
        let compiled = Component::new(engine, wasm).and_then(|component| {
            check(&self.optimized, &component)?;
            cache.store(engine, digest, &component);
            Ok(Optimization::Compiled)
        });
        Some(compiled)
    }

    /// On the optimizer: the component with `digest` and bytes `wasm` compiled by
    /// Cranelift (taken from the cache if it is there, else stored there), handed to
    /// `done` with the optimizing compiler. Nothing without an optimizer, or if it does
    /// not compile (as it did at the baseline tier).
    pub(super) fn optimize_later(
        &self,
        digest: &str,
        wasm: &[u8],
        done: impl FnOnce(&Linked, Component) + Send + 'static,
    ) {
        let Some(optimizer) = &self.optimizer else {
            return;
        };
        let (cache, linked) = (self.cache.clone(), self.optimized.clone());
        let (digest, wasm) = (digest.to_string(), wasm.to_vec());
        optimizer.spawn(move || {
            let (cache, engine) = (cache.as_ref(), &linked.engine);
            let component = match cache.and_then(|c| c.load(engine, &digest)) {
                Some(component) => Ok(component),
                None => compile_and_keep(cache, engine, &digest, &wasm),
            };
            if let Ok(component) = component {
                done(&linked, component);
            }
        });
    }
}

/// `wasm` (the component with SHA-256 `digest`) compiled by `engine`, and kept in
/// `cache` if there is one.
fn compile_and_keep(
    cache: Option<&CompileCache>,
    engine: &Engine,
    digest: &str,
    wasm: &[u8],
) -> wasmtime::Result<Component> {
    let component = Component::new(engine, wasm)?;
    if let Some(cache) = cache {
        cache.store(engine, digest, &component);
    }
    Ok(component)
}

/// Lowers the calling thread's CPU priority as far as it goes, so that background
/// compiling takes only time that nothing else wants.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on this thread's own id changes only its scheduling.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: a header with nothing in it.
    const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";

    fn tiers(cache: &CompileCache, baseline_from: usize) -> Tiers {
        Tiers::new(
            &Config::new(),
            Some(cache.clone()),
            baseline_from,
            true,
            |engine| Ok(Linker::new(engine)),
        )
        .unwrap()
    }

    #[test]
    fn big_components_start_at_the_baseline_tier() {
        let from = BASELINE_FROM_BYTES;
        assert_eq!(Tier::first_for(230_000, from), Tier::Optimized);
        assert_eq!(Tier::first_for(from - 1, from), Tier::Optimized);
        assert_eq!(Tier::first_for(from, from), Tier::Baseline);
        assert_eq!(Tier::first_for(18_000_000, from), Tier::Baseline);
    }

    #[test]
    fn the_two_tiers_keep_separate_cache_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path());
        let tiers = tiers(&cache, 0);
        let optimized = cache.entry(&tiers.optimized.engine, "sha256:00");
        let baseline = cache.entry(&tiers.baseline.engine, "sha256:00");
        assert_ne!(optimized, baseline);
    }

    #[test]
    fn baseline_code_is_optimized_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path());
        let first = tiers(&cache, 0);
        let (_, tier) = first.component("sha256:01", EMPTY).unwrap();
        assert_eq!(tier, Tier::Baseline);
        let (done, optimized) = std::sync::mpsc::channel();
        first.optimize_later("sha256:01", EMPTY, move |linked, component| {
            done.send(Engine::same(component.engine(), &linked.engine))
                .unwrap();
        });
        assert!(optimized.recv().unwrap(), "handed over with its engine");
        let stored = cache.load(&first.optimized.engine, "sha256:01");
        assert!(stored.is_some(), "and kept in the cache");

        // Another process loads the optimized code.
        let next = tiers(&cache, 0);
        let (_, tier) = next.component("sha256:01", EMPTY).unwrap();
        assert_eq!(tier, Tier::Optimized);
    }

    #[test]
    fn small_components_are_optimized_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path());
        let tiers = tiers(&cache, 1 << 20);
        let (_, tier) = tiers.component("sha256:02", EMPTY).unwrap();
        assert_eq!(tier, Tier::Optimized);
        assert!(cache.load(&tiers.baseline.engine, "sha256:02").is_none());
    }

    #[test]
    fn optimize_compiles_once_and_needs_a_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path());
        let tiers = tiers(&cache, 0);
        let check = |_: &Linked, _: &Component| Ok(());
        let first = tiers.optimize("sha256:03", EMPTY, check).unwrap().unwrap();
        assert_eq!(first, Optimization::Compiled);
        let again = tiers.optimize("sha256:03", EMPTY, check).unwrap().unwrap();
        assert_eq!(again, Optimization::Cached);

        let uncached = Tiers::new(&Config::new(), None, 0, false, |e| Ok(Linker::new(e)));
        let uncached = uncached.unwrap();
        assert!(uncached.optimize("sha256:03", EMPTY, check).is_none());
        assert!(uncached.optimizer.is_none());
    }
}
