//! Forking a checkpoint (time travel): a new checkpoint of the same run whose parent is
//! the given one, with executor states, shared values and queued messages edited. It
//! records what changed and when, so that listings tell it from one a run wrote. An
//! edited state reaches its executor only through the executor's own `restore`, as any
//! state does.

use super::{Checkpoint, QueuedMessage, Status};
use crate::error::{Result, did_you_mean, invalid};
use crate::graph::Graph;
use crate::message::{INPUT_SOURCE, Payload};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// The edits of a fork. They apply in this order: states, shared values, dropped
/// queues, then queued messages (so dropping and queuing replaces a queue).
#[derive(Debug, Default, Clone)]
pub struct Edits {
    /// Executor ids with their new states.
    pub states: Vec<(String, Bytes)>,
    /// Shared-state keys with their new values.
    pub shared: Vec<(String, Bytes)>,
    /// Executors whose queued messages are dropped.
    pub drop_queued: Vec<String>,
    /// Messages to queue, each after those queued before it.
    pub queue: Vec<QueueEdit>,
}

/// A message a fork queues for an executor.
#[derive(Debug, Clone)]
pub struct QueueEdit {
    /// The receiving executor.
    pub executor: String,
    /// The message kind; without one, the only kind the edges into the executor carry.
    pub kind: Option<String>,
    /// The body.
    pub body: Bytes,
}

/// What a fork changed: recorded in the checkpoint it made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    /// When the fork was made (RFC 3339, UTC).
    pub edited_at: String,
    /// What changed, in the order applied.
    pub changes: Vec<Change>,
}

/// One change a fork made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Change {
    /// An executor's state was replaced.
    State {
        /// The executor.
        executor: String,
    },
    /// A shared-state value was set.
    Shared {
        /// The key.
        key: String,
    },
    /// The messages queued for an executor were dropped.
    DroppedQueued {
        /// The executor.
        executor: String,
        /// How many messages.
        messages: usize,
    },
    /// A message was queued.
    Queued {
        /// The receiving executor.
        executor: String,
        /// The sender the message is queued as coming from.
        source: String,
        /// The message kind.
        kind: String,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::State { executor } => write!(f, "state of '{executor}' replaced"),
            Change::Shared { key } => write!(f, "shared value '{key}' set"),
            Change::DroppedQueued { executor, messages } => {
                write!(f, "{messages} message(s) queued for '{executor}' dropped")
            }
            Change::Queued {
                executor,
                source,
                kind,
            } => write!(
                f,
                "'{kind}' message from '{source}' queued for '{executor}'"
            ),
        }
    }
}

/// The fork of `parent` with `edits`, for the workflow whose graph is `graph` (the
/// graph `parent` was taken with): a new id, `parent` as parent, the same run and
/// superstep, its status from what is left queued and pending. Refused, naming the
/// edit at fault: no edits, an executor the graph lacks, and a message that no edge
/// into its executor carries.
pub fn fork(parent: &Checkpoint, edits: &Edits, graph: &Graph) -> Result<Checkpoint> {
    if edits.states.is_empty()
        && edits.shared.is_empty()
        && edits.drop_queued.is_empty()
        && edits.queue.is_empty()
    {
        return Err(invalid(
            "nothing to change: give --state, --shared, --drop-queued or --queue",
        ));
    }
    let mut child = parent.clone();
    let mut changes = Vec::new();
    for (executor, state) in &edits.states {
        let record = child
            .executors
            .get_mut(executor)
            .ok_or_else(|| unknown("--state", executor, parent))?;
        record.state = Payload::encode(state);
        changes.push(Change::State {
            executor: executor.clone(),
        });
    }
    for (key, value) in &edits.shared {
        child
            .shared_state
            .insert(key.clone(), Payload::encode(value));
        changes.push(Change::Shared { key: key.clone() });
    }
    for executor in &edits.drop_queued {
        graph
            .index_of(executor)
            .ok_or_else(|| unknown("--drop-queued", executor, parent))?;
        let messages = child.queued.remove(executor).map_or(0, |q| q.len());
        changes.push(Change::DroppedQueued {
            executor: executor.clone(),
            messages,
        });
    }
    for edit in &edits.queue {
        let (source, kind) = sender(edit, graph, parent)?;
        child
            .queued
            .entry(edit.executor.clone())
            .or_default()
            .push(QueuedMessage {
                source: source.clone(),
                kind: kind.clone(),
                body: Payload::encode(&edit.body),
            });
        changes.push(Change::Queued {
            executor: edit.executor.clone(),
            source,
            kind,
        });
    }
    let now = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    child.checkpoint_id = uuid::Uuid::now_v7().to_string();
    child.parent_id = Some(parent.checkpoint_id.clone());
    child.created_at = now.clone();
    child.status = Status::of(child.queued_count(), child.pending_requests.len());
    child.edit = Some(Edit {
        edited_at: now,
        changes,
    });
    Ok(child)
}

