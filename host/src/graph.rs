//! The workflow graph: executors by index, edges with kind filters, message routing,
//! the graph's digest and its rendering as Mermaid or Graphviz source.

use crate::hash::sha256_hex;
use crate::manifest::Manifest;
use std::collections::HashMap;
use std::fmt::Write;

/// The routing view of a manifest. Executors are indexed in id order, which is also
/// the order of delivery and of the barrier's commits.
#[derive(Debug)]
pub struct Graph {
    ids: Vec<String>,
    index: HashMap<String, usize>,
    start: usize,
    outgoing: Vec<Vec<Edge>>,
    digest: String,
}

#[derive(Debug)]
struct Edge {
    to: usize,
    kinds: Option<Vec<String>>,
}

impl Edge {
    fn accepts(&self, kind: &str) -> bool {
        self.kinds
            .as_ref()
            .is_none_or(|kinds| kinds.iter().any(|k| k == kind))
    }
}

impl Graph {
    /// Builds the graph of a validated manifest.
    pub fn new(manifest: &Manifest) -> Graph {
        let ids: Vec<String> = manifest.executors.iter().map(|e| e.id.clone()).collect();
        let index: HashMap<String, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        let mut outgoing: Vec<Vec<Edge>> = ids.iter().map(|_| Vec::new()).collect();
        for edge in &manifest.edges {
            outgoing[index[&edge.from]].push(Edge {
                to: index[&edge.to],
                kinds: edge.kinds.clone(),
            });
        }
        for edges in &mut outgoing {
            edges.sort_by_key(|e| e.to);
        }
        let start = index[&manifest.start];
        let digest = graph_digest(manifest);
        Graph {
            ids,
            index,
            start,
            outgoing,
            digest,
        }
    }

    /// Executor ids in index order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// The id of executor `index`.
    pub fn id(&self, index: usize) -> &str {
        &self.ids[index]
    }

    /// The index of executor `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The start executor's index.
    pub fn start(&self) -> usize {
        self.start
    }

    /// SHA-256 over the workflow's name, start, executor ids and edges: what a
    /// checkpoint must agree with to be resumed.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Where a message of `kind` sent by `from` goes: to `target` only (which needs an
    /// edge that accepts the kind), or along every outgoing edge that accepts it.
    /// The error is the text returned to the sending guest.
    pub fn route(
        &self,
        from: usize,
        kind: &str,
        target: Option<&str>,
    ) -> Result<Vec<usize>, String> {
        let sender = &self.ids[from];
        let edges = &self.outgoing[from];
        match target {
            Some(target) => {
                let Some(to) = self.index_of(target) else {
                    return Err(format!("no executor '{target}' in this workflow"));
                };
                match edges.iter().find(|e| e.to == to) {
                    None => Err(format!("no edge from '{sender}' to '{target}'")),
                    Some(edge) if !edge.accepts(kind) => Err(format!(
                        "the edge '{sender}' -> '{target}' does not carry kind '{kind}' (it carries {})",
                        edge.kinds.as_deref().unwrap_or_default().join(", ")
                    )),
                    Some(_) => Ok(vec![to]),
                }
            }
            None => {
                let targets: Vec<usize> = edges
                    .iter()
                    .filter(|e| e.accepts(kind))
                    .map(|e| e.to)
                    .collect();
                if targets.is_empty() {
                    Err(format!(
                        "no outgoing edge of '{sender}' carries kind '{kind}'"
                    ))
                } else {
                    Ok(targets)
                }
            }
        }
    }

    /// The executors with an edge to `to` that carries `kind`, in index order.
    pub fn senders(&self, to: usize, kind: &str) -> Vec<usize> {
        (0..self.ids.len())
            .filter(|&from| {
                self.outgoing[from]
                    .iter()
                    .any(|e| e.to == to && e.accepts(kind))
            })
            .collect()
    }

    /// The kinds the edges into `to` carry, each once: `None` when one of them carries
    /// every kind.
    pub fn kinds_into(&self, to: usize) -> Option<Vec<String>> {
        let mut kinds: Vec<String> = Vec::new();
        for edge in self.outgoing.iter().flatten().filter(|e| e.to == to) {
            for kind in edge.kinds.as_ref()? {
                if !kinds.contains(kind) {
                    kinds.push(kind.clone());
                }
            }
        }
        kinds.sort();
        Some(kinds)
    }

