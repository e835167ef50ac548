//! The workflows a server may run: the manifests found under its `--workflows`
//! directory, each named by its path there without `.toml` (`plan_review`,
//! `team/triage`). A request names one of these; it can never name a file.

use crate::engine::{Runtimes, Workflow};
use crate::error::{Result, did_you_mean, invalid};
use crate::graph::Graph;
use crate::manifest::Manifest;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use utoipa::ToSchema;

/// The manifests under one directory, compiled when first run.
pub struct Catalog {
    dir: PathBuf,
    entries: BTreeMap<String, Entry>,
    runtimes: Runtimes,
}

/// One manifest of the catalog.
struct Entry {
    /// Its path under the directory.
    file: String,
    manifest: std::result::Result<Manifest, String>,
    /// Compiled on first use.
    workflow: Mutex<Option<Workflow>>,
}

/// A workflow as `GET /v1/workflows` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowInfo {
    /// What `POST /v1/runs` names it by: its manifest's path under the server's
    /// workflows directory, without `.toml`.
    pub id: String,
    /// The manifest file, under the workflows directory.
    pub file: String,
    /// The workflow's name in its manifest (absent when the manifest is invalid).
    pub name: Option<String>,
    /// The executor that receives a run's input.
    pub start: Option<String>,
    /// The executor ids.
    pub executors: Vec<String>,
    /// The edges.
    pub edges: Vec<EdgeInfo>,
    /// The graph as a Mermaid flowchart.
    pub mermaid: Option<String>,
    /// The graph as Graphviz DOT.
    pub dot: Option<String>,
    /// Why the manifest cannot be run, when it cannot.
    pub error: Option<String>,
}

/// An edge of a workflow's graph.
#[derive(Debug, Serialize, ToSchema)]
pub struct EdgeInfo {
    /// The sending executor.
    pub from: String,
    /// The receiving executor.
    pub to: String,
    /// The message kinds it carries; absent: every kind.
    pub kinds: Option<Vec<String>>,
}

/// How deep the search for manifests goes below the directory.
const MAX_DEPTH: usize = 4;

impl Catalog {
    /// The manifests under `dir`: every `.toml` file with a `[workflow]` table, down to
    /// a few levels, skipping hidden directories and `target`. A manifest that does not
    /// load is listed with its error and cannot be run. With `run_elsewhere` (runs go
    /// to a database's workers), host variables that `env` grants are not read here
    /// (see [`Manifest::load_to_submit`]).
    pub fn scan(dir: &Path, run_elsewhere: bool) -> Result<Catalog> {
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| invalid(format!("--workflows {}: {e}", dir.display())))?;
        let mut files = Vec::new();
        find_manifests(&dir, 0, &mut files)
            .map_err(|e| invalid(format!("--workflows {}: {e}", dir.display())))?;
        let mut entries = BTreeMap::new();
        for path in files {
            let relative = path.strip_prefix(&dir).expect("found under the directory");
            let file = relative.to_string_lossy().replace('\\', "/");
            let id = file.trim_end_matches(".toml").to_string();
            let manifest = match run_elsewhere {
                true => Manifest::load_to_submit(&path),
                false => Manifest::load(&path),
            };
            let manifest = manifest.map_err(|e| e.to_string());
            let workflow = Mutex::new(None);
            entries.insert(
                id,
                Entry {
                    file,
                    manifest,
                    workflow,
                },
            );
        }
        Ok(Catalog {
            dir,
            entries,
            runtimes: Runtimes::default(),
        })
    }

    /// The directory searched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifests that did not load, and why.
    pub fn errors(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.values().filter_map(|e| {
            e.manifest
                .as_ref()
                .err()
                .map(|m| (e.file.as_str(), m.as_str()))
        })
    }

    /// Every workflow, by id.
    pub fn list(&self) -> Vec<WorkflowInfo> {
        self.entries.iter().map(|(id, e)| info(id, e)).collect()
    }

    /// The manifest of workflow `id`; refuses an id not in the catalog, or one whose
    /// manifest does not load.
    pub fn manifest(&self, id: &str) -> Result<&Manifest> {
        let Some(entry) = self.entries.get(id) else {
            let known = self.entries.keys().map(String::as_str);
            return Err(invalid(format!(
                "workflow '{id}' is not under {}{}; known: {}",
                self.dir.display(),
                did_you_mean(id, known.clone()),
                known.collect::<Vec<_>>().join(", ")
            )));
        };
        entry
            .manifest
            .as_ref()
            .map_err(|e| invalid(format!("workflow '{id}' cannot be run: {e}")))
    }

    /// Workflow `id`, its components compiled on first use.
    pub fn workflow(&self, id: &str) -> Result<Workflow> {
        let manifest = self.manifest(id)?;
        let mut loaded = self.entries[id].workflow.lock().expect("catalog lock");
        if let Some(workflow) = &*loaded {
            return Ok(workflow.clone());
        }
        let runtime = self.runtimes.for_manifest(manifest)?;
        let workflow = Workflow::load(runtime, manifest.clone())?;
        *loaded = Some(workflow.clone());
        Ok(workflow)
    }

    /// The id of the workflow whose manifest is at `path`, if one is.
    pub fn id_of(&self, path: &Path) -> Option<&str> {
        self.entries
            .iter()
            .find(|(_, e)| e.manifest.as_ref().is_ok_and(|m| m.path == path))
            .map(|(id, _)| id.as_str())
    }
}

/// A catalog shared by a server's handlers.
pub type SharedCatalog = Arc<Catalog>;

fn info(id: &str, entry: &Entry) -> WorkflowInfo {
    let mut info = WorkflowInfo {
        id: id.to_string(),
        file: entry.file.clone(),
        name: None,
        start: None,
        executors: Vec::new(),
        edges: Vec::new(),
        mermaid: None,
        dot: None,
        error: None,
    };
    match &entry.manifest {
        Ok(manifest) => {
            let graph = Graph::new(manifest);
            info.name = Some(manifest.name.clone());
            info.start = Some(manifest.start.clone());
            info.executors = manifest.executors.iter().map(|e| e.id.clone()).collect();
            info.edges = manifest
                .edges
                .iter()
                .map(|e| EdgeInfo {
                    from: e.from.clone(),
                    to: e.to.clone(),
                    kinds: e.kinds.clone(),
                })
                .collect();
            info.mermaid = Some(graph.to_mermaid());
            info.dot = Some(graph.to_dot());
        }
        Err(error) => info.error = Some(error.clone()),
    }
    info
}

/// Collects the manifests under `dir` into `found`.
fn find_manifests(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if depth < MAX_DEPTH && !name.starts_with('.') && name != "target" {
                find_manifests(&entry.path(), depth + 1, found)?;
            }
        } else if kind.is_file() && name.ends_with(".toml") && is_manifest(&entry.path()) {
            found.push(entry.path());
        }
    }
    Ok(())
}

/// Whether the TOML file at `path` has a `[workflow]` table (a `Cargo.toml` has not),
/// or is meant to but is not valid TOML: then its error is listed.
fn is_manifest(path: &Path) -> bool {
    if path.file_name().is_some_and(|n| n == "Cargo.toml") {
        return false;
    }
    match std::fs::read_to_string(path).map(|text| text.parse::<toml::Table>()) {
        Ok(Ok(table)) => table.contains_key("workflow"),
        Ok(Err(_)) => true,
        Err(_) => false,
    }
}
