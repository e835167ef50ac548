//! A workflow as the database keeps it, so that a worker on any host runs it without a
//! shared filesystem: the manifest's text with each component named by its SHA-256
//! and each granted directory by its absolute path, beside the components themselves,
//! stored once each by digest. A worker writes them back as files once per digest.

use crate::error::{Result, host, invalid};
use crate::hash::sha256_hex;
use crate::limited_read::{self, FileKind};
use crate::manifest::Manifest;
use std::path::{Path, PathBuf};

/// A workflow ready to be stored.
pub(crate) struct Bundle {
    /// SHA-256 of `manifest`: the workflow's key.
    pub(crate) digest: String,
    /// The workflow's name.
    pub(crate) name: String,
    /// The manifest's TOML, components named by digest.
    pub(crate) manifest: String,
    /// Each distinct component: its digest and bytes.
    pub(crate) components: Vec<(String, Vec<u8>)>,
}

/// `manifest` (loaded and checked) as a bundle.
pub(crate) fn bundle(manifest: &Manifest) -> Result<Bundle> {
    let shown = manifest.path.display().to_string();
    let text = limited_read::read(&manifest.path, FileKind::Manifest)
        .map_err(|e| invalid(format!("{shown}: cannot read: {e}")))?;
    let text = String::from_utf8(text).map_err(|_| invalid(format!("{shown}: not UTF-8")))?;
    let mut table: toml::Table = text.parse().map_err(|e| invalid(format!("{shown}: {e}")))?;
    let mut components: Vec<(String, Vec<u8>)> = Vec::new();
    for spec in &manifest.executors {
        let bytes = limited_read::read(&spec.component, FileKind::Component)
            .map_err(|e| invalid(format!("{shown}: {}: {e}", spec.field("component"))))?;
        let digest = sha256_hex(&bytes);
        let entry = executor_entry(&mut table, spec.position)
            .ok_or_else(|| host(format!("{shown}: executors[{}] moved", spec.position)))?;
        entry.insert("component".into(), toml::Value::String(digest.clone()));
        if let Some(toml::Value::Array(dirs)) = entry.get_mut("dirs") {
            for (raw, grant) in dirs.iter_mut().zip(&spec.grants.dirs) {
                if let toml::Value::Table(raw) = raw {
                    let path = grant.host.display().to_string();
                    raw.insert("host".into(), toml::Value::String(path));
                }
            }
        }
        if !components.iter().any(|(d, _)| *d == digest) {
            components.push((digest, bytes));
        }
    }
    let manifest_text = toml::to_string(&table).map_err(host)?;
    Ok(Bundle {
        digest: sha256_hex(manifest_text.as_bytes()),
        name: manifest.name.clone(),
        manifest: manifest_text,
        components,
    })
}

/// The table of the executor at `position` of the manifest's `executors` list.
fn executor_entry(table: &mut toml::Table, position: usize) -> Option<&mut toml::Table> {
    match table.get_mut("executors")? {
        toml::Value::Array(executors) => match executors.get_mut(position)? {
            toml::Value::Table(entry) => Some(entry),
            _ => None,
        },
        _ => None,
    }
}

/// Writes workflow `digest` (its stored `manifest` text) under `dir` as files a
/// [`Manifest`] loads: each component that is not there yet, fetched by digest with
/// `fetch`, to `dir/components/<hex>.wasm`, and the manifest, naming those files, to
/// `dir/workflows/<hex>.toml`, whose path it returns.
pub(crate) fn materialize(
    dir: &Path,
    digest: &str,
    manifest: &str,
    fetch: impl Fn(&str) -> Result<Vec<u8>>,
) -> Result<PathBuf> {
    let components_dir = dir.join("components");
    let workflows_dir = dir.join("workflows");
    for made in [&components_dir, &workflows_dir] {
        std::fs::create_dir_all(made)
            .map_err(|e| host(format!("cannot create {}: {e}", made.display())))?;
    }
    let mut table: toml::Table = manifest
        .parse()
        .map_err(|e| host(format!("stored workflow {digest}: {e}")))?;
    let count = match table.get("executors") {
        Some(toml::Value::Array(executors)) => executors.len(),
        _ => 0,
    };
    for position in 0..count {
        let entry = executor_entry(&mut table, position).expect("counted above");
        let Some(toml::Value::String(component)) = entry.get("component").cloned() else {
            return Err(host(format!(
                "stored workflow {digest}: executors[{position}] names no component"
            )));
        };
        let path = components_dir.join(format!("{}.wasm", hex_of(&component)?));
        if !path.exists() {
            let bytes = fetch(&component)?;
            if sha256_hex(&bytes) != component {
                return Err(host(format!("stored component {component} is damaged")));
            }
            write_new(&path, &bytes)?;
        }
        let path = path.display().to_string();
        entry.insert("component".into(), toml::Value::String(path));
    }
    let path = workflows_dir.join(format!("{}.toml", hex_of(digest)?));
    if !path.exists() {
        write_new(&path, toml::to_string(&table).map_err(host)?.as_bytes())?;
    }
    Ok(path)
}

/// The hex digits of a `sha256:<hex>` digest, refusing anything else (a stored value
/// names a file here).
fn hex_of(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(hex),
        _ => Err(host(format!("'{digest}' is not a sha256:<hex> digest"))),
    }
}

/// Writes `bytes` to `path` through a temp file and a rename, so that no reader sees a
/// part of it.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| host(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::hex_of;

    #[test]
    fn only_a_sha256_digest_names_a_file() {
        let hex = "ab".repeat(32);
        assert_eq!(hex_of(&format!("sha256:{hex}")).unwrap(), hex);
        for bad in ["sha256:../../etc/passwd", "sha256:ab", "md5:00", &hex] {
            assert!(hex_of(bad).is_err(), "{bad}");
        }
    }
}
