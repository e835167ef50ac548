//! The `dirs` grant: host directories preopened in the guest, read-only unless
//! `mode = "rw"`. A writable directory reaches outside the sandbox.

use crate::error::Result;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// A host directory the guest sees at `guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The host directory (absolute).
    pub host: PathBuf,
    /// Where the guest sees it (an absolute guest path).
    pub guest: String,
    /// Whether the guest may create, change and delete files in it.
    pub writable: bool,
}

/// One `dirs` entry as the manifest gives it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDir {
    host: PathBuf,
    guest: String,
    #[serde(default)]
    mode: Option<String>,
}

/// Resolves the `dirs` entries (host paths relative to `manifest_dir`): each host
/// directory must exist, each guest path be absolute and granted once.
pub(crate) fn parse(manifest_dir: &Path, raw: &[RawDir]) -> Result<Vec<DirGrant>, String> {
    let mut grants: Vec<DirGrant> = Vec::with_capacity(raw.len());
    for (n, entry) in raw.iter().enumerate() {
        let grant = one(manifest_dir, entry).map_err(|why| format!("dirs[{n}]: {why}"))?;
        if grants.iter().any(|g| g.guest == grant.guest) {
            return Err(format!(
                "dirs[{n}].guest: '{}' is granted twice",
                grant.guest
            ));
        }
        grants.push(grant);
    }
    Ok(grants)
}

fn one(manifest_dir: &Path, raw: &RawDir) -> Result<DirGrant, String> {
    let writable = match raw.mode.as_deref() {
        None | Some("ro") => false,
        Some("rw") => true,
        Some(other) => return Err(format!("mode: '{other}' is neither \"ro\" nor \"rw\"")),
    };
    if !raw.guest.starts_with('/') || raw.guest.split('/').any(|part| part == "..") {
        return Err(format!(
            "guest: '{}' must be an absolute guest path without '..'",
            raw.guest
        ));
    }
    let host = manifest_dir.join(&raw.host);
    let host = host.canonicalize().map_err(|e| {
        format!(
            "host: {}: {e} (granted directories must exist)",
            host.display()
        )
    })?;
    if !host.is_dir() {
        return Err(format!("host: {} is not a directory", host.display()));
    }
    Ok(DirGrant {
        host,
        guest: raw.guest.clone(),
        writable,
    })
}

/// Whether any of `grants` lets the guest change files outside its sandbox.
pub(crate) fn reaches_outside(grants: &[DirGrant]) -> bool {
    grants.iter().any(|dir| dir.writable)
}

/// Preopens each granted directory in the WASI context of executor `executor`.
pub(crate) fn wire(grants: &[DirGrant], wasi: &mut WasiCtxBuilder, executor: &str) -> Result<()> {
    for grant in grants {
        let perms = if grant.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        wasi.preopened_dir(&grant.host, &grant.guest, perms)
            .map_err(|e| {
                anyhow::anyhow!(
                    "executor '{executor}': cannot open granted directory {}: {e:#}",
                    grant.host.display()
                )
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(host: &str, guest: &str, mode: Option<&str>) -> RawDir {
        RawDir {
            host: host.into(),
            guest: guest.into(),
            mode: mode.map(str::to_string),
        }
    }

    #[test]
    fn resolves_existing_directories_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        let grants = parse(dir.path(), &[raw("data", "/data", Some("rw"))]).unwrap();
        assert!(grants[0].writable && grants[0].host.ends_with("data"));
        assert!(reaches_outside(&grants));
        assert!(!reaches_outside(
            &parse(dir.path(), &[raw("data", "/d", None)]).unwrap()
        ));
        let err = |entries: &[RawDir]| parse(dir.path(), entries).unwrap_err();
        assert_eq!(
            err(&[raw("data", "/d", Some("x"))]),
            "dirs[0]: mode: 'x' is neither \"ro\" nor \"rw\""
        );
        assert!(
            err(&[raw("data", "d", None)]).starts_with("dirs[0]: guest: 'd' must be an absolute")
        );
        assert!(err(&[raw("data", "/a/../b", None)]).contains("without '..'"));
        assert!(err(&[raw("none", "/d", None)]).contains("(granted directories must exist)"));
        assert!(err(&[raw("file", "/d", None)]).ends_with("is not a directory"));
        assert_eq!(
            err(&[raw("data", "/d", None), raw("data", "/d", None)]),
            "dirs[1].guest: '/d' is granted twice"
        );
    }
}
