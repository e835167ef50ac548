//! The workflow manifest: a TOML file naming the executors, their components and
//! config, the edges between them, the start executor and the run's limits.

use crate::error::Result;
use crate::error::{Error, did_you_mean, invalid};
use crate::grants::{Grants, HostEnv, RawDir};
use crate::limited_read::{self, FileKind};
use crate::limits::{HTTP_CALL_TIMEOUT_MS, Limits, RawLimits};
use crate::retry::{RawRetry, RetryPolicy};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The superstep cap when the manifest sets none.
pub const DEFAULT_MAX_SUPERSTEPS: u64 = 1000;

/// A parsed and validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Absolute path of the manifest file.
    pub path: PathBuf,
    /// The workflow's name.
    pub name: String,
    /// The executor that receives the run's input in superstep 0.
    pub start: String,
    /// The most supersteps a run may take, counted from its start across resumes.
    pub max_supersteps: u64,
    /// The executors, sorted by id.
    pub executors: Vec<ExecutorSpec>,
    /// The edges, in manifest order.
    pub edges: Vec<EdgeSpec>,
}

/// One executor of the manifest.
#[derive(Debug, Clone)]
pub struct ExecutorSpec {
    /// The executor's id, unique in the workflow.
    pub id: String,
    /// Where it stands in the manifest's `executors` list (from 0), for errors.
    pub position: usize,
    /// Absolute path of its component file.
    pub component: PathBuf,
    /// The shell command that builds the component (run in the manifest's directory by
    /// `superstep build`), if the manifest gives one.
    pub build: Option<String>,
    /// The `config` table, as JSON (an empty object when the manifest has none).
    pub config: serde_json::Value,
    /// What the executor may reach beyond clocks and randomness.
    pub grants: Grants,
    /// Its resource limits.
    pub limits: Limits,
    /// How its failed calls are retried.
    pub retry: RetryPolicy,
}