/// The error of an edit that names an executor `parent`'s workflow lacks.
fn unknown(option: &str, executor: &str, parent: &Checkpoint) -> crate::error::Error {
    let ids = parent.executors.keys().map(String::as_str);
    invalid(format!(
        "{option} {executor}: checkpoint {} has no executor '{executor}'{} (executors: {})",
        parent.checkpoint_id,
        did_you_mean(executor, ids.clone()),
        ids.collect::<Vec<_>>().join(", ")
    ))
}

/// The sender and kind of a queued message: the first executor (in id order) with an
/// edge to its executor that carries its kind, or the run's input for the start
/// executor when none does. Without a kind, the only kind the edges into the executor
/// carry (the start executor with no edge into it takes `input`).
fn sender(edit: &QueueEdit, graph: &Graph, parent: &Checkpoint) -> Result<(String, String)> {
    let to = graph
        .index_of(&edit.executor)
        .ok_or_else(|| unknown("--queue", &edit.executor, parent))?;
    let executor = &edit.executor;
    let is_start = to == graph.start();
    let carried = graph.kinds_into(to);
    let kind = match (&edit.kind, carried.as_deref()) {
        (Some(kind), _) => kind.clone(),
        (None, Some([only])) => only.clone(),
        (None, Some([])) if is_start => "input".to_string(),
        (None, Some([])) => {
            return Err(invalid(format!(
                "--queue {executor}: no edge leads to '{executor}', so no message could reach it"
            )));
        }
        (None, _) => {
            return Err(invalid(format!(
                "--queue {executor}: say the message's kind, as {executor}:<kind>=<json> (the edges into '{executor}' carry {})",
                describe(carried.as_deref())
            )));
        }
    };
    match graph.senders(to, &kind).first() {
        Some(&from) => Ok((graph.id(from).to_string(), kind)),
        None if is_start => Ok((INPUT_SOURCE.to_string(), kind)),
        None => Err(invalid(format!(
            "--queue {executor}:{kind}: no edge into '{executor}' carries kind '{kind}' (they carry {})",
            describe(carried.as_deref())
        ))),
    }
}

