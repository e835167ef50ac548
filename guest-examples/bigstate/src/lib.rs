//! `bigstate`: the W4 executor (`bench/WORKLOADS.md`). Its state is `bytes`
//! bytes from a generator seeded by its executor id (so that it does not compress),
//! made when it handles its first message (so that `init` stays cheap on resume); each
//! message it handles changes one byte. The state
//! is binary: `snapshot` and `restore` move the bytes as they are.
//!
//! Config: `{ "bytes": 8388608 }`.
use std::cell::RefCell;
use superstep_guest::bindings::{self, Guest};

struct BigState;

thread_local! {
    static STATE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The executor id and the state size, from `init`.
    static SEED: RefCell<(String, usize)> = const { RefCell::new((String::new(), 0)) };
}

/// `len` bytes of xorshift output seeded by `seed`.
fn generate(seed: &str, len: usize) -> Vec<u8> {
    let mut x = seed.bytes().fold(0x9e37_79b9_7f4a_7c15_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

impl Guest for BigState {
    fn init(executor_id: String, config: Vec<u8>) -> Result<(), String> {
        let config: serde_json::Value =
            serde_json::from_slice(&config).map_err(|e| format!("config is not JSON: {e}"))?;
        let len = config["bytes"].as_u64().unwrap_or(8 << 20) as usize;
        SEED.with_borrow_mut(|seed| *seed = (executor_id, len));
        Ok(())
    }

    fn handle(_: bindings::Envelope) -> Result<(), String> {
        STATE.with_borrow_mut(|state| {
            if state.is_empty() {
                *state = SEED.with_borrow(|(id, len)| generate(id, *len));
            }
            if let Some(first) = state.first_mut() {
                *first = first.wrapping_add(1);
            }
        });
        Ok(())
    }

    fn on_response(_: String, _: bindings::Message) -> Result<(), String> {
        Err("bigstate asks for nothing".into())
    }

    fn snapshot() -> Vec<u8> {
        STATE.with_borrow(|state| state.clone())
    }

    fn restore(state: Vec<u8>) -> Result<(), String> {
        STATE.with_borrow_mut(|held| *held = state);
        Ok(())
    }
}

bindings::__export_executor_world!(BigState with_types_in bindings);