    /// The graph as a Mermaid flowchart, edges labelled with their kind filters.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for (i, id) in self.ids.iter().enumerate() {
            let shape = if i == self.start {
                ("([", "])")
            } else {
                ("[", "]")
            };
            let _ = writeln!(out, "    n{i}{}\"{id}\"{}", shape.0, shape.1);
        }
        for (from, edges) in self.outgoing.iter().enumerate() {
            for edge in edges {
                match &edge.kinds {
                    Some(kinds) => {
                        let _ = writeln!(
                            out,
                            "    n{from} -->|\"{}\"| n{}",
                            kinds.join(", "),
                            edge.to
                        );
                    }
                    None => {
                        let _ = writeln!(out, "    n{from} --> n{}", edge.to);
                    }
                }
            }
        }
        out
    }

    /// The graph as Graphviz DOT source, edges labelled with their kind filters.
    pub fn to_dot(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut out = String::from("digraph workflow {\n    rankdir=LR;\n");
        for (i, id) in self.ids.iter().enumerate() {
            let style = if i == self.start {
                " shape=doubleoctagon"
            } else {
                " shape=box"
            };
            let _ = writeln!(out, "    {} [{}];", quote(id), style.trim());
        }
        for (from, edges) in self.outgoing.iter().enumerate() {
            for edge in edges {
                let label = match &edge.kinds {
                    Some(kinds) => format!(" [label={}]", quote(&kinds.join(", "))),
                    None => String::new(),
                };
                let _ = writeln!(
                    out,
                    "    {} -> {}{label};",
                    quote(&self.ids[from]),
                    quote(&self.ids[edge.to])
                );
            }
        }
        out.push_str("}\n");
        out
    }
}

fn graph_digest(manifest: &Manifest) -> String {
    let mut edges: Vec<(&str, &str, Vec<&str>)> = manifest
        .edges
        .iter()
        .map(|e| {
            let mut kinds: Vec<&str> = e.kinds.iter().flatten().map(String::as_str).collect();
            kinds.sort_unstable();
            (e.from.as_str(), e.to.as_str(), kinds)
        })
        .collect();
    edges.sort();
    let canonical = serde_json::json!({
        "workflow": manifest.name,
        "start": manifest.start,
        "executors": manifest.executors.iter().map(|e| &e.id).collect::<Vec<_>>(),
        "edges": edges,
    });
    sha256_hex(canonical.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn graph() -> Graph {
        let m = Manifest::parse(
            r#"
            [workflow]
            name = "g"
            start = "a"
            [[executors]]
            id = "a"
            component = "x.wasm"
            [[executors]]
            id = "b"
            component = "x.wasm"
            [[executors]]
            id = "c"
            component = "x.wasm"
            [[edges]]
            from = "a"
            to = "c"
            kinds = ["y"]
            [[edges]]
            from = "a"
            to = "b"
            "#,
            Path::new("/m.toml"),
        )
        .unwrap();
        Graph::new(&m)
    }

    #[test]
    fn senders_and_kinds_into_an_executor() {
        let g = graph();
        assert_eq!(g.senders(2, "y"), vec![0]);
        assert!(g.senders(2, "x").is_empty());
        assert_eq!(g.senders(1, "anything"), vec![0]);
        assert_eq!(g.kinds_into(2), Some(vec!["y".to_string()]));
        assert_eq!(
            g.kinds_into(1),
            None,
            "an edge without kinds carries every kind"
        );
        assert_eq!(g.kinds_into(0), Some(vec![]), "no edge into the start");
    }

    #[test]
    fn routes_by_kind_and_target() {
        let g = graph();
        assert_eq!(g.route(0, "y", None), Ok(vec![1, 2]));
        assert_eq!(g.route(0, "x", None), Ok(vec![1]));
        assert_eq!(g.route(0, "y", Some("c")), Ok(vec![2]));
        assert_eq!(
            g.route(0, "x", Some("c")).unwrap_err(),
            "the edge 'a' -> 'c' does not carry kind 'x' (it carries y)"
        );
        assert_eq!(
            g.route(1, "x", None).unwrap_err(),
            "no outgoing edge of 'b' carries kind 'x'"
        );
        assert_eq!(
            g.route(1, "x", Some("a")).unwrap_err(),
            "no edge from 'b' to 'a'"
        );
        assert_eq!(
            g.route(1, "x", Some("zz")).unwrap_err(),
            "no executor 'zz' in this workflow"
        );
    }

    #[test]
    fn renders_labels() {
        let g = graph();
        assert!(g.to_mermaid().contains("n0 -->|\"y\"| n2"));
        assert!(g.to_dot().contains("\"a\" -> \"c\" [label=\"y\"];"));
        assert!(g.digest().starts_with("sha256:"));
    }
}
