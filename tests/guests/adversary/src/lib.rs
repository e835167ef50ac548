//! `adversary`: a test executor that tries what an untrusted executor might. Its
//! config says what to attempt when it handles a message; it yields a `report` of what
//! happened (for the capability probes) unless an attempt kills it first.
//!
//! Capability probes (each a list; every attempt is reported, none stops it):
//! `read` (file paths to read), `write` (file paths to create), `list` (directories),
//! `env` (variable names), `tcp` (addresses to connect to), `lookup` (host names).
//!
//! Limit breakers: `spin_ms` (busy for that long), `loop` (forever), `alloc_mib`
//! (allocate and touch), `work` (that many loop iterations: fuel), `trap`
//! (`unreachable`, `divide-by-zero` or `stack-overflow`), `send_bytes` (one message of
//! that size), `send_count` (that many messages), `state_bytes` (a state that large),
//! `output_bytes` (an output that large).
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::hint::black_box;
use superstep_guest::{Context, Executor, Incoming};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
    #[serde(default)]
    list: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    tcp: Vec<String>,
    #[serde(default)]
    lookup: Vec<String>,
    spin_ms: Option<u64>,
    #[serde(default, rename = "loop")]
    forever: bool,
    alloc_mib: Option<usize>,
    work: Option<u64>,
    trap: Option<String>,
    send_bytes: Option<usize>,
    send_count: Option<usize>,
    state_bytes: Option<usize>,
    output_bytes: Option<usize>,
}

#[derive(Default, Serialize, Deserialize)]
struct Adversary {
    handled: u64,
    padding: String,
}

fn outcome<T: Serialize, E: std::fmt::Display>(result: Result<T, E>) -> Value {
    match result {
        Ok(value) => json!({ "ok": value }),
        Err(error) => json!({ "error": error.to_string() }),
    }
}

fn probe<T: Serialize, E: std::fmt::Display>(
    targets: &[String],
    attempt: impl Fn(&str) -> Result<T, E>,
) -> BTreeMap<String, Value> {
    targets
        .iter()
        .map(|target| (target.clone(), outcome(attempt(target))))
        .collect()
}

fn deep(n: u64) -> u64 {
    if black_box(n) == u64::MAX {
        0
    } else {
        deep(n + 1).wrapping_add(1)
    }
}

impl Executor for Adversary {
    fn handle(&mut self, ctx: &Context, _message: Incoming) -> Result<(), String> {
        let config: Config = ctx.config::<Option<Config>>()?.unwrap_or_default();
        self.handled += 1;

        if let Some(ms) = config.spin_ms {
            let start = std::time::Instant::now();
            while start.elapsed().as_millis() < u128::from(ms) {
                black_box(0);
            }
        }
        if config.forever {
            let mut n = 0u64;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        if let Some(mib) = config.alloc_mib {
            let mut block = vec![0u8; mib << 20];
            for page in block.chunks_mut(4096) {
                page[0] = 1;
            }
            black_box(&block);
        }
        if let Some(iterations) = config.work {
            let mut sum = 0u64;
            for i in 0..iterations {
                sum = black_box(sum.wrapping_add(i));
            }
            black_box(sum);
        }
        match config.trap.as_deref() {
            None => {}
            Some("unreachable") => std::process::abort(),
            Some("divide-by-zero") => {
                let divisor = black_box(0u32);
                // Promise the compiler a non-zero divisor so it emits a bare
                // `i32.div_u`, which traps in the engine rather than panicking.
                unsafe { std::hint::assert_unchecked(divisor != 0) };
                black_box(black_box(7u32) / divisor);
            }
            Some("stack-overflow") => {
                black_box(deep(0));
            }
            Some(other) => return Err(format!("unknown trap '{other}'")),
        }
        if let Some(bytes) = config.send_bytes {
            ctx.send("blob", &"x".repeat(bytes))?;
        }
        if let Some(count) = config.send_count {
            for n in 0..count {
                ctx.send("tick", &n)?;
            }
        }
        if let Some(bytes) = config.state_bytes {
            self.padding = "p".repeat(bytes);
        }
        if let Some(bytes) = config.output_bytes {
            ctx.yield_output("big", &"o".repeat(bytes))?;
        }

        let report = json!({
            "read": probe(&config.read, |path| std::fs::read_to_string(path)),
            "write": probe(&config.write, |path| std::fs::write(path, "written by the adversary")),
            "list": probe(&config.list, |path| {
                std::fs::read_dir(path).map(|entries| {
                    entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                })
            }),
            "env": config
                .env
                .iter()
                .map(|name| (name.clone(), json!(std::env::var(name).ok())))
                .collect::<BTreeMap<_, _>>(),
            "env_all": std::env::vars().map(|(k, _)| k).collect::<Vec<_>>(),
            "tcp": probe(&config.tcp, |addr| {
                std::net::TcpStream::connect(addr).map(|_| "connected")
            }),
            "lookup": probe(&config.lookup, |host| {
                use std::net::ToSocketAddrs;
                (host, 80).to_socket_addrs().map(|addrs| addrs.count())
            }),
        });
        ctx.yield_output("report", &report)
    }
}

superstep_guest::export_executor!(Adversary);
