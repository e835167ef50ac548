//! What the server refuses, and how: a status and a JSON error naming the fault.

use super::{Server, TOKEN};
use crate::common::Workspace;

#[test]
fn requests_without_the_token_get_401_and_nothing_else() {
    let ws = Workspace::new();
    let server = Server::start(&ws);
    let client = server.client();
    let run = client.start("pipeline", r#""secret input""#);
    let anonymous = client.without_token();
    for path in [
        "/v1/runs".to_string(),
        format!("/v1/runs/{run}"),
        format!("/v1/runs/{run}/events"),
        "/v1/workflows".to_string(),
        "/v1/openapi.json".to_string(),
        "/".to_string(),
    ] {
        let reply = anonymous.get(&path);
        reply.assert_error(401, "token");
        assert!(!reply.text.contains(&run), "{path}: {}", reply.text);
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
    }
    anonymous
        .post("/v1/runs", r#"{"workflow": "pipeline", "input": "x"}"#)
        .assert_error(401, "token");
    let mut wrong = client.clone();
    wrong.token = Some(format!("{TOKEN}x"));
    wrong.get("/v1/runs").assert_error(401, "token");
    // The API takes the token in its header only, not in the query.
    anonymous
        .get(&format!("/v1/runs?token={TOKEN}"))
        .assert_error(401, "token");
    assert_eq!(anonymous.get("/healthz").status, 200);
    assert_eq!(client.get("/v1/runs").status, 200);
    // Nothing on stderr shows the token.
    assert!(server.stderr().iter().all(|line| !line.contains(TOKEN)));
}

#[test]
fn unknown_runs_checkpoints_workflows_and_requests_are_named_in_the_error() {
    let ws = Workspace::new();
    let server = Server::start(&ws);
    let client = server.client();
    let missing = "01a23300-0000-7000-8000-000000000000";
    client
        .get(&format!("/v1/runs/{missing}"))
        .assert_error(404, missing);
    client
        .get(&format!("/v1/runs/{missing}/events"))
        .assert_error(404, missing);
    client
        .post(&format!("/v1/runs/{missing}/cancel"), "")
        .assert_error(404, missing);
    client
        .get("/v1/checkpoints/0000ffff")
        .assert_error(404, "0000ffff");
    client
        .post("/v1/runs", r#"{"workflow": "pipelin", "input": "x"}"#)
        .assert_error(422, "did you mean 'pipeline'");
    // A request can name a workflow of the catalog only: never a path.
    client
        .post("/v1/runs", r#"{"workflow": "../pipeline", "input": "x"}"#)
        .assert_error(422, "'../pipeline' is not under");
    client
        .post("/v1/runs", r#"{"workflow": "/etc/passwd", "input": "x"}"#)
        .assert_error(422, "is not under");

    let run = client.start("plan_review", r#""task""#);
    client.events_until(&run, "run_paused");
    client
        .post(
            &format!("/v1/runs/{run}/requests/planner:7:1"),
            r#"{"response": true}"#,
        )
        .assert_error(409, "planner:0:1");
    client
        .post(
            &format!("/v1/runs/{run}/requests/not-an-id"),
            r#"{"response": true}"#,
        )
        .assert_error(422, "not-an-id");
    client
        .post(&format!("/v1/runs/{run}/cancel"), "")
        .assert_error(409, "paused");
    client
        .get(&format!(
            "/v1/checkpoints/{}?state=plannr",
            client.run(&run)["last_checkpoint"].as_str().unwrap()
        ))
        .assert_error(404, "did you mean 'planner'");
}

#[test]
fn bad_bodies_and_ids_are_refused_before_anything_runs() {
    let ws = Workspace::new();
    let server = Server::start(&ws);
    let client = server.client();
    client
        .post("/v1/runs", "{not json")
        .assert_error(422, "request body");
    client
        .post("/v1/runs", r#"{"workflow": "pipeline"}"#)
        .assert_error(422, "input");
    client
        .post(
            "/v1/runs",
            r#"{"workflow": "pipeline", "input": 1, "extra": 2}"#,
        )
        .assert_error(422, "extra");
    client
        .post(
            "/v1/runs",
            r#"{"workflow": "pipeline", "input": 1, "input_kind": ""}"#,
        )
        .assert_error(422, "input_kind");
    let over = format!(
        r#"{{"workflow": "pipeline", "input": "{}"}}"#,
        "x".repeat(5 << 20)
    );
    let reply = server.raw_post("/v1/runs", &over, false);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("is over 4194304 bytes"), "{reply}");
    // Sent without a length, it is cut at the limit.
    let reply = server.raw_post("/v1/runs", &over, true);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    client
        .get("/v1/runs?status=done")
        .assert_error(422, "status 'done'");
    client.get("/v1/runs/bad..id").assert_error(422, "bad..id");
    client
        .get("/v1/checkpoints/..%2F..%2Fetc%2Fpasswd")
        .assert_error(422, "not a checkpoint id");
    client.get("/v1/runs/x/events").assert_error(404, "'x'");
    let run = client.start("pipeline", r#""x""#);
    let bad_id = client.events_raw(&run, "not-a-number");
    bad_id.assert_error(422, "Last-Event-ID");
    assert!(
        client.get("/v1/runs").json()["runs"]
            .as_array()
            .unwrap()
            .len()
            == 1
    );
}

#[test]
fn the_openapi_document_describes_every_route() {
    let ws = Workspace::new();
    let server = Server::start(&ws);
    let document = server.client().get("/v1/openapi.json").json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/workflows", "get"),
        ("/v1/runs", "post"),
        ("/v1/runs", "get"),
        ("/v1/runs/{run_id}", "get"),
        ("/v1/runs/{run_id}/events", "get"),
        ("/v1/runs/{run_id}/requests", "get"),
        ("/v1/runs/{run_id}/requests/{request_id}", "post"),
        ("/v1/runs/{run_id}/checkpoints", "get"),
        ("/v1/runs/{run_id}/resume", "post"),
        ("/v1/runs/{run_id}/cancel", "post"),
        ("/v1/checkpoints/{checkpoint_id}", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is not described"
        );
    }
    let schemes = &document["components"]["securitySchemes"]["token"];
    assert_eq!(schemes["scheme"], "bearer");
    assert!(document["components"]["schemas"]["RunDetail"].is_object());
    // SIGTERM stops it cleanly.
    assert!(server.stop(libc::SIGTERM).success());
}

#[test]
fn a_server_without_a_token_makes_one_and_prints_it_in_its_url_only() {
    let ws = Workspace::new();
    ws.pipeline();
    let server = Server::start_with(&ws, &[], &[]);
    let page = server.page_url();
    let token = page
        .split_once("?token=")
        .expect("a token in the URL")
        .1
        .to_string();
    assert_eq!(token.len(), 64);
    let mut client = server.client();
    client.token = Some(token.clone());
    assert_eq!(client.get("/v1/workflows").status, 200);
    let html = client.without_token().get(&format!("/?token={token}"));
    assert_eq!(html.status, 200);
    assert!(
        html.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert!(html.text.contains("<html"));
    client
        .without_token()
        .get("/?token=nope")
        .assert_error(401, "token");
    let weak = Workspace::new();
    weak.pipeline();
    let refused = weak.superstep_env(
        &[("SUPERSTEP_TOKEN", "short")],
        &["serve", "--workflows", ".", "--listen", "127.0.0.1:0"],
    );
    refused
        .assert_code(2)
        .assert_stderr("SUPERSTEP_TOKEN: at least 16");
}

#[test]
fn a_manifest_that_does_not_load_is_listed_with_why_and_cannot_be_run() {
    let ws = Workspace::new();
    ws.manifest("broken.toml", "[workflow]\nname = \"b\"\n");
    ws.manifest("garbled.toml", "[workflow\n");
    let server = Server::start(&ws);
    let client = server.client();
    let listed = client.get("/v1/workflows").json();
    let broken = listed["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == "broken")
        .expect("the broken manifest is listed");
    let why = broken["error"].as_str().unwrap();
    assert!(
        why.contains("broken.toml: executors: the workflow has no executors"),
        "{why}"
    );
    assert!(listed.to_string().contains("garbled.toml"), "{listed}");
    client
        .post("/v1/runs", r#"{"workflow": "broken", "input": 1}"#)
        .assert_error(422, "workflow 'broken' cannot be run");
    assert!(
        server
            .stderr()
            .iter()
            .any(|l| l.contains("broken.toml cannot be run"))
    );
    let missing = ws.superstep(&["serve", "--workflows", "nowhere", "--listen", "127.0.0.1:0"]);
    missing.assert_code(2).assert_stderr("--workflows nowhere");
}
