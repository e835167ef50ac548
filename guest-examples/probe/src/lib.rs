//! `probe`: a configurable executor for routing tests. It records every message it
//! receives in its state, forwards each one as its config says, and records the
//! errors the host returns instead of failing.
//!
//! Config: `{ "forward": [{ "kind": "k", "target": "id" }], "yield": true,
//!            "fail_on_kind": "boom" }`; every field is optional.
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
        for rule in &config.forward {
            let sent = ctx.send_bytes(&rule.kind, message.body.clone(), rule.target.as_deref());
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
