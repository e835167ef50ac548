//! Agent executors: outbound HTTP by allowlist and the `chat` executor against a local
//! OpenAI-compatible server (never the internet), secrets kept out of checkpoints and
//! events, failed calls resumable, and a call finished before a crash not paid twice.

use crate::common::*;
use crate::workers::{self, WorkerProcess};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the test server answers `/v1/chat/completions`.
#[derive(Clone)]
enum Mode {
    /// A deterministic "model": the reply is the prompt's text after `Text: `,
    /// lower-cased.
    Lowercase,
    /// This status with an error body that echoes the authorization header, as some
    /// APIs do for a bad key.
    Fail(u16),
    /// Never answers.
    Hang,
    /// A 307 to this URL.
    Redirect(String),
    /// A reply with a body of this many bytes.
    Big(usize),
    /// `Fail(status)` for the first this many requests, then `Lowercase`.
    FailFirst(usize, u16),
}

/// Header values the server recorded, one per request.
type Recorded = Arc<Mutex<Vec<String>>>;

/// A small OpenAI-compatible server on 127.0.0.1 that counts requests.
struct ChatServer {
    port: u16,
    requests: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
    authorizations: Arc<Mutex<Vec<String>>>,
    /// The `Idempotency-Key` of each request ("" for none).
    keys: Arc<Mutex<Vec<String>>>,
    /// The `traceparent` of each request ("" for none).
    traceparents: Recorded,
}

impl ChatServer {
    fn start(mode: Mode) -> ChatServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = ChatServer {
            port: listener.local_addr().unwrap().port(),
            requests: Arc::default(),
            mode: Arc::new(Mutex::new(mode)),
            authorizations: Arc::default(),
            keys: Arc::default(),
            traceparents: Arc::default(),
        };
        let (requests, mode) = (server.requests.clone(), server.mode.clone());
        let recorded = (
            server.authorizations.clone(),
            server.keys.clone(),
            server.traceparents.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (requests, mode) = (requests.clone(), mode.clone());
                let seen = recorded.clone();
                std::thread::spawn(move || serve(stream, &requests, &mode, &seen));
            }
        });
        server
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