/// A directed edge; `kinds` (when set) lists the message kinds it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSpec {
    /// The sending executor.
    pub from: String,
    /// The receiving executor.
    pub to: String,
    /// The message kinds the edge accepts; `None` accepts every kind.
    pub kinds: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    workflow: RawWorkflow,
    #[serde(default)]
    executors: Vec<RawExecutor>,
    #[serde(default)]
    edges: Vec<RawEdge>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkflow {
    name: String,
    start: Option<String>,
    max_supersteps: Option<u64>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    retry: RawRetry,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExecutor {
    id: String,
    component: PathBuf,
    build: Option<String>,
    config: Option<toml::Table>,
    #[serde(default)]
    dirs: Vec<RawDir>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    retry: RawRetry,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdge {
    from: String,
    to: String,
    kinds: Option<Vec<String>>,
}

impl ExecutorSpec {
    /// Where a field of this executor is, as errors name it:
    /// `executors[<position>] ('<id>').<field>`.
    pub fn field(&self, field: &str) -> String {
        format!("executors[{}] ('{}').{field}", self.position, self.id)
    }
}

impl Manifest {
    /// Reads, parses and validates the manifest at `path`. Every error names the file
    /// and the field at fault.
    pub fn load(path: &Path) -> Result<Manifest> {
        Self::load_with(path, HostEnv::Read)
    }

    /// [`Manifest::load`] to store the manifest for another host to run (`superstep
    /// submit`): the host variables that `env` grants pass by name are not read here,
    /// but by the host that runs it.
    pub fn load_to_submit(path: &Path) -> Result<Manifest> {
        Self::load_with(path, HostEnv::Deferred)
    }

    fn load_with(path: &Path, host_env: HostEnv) -> Result<Manifest> {
        let text = limited_read::read_to_string(path, FileKind::Manifest)
            .map_err(|e| invalid(format!("{}: cannot read manifest: {e}", path.display())))?;
        let path =
            std::path::absolute(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        Self::parse_with(&text, &path, host_env)
    }

    /// [`Manifest::load`] for a path the user did not give but `named_by` (a
    /// checkpoint) did: the file could be any file the user can read, so errors say
    /// where parsing stopped but never quote what the file holds.
    pub fn load_unquoted(path: &Path, named_by: &str) -> Result<Manifest> {
        let file = path.display();
        let text = limited_read::read_to_string(path, FileKind::Manifest)
            .map_err(|e| invalid(format!("{file}: cannot read manifest: {e}")))?;
        let advice = format!(
            "it is named by {named_by}, so its contents are not quoted; pass --manifest {file} to see the full error"
        );
        if let Err(error) = toml::from_str::<RawManifest>(&text) {
            let at = error
                .span()
                .map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
                    format!(" at line {line}, column {column}")
                })
                .unwrap_or_default();
            return Err(invalid(format!(
                "{file}: not a valid manifest (TOML{at}); {advice}"
            )));
        }
        let absolute = std::path::absolute(path).map_err(|e| invalid(format!("{file}: {e}")))?;
        Self::parse(&text, &absolute).map_err(|_| {
            invalid(format!(
                "{file}: not a valid manifest (a field is missing or wrong); {advice}"
            ))
        })
    }

    /// Parses and validates manifest text; relative component paths are resolved
    /// against the directory of `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest> {
        Self::parse_with(text, path, HostEnv::Read)
    }

    fn parse_with(text: &str, path: &Path, host_env: HostEnv) -> Result<Manifest> {
        let file = path.display();
        let raw: RawManifest = toml::from_str(text)
            .map_err(|e| invalid(format!("{file}: {}", e.to_string().trim_end())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let at_file = |message: String| Error::Manifest {
            file: path.to_path_buf(),
            message,
        };
        let name = raw.workflow.name;
        if name.trim().is_empty() {
            return Err(at_file("workflow.name: must not be empty".into()));
        }
        let max_supersteps = raw
            .workflow
            .max_supersteps
            .unwrap_or(DEFAULT_MAX_SUPERSTEPS);
        if max_supersteps == 0 {
            return Err(at_file(
                "workflow.max_supersteps: must be at least 1".into(),
            ));
        }
        let workflow = (&raw.workflow.limits, &raw.workflow.retry);
        let executors = executors(raw.executors, (dir, host_env), workflow).map_err(at_file)?;
        let start = start(raw.workflow.start, &executors).map_err(at_file)?;
        let edges = edges(raw.edges, &executors).map_err(at_file)?;
        Ok(Manifest {
            path: path.to_path_buf(),
            name,
            start,
            max_supersteps,
            executors,
            edges,
        })
    }

    /// Whether any executor meters fuel (the engine must then be built for it).
    pub fn uses_fuel(&self) -> bool {
        self.executors.iter().any(|e| e.limits.fuel.is_some())
    }

    /// The executor with `id`.
    pub fn executor(&self, id: &str) -> Option<&ExecutorSpec> {
        self.executors.iter().find(|e| e.id == id)
    }
}

/// The executors of a manifest in `dir`, sorted by id, each with its limits and retry
/// policy over the workflow's and its grants (host variables read as `host_env`
/// says); the error names the field.
fn executors(
    raw: Vec<RawExecutor>,
    (dir, host_env): (&Path, HostEnv),
    (workflow_limits, workflow_retry): (&RawLimits, &RawRetry),
) -> std::result::Result<Vec<ExecutorSpec>, String> {
    if raw.is_empty() {
        return Err("executors: the workflow has no executors".into());
    }
    let default_limits = workflow_limits.over(Limits::default(), "workflow.limits")?;
    let default_retry = workflow_retry.over(&RetryPolicy::default(), "workflow.retry")?;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut executors = Vec::with_capacity(raw.len());
    for (i, executor) in raw.into_iter().enumerate() {
        check_id(&executor.id).map_err(|why| format!("executors[{i}].id: {why}"))?;
        if let Some(first) = seen.insert(executor.id.clone(), i) {
            return Err(format!(
                "executors[{i}].id: duplicate executor id '{}' (also executors[{first}])",
                executor.id
            ));
        }
        let config = match executor.config {
            Some(table) => toml_to_json(toml::Value::Table(table)),
            None => serde_json::Value::Object(Default::default()),
        };
        let at = |why: String| format!("executors[{i}] ('{}').{why}", executor.id);
        // A call that waits on HTTP gets longer, unless the workflow says otherwise.
        let base = match executor.allowed_hosts.is_empty() {
            true => default_limits,
            false => Limits {
                call_timeout_ms: workflow_limits
                    .call_timeout_ms
                    .unwrap_or(HTTP_CALL_TIMEOUT_MS),
                ..default_limits
            },
        };
        let limits = executor.limits.over(base, "limits").map_err(at)?;
        let retry = executor.retry.over(&default_retry, "retry").map_err(at)?;
        if let Some(command) = &executor.build
            && command.trim().is_empty()
        {
            return Err(at(
                "build: must not be empty (a shell command, or leave it out)".into(),
            ));
        }
        let env = (executor.env.as_slice(), host_env);
        let grants =
            Grants::parse(dir, &executor.dirs, env, &executor.allowed_hosts).map_err(at)?;
        executors.push(ExecutorSpec {
            position: i,
            id: executor.id,
            component: dir.join(executor.component),
            build: executor.build,
            config,
            grants,
            limits,
            retry,
        });
    }
    executors.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(executors)
}

/// The start executor, which must be one of `executors`.
fn start(start: Option<String>, executors: &[ExecutorSpec]) -> std::result::Result<String, String> {
    let start = start.ok_or("workflow.start: missing (name the start executor)")?;
    if executors.iter().any(|e| e.id == start) {
        return Ok(start);
    }
    let ids: Vec<&str> = executors.iter().map(|e| e.id.as_str()).collect();
    Err(format!(
        "workflow.start: unknown executor '{start}'{} (executors: {})",
        did_you_mean(&start, ids.iter().copied()),
        ids.join(", ")
    ))
}

/// The edges between `executors`, each pair once, with kind filters that carry
/// something.
fn edges(
    raw: Vec<RawEdge>,
    executors: &[ExecutorSpec],
) -> std::result::Result<Vec<EdgeSpec>, String> {
    let mut edges: Vec<EdgeSpec> = Vec::with_capacity(raw.len());
    for (i, edge) in raw.into_iter().enumerate() {
        for (field, id) in [("from", &edge.from), ("to", &edge.to)] {
            if !executors.iter().any(|e| &e.id == id) {
                let ids = executors.iter().map(|e| e.id.as_str());
                return Err(format!(
                    "edges[{i}].{field}: unknown executor '{id}'{}",
                    did_you_mean(id, ids)
                ));
            }
        }
        if let Some(kinds) = &edge.kinds {
            if kinds.is_empty() {
                return Err(format!(
                    "edges[{i}].kinds: an empty list carries nothing (omit it to carry every kind)"
                ));
            }
            if let Some(kind) = kinds.iter().find(|k| k.is_empty()) {
                return Err(format!("edges[{i}].kinds: empty kind '{kind}'"));
            }
        }
        let same = |e: &EdgeSpec| e.from == edge.from && e.to == edge.to;
        if let Some(j) = edges.iter().position(same) {
            return Err(format!(
                "edges[{i}]: duplicate edge '{}' -> '{}' (also edges[{j}]); list all its kinds in one edge",
                edge.from, edge.to
            ));
        }
        edges.push(EdgeSpec {
            from: edge.from,
            to: edge.to,
            kinds: edge.kinds,
        });
    }
    Ok(edges)
}

/// Executor ids appear in events, checkpoints and file names: keep them plain.
fn check_id(id: &str) -> std::result::Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    match id.chars().next() {
        None => Err("must not be empty".into()),
        Some(first) if !first.is_ascii_alphanumeric() => {
            Err(format!("'{id}' must start with a letter or digit"))
        }
        _ if id.len() > 128 => Err(format!("'{id}' is longer than 128 characters")),
        _ if !id.chars().all(plain) => Err(format!(
            "'{id}' may hold only letters, digits, '_', '-' and '.'"
        )),
        _ => Ok(()),
    }
}

/// TOML to JSON for executor config; datetimes become RFC 3339 strings.
fn toml_to_json(value: toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s),
        toml::Value::Integer(i) => J::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => J::Object(
            table
                .into_iter()
                .map(|(k, v)| (k, toml_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(text, Path::new("/flows/m.toml"))
    }

    const BASE: &str = r#"
        [workflow]
        name = "w"
        start = "a"
        [[executors]]
        id = "a"
        component = "a.wasm"
        [executors.config]
        n = 1
        when = 1979-05-27T07:32:00Z
        [[executors]]
        id = "b"
        component = "/abs/b.wasm"
        [[edges]]
        from = "a"
        to = "b"
        kinds = ["x"]
    "#;

    #[test]
    fn parses_and_resolves_components() {
        let m = parse(BASE).unwrap();
        assert_eq!(m.executors[0].component, Path::new("/flows/a.wasm"));
        assert_eq!(m.executors[1].component, Path::new("/abs/b.wasm"));
        assert_eq!(m.executors[0].config["n"], 1);
        assert_eq!(m.executors[0].config["when"], "1979-05-27T07:32:00Z");
        assert_eq!(m.executors[1].config, serde_json::json!({}));
        assert_eq!(m.max_supersteps, DEFAULT_MAX_SUPERSTEPS);
        assert_eq!(m.edges[0].kinds, Some(vec!["x".to_string()]));
    }

    /// An executor granted HTTP gets the longer call timeout unless one is set, for
    /// the workflow or for it; every other limit is the usual default.
    #[test]
    fn an_executor_granted_http_waits_longer_unless_told_otherwise() {
        let http = BASE.replace(
            "id = \"b\"",
            "id = \"b\"\nallowed_hosts = [\"https://api.example.com\"]",
        );
        let timeouts = |text: &str| {
            let m = parse(text).unwrap();
            (m.executors[0].limits, m.executors[1].limits)
        };
        let (plain, granted) = timeouts(&http);
        assert_eq!(plain, Limits::default());
        assert_eq!(
            granted,
            Limits {
                call_timeout_ms: HTTP_CALL_TIMEOUT_MS,
                ..Limits::default()
            }
        );
        let for_workflow = http.replace(
            "start = \"a\"",
            "start = \"a\"\n[workflow.limits]\ncall_timeout_ms = 5000",
        );
        let (plain, granted) = timeouts(&for_workflow);
        assert_eq!(
            (plain.call_timeout_ms, granted.call_timeout_ms),
            (5000, 5000)
        );
        let for_it = http.replace(
            "component = \"/abs/b.wasm\"",
            "component = \"/abs/b.wasm\"\nlimits = { call_timeout_ms = 7000 }",
        );
        assert_eq!(timeouts(&for_it).1.call_timeout_ms, 7000);
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn rejects_bad_ids_and_references() {
        let dup = BASE.replace("id = \"b\"", "id = \"a\"");
        assert!(
            error_of(&dup).contains("executors[1].id: duplicate executor id 'a'"),
            "{}",
            error_of(&dup)
        );
        let bad = BASE.replace("id = \"b\"", "id = \"../b\"");
        assert!(error_of(&bad).contains("executors[1].id: '../b' must start"));
        let edge = BASE.replace("to = \"b\"", "to = \"c\"");
        assert!(error_of(&edge).contains("/flows/m.toml: edges[0].to: unknown executor 'c'"));
        let start = BASE.replace("start = \"a\"", "start = \"z\"");
        assert!(error_of(&start).contains("workflow.start: unknown executor 'z'"));
        let missing = BASE.replace("start = \"a\"", "");
        assert!(error_of(&missing).contains("workflow.start: missing"));
        let kinds = BASE.replace("kinds = [\"x\"]", "kinds = []");
        assert!(error_of(&kinds).contains("edges[0].kinds: an empty list"));
        let twice = format!("{BASE}\n[[edges]]\nfrom = \"a\"\nto = \"b\"\n");
        assert!(error_of(&twice).contains("edges[1]: duplicate edge 'a' -> 'b'"));
        let unknown = BASE.replace("name = \"w\"", "name = \"w\"\nstrat = 1");
        assert!(error_of(&unknown).contains("unknown field `strat`"));
    }
}
