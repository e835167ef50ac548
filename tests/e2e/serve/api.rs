//! The API end to end: start, follow, answer, resume, cancel, idempotent starts.

use super::{Client, Server};
use crate::common::Workspace;
use serde_json::Value;

/// The events' names, in order.
fn names(events: &[(u64, Value)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, e)| e["event"].as_str().unwrap().to_string())
        .collect()
}

/// Asserts that events are numbered from `first` with no gap and none twice.
fn assert_numbered_from(events: &[(u64, Value)], first: u64) {
    let ids: Vec<u64> = events.iter().map(|(id, _)| *id).collect();
    let expected: Vec<u64> = (first..first + ids.len() as u64).collect();
    assert_eq!(ids, expected);
}

/// Starts a gated run and follows it until `slow` is being invoked.
fn held(client: &Client) -> String {
    let run = client.start("gated", r#""hold""#);
    let events = client.events_until(&run, "executor_invoked");
    assert_eq!(events.last().unwrap().1["executor"], "src");
    let mut stream = client.events(&run, Some(events.last().unwrap().0));
    assert!(stream.any(|(_, e)| e["event"] == "executor_invoked" && e["executor"] == "slow"));
    run
}

#[test]
fn plan_review_is_started_rejected_approved_and_completed_over_http() {
    let ws = Workspace::new();
    let server = Server::start(&ws);
    let client = server.client();
    let run = client.start("plan_review", r#""launch the beta""#);

    let first = client.events_until(&run, "run_paused");
    assert_numbered_from(&first, 0);
    assert_eq!(first[0].1["event"], "run_started");
    let shown = client.run(&run);
    assert_eq!(shown["status"], "paused");
    assert_eq!(shown["workflow"], "plan_review");
    let requests = client.get(&format!("/v1/runs/{run}/requests")).json();
    let request = &requests["requests"][0];
    assert_eq!(request["request_id"], "planner:0:1");
    assert_eq!(request["kind"], "plan-review");
    assert_eq!(request["body"]["task"], "launch the beta");

    let reject = r#"{"response": {"approved": false, "feedback": "add a rollback step"}}"#;
    let answered = client.post(&format!("/v1/runs/{run}/requests/planner:0:1"), reject);
    assert_eq!(answered.status, 202, "{}", answered.text);
    // Answered once: a second answer is refused, as the CLI refuses it.
    client
        .post(&format!("/v1/runs/{run}/requests/planner:0:1"), reject)
        .assert_error(409, "planner:0:1");

    let mut stream = client.events(&run, Some(first.last().unwrap().0));
    let second: Vec<(u64, Value)> = stream
        .by_ref()
        .take_while(|(_, e)| e["event"] != "run_paused")
        .collect();
    assert_numbered_from(&second, first.len() as u64);
    let asked: Vec<&Value> = second
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e["event"] == "request_info")
        .collect();
    assert_eq!(asked.last().unwrap()["request_id"], "planner:1:1");
    let pending = client.run(&run)["pending"].clone();
    assert_eq!(pending.as_array().unwrap().len(), 1, "{pending}");
    assert_eq!(pending[0]["request_id"], "planner:1:1");
    let plan = pending[0]["body"]["plan"].to_string();
    assert!(plan.contains("rollback"), "{plan}");

    let approve = r#"{"response": {"approved": true}}"#;
    let answered = client.post(&format!("/v1/runs/{run}/requests/planner:1:1"), approve);
    assert_eq!(answered.status, 202, "{}", answered.text);
    let rest: Vec<(u64, Value)> = stream.collect();
    assert_eq!(
        rest.last().unwrap().1["event"],
        "run_completed",
        "{:?}",
        names(&rest)
    );

    let shown = client.run(&run);
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["pending"], serde_json::json!([]));
    assert_eq!(shown["outputs"][0]["kind"], "report");
    assert_eq!(shown["outputs"][0]["body"]["rounds"], 2);
    assert_eq!(
        client.get(&format!("/v1/runs/{run}/requests")).json()["requests"],
        serde_json::json!([])
    );

    // The whole stream again, from a new connection, ends with the run.
    let all: Vec<(u64, Value)> = client.events(&run, None).collect();
    assert_numbered_from(&all, 0);
    assert_eq!(all.last().unwrap().1["event"], "run_completed");

    let tree = client.get(&format!("/v1/runs/{run}/checkpoints")).json();
    let checkpoints = tree["checkpoints"].as_array().unwrap();
    assert!(checkpoints.len() >= 4, "{tree}");
    assert_eq!(tree["latest"], shown["last_checkpoint"]);
    assert!(checkpoints[0]["parent_id"].is_null());
    let latest = tree["latest"].as_str().unwrap();
    let full = client.get(&format!("/v1/checkpoints/{latest}")).json();
    assert_eq!(full["run_id"], run.as_str());
    assert_eq!(full["status"], "completed");
    let state = client.get(&format!("/v1/checkpoints/{}?state=planner", &latest[..32]));
    assert_eq!(state.status, 200, "{}", state.text);
    assert_eq!(state.headers["content-type"], "application/json");
    assert!(state.json().is_object());

    // A fork made beside the server shows in the tree with what it changed.
    let first = checkpoints[0]["checkpoint_id"].as_str().unwrap();
    assert_eq!(checkpoints[0]["edits"], serde_json::json!([]));
    let forked = ws.superstep(&["checkpoints", "fork", first, "--shared", "k=1"]);
    forked.assert_code(0);
    let tree = client.get(&format!("/v1/runs/{run}/checkpoints")).json();
    let fork = tree["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["checkpoint_id"] == forked.stdout.trim())
        .unwrap_or_else(|| panic!("{tree}"))
        .clone();
    assert_eq!(fork["parent_id"], first);
    assert_eq!(fork["edits"], serde_json::json!(["shared value 'k' set"]));
}

#[test]
fn a_client_that_reconnects_with_last_event_id_misses_nothing_and_gets_nothing_twice() {
    let ws = Workspace::new();
    let server = Server::start(&ws);
    let client = server.client();
    let run = client.start("gated", r#""go""#);
    // Read a few events, then drop the connection in the middle of the run.
    let mut stream = client.events(&run, None);
    let before: Vec<(u64, Value)> = stream.by_ref().take(3).collect();
    drop(stream);
    assert_numbered_from(&before, 0);
    ws.set_gate(true);
    let after: Vec<(u64, Value)> = client.events(&run, Some(before[2].0)).collect();
    assert_numbered_from(&after, 3);
    assert_eq!(after.last().unwrap().1["event"], "run_completed");
    // The run is over: a reconnect in the middle gets exactly the rest, then the end.
    let all: Vec<(u64, Value)> = client.events(&run, None).collect();
    let middle = all.len() as u64 / 2;
    let rest: Vec<(u64, Value)> = client.events(&run, Some(middle)).collect();
    assert_eq!(rest, all[middle as usize + 1..].to_vec());
    let none: Vec<(u64, Value)> = client.events(&run, Some(all.last().unwrap().0)).collect();
    assert!(none.is_empty());
    // `?after=` is the same, for clients that cannot set headers.
    let query = client.get(&format!("/v1/runs/{run}/events?after={middle}"));
    let numbered = query.text.lines().filter(|l| l.starts_with("id:"));
    assert_eq!(numbered.count(), rest.len());
    assert!(
        query
            .text
            .contains("event: status\ndata: {\"status\":\"completed\"}")
    );
}

#[test]
fn a_cancelled_run_stops_at_its_barrier_and_resumes_where_it_stopped() {
    let ws = Workspace::new();
    let server = Server::start(&ws);
    let client = server.client();
    let run = held(&client);
    let cancel = client.post(&format!("/v1/runs/{run}/cancel"), "");
    assert_eq!(cancel.status, 202, "{}", cancel.text);
    ws.set_gate(true);
    let events = client.events_until(&run, "run_stopped");
    let shown = client.run(&run);
    assert_eq!(shown["status"], "cancelled");
    assert!(!names(&events).contains(&"output".to_string()));
    client
        .post(&format!("/v1/runs/{run}/cancel"), "")
        .assert_error(409, "cancelled");

    let resumed = client.post(&format!("/v1/runs/{run}/resume"), "{}");
    assert_eq!(resumed.status, 202, "{}", resumed.text);
    assert_eq!(resumed.json()["checkpoint"], shown["last_checkpoint"]);
    let rest: Vec<(u64, Value)> = client
        .events(&run, Some(events.last().unwrap().0))
        .collect();
    let rest_names = names(&rest);
    assert_eq!(rest_names.last().unwrap(), "run_completed");
    // Nothing before the barrier ran again.
    let invoked: Vec<&Value> = rest
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e["event"] == "executor_invoked")
        .collect();
    assert_eq!(invoked.len(), 1, "{rest_names:?}");
    assert_eq!(invoked[0]["executor"], "sink");
    let outputs = &client.run(&run)["outputs"];
    assert_eq!(outputs.as_array().unwrap().len(), 1, "{outputs}");
}

#[test]
fn resuming_an_older_checkpoint_starts_a_branch_of_the_same_run() {
    let ws = Workspace::new();
    let server = Server::start(&ws);
    let client = server.client();
    let run = client.start("pipeline", r#""Hello World""#);
    client.events_until(&run, "run_completed");
    let tree = client.get(&format!("/v1/runs/{run}/checkpoints")).json();
    let first = tree["checkpoints"][0]["checkpoint_id"]
        .as_str()
        .unwrap()
        .to_string();
    let count = tree["checkpoints"].as_array().unwrap().len();

    let body = format!(r#"{{"checkpoint": "{first}"}}"#);
    let resumed = client.post(&format!("/v1/runs/{run}/resume"), &body);
    assert_eq!(resumed.status, 202, "{}", resumed.text);
    let all: Vec<(u64, Value)> = client.events(&run, None).collect();
    let completions = names(&all).iter().filter(|n| *n == "run_completed").count();
    assert_eq!(completions, 2);

    let tree = client.get(&format!("/v1/runs/{run}/checkpoints")).json();
    let nodes = tree["checkpoints"].as_array().unwrap();
    assert!(nodes.len() > count, "{tree}");
    let children = nodes
        .iter()
        .filter(|n| n["parent_id"] == first.as_str())
        .count();
    assert_eq!(children, 2, "the first checkpoint has two branches: {tree}");
    let shown = client.run(&run);
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["outputs"].as_array().unwrap().len(), 1);

    // A checkpoint of another run is refused.
    let other = client.start("pipeline", r#""x""#);
    client.events_until(&other, "run_completed");
    client
        .post(&format!("/v1/runs/{other}/resume"), &body)
        .assert_error(422, &run);
}

#[test]
fn a_retried_start_with_the_same_idempotency_key_returns_the_same_run() {
    let ws = Workspace::new();
    let server = Server::start(&ws);
    let client = server.client();
    let body = r#"{"workflow": "pipeline", "input": "Hello"}"#;
    let key = [("Idempotency-Key", "order-42")];
    let first = client.post_with("/v1/runs", body, &key);
    assert_eq!(first.status, 201, "{}", first.text);
    let run = first.json()["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        first.headers["location"],
        format!("/v1/runs/{run}").as_str()
    );
    let again = client.post_with("/v1/runs", body, &key);
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json()["run_id"], run.as_str());
    assert_eq!(again.json()["created"], false);
    let runs = client.get("/v1/runs?workflow=pipeline").json();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    // The same key with another request is refused.
    let other = r#"{"workflow": "pipeline", "input": "Bye"}"#;
    client
        .post_with("/v1/runs", other, &key)
        .assert_error(422, "order-42");
    // Without a key, every start is a new run.
    let fresh = client.post("/v1/runs", body);
    assert_eq!(fresh.status, 201);
    assert_ne!(fresh.json()["run_id"], run.as_str());
}

#[test]
fn runs_are_listed_newest_first_and_filtered() {
    let ws = Workspace::new();
    let server = Server::start(&ws);
    let client = server.client();
    let a = client.start("pipeline", r#""a""#);
    client.events_until(&a, "run_completed");
    let b = client.start("plan_review", r#""b""#);
    client.events_until(&b, "run_paused");
    let all = client.get("/v1/runs").json();
    let ids: Vec<&str> = all["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [b.as_str(), a.as_str()]);
    let paused = client.get("/v1/runs?status=paused").json();
    assert_eq!(paused["runs"].as_array().unwrap().len(), 1);
    assert_eq!(paused["runs"][0]["run_id"], b.as_str());
    let workflows = client.get("/v1/workflows").json();
    let ids: Vec<&str> = workflows["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gated", "pipeline", "plan_review"]);
    let plan = &workflows["workflows"][2];
    assert_eq!(plan["name"], "plan-review");
    assert!(plan["mermaid"].as_str().unwrap().contains("planner"));
    assert_eq!(plan["edges"][0]["from"], "planner");
}

#[test]
fn a_restarted_server_takes_up_the_runs_its_store_holds() {
    let ws = Workspace::new();
    let server = Server::start(&ws);
    let client = server.client();
    let paused = client.start("plan_review", r#""launch""#);
    client.events_until(&paused, "run_paused");
    let done = client.start("pipeline", r#""Hi""#);
    client.events_until(&done, "run_completed");
    assert!(server.stop(libc::SIGTERM).success());

    let server = Server::start(&ws);
    let client = server.client();
    let shown = client.run(&paused);
    assert_eq!(shown["status"], "paused");
    assert_eq!(shown["workflow"], "plan_review");
    assert_eq!(shown["pending"][0]["request_id"], "planner:0:1");
    assert_eq!(client.run(&done)["status"], "completed");
    let approve = r#"{"response": {"approved": true}}"#;
    let answered = client.post(&format!("/v1/runs/{paused}/requests/planner:0:1"), approve);
    assert_eq!(answered.status, 202, "{}", answered.text);
    let events = client.events_until(&paused, "run_completed");
    assert_eq!(events[0].0, 0, "a taken-up run's events start anew");
    assert_eq!(client.run(&paused)["outputs"][0]["kind"], "report");
}
