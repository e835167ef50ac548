//! `superstep serve --store postgres://...`: the same API over a database's queue,
//! shared by every server on it (PostgreSQL started by the tests, as in
//! `postgres_server`).

use super::{Client, GATED, Server, TOKEN};
use crate::common::Workspace;
use crate::workers::database;
use serde_json::Value;

/// A server on the database at `url` running `workers` runs at once itself.
fn server_on(ws: &Workspace, url: &str, workers: &str) -> Server {
    ws.pipeline();
    ws.plan_review();
    ws.manifest("gated.toml", GATED);
    let args = ["--store", url, "--workers", workers, "--lease-ttl", "2s"];
    Server::start_with(ws, &[("SUPERSTEP_TOKEN", TOKEN)], &args)
}

fn events_named<'a>(events: &'a [(u64, Value)], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e["event"] == name)
        .collect()
}

#[test]
fn a_run_started_on_one_server_is_followed_and_answered_on_another() {
    let ws = Workspace::new();
    let url = database(&ws);
    ws.set_gate(false);
    let worker = server_on(&ws, &url, "2");
    let api_only = server_on(&ws, &url, "0");
    let (a, b) = (worker.client(), api_only.client());

    // Started through the server that runs no worker: the other one runs it.
    let run = b.start("plan_review", r#""launch the beta""#);
    let first = b.events_until(&run, "run_paused");
    assert_eq!(first[0].1["event"], "run_started");
    a.until_status(&run, "paused");
    let shown = a.run(&run);
    assert_eq!(shown["status"], "paused");
    assert_eq!(shown["workflow"], "plan_review");
    assert_eq!(shown["pending"][0]["request_id"], "planner:0:1");

    let approve = r#"{"response": {"approved": true}}"#;
    let answered = b.post(&format!("/v1/runs/{run}/requests/planner:0:1"), approve);
    assert_eq!(answered.status, 202, "{}", answered.text);
    b.post(&format!("/v1/runs/{run}/requests/planner:0:1"), approve)
        .assert_error(409, "planner:0:1");
    let rest: Vec<(u64, Value)> = a.events(&run, Some(first.last().unwrap().0)).collect();
    assert_eq!(rest.last().unwrap().1["event"], "run_completed");
    assert_eq!(rest[0].0, first.len() as u64, "no event lost or repeated");

    for client in [&a, &b] {
        let shown = client.run(&run);
        assert_eq!(shown["status"], "completed");
        assert_eq!(shown["outputs"][0]["body"]["rounds"], 1);
        assert_eq!(shown["pending"], serde_json::json!([]));
    }
    let listed = b
        .get("/v1/runs?workflow=plan_review&status=completed")
        .json();
    assert_eq!(listed["runs"][0]["run_id"], run.as_str());

    // One idempotency key, two servers: one run.
    let body = r#"{"workflow": "pipeline", "input": "Hi"}"#;
    let key = [("Idempotency-Key", "shared-key")];
    let first = a.post_with("/v1/runs", body, &key);
    let second = b.post_with("/v1/runs", body, &key);
    assert_eq!((first.status, second.status), (201, 200));
    assert_eq!(first.json()["run_id"], second.json()["run_id"]);
    b.post_with(
        "/v1/runs",
        r#"{"workflow": "pipeline", "input": "Ho"}"#,
        &key,
    )
    .assert_error(422, "shared-key");
}

#[test]
fn a_run_in_the_database_is_cancelled_resumed_and_branched() {
    let ws = Workspace::new();
    let url = database(&ws);
    ws.set_gate(false);
    let server = server_on(&ws, &url, "2");
    let client: Client = server.client();
    let run = client.start("gated", r#""hold""#);
    let mut stream = client.events(&run, None);
    assert!(stream.any(|(_, e)| e["event"] == "executor_invoked" && e["executor"] == "slow"));
    let cancel = client.post(&format!("/v1/runs/{run}/cancel"), "");
    assert_eq!(cancel.status, 202, "{}", cancel.text);
    ws.set_gate(true);
    client.until_status(&run, "cancelled");
    // The command line sees the same run: `runs wait` exits 3, as for a pause.
    ws.superstep(&["runs", "wait", &run, "--store", &url])
        .assert_code(3);
    let stopped = client.run(&run);
    assert_eq!(stopped["outputs"], serde_json::json!([]));
    client
        .post(&format!("/v1/runs/{run}/cancel"), "")
        .assert_error(409, "cancelled");

    let resumed = client.post(&format!("/v1/runs/{run}/resume"), "{}");
    assert_eq!(resumed.status, 202, "{}", resumed.text);
    assert_eq!(resumed.json()["checkpoint"], stopped["last_checkpoint"]);
    client.until_status(&run, "completed");
    let events: Vec<(u64, Value)> = client.events(&run, None).collect();
    let sink_runs = events_named(&events, "executor_invoked")
        .into_iter()
        .filter(|e| e["executor"] == "sink")
        .count();
    assert_eq!(sink_runs, 1);
    assert_eq!(client.run(&run)["outputs"].as_array().unwrap().len(), 1);

    // A branch from the first checkpoint: the run goes on from the branch, even though
    // the first chain is longer.
    let tree = client.get(&format!("/v1/runs/{run}/checkpoints")).json();
    let first = tree["checkpoints"][0]["checkpoint_id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = format!(r#"{{"checkpoint": "{first}"}}"#);
    let branched = client.post(&format!("/v1/runs/{run}/resume"), &body);
    assert_eq!(branched.status, 202, "{}", branched.text);
    client.until_status(&run, "completed");
    let tree = client.get(&format!("/v1/runs/{run}/checkpoints")).json();
    let nodes = tree["checkpoints"].as_array().unwrap();
    let parent_of = |id: &str| {
        nodes
            .iter()
            .find(|n| n["checkpoint_id"] == id)
            .and_then(|n| n["parent_id"].as_str())
            .map(str::to_string)
    };
    let mut children: Vec<&Value> = nodes
        .iter()
        .filter(|n| n["parent_id"] == first.as_str())
        .collect();
    assert_eq!(children.len(), 2, "{tree}");
    children.sort_by_key(|n| n["created_at"].as_str().unwrap().to_string());
    let branch = children[1]["checkpoint_id"].as_str().unwrap();
    let last = client.run(&run)["last_checkpoint"]
        .as_str()
        .unwrap()
        .to_string();
    let mut chain = vec![last.clone()];
    while let Some(parent) = parent_of(chain.last().unwrap()) {
        chain.push(parent);
    }
    assert!(
        chain.iter().any(|id| id == branch),
        "{last} is not on the branch: {tree}"
    );
}

#[test]
fn a_lease_too_short_to_renew_is_refused() {
    let ws = Workspace::new();
    let url = database(&ws);
    ws.pipeline();
    let args = ["serve", "--workflows", ".", "--listen", "127.0.0.1:0"];
    let refused = ws.superstep_env(
        &[("SUPERSTEP_TOKEN", TOKEN)],
        &[&args[..], &["--store", &url, "--lease-ttl", "100ms"]].concat(),
    );
    refused
        .assert_code(2)
        .assert_stderr("--lease-ttl 100ms: at least 300ms");
}