fn serve(
    stream: TcpStream,
    requests: &AtomicUsize,
    mode: &Mutex<Mode>,
    (authorizations, keys, traceparents): &(Recorded, Recorded, Recorded),
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut length = 0;
    let mut authorization = String::new();
    let mut key = String::new();
    let mut traceparent = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap(),
            "authorization" => {
                authorization = value.trim().to_string();
                authorizations.lock().unwrap().push(authorization.clone());
            }
            "idempotency-key" => key = value.trim().to_string(),
            "traceparent" => traceparent = value.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    keys.lock().unwrap().push(key);
    traceparents.lock().unwrap().push(traceparent);
    let seen = requests.fetch_add(1, Ordering::SeqCst) + 1;
    let mode = match mode.lock().unwrap().clone() {
        Mode::FailFirst(failing, status) if seen <= failing => Mode::Fail(status),
        Mode::FailFirst(..) => Mode::Lowercase,
        mode => mode,
    };
    let (status, headers, reply) = match mode {
        Mode::Lowercase => {
            let request: Value = serde_json::from_slice(&body).unwrap();
            let prompt = request["messages"].as_array().unwrap().last().unwrap()["content"]
                .as_str()
                .unwrap()
                .to_string();
            let text = prompt.rsplit_once("Text: ").map_or(&*prompt, |(_, t)| t);
            let reply = json!({
                "object": "chat.completion",
                "model": request["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text.to_lowercase()}}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23},
            });
            (200, String::new(), reply.to_string())
        }
        Mode::Fail(status) => (
            status,
            String::new(),
            json!({"error": format!("overloaded; your key: {authorization}")}).to_string(),
        ),
        Mode::Hang => {
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        Mode::Redirect(to) => (307, format!("location: {to}\r\n"), String::new()),
        Mode::Big(size) => (200, String::new(), "x".repeat(size)),
        Mode::FailFirst(..) => unreachable!("resolved above"),
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
}

/// The key the tests grant; it must reach the server and nowhere else.
const KEY: &str = "sk-test-5f0e1d2c3b4a59687766554433221100";

/// The agent pipeline of Agent Framework's sample (`agent_pipeline.toml`) pointed at `server`, with
/// `allowed_hosts` and `limits` for `lower_agent` replaced.
fn agent_pipeline(ws: &Workspace, server: &ChatServer, allowed: &str, limits: &str) -> String {
    let text = std::fs::read_to_string(repo().join("guest-examples/agent_pipeline.toml"))
        .unwrap()
        .replace("components/", "@components@/")
        .replace("https://api.openai.com/v1", &server.base_url())
        .replace("OPENAI_API_KEY", "SUPERSTEP_TEST_KEY")
        .replace(r#"allowed_hosts = ["https://api.openai.com"]"#, allowed)
        .replace(
            "limits = { call_timeout_ms = 120000, http_timeout_ms = 60000, http_max_response_bytes = 1048576, http_max_concurrent = 1 }",
            limits,
        );
    let path = ws.manifest("agents.toml", &text);
    path.to_str().unwrap().to_string()
}

fn run_with_key(ws: &Workspace, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_superstep"))
        .args(args)
        .env(superstep::COMPILE_CACHE_ENV, test_compile_cache())
        .env("SUPERSTEP_TEST_KEY", KEY)
        .current_dir(ws.path())
        .output()
        .unwrap();
    Run::from(output)
}

/// Runs the agent pipeline of `manifest` on "hello world", with the key granted.
fn run_agent_pipeline(ws: &Workspace, manifest: &str) -> Run {
    let args = [
        "run",
        manifest,
        "--input",
        "\"hello world\"",
        "--events",
        "jsonl",
    ];
    run_with_key(ws, &args)
}

/// Asserts that `run` logged the refusal of a request to `origin` by lower_agent.
fn assert_refused(run: &Run, origin: &str, what: &str) {
    let logs = run.events_named("log");
    let refusal = format!("HTTP request to {origin} refused: the host is not in allowed_hosts");
    assert!(
        logs.iter()
            .any(|e| e["executor"] == "lower_agent" && e["text"] == refusal),
        "{what}: {logs:?}"
    );
}

/// The executors that `run` skipped because a journal held their results.
fn skipped(run: &Run) -> Vec<Value> {
    run.events_named("executor_skipped")
        .iter()
        .map(|e| e["executor"].clone())
        .collect()
}

fn allow(server: &ChatServer) -> String {
    format!(r#"allowed_hosts = ["http://127.0.0.1:{}"]"#, server.port)
}

/// Through the library: a stretch from superstep 1 to the end cannot replay, since no
/// checkpoint holds the agent's results of superstep 3 alone; up to superstep 3 it
/// can, the agent not being in it.
fn replay_over_the_agent_needs_its_own_barrier(ws: &Workspace, manifest: &str) {
    let granted = r#"env = ["SUPERSTEP_TEST_KEY"]"#;
    let text = std::fs::read_to_string(manifest).unwrap();
    assert!(text.contains(granted));
    let text = text.replace(granted, r#"env = ["SUPERSTEP_TEST_KEY=unused"]"#);
    let manifest = superstep::Manifest::load(&ws.manifest("library.toml", &text)).unwrap();
    let runtime = superstep::Runtime::new(1, false).unwrap();
    let workflow = superstep::Workflow::load(runtime, manifest).unwrap();
    let at = |superstep: u64| {
        let path = checkpoint_paths(&ws.path().join("checkpoints"))
            .into_iter()
            .find(|path| read_checkpoint(path)["superstep"] == superstep)
            .unwrap();
        superstep::checkpoint::read_file(&path, None).unwrap()
    };
    let sink: std::sync::Arc<dyn superstep::EventSink> = std::sync::Arc::new(|_: &_| {});
    let refused = workflow.replay(&at(1), &at(5), sink.clone()).unwrap_err();
    assert!(
        refused.to_string().starts_with(
            "replay stops at superstep 3: executor 'lower_agent' can reach outside its sandbox, so it is not run, and no checkpoint records its results of that superstep alone"
        ),
        "{refused}"
    );
    let replayed = workflow.replay(&at(1), &at(3), sink).unwrap();
    assert_eq!(replayed.supersteps, 1..3);
    assert!(replayed.is_identical() && replayed.recorded.is_empty());
    // The agent's own superstep: its recorded results stand in, and the event says so.
    let (events, sink) = crate::library::collecting_sink();
    let (before, after) = (at(3), at(4));
    let replayed = workflow.replay(&before, &after, sink).unwrap();
    assert!(replayed.is_identical());
    assert_eq!(replayed.recorded, ["lower_agent"]);
    let reasons: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            superstep::Event::ExecutorSkipped {
                executor, reason, ..
            } => Some(format!("{executor}: {reason}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [format!(
            "lower_agent: it can reach outside its sandbox, so the replay takes its results from checkpoint {}",
            after.checkpoint_id
        )]
    );
}

#[test]
fn the_agent_pipeline_runs_against_a_local_model_and_keeps_the_key_out() {
    let ws = Workspace::new();
    let server = ChatServer::start(Mode::Lowercase);
    let manifest = agent_pipeline(&ws, &server, &allow(&server), "");
    let run = run_agent_pipeline(&ws, &manifest);
    run.assert_code(0);
    assert_eq!(run.outputs(), vec![json!("dlrow olleh")]);
    assert_eq!(server.requests(), 1);
    assert_eq!(
        *server.authorizations.lock().unwrap(),
        [format!("Bearer {KEY}")]
    );
    let last = latest_checkpoint(&ws.path().join("checkpoints"));
    assert_eq!(
        states(&last)["lower_agent"],
        json!({"count": 1, "last_input": "Convert the following text to lowercase. Return ONLY the transformed text.\n\nText: DLROW OLLEH", "last_output": "dlrow olleh", "total_tokens": 23})
    );
    // Every state of the agent executors comes back from restore, with no call made.
    for path in checkpoint_paths(&ws.path().join("checkpoints")) {
        let verified = run_with_key(&ws, &["checkpoints", "verify", path.to_str().unwrap()]);
        verified.assert_code(0);
        assert!(
            verified.stdout.contains("lower_agent: identical"),
            "{}",
            verified.stdout
        );
    }
    assert_eq!(server.requests(), 1);
    // Replayed, the agent's recorded results stand in for its call.
    let first = checkpoint_paths(&ws.path().join("checkpoints"))
        .into_iter()
        .find(|path| read_checkpoint(path)["superstep"] == 1)
        .unwrap();
    let replayed = run_with_key(&ws, &["replay", first.to_str().unwrap()]);
    replayed.assert_code(0);
    let lines: Vec<&str> = replayed.stdout.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "superstep 1: identical",
            "superstep 2: identical",
            "superstep 3 (recorded results of lower_agent, not run): identical",
            "superstep 4: identical",
        ]
    );
    assert_eq!(server.requests(), 1);
    replay_over_the_agent_needs_its_own_barrier(&ws, &manifest);
    assert_eq!(server.requests(), 1);
    // The key went to the server, and into no event, log or checkpoint.
    assert!(!run.stdout.contains(KEY) && !run.stderr.contains(KEY));
    for (name, bytes) in ws.checkpoint_files("checkpoints") {
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "{name} holds the key"
        );
    }
}

#[test]
fn a_call_that_fails_twice_is_retried_on_a_fresh_instance_and_journaled_once() {
    let ws = Workspace::new();
    let server = ChatServer::start(Mode::FailFirst(2, 503));
    let retry = r#"retry = { max_attempts = 3, initial_backoff_ms = 10, on = ["http-5xx"] }"#;
    let granted = format!("{}\n{retry}", allow(&server));
    let manifest = agent_pipeline(&ws, &server, &granted, "");
    let run = run_agent_pipeline(&ws, &manifest);
    run.assert_code(0);
    assert_eq!(run.outputs(), vec![json!("dlrow olleh")]);
    assert_eq!(server.requests(), 3);
    let retrying = run.events_named("executor_retrying");
    assert_eq!(retrying.len(), 2);
    for (n, event) in retrying.iter().enumerate() {
        assert_eq!(event["executor"], "lower_agent");
        assert_eq!(event["superstep"], 3);
        assert_eq!(event["attempt"], n + 1);
        assert_eq!(event["failure"], "error");
        assert_eq!(event["http_status"], 503);
        assert_eq!(event["backoff_ms"], [10, 20][n]);
        // The error body echoes the key; the reason has it masked.
        let reason = event["reason"].as_str().unwrap();
        assert!(reason.contains("503") && !reason.contains(KEY), "{reason}");
    }
    // One result, journaled once: the third attempt's, on an instance restored to the
    // state before the superstep (the failed attempts left nothing behind).
    let completed: Vec<_> = run
        .events_named("executor_completed")
        .into_iter()
        .filter(|e| e["executor"] == "lower_agent")
        .collect();
    assert_eq!(completed.len(), 1);
    let last = latest_checkpoint(&ws.path().join("checkpoints"));
    assert_eq!(states(&last)["lower_agent"]["count"], 1);
    // Each attempt's requests are keyed apart, so that a provider does not take a
    // retry for a duplicate of the failed call.
    let keys = server.keys.lock().unwrap().clone();
    let suffixes: Vec<&str> = keys
        .iter()
        .map(|k| k.split_once(":3:").unwrap().1)
        .collect();
    assert_eq!(
        suffixes,
        [
            "lower_agent:1",
            "lower_agent:attempt-2:1",
            "lower_agent:attempt-3:1"
        ]
    );

    // Spent attempts fail the run, naming the last attempt; the key stays out.
    let ws = Workspace::new();
    let server = ChatServer::start(Mode::Fail(500));
    let granted = format!("{}\n{}", allow(&server), retry.replace("3,", "2,"));
    let manifest = agent_pipeline(&ws, &server, &granted, "");
    let failed = run_agent_pipeline(&ws, &manifest);
    failed.assert_code(1);
    assert_eq!(server.requests(), 2);
    let reason = failed.events_named("executor_failed")[0]["reason"].clone();
    assert!(
        reason.as_str().unwrap().starts_with("attempt 2 of 2: "),
        "{reason}"
    );
    assert!(!failed.stdout.contains(KEY) && !failed.stderr.contains(KEY));
}

#[test]
fn an_agent_call_carries_the_traceparent_of_its_span() {
    let ws = Workspace::new();
    let server = ChatServer::start(Mode::Lowercase);
    let collector = crate::telemetry::Collector::start();
    let manifest = agent_pipeline(&ws, &server, &allow(&server), "");
    let endpoint = collector.endpoint();
    let args = [
        "run",
        &manifest,
        "--input",
        "\"hello world\"",
        "--otlp",
        &endpoint,
    ];
    run_with_key(&ws, &args).assert_code(0);
    let call = collector
        .spans("executor call")
        .into_iter()
        .find(|c| crate::telemetry::attribute(c, "executor") == "lower_agent")
        .unwrap();
    let expected = format!(
        "00-{}-{}-01",
        hex::encode(&call.trace_id),
        hex::encode(&call.span_id)
    );
    assert_eq!(*server.traceparents.lock().unwrap(), [expected]);
    // Without telemetry, no traceparent.
    let ws = Workspace::new();
    let manifest = agent_pipeline(&ws, &server, &allow(&server), "");
    run_agent_pipeline(&ws, &manifest).assert_code(0);
    assert_eq!(server.traceparents.lock().unwrap()[1], "");
}

#[test]
fn requests_to_hosts_not_allowed_are_refused_before_the_network() {
    let ws = Workspace::new();
    let server = ChatServer::start(Mode::Lowercase);
    let port = server.port;
    for (allowed, what) in [
        ("", "no grant"),
        (r#"allowed_hosts = ["http://127.0.0.1:1"]"#, "another port"),
        (r#"allowed_hosts = ["https://127.0.0.1"]"#, "another scheme"),
        (r#"allowed_hosts = ["*.example.com"]"#, "another host"),
    ] {
        let manifest = agent_pipeline(&ws, &server, allowed, "");
        let run = run_agent_pipeline(&ws, &manifest);
        run.assert_code(1);
        let failed = &run.events_named("executor_failed")[0];
        assert_eq!(failed["executor"], "lower_agent", "{what}");
        let reason = failed["reason"].as_str().unwrap();
        assert!(
            reason.contains("the host refused the request (not in allowed_hosts)"),
            "{what}: {reason}"
        );
        assert_refused(&run, &format!("http://127.0.0.1:{port}"), what);
    }
    assert_eq!(server.requests(), 0, "nothing reached the server");

    // A bad entry is a manifest error that names the executor and the entry.
    let manifest = agent_pipeline(&ws, &server, r#"allowed_hosts = ["ftp://example.com"]"#, "");
    let refused = run_with_key(&ws, &["validate", &manifest]);
    refused.assert_code(2).assert_stderr(
        "('lower_agent').allowed_hosts[0]: 'ftp://example.com': the scheme must be http or https",
    );

    // A redirect is a new request, checked the same way.
    server.set_mode(Mode::Redirect(format!(
        "http://localhost:{port}/v1/chat/completions"
    )));
    let manifest = agent_pipeline(&ws, &server, &allow(&server), "");
    let run = run_agent_pipeline(&ws, &manifest);
    run.assert_code(1);
    assert_eq!(server.requests(), 1, "the redirect was not followed");
    assert_refused(&run, &format!("http://localhost:{port}"), "redirect");
}

#[test]
fn failed_hung_and_oversized_calls_fail_the_executor_and_resume_reaches_the_server_once() {
    let ws = Workspace::new();
    let server = ChatServer::start(Mode::Fail(503));
    let limits = "limits = { http_timeout_ms = 500, http_max_response_bytes = 4096 }";
    let manifest = agent_pipeline(&ws, &server, &allow(&server), limits);
    let run = run_agent_pipeline(&ws, &manifest);
    run.assert_code(1);
    let reason = |run: &Run| {
        run.events_named("executor_failed")[0]["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        reason(&run).contains("the chat endpoint answered 503"),
        "{}",
        reason(&run)
    );
    // The guest's error quotes the key the server echoed; the host masks it.
    assert!(
        reason(&run).contains("your key: Bearer [SUPERSTEP_TEST_KEY]"),
        "{}",
        reason(&run)
    );
    assert!(!run.stdout.contains(KEY) && !run.stderr.contains(KEY));
    assert_eq!(server.requests(), 1);
    let resume = |ws: &Workspace| {
        let latest = ws.superstep(&["checkpoints", "latest"]);
        latest.assert_code(0);
        run_with_key(ws, &["resume", latest.stdout.trim(), "--events", "jsonl"])
    };

    server.set_mode(Mode::Hang);
    let hung = resume(&ws);
    hung.assert_code(1);
    assert!(
        reason(&hung).contains("timed out (limits.http_timeout_ms)"),
        "{}",
        reason(&hung)
    );
    assert_eq!(server.requests(), 2);

    server.set_mode(Mode::Big(10_000));
    let big = resume(&ws);
    big.assert_code(1);
    assert!(
        reason(&big).contains("larger than limits.http_max_response_bytes"),
        "{}",
        reason(&big)
    );
    assert_eq!(server.requests(), 3);

    // The endpoint is back: the retry reaches it exactly once.
    server.set_mode(Mode::Lowercase);
    let done = resume(&ws);
    done.assert_code(0);
    assert_eq!(done.outputs(), vec![json!("dlrow olleh")]);
    assert_eq!(server.requests(), 4);
    // Each attempt at the call carried the same key: the run, the superstep, the
    // executor and the call's number in it.
    let run_id = run.events_named("run_started")[0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let superstep = run.events_named("executor_failed")[0]["superstep"].clone();
    let key = format!("{run_id}:{superstep}:lower_agent:1");
    assert_eq!(*server.keys.lock().unwrap(), vec![key; 4]);
}

/// The agent and a slow executor share a superstep: a host killed once the agent's
/// results are journaled, while the slow one waits at the workspace's closed gate, has
/// paid for the call.
fn agent_beside_a_gate(ws: &Workspace, server: &ChatServer) -> std::path::PathBuf {
    ws.manifest(
        "crash.toml",
        &format!(
            r#"[workflow]
name = "agent-crash"
start = "src"

[[executors]]
id = "src"
component = "@components@/upper.wasm"

[[executors]]
id = "agent"
component = "@components@/chat.wasm"
env = ["SUPERSTEP_TEST_KEY"]
allowed_hosts = ["http://127.0.0.1:{port}"]
config = {{ base_url = "{base}", model = "m", api_key_env = "SUPERSTEP_TEST_KEY" }}

[[executors]]
id = "slow"
component = "@test-guests@/probe.wasm"
dirs = [{{ host = "gate", guest = "/gate" }}]
config = {{ wait_for = "/gate/open" }}

[[executors]]
id = "out"
component = "@components@/finalize.wasm"

[[edges]]
from = "src"
to = "agent"
[[edges]]
from = "src"
to = "slow"
[[edges]]
from = "agent"
to = "out"
"#,
            port = server.port,
            base = server.base_url()
        ),
    )
}

#[test]
fn an_agent_call_finished_before_a_crash_is_not_paid_again() {
    let ws = Workspace::new();
    let server = ChatServer::start(Mode::Lowercase);
    let manifest = agent_beside_a_gate(&ws, &server);
    ws.set_gate(false);
    let mut child = Command::new(env!("CARGO_BIN_EXE_superstep"))
        .env(superstep::COMPILE_CACHE_ENV, test_compile_cache())
        .env("SUPERSTEP_TEST_KEY", KEY)
        .args([
            "run",
            manifest.to_str().unwrap(),
            "--input",
            "\"Hello\"",
            "--threads",
            "2",
            "--events",
            "jsonl",
        ])
        .current_dir(ws.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if event["event"] == "executor_completed" && event["executor"] == "agent" {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    child.wait().unwrap();
    assert_eq!(server.requests(), 1);

    ws.set_gate(true);
    let latest = ws.superstep(&["checkpoints", "latest"]);
    let resumed = run_with_key(
        &ws,
        &[
            "resume",
            latest.stdout.trim(),
            "--threads",
            "2",
            "--events",
            "jsonl",
        ],
    );
    resumed.assert_code(0);
    assert_eq!(skipped(&resumed), [json!("agent")]);
    assert_eq!(resumed.outputs(), vec![json!("hello")]);
    assert_eq!(server.requests(), 1, "the paid call was not made again");
}

/// An agent that runs first has no barrier before its call, so the run saves a
/// checkpoint as it starts, and the call's results are journaled against it. Here the
/// disk fills up at the barrier after the call (as if the host had died there); the
/// resume, in a new process, replays the journal instead of calling the model again.
#[test]
fn an_agent_call_in_the_first_superstep_is_journaled_and_not_paid_again() {
    use crate::library::FailingStore;
    use superstep::checkpoint::FileStore;
    use superstep::{CheckpointStore, Event, Manifest, Message, Runtime, Workflow};

    let ws = Workspace::new();
    let server = ChatServer::start(Mode::Lowercase);
    let manifest = ws.manifest(
        "first.toml",
        &format!(
            r#"[workflow]
name = "agent-first"
start = "agent"

[[executors]]
id = "agent"
component = "@components@/chat.wasm"
allowed_hosts = ["http://127.0.0.1:{port}"]
config = {{ base_url = "{base}", model = "m" }}

[[executors]]
id = "out"
component = "@components@/finalize.wasm"

[[edges]]
from = "agent"
to = "out"
"#,
            port = server.port,
            base = server.base_url()
        ),
    );
    let workflow = Workflow::load(
        Runtime::new(1, false).unwrap(),
        Manifest::load(&manifest).unwrap(),
    )
    .unwrap();
    let dir = ws.path().join("checkpoints");
    let store = Arc::new(FailingStore {
        inner: Arc::new(FileStore::new(&dir)),
        fail_save_after: Some(0),
        ..FailingStore::default()
    });
    let input = Message {
        kind: "input".into(),
        body: bytes::Bytes::from_static(b"\"Hello\""),
    };
    let mut run = workflow
        .start(input, store.clone(), Arc::new(|_: &Event| {}))
        .unwrap();
    let error = format!("{:#}", run.run().unwrap_err());
    assert!(
        error.contains("superstep 0: checkpoint not saved") && error.contains("(injected)"),
        "{error}"
    );
    assert_eq!(server.requests(), 1);
    // What is on disk: the run as it started, and the agent's results in its journal.
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    let start = listed[0].summary.as_ref().unwrap();
    assert_eq!(start.superstep, 0);
    let journal = store.read_journal(&start.checkpoint_id).unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].executor, "agent");

    let resumed = ws.superstep(&["resume", &start.checkpoint_id, "--events", "jsonl"]);
    resumed.assert_code(0);
    assert_eq!(skipped(&resumed), [json!("agent")]);
    assert_eq!(resumed.outputs(), vec![json!("hello")]);
    assert_eq!(server.requests(), 1, "the paid call was not made again");
}

#[test]
fn a_paid_call_is_not_made_again_when_another_worker_takes_the_run_over() {
    let ws = Workspace::new();
    let server = ChatServer::start(Mode::Lowercase);
    let manifest = agent_beside_a_gate(&ws, &server);
    ws.set_gate(false);
    let url = workers::database(&ws);
    let run = workers::submit(&ws, &url, &manifest, "\"Hello\"", "input");
    let args = ["--concurrency", "1", "--lease-ttl", "2s"];
    let env = [("SUPERSTEP_TEST_KEY", KEY)];
    let first = WorkerProcess::start_with_env(&ws, &url, "first", &args, &env);
    workers::follow_until(&ws, &url, &run, |event| {
        event["event"] == "executor_completed" && event["executor"] == "agent"
    });
    let second = WorkerProcess::start_with_env(&ws, &url, "second", &args, &env);
    first.signal(libc::SIGKILL);
    ws.set_gate(true);
    second.wait_for(&format!("claimed run {run} (epoch 2)"));
    assert_eq!(workers::wait(&ws, &url, &run), 0);
    assert_eq!(
        workers::outputs(&workers::show(&ws, &url, &run)),
        [json!("hello")]
    );
    assert_eq!(server.requests(), 1, "the paid call was made again");
}
