//! `superstep serve` over real HTTP on loopback: the server is the real binary in a
//! process of its own, serving the manifests of a workspace.

mod api;
mod database;
mod errors;
mod page;

use crate::common::{Workspace, test_compile_cache};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The token every test server takes.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A gated three-step workflow (`gated`): `src` forwards to `slow`, which holds its
/// message until the workspace's gate opens (see [`Workspace::set_gate`]), then `sink`
/// yields it.
pub const GATED: &str = r#"[workflow]
name = "gated"
start = "src"

[[executors]]
id = "src"
component = "@test-guests@/probe.wasm"
config = { forward = [{ kind = "work" }] }

[[executors]]
id = "slow"
component = "@test-guests@/probe.wasm"
dirs = [{ host = "gate", guest = "/gate" }]
config = { forward = [{ kind = "done" }], wait_for = "/gate/open" }

[[executors]]
id = "sink"
component = "@test-guests@/probe.wasm"
config = { yield = true }

[[edges]]
from = "src"
to = "slow"

[[edges]]
from = "slow"
to = "sink"
"#;

/// A `superstep serve` process; killed when dropped.
pub struct Server {
    child: Child,
    url: String,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    /// Serves the manifests of `ws` (the demo pipeline, plan-review and [`GATED`]
    /// written into it), checkpoints in `ws/checkpoints`.
    pub fn start(ws: &Workspace) -> Server {
        ws.pipeline();
        ws.plan_review();
        ws.manifest("gated.toml", GATED);
        ws.set_gate(false);
        Server::start_with(ws, &[("SUPERSTEP_TOKEN", TOKEN)], &[])
    }

    /// `superstep serve --workflows <ws> --listen 127.0.0.1:0 <args>` with `env`.
    pub fn start_with(ws: &Workspace, env: &[(&str, &str)], args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_superstep"))
            .args(["serve", "--workflows", ".", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("SUPERSTEP_TOKEN")
            .env_remove("SUPERSTEP_STORE")
            .envs(env.iter().copied())
            .env(superstep::COMPILE_CACHE_ENV, test_compile_cache())
            .current_dir(ws.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start superstep serve");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (found, urls) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("open ") {
                    let _ = found.send(url.to_string());
                }
            }
        });
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (line, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for text in stderr.lines().map_while(Result::ok) {
                eprintln!("serve: {text}");
                let _ = line.send(text);
            }
        });
        let url = urls
            .recv_timeout(Duration::from_secs(120))
            .expect("the server prints its URL");
        let base = url
            .split_once("/?")
            .map_or(url.trim_end_matches('/'), |(base, _)| base)
            .to_string();
        Server {
            child,
            url,
            base,
            stderr: lines,
        }
    }

    /// The page's URL as the server printed it.
    pub fn page_url(&self) -> String {
        self.url.clone()
    }

    /// A client with the test token.
    pub fn client(&self) -> Client {
        Client {
            base: self.base.clone(),
            token: Some(TOKEN.to_string()),
        }
    }

    /// Sends `signal` and waits for the process to end.
    pub fn stop(mut self, signal: i32) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, signal) };
        self.child.wait().unwrap()
    }

    /// POSTs `body` with the test token over a plain socket (declaring its length, or
    /// chunked), reading the reply even when the server cuts the body short; returns
    /// the reply's text.
    pub fn raw_post(&self, path: &str, body: &str, chunked: bool) -> String {
        use std::io::{Read, Write};
        let address = self.base.trim_start_matches("http://");
        let mut socket = std::net::TcpStream::connect(address).unwrap();
        let length = match chunked {
            true => "Transfer-Encoding: chunked".to_string(),
            false => format!("Content-Length: {}", body.len()),
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n{length}\r\nConnection: close\r\n\r\n"
        );
        socket.write_all(head.as_bytes()).unwrap();
        // The server may answer before it has read it all: a failed write is no failure.
        let writer = socket.try_clone().unwrap();
        let body = body.to_string();
        std::thread::spawn(move || {
            let mut writer = writer;
            for piece in body.as_bytes().chunks(64 << 10) {
                let sent = match chunked {
                    true => writer
                        .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                        .and_then(|()| writer.write_all(piece))
                        .and_then(|()| writer.write_all(b"\r\n")),
                    false => writer.write_all(piece),
                };
                if sent.is_err() {
                    return;
                }
            }
            let _ = writer.write_all(if chunked { b"0\r\n\r\n" } else { b"" });
        });
        let mut reply = Vec::new();
        let _ = socket.read_to_end(&mut reply);
        String::from_utf8_lossy(&reply).into_owned()
    }

    /// Everything the server wrote on stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client of one server.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    /// Sent as `Authorization: Bearer`.
    pub token: Option<String>,
}

