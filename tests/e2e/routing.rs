//! Fan-out, fan-in, kind filters, targeted sends and shared-state visibility, on a
//! small graph of probe executors.

use crate::common::*;
use serde_json::{Value, json};

const GRAPH: &str = r#"
[workflow]
name = "routing"
start = "a"

[[executors]]
id = "a"
component = "@test-guests@/probe.wasm"
[executors.config]
forward = [
    { kind = "x" },
    { kind = "y" },
    { kind = "y", target = "b" },
    { kind = "x", target = "d" },
    { kind = "x", target = "nobody" },
    { kind = "z", target = "c" },
    { kind = "w" },
]

[[executors]]
id = "b"
component = "@test-guests@/probe.wasm"
[executors.config]
forward = [{ kind = "fwd" }]
set_shared = "k"
read_shared = ["k"]

[[executors]]
id = "c"
component = "@test-guests@/probe.wasm"
[executors.config]
forward = [{ kind = "fwd" }]
read_shared = ["k"]

[[executors]]
id = "d"
component = "@test-guests@/probe.wasm"
[executors.config]
yield = true
read_shared = ["k"]

[[edges]]
from = "a"
to = "b"
kinds = ["x"]

[[edges]]
from = "a"
to = "c"

[[edges]]
from = "b"
to = "d"

[[edges]]
from = "c"
to = "d"
"#;

fn wrapped(by: &str, of: &str, body: Value) -> Value {
    json!({"by": by, "of": of, "body": body})
}

#[test]
fn fan_out_fan_in_kind_filters_and_targeted_sends() {
    let ws = Workspace::new();
    let manifest = ws.manifest("routing.toml", GRAPH);
    let run = ws.superstep(&[
        "run",
        manifest.to_str().unwrap(),
        "--input",
        "1",
        "--events",
        "jsonl",
    ]);
    run.assert_code(0);

    let started: Vec<Value> = run
        .events_named("superstep_started")
        .iter()
        .map(|e| e["executors"].clone())
        .collect();
    assert_eq!(started, vec![json!(["a"]), json!(["b", "c"]), json!(["d"])]);

    let a_body = wrapped("a", "input", json!(1));
    // d hears b first, then c in c's send order: fan-in ordered by sender id.
    assert_eq!(
        run.outputs(),
        vec![
            wrapped("b", "x", a_body.clone()),
            wrapped("c", "x", a_body.clone()),
            wrapped("c", "y", a_body.clone()),
            wrapped("c", "z", a_body.clone()),
            wrapped("c", "w", a_body.clone()),
        ]
    );

    let last = latest_checkpoint(&ws.path().join("checkpoints"));
    let states = states(&last);
    // Refused sends reach the guest as errors, and nothing is sent for them.
    assert_eq!(
        states["a"]["send_errors"],
        json!([
            "the edge 'a' -> 'b' does not carry kind 'y' (it carries x)",
            "no edge from 'a' to 'd'",
            "no executor 'nobody' in this workflow",
        ])
    );
    let kinds = |id: &str| -> Vec<Value> {
        states[id]["received"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kind"].clone())
            .collect()
    };
    assert_eq!(
        kinds("b"),
        vec![json!("x")],
        "the kind filter keeps y, z and w from b"
    );
    assert_eq!(
        kinds("c"),
        vec![json!("x"), json!("y"), json!("z"), json!("w")]
    );
    let sources: Vec<Value> = states["d"]["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].clone())
        .collect();
    assert_eq!(
        sources,
        vec![json!("b"), json!("c"), json!("c"), json!("c"), json!("c")]
    );

    // b sees its own write at once; c, in the same superstep, does not; d, after the
    // barrier, does.
    let write = wrapped("a", "input", json!(1));
    assert_eq!(states["b"]["shared_reads"], json!([["k", write]]));
    assert_eq!(
        states["c"]["shared_reads"],
        json!([["k", null], ["k", null], ["k", null], ["k", null]])
    );
    assert_eq!(states["d"]["shared_reads"].as_array().unwrap().len(), 5);
    assert!(
        states["d"]["shared_reads"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r[1] == write)
    );
    assert_eq!(last["shared_state"]["k"]["json"], write);
}
