//! OpenTelemetry: `--otlp` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) sends a span per run,
//! superstep and executor call to an OTLP/HTTP collector, here a small one on loopback
//! that decodes what it receives.

use crate::common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// An OTLP/HTTP collector on 127.0.0.1 that keeps every span it receives (before it
/// answers, so that they are there when the exporting process has exited).
pub(crate) struct Collector {
    port: u16,
    spans: Arc<Mutex<Vec<Span>>>,
    services: Arc<Mutex<BTreeSet<String>>>,
}

impl Collector {
    pub(crate) fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let collector = Collector {
            port: listener.local_addr().unwrap().port(),
            spans: Arc::default(),
            services: Arc::default(),
        };
        let (spans, services) = (collector.spans.clone(), collector.services.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut line, mut length, mut path) = (String::new(), 0, String::new());
                reader.read_line(&mut line).unwrap();
                path.push_str(line.split(' ').nth(1).unwrap_or_default());
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    let header = line.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    let (name, value) = header.split_once(':').unwrap();
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                assert_eq!(path, "/v1/traces");
                let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
                for resource in request.resource_spans {
                    let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
                    if let Some(name) = attributes.iter().find(|a| a.key == "service.name") {
                        services.lock().unwrap().insert(text(name.value.as_ref()));
                    }
                    let scoped = resource.scope_spans.into_iter().flat_map(|s| s.spans);
                    spans.lock().unwrap().extend(scoped);
                }
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        collector
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The spans received, named `name`.
    pub(crate) fn spans(&self, name: &str) -> Vec<Span> {
        let spans = self.spans.lock().unwrap();
        spans.iter().filter(|s| s.name == name).cloned().collect()
    }
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(n)) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// Attribute `superstep.<key>` of `span`, as text ("" when missing).
pub(crate) fn attribute(span: &Span, key: &str) -> String {
    let key = format!("superstep.{key}");
    let found = span.attributes.iter().find(|a| a.key == key);
    found.map(|a| text(a.value.as_ref())).unwrap_or_default()
}

