//! `superstep build` (and `run --build`): runs the `build` command of each executor of a
//! manifest, each distinct command once and all of them at the same time, in the
//! manifest's directory; then says which components changed.

use super::EXIT_OK;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::Command;
use superstep::error::{Result, invalid};
use superstep::hash::sha256_hex;
use superstep::manifest::{ExecutorSpec, Manifest};

/// `superstep build`.
#[derive(Args)]
pub(super) struct BuildArgs {
    /// The workflow manifest (TOML) whose executors' `build` commands to run.
    manifest: PathBuf,
}

/// Builds the components of a manifest.
pub(super) fn build(args: BuildArgs) -> Result<u8> {
    // Building needs no host variable that `env` grants.
    let manifest = Manifest::load_to_submit(&args.manifest)?;
    build_components(&manifest)?;
    Ok(EXIT_OK)
}

/// Runs the manifest's build commands; reports on stderr each built component, and
/// whether its bytes changed. A command that fails, or a component that is not there
/// after its build, is an error naming the executor and the field.
pub(super) fn build_components(manifest: &Manifest) -> Result<()> {
    let shown = manifest.path.display();
    let dir = manifest.path.parent().unwrap_or(Path::new("."));
    let mut commands: Vec<(&str, Vec<&ExecutorSpec>)> = Vec::new();
    for spec in by_position(manifest) {
        let Some(command) = spec.build.as_deref() else {
            continue;
        };
        match commands.iter_mut().find(|(c, _)| *c == command) {
            Some((_, specs)) => specs.push(spec),
            None => commands.push((command, vec![spec])),
        }
    }
    if commands.is_empty() {
        eprintln!("{shown}: no executor has a build command");
        return Ok(());
    }
    let before: Vec<Option<String>> = commands
        .iter()
        .flat_map(|(_, specs)| specs.iter().map(|s| digest(&s.component)))
        .collect();
    let results: Vec<std::io::Result<std::process::Output>> = std::thread::scope(|scope| {
        let running: Vec<_> = commands
            .iter()
            .map(|(command, _)| {
                scope.spawn(move || {
                    Command::new("sh")
                        .args(["-c", command])
                        .current_dir(dir)
                        .output()
                })
            })
            .collect();
        running
            .into_iter()
            .map(|r| r.join().expect("a build thread"))
            .collect()
    });
    for ((command, specs), result) in commands.iter().zip(results) {
        let at = format!("{shown}: {}", specs[0].field("build"));
        let output = result.map_err(|e| invalid(format!("{at}: cannot run `{command}`: {e}")))?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr);
            let said = if said.trim().is_empty() {
                String::from_utf8_lossy(&output.stdout)
            } else {
                said
            };
            return Err(invalid(format!(
                "{at}: `{command}` failed ({}):\n{}",
                output.status,
                tail(&said, 40)
            )));
        }
    }
    let specs = commands.iter().flat_map(|(_, specs)| specs.iter());
    for (spec, before) in specs.zip(before) {
        let Some(after) = digest(&spec.component) else {
            return Err(invalid(format!(
                "{shown}: {}: {} is not there after its build",
                spec.field("component"),
                spec.component.display()
            )));
        };
        let what = match before {
            None => "new",
            Some(before) if before == after => "unchanged",
            Some(_) => "changed",
        };
        let path = spec.component.strip_prefix(dir).unwrap_or(&spec.component);
        eprintln!("built {}: {} ({what})", spec.id, path.display());
    }
    Ok(())
}

/// The executors in manifest order.
fn by_position(manifest: &Manifest) -> Vec<&ExecutorSpec> {
    let mut specs: Vec<&ExecutorSpec> = manifest.executors.iter().collect();
    specs.sort_by_key(|s| s.position);
    specs
}

/// The SHA-256 of the file at `path`, if it can be read.
fn digest(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|bytes| sha256_hex(&bytes))
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
