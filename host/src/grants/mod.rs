//! Capability grants: what an executor may reach beyond clocks and randomness. Each
//! grant is one module that owns its manifest field, its validation, its wiring into
//! the executor's WASI context and whether it reaches outside the sandbox (so that a
//! crash must never make it happen twice):
//!
//! | module | manifest field | reaches outside |
//! | --- | --- | --- |
//! | [`dirs`] | `dirs` | when a directory is writable |
//! | [`env`](mod@env) | `env` | never |
//! | [`http`] | `allowed_hosts` | when any host is allowed |

pub mod dirs;
pub mod env;
pub mod http;

pub use dirs::{DirGrant, RawDir};
pub use env::HostEnv;
pub use http::{HostPattern, HttpPolicy};

use crate::error::Result;
use crate::limits::Limits;
use std::path::Path;
use std::sync::Arc;
use wasmtime_wasi::WasiCtxBuilder;

/// Capabilities granted to one executor; nothing else is reachable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grants {
    /// Host directories preopened in the guest.
    pub dirs: Vec<DirGrant>,
    /// Environment variables, resolved when the manifest is loaded.
    pub env: Vec<(String, String)>,
    /// Where outbound HTTP may go (`wasi:http`); empty refuses every request.
    pub allowed_hosts: Arc<[HostPattern]>,
}

impl Grants {
    /// The grants of a manifest's `dirs`, `env` and `allowed_hosts` fields (directories
    /// relative to `manifest_dir`); the error names the field, relative to the
    /// executor.
    pub fn parse(
        manifest_dir: &Path,
        dirs: &[RawDir],
        (env, host_env): (&[String], HostEnv),
        allowed_hosts: &[String],
    ) -> Result<Grants, String> {
        Ok(Grants {
            dirs: dirs::parse(manifest_dir, dirs)?,
            env: env::parse(env, host_env)?,
            allowed_hosts: http::parse(allowed_hosts)?,
        })
    }

    /// Whether the executor may make outbound HTTP requests: its results are journaled
    /// even when it is alone in its superstep, since its calls may cost money.
    pub fn makes_http_calls(&self) -> bool {
        http::reaches_outside(&self.allowed_hosts)
    }

    /// Whether the executor can change something outside its sandbox that a rerun of
    /// its superstep would change again: outbound HTTP or a writable directory.
    pub fn reaches_outside(&self) -> bool {
        self.makes_http_calls() || dirs::reaches_outside(&self.dirs)
    }

    /// These grants with nothing that reaches outside the sandbox: no HTTP host, and
    /// every directory read-only.
    pub fn sealed(&self) -> Grants {
        let read_only = |dir: &DirGrant| DirGrant {
            writable: false,
            ..dir.clone()
        };
        Grants {
            dirs: self.dirs.iter().map(read_only).collect(),
            env: self.env.clone(),
            allowed_hosts: Arc::from([]),
        }
    }

    /// Gives the executor `executor`'s WASI context what is granted: variables and
    /// directories, and no sockets (HTTP goes through [`Grants::http_policy`]).
    pub(crate) fn wire(&self, wasi: &mut WasiCtxBuilder, executor: &str) -> Result<()> {
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        env::wire(&self.env, wasi);
        dirs::wire(&self.dirs, wasi, executor)
    }

    /// The hooks that hold the executor's outbound HTTP to its allowed hosts and limits.
    pub(crate) fn http_policy(&self, limits: &Limits) -> HttpPolicy {
        HttpPolicy::new(self.allowed_hosts.clone(), limits)
    }
}
