//! `superstep new`: a ready executor project in Rust, Python or JavaScript (source with
//! its state, the SDK's snapshot and restore, the build configuration) and a manifest
//! of one executor that `superstep build` builds and `superstep run` runs.

use super::{EXIT_OK, say};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use superstep::error::{Result, invalid};

/// `superstep new`.
#[derive(Args)]
pub(super) struct NewArgs {
    /// The executor's name: the project's directory, the executor's id and the
    /// workflow's name (lower-case letters, digits, '-' and '_', a letter first).
    name: String,
    /// The language.
    #[arg(long, value_enum)]
    lang: Lang,
    /// superstep's guest SDKs: the `sdk` directory of a superstep checkout. Default:
    /// the one this binary was built from.
    #[arg(long, env = "SUPERSTEP_SDK", value_name = "DIR")]
    sdk: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Lang {
    /// Rust, with the crate `superstep-guest`.
    Rust,
    /// Python, with the package `superstep-guest` (componentize-py).
    Python,
    /// JavaScript, with the npm package `superstep-guest` (componentize-js).
    Js,
}

/// What a template's placeholders stand for.
struct Names<'a> {
    name: &'a str,
    sdk: &'a str,
    component: String,
    build: &'static str,
}

/// Writes the project; prints what to do next.
pub(super) fn new(args: NewArgs) -> Result<u8> {
    check_name(&args.name)?;
    let sdk = sdk_dir(args.sdk, args.lang)?;
    let dir = Path::new(&args.name);
    if dir.exists() && std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_some()) {
        return Err(invalid(format!(
            "{}: already there and not empty; choose another name",
            dir.display()
        )));
    }
    let sdk = sdk.display().to_string();
    let name = args.name.as_str();
    let Layout {
        files,
        names,
        first,
    } = layout(args.lang, name, &sdk);
    let manifest = (
        "workflow.toml".to_string(),
        include_str!("templates/workflow.toml"),
    );
    for (path, template) in files.iter().chain(std::iter::once(&manifest)) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| invalid(format!("{}: {e}", parent.display())))?;
        }
        std::fs::write(&path, fill(template, &names))
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    }
    say!("created {name}/: an executor '{name}' and its workflow, workflow.toml")?;
    say!("next:")?;
    say!("  cd {name}")?;
    say!("  {first}")?;
    say!("  superstep run --build workflow.toml --input '\"hello world\"'")?;
    Ok(EXIT_OK)
}

/// A project of one language: its files (path and template), what the placeholders
/// stand for, and the first step to take in it.
struct Layout<'a> {
    files: Vec<(String, &'static str)>,
    names: Names<'a>,
    first: &'static str,
}

fn layout<'a>(lang: Lang, name: &'a str, sdk: &'a str) -> Layout<'a> {
    match lang {
        // The component's path is the project's own target directory, whatever
        // CARGO_TARGET_DIR the user's environment sets.
        Lang::Rust => Layout {
            files: vec![
                (
                    "Cargo.toml".into(),
                    include_str!("templates/rust/Cargo.toml"),
                ),
                ("src/lib.rs".into(), include_str!("templates/rust/lib.rs")),
            ],
            names: Names {
                name,
                sdk,
                component: format!(
                    "target/wasm32-wasip2/release/{}.wasm",
                    name.replace('-', "_")
                ),
                build: "cargo build --release --target wasm32-wasip2 --target-dir target",
            },
            first: "rustup target add wasm32-wasip2   # once",
        },
        Lang::Python => Layout {
            files: vec![
                ("app.py".into(), include_str!("templates/python/app.py")),
                (
                    "requirements.txt".into(),
                    include_str!("templates/python/requirements.txt"),
                ),
            ],
            names: Names {
                name,
                sdk,
                component: format!("{name}.wasm"),
                build: ".venv/bin/superstep-guest-build app.py {{name}}.wasm",
            },
            first: "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt",
        },
        Lang::Js => Layout {
            files: vec![
                (
                    "package.json".into(),
                    include_str!("templates/js/package.json"),
                ),
                (
                    format!("src/{name}.js"),
                    include_str!("templates/js/executor.js"),
                ),
            ],
            names: Names {
                name,
                sdk,
                component: format!("{name}.wasm"),
                build: "npm run --silent build",
            },
            first: "npm install",
        },
    }
}

/// `template` with its placeholders filled in.
fn fill(template: &str, names: &Names) -> String {
    template
        .replace("{{build}}", names.build)
        .replace("{{component}}", &names.component)
        .replace("{{sdk}}", names.sdk)
        .replace("{{name}}", names.name)
}

/// Refuses a name that cannot be a directory, crate, package and executor id alike.
fn check_name(name: &str) -> Result<()> {
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_');
    let first_letter = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if first_letter && name.len() <= 64 && name.chars().all(plain) {
        return Ok(());
    }
    Err(invalid(format!(
        "'{name}': a name is lower-case letters, digits, '-' and '_', a letter first, at most 64 characters"
    )))
}

/// The SDK directory, checked to hold the SDK of `lang`.
fn sdk_dir(given: Option<PathBuf>, lang: Lang) -> Result<PathBuf> {
    let (dir, origin) = match given {
        Some(dir) => (dir, "--sdk"),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk"),
            "the SDK this binary was built from",
        ),
    };
    let marker = match lang {
        Lang::Rust => "rust/Cargo.toml",
        Lang::Python => "python/pyproject.toml",
        Lang::Js => "js/package.json",
    };
    let dir = std::fs::canonicalize(&dir)
        .ok()
        .filter(|d| d.join(marker).is_file());
    dir.ok_or_else(|| {
        invalid(format!(
            "{origin}: no superstep SDK there (no {marker}); pass --sdk <superstep checkout>/sdk"
        ))
    })
}
