//! `superstep validate`, `compile` and `graph`: a manifest looked at without running it.

use super::{EXIT_OK, say};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use superstep::engine::{Optimization, Runtime, Tier, Workflow};
use superstep::error::Result;
use superstep::graph::Graph;
use superstep::manifest::Manifest;

#[derive(Args)]
pub(super) struct ValidateArgs {
    /// The workflow manifest (TOML).
    manifest: PathBuf,
}

#[derive(Args)]
pub(super) struct CompileArgs {
    /// The workflow manifest (TOML).
    manifest: PathBuf,
}

#[derive(Args)]
pub(super) struct GraphArgs {
    /// The workflow manifest (TOML).
    manifest: PathBuf,
    /// The output language.
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    format: GraphFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

/// Every manifest check, and each component compiled and checked against the world.
pub(super) fn validate(args: ValidateArgs) -> Result<u8> {
    let manifest = Manifest::load(&args.manifest)?;
    let fuel = manifest.uses_fuel();
    let workflow = Workflow::load(Runtime::new(1, fuel)?, manifest)?;
    let manifest = workflow.manifest();
    say!(
        "{}: workflow '{}' is valid: {} executors, {} edges, start '{}'; every component implements superstep:workflow/executor",
        manifest.path.display(),
        manifest.name,
        manifest.executors.len(),
        manifest.edges.len(),
        manifest.start
    )?;
    let baseline: Vec<&str> = workflow
        .tiers()
        .filter(|(_, tier)| *tier == Tier::Baseline)
        .map(|(id, _)| id)
        .collect();
    if !baseline.is_empty() {
        say!(
            "note: {} run on baseline code, compiled fast, until optimized code is in the compile cache (`superstep compile {}` puts it there now)",
            baseline.join(", "),
            args.manifest.display()
        )?;
    }
    Ok(EXIT_OK)
}

/// Each component compiled by the optimizing compiler into the compile cache, so that
/// no run waits for it or runs on baseline code.
pub(super) fn compile(args: CompileArgs) -> Result<u8> {
    let manifest = Manifest::load(&args.manifest)?;
    let runtime = Runtime::new(0, manifest.uses_fuel())?;
    runtime.optimize(&manifest, |path, outcome, took| {
        let what = match outcome {
            Optimization::Cached => "already compiled".to_string(),
            Optimization::Compiled => format!("compiled in {:.1} s", took.as_secs_f64()),
        };
        say!("{}: {what}", path.display())?;
        Ok(())
    })?;
    Ok(EXIT_OK)
}

/// The graph as Mermaid or DOT source on stdout.
pub(super) fn graph(args: GraphArgs) -> Result<u8> {
    let manifest = Manifest::load(&args.manifest)?;
    let graph = Graph::new(&manifest);
    let source = match args.format {
        GraphFormat::Mermaid => graph.to_mermaid(),
        GraphFormat::Dot => graph.to_dot(),
    };
    write!(std::io::stdout().lock(), "{source}")?;
    Ok(EXIT_OK)
}