/// A response: its status, headers and body (JSON when it is).
pub struct Reply {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts the status, and that an error body names `what`.
    pub fn assert_error(&self, status: u16, what: &str) -> &Reply {
        assert_eq!(self.status, status, "{}", self.text);
        let body = self.json();
        assert_eq!(body["status"], status, "{body}");
        let message = body["error"].as_str().expect("an error message");
        assert!(message.contains(what), "'{message}' does not name '{what}'");
        self
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

impl Client {
    /// A client without the token.
    pub fn without_token(&self) -> Client {
        Client {
            token: None,
            ..self.clone()
        }
    }

    fn authorised<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        let request = self.authorised(agent().get(format!("{}{path}", self.base)));
        reply(request.call())
    }

    pub fn post(&self, path: &str, body: &str) -> Reply {
        self.post_with(path, body, &[])
    }

    pub fn post_with(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.authorised(agent().post(format!("{}{path}", self.base)));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        reply(
            request
                .header("Content-Type", "application/json")
                .send(body),
        )
    }

    /// Starts a run of `workflow` on `input` (JSON); returns its id.
    pub fn start(&self, workflow: &str, input: &str) -> String {
        let body = format!(r#"{{"workflow": "{workflow}", "input": {input}}}"#);
        let reply = self.post("/v1/runs", &body);
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.json()["run_id"].as_str().unwrap().to_string()
    }

    /// The run `run_id` as `GET /v1/runs/{id}` shows it.
    pub fn run(&self, run_id: &str) -> Value {
        let reply = self.get(&format!("/v1/runs/{run_id}"));
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()
    }

    /// Opens the run's event stream, after event `after` if given.
    pub fn events(&self, run_id: &str, after: Option<u64>) -> Events {
        let mut request =
            self.authorised(agent().get(format!("{}/v1/runs/{run_id}/events", self.base)));
        if let Some(after) = after {
            request = request.header("Last-Event-ID", after.to_string());
        }
        let response = request.call().expect("open the event stream");
        assert_eq!(response.status(), 200);
        let kind = response.headers()["content-type"].to_str().unwrap();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        let reader = response.into_body().into_reader();
        Events {
            lines: BufReader::new(Box::new(reader)),
        }
    }

    /// Follows the run's stream until a `status` event says `status`.
    pub fn until_status(&self, run_id: &str, status: &str) {
        let mut events = self.events(run_id, None);
        while let Some(block) = events.block() {
            if let Block::Status(now) = block
                && now == status
            {
                return;
            }
        }
        panic!("run {run_id}: the stream ended before it was {status}");
    }

    /// `GET /v1/runs/{id}/events` with `Last-Event-ID: <last>`, as a plain reply.
    pub fn events_raw(&self, run_id: &str, last: &str) -> Reply {
        let url = format!("{}/v1/runs/{run_id}/events", self.base);
        let request = self
            .authorised(agent().get(url))
            .header("Last-Event-ID", last);
        reply(request.call())
    }

    /// Follows the run's events until one named `name`; returns those read.
    pub fn events_until(&self, run_id: &str, name: &str) -> Vec<(u64, Value)> {
        let mut events = self.events(run_id, None);
        let mut read = Vec::new();
        for event in events.by_ref() {
            let done = event.1["event"] == name;
            read.push(event);
            if done {
                return read;
            }
        }
        panic!("the stream ended before a {name} event: {read:?}");
    }
}

fn reply(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = result.expect("an HTTP response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Reply {
        status,
        headers,
        text,
    }
}

/// A run's numbered Server-Sent Events as they arrive: `(id, data)`.
pub struct Events {
    lines: BufReader<Box<dyn std::io::Read + Send>>,
}

/// One block of a stream.
pub enum Block {
    /// One of the run's events: its id and data.
    Numbered(u64, Value),
    /// A `status` event: where the run stands now.
    Status(String),
}

impl Events {
    /// The next block of the stream; `None` when it ends.
    pub fn block(&mut self) -> Option<Block> {
        let (mut id, mut data) = (None, None::<Value>);
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                match (id.take(), data.take()) {
                    (Some(id), Some(data)) => return Some(Block::Numbered(id, data)),
                    (None, Some(data)) => {
                        let status = data["status"].as_str().expect("a status event");
                        return Some(Block::Status(status.to_string()));
                    }
                    _ => {}
                }
            } else if let Some(value) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
                id = Some(value.parse().expect("a numeric event id"));
            } else if let Some(value) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
                data = Some(serde_json::from_str(value).expect("JSON event data"));
            }
        }
    }
}

impl Iterator for Events {
    type Item = (u64, Value);

    /// The next of the run's events, `status` events skipped.
    fn next(&mut self) -> Option<(u64, Value)> {
        loop {
            if let Block::Numbered(id, data) = self.block()? {
                return Some((id, data));
            }
        }
    }
}
