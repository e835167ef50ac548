//! Resource limits of an executor: memory, time and fuel per call, message and
//! snapshot sizes, and outbound HTTP; defaults, and the `limits` tables of a manifest
//! laid over them field by field.

use serde::Deserialize;

/// Resource limits of one executor. Time, fuel and message counts are per handler
/// call (`init`, `handle`, `on-response`, `snapshot`, `restore`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory (all memories together) in MiB; tables are capped alongside.
    pub memory_mib: u64,
    /// Wall time per handler call, in milliseconds.
    pub call_timeout_ms: u64,
    /// Fuel (roughly, wasm instructions) per handler call; `None` does not meter.
    pub fuel: Option<u64>,
    /// The largest message body, output or request body, in bytes.
    pub max_message_bytes: u64,
    /// The most messages (sends, counted per receiver, outputs and requests) per call.
    pub max_messages_per_call: u64,
    /// The largest snapshot, in bytes.
    pub max_snapshot_bytes: u64,
    /// Outbound HTTP: the longest wait to connect, for the response's first byte and
    /// between its bytes, in milliseconds.
    pub http_timeout_ms: u64,
    /// Outbound HTTP: the largest response body, in bytes.
    pub http_max_response_bytes: u64,
    /// Outbound HTTP: the most requests in flight at once.
    pub http_max_concurrent: u64,
}

/// The default `call_timeout_ms` of an executor granted outbound HTTP: a call's time
/// counts its HTTP waits, and a reply paid for after the deadline would be thrown away,
/// so such a call gets room for several slow model replies.
pub const HTTP_CALL_TIMEOUT_MS: u64 = 600_000;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory_mib: 512,
            call_timeout_ms: 30_000,
            fuel: None,
            max_message_bytes: 16 << 20,
            max_messages_per_call: 100_000,
            max_snapshot_bytes: 256 << 20,
            http_timeout_ms: 60_000,
            http_max_response_bytes: 16 << 20,
            http_max_concurrent: 4,
        }
    }
}

/// A `limits` table as a manifest gives it: every field optional.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) memory_mib: Option<u64>,
    pub(crate) call_timeout_ms: Option<u64>,
    pub(crate) fuel: Option<u64>,
    pub(crate) max_message_bytes: Option<u64>,
    pub(crate) max_messages_per_call: Option<u64>,
    pub(crate) max_snapshot_bytes: Option<u64>,
    pub(crate) http_timeout_ms: Option<u64>,
    pub(crate) http_max_response_bytes: Option<u64>,
    pub(crate) http_max_concurrent: Option<u64>,
}

impl RawLimits {
    /// These limits over `base`, field by field; `field` names the table in errors.
    pub(crate) fn over(self, base: Limits, field: &str) -> std::result::Result<Limits, String> {
        let limits = Limits {
            memory_mib: self.memory_mib.unwrap_or(base.memory_mib),
            call_timeout_ms: self.call_timeout_ms.unwrap_or(base.call_timeout_ms),
            fuel: self.fuel.or(base.fuel),
            max_message_bytes: self.max_message_bytes.unwrap_or(base.max_message_bytes),
            max_messages_per_call: self
                .max_messages_per_call
                .unwrap_or(base.max_messages_per_call),
            max_snapshot_bytes: self.max_snapshot_bytes.unwrap_or(base.max_snapshot_bytes),
            http_timeout_ms: self.http_timeout_ms.unwrap_or(base.http_timeout_ms),
            http_max_response_bytes: self
                .http_max_response_bytes
                .unwrap_or(base.http_max_response_bytes),
            http_max_concurrent: self.http_max_concurrent.unwrap_or(base.http_max_concurrent),
        };
        let positive = [
            ("memory_mib", limits.memory_mib),
            ("call_timeout_ms", limits.call_timeout_ms),
            ("fuel", limits.fuel.unwrap_or(1)),
            ("max_message_bytes", limits.max_message_bytes),
            ("max_messages_per_call", limits.max_messages_per_call),
            ("max_snapshot_bytes", limits.max_snapshot_bytes),
            ("http_timeout_ms", limits.http_timeout_ms),
            ("http_max_response_bytes", limits.http_max_response_bytes),
            ("http_max_concurrent", limits.http_max_concurrent),
        ];
        match positive.iter().find(|(_, value)| *value == 0) {
            Some((name, _)) => Err(format!("{field}.{name}: must be at least 1")),
            None if limits.memory_mib > 65_536 => {
                Err(format!("{field}.memory_mib: at most 65536 (64 GiB)"))
            }
            None => Ok(limits),
        }
    }
}
