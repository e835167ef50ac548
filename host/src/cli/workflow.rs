//! `superstep validate` and `superstep graph`: a manifest looked at without running it.

use super::{EXIT_OK, say};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use superstep::engine::{Runtime, Workflow};
use superstep::error::Result;
use superstep::graph::Graph;
use superstep::manifest::Manifest;

#[derive(Args)]
pub(super) struct ValidateArgs {
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