/// The kinds edges carry, in words.
fn describe(kinds: Option<&[String]>) -> String {
    match kinds {
        None => "any kind".to_string(),
        Some([]) => "nothing".to_string(),
        Some(kinds) => kinds.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::tests::sample;
    use crate::manifest::Manifest;
    use std::path::Path;

    /// `a` (start) -> `b` carrying `text`; `c` with no edge into it; `b` -> `a` any kind.
    fn graph() -> Graph {
        let manifest = Manifest::parse(
            r#"
            [workflow]
            name = "w"
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
            to = "b"
            kinds = ["text"]
            [[edges]]
            from = "b"
            to = "a"
            "#,
            Path::new("/m.toml"),
        )
        .unwrap();
        Graph::new(&manifest)
    }

    fn queue(executor: &str, kind: Option<&str>) -> QueueEdit {
        QueueEdit {
            executor: executor.into(),
            kind: kind.map(str::to_string),
            body: Bytes::from_static(b"\"x\""),
        }
    }

    fn error(edits: Edits) -> String {
        fork(&sample(), &edits, &graph()).unwrap_err().to_string()
    }

    #[test]
    fn a_fork_is_a_child_with_the_edits_and_their_record() {
        let parent = sample();
        let edits = Edits {
            states: vec![("a".into(), Bytes::from_static(br#"{"count":7}"#))],
            shared: vec![("k2".into(), Bytes::from_static(b"1"))],
            drop_queued: vec!["a".into()],
            queue: vec![queue("b", None)],
        };
        let child = fork(&parent, &edits, &graph()).unwrap();
        assert_ne!(child.checkpoint_id, parent.checkpoint_id);
        assert_eq!(
            child.parent_id.as_deref(),
            Some(parent.checkpoint_id.as_str())
        );
        assert_eq!((child.run_id.as_str(), child.superstep), ("run-1", 1));
        assert_eq!(child.executors["a"].state.to_text(), r#"{"count":7}"#);
        assert_eq!(child.executors["a"].component, "sha256:11");
        assert_eq!(child.shared_state.len(), 2);
        assert!(!child.queued.contains_key("a"));
        let queued = &child.queued["b"][0];
        assert_eq!(
            (queued.source.as_str(), queued.kind.as_str()),
            ("a", "text")
        );
        assert_eq!(child.status, Status::Running);
        let changes = &child.edit.as_ref().unwrap().changes;
        let described: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            described,
            [
                "state of 'a' replaced",
                "shared value 'k2' set",
                "1 message(s) queued for 'a' dropped",
                "'text' message from 'a' queued for 'b'",
            ]
        );
    }

    #[test]
    fn dropping_every_queued_message_completes_the_fork() {
        let edits = Edits {
            drop_queued: vec!["a".into()],
            ..Edits::default()
        };
        let child = fork(&sample(), &edits, &graph()).unwrap();
        assert_eq!(child.status, Status::Completed);
    }

    #[test]
    fn the_start_takes_messages_from_its_edges_or_as_input() {
        let edits = |kind: Option<&str>| Edits {
            queue: vec![queue("a", kind)],
            ..Edits::default()
        };
        // The edge b -> a carries every kind, so a kind must be named.
        let err = error(edits(None));
        assert!(
            err.contains("say the message's kind, as a:<kind>=<json>"),
            "{err}"
        );
        assert!(err.contains("carry any kind"), "{err}");
        let child = fork(&sample(), &edits(Some("note")), &graph()).unwrap();
        assert_eq!(child.queued["a"][1].source, "b");
    }

    #[test]
    fn edits_the_graph_cannot_carry_are_refused() {
        let err = error(Edits {
            queue: vec![queue("c", None)],
            ..Edits::default()
        });
        assert!(err.contains("no edge leads to 'c'"), "{err}");
        let err = error(Edits {
            queue: vec![queue("b", Some("image"))],
            ..Edits::default()
        });
        assert!(
            err.contains(
                "--queue b:image: no edge into 'b' carries kind 'image' (they carry text)"
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_executors_and_empty_edits_are_refused() {
        let err = error(Edits {
            states: vec![("aa".into(), Bytes::new())],
            ..Edits::default()
        });
        assert!(
            err.contains(
                "--state aa: checkpoint 0190-abc has no executor 'aa' (did you mean 'a'?)"
            ),
            "{err}"
        );
        let err = error(Edits {
            queue: vec![queue("z", None)],
            ..Edits::default()
        });
        assert!(
            err.contains("--queue z: checkpoint 0190-abc has no executor 'z'"),
            "{err}"
        );
        let err = error(Edits::default());
        assert!(err.starts_with("nothing to change"), "{err}");
    }
}
