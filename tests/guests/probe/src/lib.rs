//! `probe`: a configurable executor for routing tests. It records every message it
//! receives in its state, forwards each one as its config says, and records the
//! errors the host returns instead of failing.
//!
//! Config (every field optional):
//! `{ "forward": [{ "kind": "k", "target": "id" }], "yield": true, "fail_on_kind": "boom",
//!    "set_shared": "key", "read_shared": ["key"], "print": "text", "print_bytes": 100,
//!    "sleep_ms": 0, "wait_for": "/gate/open" }`.
//! `print` writes a line to stdout and one to stderr; `print_bytes` floods stdout;
//! `sleep_ms` makes each message take that long (through the WASI clock); `wait_for`
//! holds each message until that file exists (in a granted directory): a gate that a
//! test opens, so that an executor is still running whatever the machine's load.
//! A forwarded body is `{"by": <this id>, "of": <received kind>, "body": <received body>}`;
//! `set_shared` writes the received body under the key before `read_shared` reads.
use serde::{Deserialize, Serialize};
use superstep_guest::{Context, Executor, Incoming};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    forward: Vec<Forward>,
    #[serde(default, rename = "yield")]
    yield_received: bool,
    fail_on_kind: Option<String>,
    set_shared: Option<String>,
    #[serde(default)]
    read_shared: Vec<String>,
    print: Option<String>,
    print_bytes: Option<usize>,
    sleep_ms: Option<u64>,
    wait_for: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Forward {
    kind: String,
    target: Option<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct Probe {
    received: Vec<Received>,
    send_errors: Vec<String>,
    shared_reads: Vec<(String, Option<serde_json::Value>)>,
}

#[derive(Serialize, Deserialize)]
struct Received {
    source: String,
    kind: String,
    body: serde_json::Value,
}

impl Executor for Probe {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        let config: Config = ctx.config::<Option<Config>>()?.unwrap_or_default();
        if config.fail_on_kind.as_deref() == Some(message.kind.as_str()) {
            return Err(format!("refusing a message of kind '{}'", message.kind));
        }
        let body: serde_json::Value = message.json()?;
        if let Some(text) = &config.print {
            println!("{text}");
            eprintln!("on stderr: {text}");
        }
        if let Some(ms) = config.sleep_ms {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        if let Some(gate) = &config.wait_for {
            while !std::path::Path::new(gate).exists() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        if let Some(n) = config.print_bytes {
            print!("{}", "x".repeat(n));
        }
        if let Some(key) = &config.set_shared {
            ctx.set_shared(key, &body)?;
        }
        for key in &config.read_shared {
            self.shared_reads.push((key.clone(), ctx.get_shared(key)?));
        }
        let forwarded =
            serde_json::json!({ "by": ctx.executor_id(), "of": message.kind, "body": body });
        for rule in &config.forward {
            let bytes = serde_json::to_vec(&forwarded).map_err(|e| e.to_string())?;
            let sent = ctx.send_bytes(&rule.kind, bytes, rule.target.as_deref());
            if let Err(e) = sent {
                self.send_errors.push(e);
            }
        }
        if config.yield_received {
            ctx.yield_output(&message.kind, &body)?;
        }
        self.received.push(Received {
            source: message.source,
            kind: message.kind,
            body,
        });
        Ok(())
    }
}

superstep_guest::export_executor!(Probe);
