//! `ring`: one station of the W2 ring benchmark (`bench/WORKLOADS.md`).
//!
//! On a `token` message `{"hops": n}` it counts the message in its state (`seen`),
//! raises `hops` by one and sends the token along its edges; the station that raises
//! `hops` to `limit` yields the token as the workflow output instead.
//!
//! Config (every field optional): `{ "limit": 2000, "ballast": 0 }`. `ballast` keeps
//! that many bytes of seeded pseudo-random hex in the state, changed on every message,
//! to give the state a size (large states go to checkpoint blobs).
use serde::{Deserialize, Serialize};
use superstep_guest::{Context, Executor, Incoming};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_limit")]
    limit: u64,
    #[serde(default)]
    ballast: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limit: default_limit(),
            ballast: 0,
        }
    }
}

fn default_limit() -> u64 {
    2000
}

#[derive(Serialize, Deserialize)]
struct Token {
    hops: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct Ring {
    seen: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    ballast: String,
}

impl Executor for Ring {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        if message.kind != "token" {
            return Err(format!(
                "expected a 'token' message, got '{}'",
                message.kind
            ));
        }
        let config: Config = ctx.config::<Option<Config>>()?.unwrap_or_default();
        let token: Token = message.json()?;
        let token = Token {
            hops: token.hops + 1,
        };
        self.seen += 1;
        if config.ballast > 0 {
            self.ballast = ballast(ctx.executor_id(), self.seen, config.ballast);
        }
        if token.hops >= config.limit {
            ctx.yield_output("token", &token)
        } else {
            ctx.send("token", &token)
        }
    }
}

/// `len` hex digits from a xorshift generator seeded by the executor id and `round`.
fn ballast(id: &str, round: u64, len: usize) -> String {
    let mut x = id.bytes().fold(0x9e37_79b9_7f4a_7c15_u64 ^ round, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let mut text = String::with_capacity(len);
    while text.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text.push_str(&format!("{x:016x}"));
    }
    text.truncate(len);
    text
}

superstep_guest::export_executor!(Ring);
