//! Compiled components kept on disk between processes, so that a run does not pay
//! the compile time of a component compiled before (by either tier, see [`super::tiers`]).
//!
//! An entry is named by the component's SHA-256 and a hash of everything that makes
//! compiled code compatible (wasmtime's version and engine configuration). It holds a
//! magic marker, the SHA-256 of the compiled artifact and the artifact. An entry that is
//! foreign, damaged or from another build is ignored and replaced, never loaded.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The environment variable that names the cache directory, or `off`.
pub const CACHE_ENV: &str = "SUPERSTEP_COMPILE_CACHE";

const MAGIC: &[u8; 16] = b"superstep-cwasm\0";
/// The largest cache entry read: compiled code is a few times the size of its component.
const MAX_ARTIFACT_BYTES: u64 = 4 << 30;

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> CompileCache {
        CompileCache { dir: dir.into() }
    }

    /// The cache the environment asks for: `$SUPERSTEP_COMPILE_CACHE` (a directory, or
    /// `off` for none), else `$XDG_CACHE_HOME/superstep/compiled`, else
    /// `$HOME/.cache/superstep/compiled`.
    pub fn from_env() -> Option<CompileCache> {
        match std::env::var_os(CACHE_ENV) {
            Some(value) if value == "off" => None,
            Some(dir) if !dir.is_empty() => Some(CompileCache::new(dir)),
            _ => {
                let base = std::env::var_os("XDG_CACHE_HOME")
                    .filter(|dir| !dir.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache"))
                    })?;
                Some(CompileCache::new(base.join("superstep").join("compiled")))
            }
        }
    }

    /// The compiled component with SHA-256 `digest` (`sha256:<hex>`) that `engine` made
    /// earlier, if a valid entry is there.
    pub(super) fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        Self::load_entry(engine, &self.entry(engine, digest))
    }

    /// Keeps `component`, compiled by `engine` from the component with SHA-256
    /// `digest`, for later processes; a failure to store only costs one of them a
    /// compile.
    pub(super) fn store(&self, engine: &Engine, digest: &str, component: &Component) {
        if let Ok(artifact) = component.serialize() {
            let _ = Self::store_entry(&self.entry(engine, digest), &artifact);
        }
    }

    /// Where `engine`'s code for the component with `digest` is kept: the engine's
    /// compatibility hash tells the optimizing and the baseline compiler apart.
    pub(super) fn entry(&self, engine: &Engine, digest: &str) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir
            .join(format!("{hex}-{:016x}.cwasm", hasher.finish()))
    }

    fn load_entry(engine: &Engine, path: &Path) -> Option<Component> {
        // A regular file only (anything else is recompiled over), of a size a compiled
        // component can have.
        let bytes = crate::limited_read::read_at_most(path, MAX_ARTIFACT_BYTES).ok()?;
        let rest = bytes.strip_prefix(MAGIC)?;
        if rest.len() < 32 {
            return None;
        }
        let (checksum, artifact) = rest.split_at(32);
        if Sha256::digest(artifact).as_slice() != checksum {
            return None;
        }
        // SAFETY: the artifact is one this cache stored from `Component::serialize`
        // (its checksum matches what was written), and wasmtime refuses artifacts of
        // another version or configuration.
        unsafe { Component::deserialize(engine, artifact) }.ok()
    }

    fn store_entry(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let temp = path.with_extension(format!("{}.tmp", std::process::id()));
        let mut bytes = Vec::with_capacity(MAGIC.len() + 32 + artifact.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&Sha256::digest(artifact));
        bytes.extend_from_slice(artifact);
        std::fs::write(&temp, &bytes)?;
        std::fs::rename(&temp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })
    }
}