#[test]
fn a_run_is_traced_as_spans_of_its_supersteps_and_calls() {
    let ws = Workspace::new();
    let collector = Collector::start();
    let manifest = ws.pipeline();
    let run = ws.superstep(&[
        "run",
        manifest.to_str().unwrap(),
        "--input",
        "\"Hello\"",
        "--otlp",
        &collector.endpoint(),
    ]);
    run.assert_code(0);
    assert_eq!(
        *collector.services.lock().unwrap(),
        BTreeSet::from(["superstep".to_string()])
    );

    let runs = collector.spans("workflow run");
    assert_eq!(runs.len(), 1);
    let root = &runs[0];
    assert!(root.parent_span_id.is_empty());
    assert_eq!(attribute(root, "workflow"), "text-pipeline");
    assert_eq!(attribute(root, "outcome"), "completed");
    let run_id = attribute(root, "run_id");
    assert_eq!(run_id.len(), 36);

    // Four supersteps in the run, each with its checkpoint, one call each.
    let supersteps = collector.spans("superstep");
    let numbers: BTreeSet<String> = supersteps.iter().map(|s| attribute(s, "number")).collect();
    assert_eq!(
        numbers,
        BTreeSet::from(["0", "1", "2", "3"].map(String::from))
    );
    let saved: BTreeSet<String> = checkpoint_paths(&ws.path().join("checkpoints"))
        .iter()
        .map(|p| {
            read_checkpoint(p)["checkpoint_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let traced: BTreeSet<String> = supersteps
        .iter()
        .map(|s| attribute(s, "checkpoint_id"))
        .collect();
    assert_eq!(traced, saved);
    for superstep in &supersteps {
        assert_eq!(superstep.parent_span_id, root.span_id);
        assert_eq!(superstep.trace_id, root.trace_id);
        assert_eq!(attribute(superstep, "run_id"), run_id);
        assert_eq!(attribute(superstep, "outcome"), "completed");
    }
    let calls = collector.spans("executor call");
    assert_eq!(calls.len(), 4);
    for call in &calls {
        let parent = supersteps
            .iter()
            .find(|s| s.span_id == call.parent_span_id)
            .expect("a call's parent is a superstep");
        assert_eq!(attribute(call, "executor"), attribute(parent, "executors"));
        assert_eq!(attribute(call, "number"), attribute(parent, "number"));
        assert_eq!(attribute(call, "outcome"), "completed");
        assert_eq!(attribute(call, "attempts"), "1");
        let digest = attribute(call, "component_digest");
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest}"
        );
        assert!(call.start_time_unix_nano >= parent.start_time_unix_nano);
        assert!(call.end_time_unix_nano <= parent.end_time_unix_nano);
    }
}

#[test]
fn a_failed_call_marks_its_spans_failed_and_a_bad_endpoint_is_refused() {
    let ws = Workspace::new();
    let collector = Collector::start();
    let manifest =
        crate::retries::trapping(&ws, "retry = { max_attempts = 2, initial_backoff_ms = 1 }");
    let failed = ws.superstep_env(
        &[(superstep::telemetry::ENDPOINT_ENV, &collector.endpoint())],
        &["run", manifest.to_str().unwrap(), "--input", "\"x\""],
    );
    failed.assert_code(1);
    let error = 2; // STATUS_CODE_ERROR
    let call = collector
        .spans("executor call")
        .into_iter()
        .find(|c| attribute(c, "executor") == "trapper")
        .unwrap();
    assert_eq!(attribute(&call, "outcome"), "failed");
    assert_eq!(attribute(&call, "attempts"), "2");
    let status = call.status.unwrap();
    assert_eq!(status.code, error);
    assert!(
        status.message.contains("handle trapped"),
        "{}",
        status.message
    );
    let superstep = collector
        .spans("superstep")
        .into_iter()
        .find(|s| s.span_id == call.parent_span_id)
        .unwrap();
    assert_eq!(attribute(&superstep, "outcome"), "failed");
    let run = &collector.spans("workflow run")[0];
    assert_eq!(attribute(run, "outcome"), "failed");
    assert_eq!(run.status.as_ref().unwrap().code, error);

    let refused = ws.superstep(&[
        "run",
        manifest.to_str().unwrap(),
        "--input",
        "\"x\"",
        "--otlp",
        "https://collector.example:4318",
    ]);
    refused.assert_code(2);
    let why = "OTLP endpoint https://collector.example:4318: spans go over plain HTTP: give an http:// endpoint (such as a local OpenTelemetry Collector)";
    refused.assert_stderr(&format!("error: {why}\n"));
    // The variable may be set for other programs: an endpoint there that cannot be
    // used is warned of, and the command runs.
    let pipeline = ws.pipeline();
    let warned = ws.superstep_env(
        &[(
            superstep::telemetry::ENDPOINT_ENV,
            "https://collector.example:4318",
        )],
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--input",
            "\"x\"",
            "--events",
            "quiet",
        ],
    );
    warned.assert_code(0);
    warned.assert_stderr(&format!(
        "warning: OTEL_EXPORTER_OTLP_ENDPOINT: {why}; no traces are sent\n"
    ));
}

#[test]
fn the_server_traces_the_runs_it_drives() {
    let ws = Workspace::new();
    ws.pipeline();
    let collector = Collector::start();
    let server = crate::serve::Server::start_with(
        &ws,
        &[("SUPERSTEP_TOKEN", crate::serve::TOKEN)],
        &["--otlp", &collector.endpoint()],
    );
    let client = server.client();
    let run_id = client.start("pipeline", "\"hi\"");
    client.until_status(&run_id, "completed");
    // The spans left are sent as the server shuts down.
    assert!(server.stop(libc::SIGTERM).success());
    let runs = collector.spans("workflow run");
    assert_eq!(runs.len(), 1);
    assert_eq!(attribute(&runs[0], "run_id"), run_id);
    assert_eq!(attribute(&runs[0], "outcome"), "completed");
    let supersteps = collector.spans("superstep");
    assert_eq!(supersteps.len(), 4);
    assert!(
        supersteps
            .iter()
            .all(|s| s.parent_span_id == runs[0].span_id)
    );
    assert_eq!(collector.spans("executor call").len(), 4);
}
