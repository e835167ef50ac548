//! The superstep journal: while a superstep runs, each executor that finishes has its
//! results appended durably to a journal named after the checkpoint the superstep
//! started from. If the host dies before the barrier, resuming that checkpoint replays
//! the journal instead of invoking those executors again. The barrier's checkpoint makes
//! the journal obsolete, and it is removed.
//!
//! A journal is JSON Lines: `{"checksum": "sha256:…", "record": {…}}` per executor, the
//! checksum over the exact bytes of the record. A last line cut short (the host died
//! while appending) is ignored; a damaged line before it is refused.

use crate::checkpoint::SigningKeys;
use crate::error::Result;
use crate::error::invalid;
use crate::hash::sha256_hex;
use crate::message::Payload;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// What one executor did in one superstep: enough to apply it at the barrier without
/// invoking the executor again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalRecord {
    /// The superstep (the base checkpoint's `superstep`).
    pub superstep: u64,
    /// The executor.
    pub executor: String,
    /// Its snapshot after the superstep.
    pub state: Payload,
    /// Messages sent, in send order, with their receiving executor.
    pub sends: Vec<JournalSend>,
    /// Outputs yielded, in order.
    pub outputs: Vec<JournalMessage>,
    /// Shared-state writes, by key; `null` deletes.
    pub writes: Vec<(String, Option<Payload>)>,
    /// Requests for outside input, with their ids, in order.
    pub requests: Vec<(String, JournalMessage)>,
}

/// A journaled send.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSend {
    /// The receiving executor.
    pub to: String,
    /// The message kind.
    pub kind: String,
    /// The message body.
    pub body: Payload,
}

/// A journaled output or request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalMessage {
    /// The kind.
    pub kind: String,
    /// The body.
    pub body: Payload,
}

#[derive(Serialize)]
struct LineOut<'a> {
    checksum: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    record: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn<'a> {
    checksum: String,
    #[serde(default)]
    signature: Option<String>,
    #[serde(borrow)]
    record: &'a RawValue,
}

impl JournalRecord {
    /// The record as one journal line, newline included; signed with the signing key
    /// of `keys` if any.
    pub fn encode(&self, keys: Option<&SigningKeys>) -> Vec<u8> {
        let record = serde_json::to_string(self).expect("a journal record serialises");
        let record = RawValue::from_string(record).expect("serde_json wrote JSON");
        let line = LineOut {
            checksum: sha256_hex(record.get().as_bytes()),
            signature: keys.map(|keys| keys.sign(record.get().as_bytes())),
            record: &record,
        };
        let mut bytes = serde_json::to_vec(&line).expect("a journal line serialises");
        bytes.push(b'\n');
        bytes
    }

    /// Reads a journal's records; `origin` names the journal in errors. A last line
    /// without its newline was cut short by a crash and is left out. With `keys`, a
    /// record they did not sign is damaged.
    pub fn decode_all(
        bytes: &[u8],
        origin: &str,
        keys: Option<&SigningKeys>,
    ) -> Result<Vec<JournalRecord>> {
        let mut records = Vec::new();
        let mut lines = bytes
            .split_inclusive(|&b| b == b'\n')
            .enumerate()
            .peekable();
        while let Some((n, line)) = lines.next() {
            let Some(line) = line.strip_suffix(b"\n") else {
                break; // cut short at the tail
            };
            let record = Self::decode_line(line, keys).map_err(|why| {
                let position = if lines.peek().is_some() {
                    "before the end of the journal"
                } else {
                    "at the end of the journal"
                };
                invalid(format!(
                    "{origin}: line {}: damaged journal record {position} ({why}); the journal cannot be trusted: delete it to run the whole superstep again",
                    n + 1
                ))
            })?;
            records.push(record);
        }
        Ok(records)
    }

    fn decode_line(line: &[u8], keys: Option<&SigningKeys>) -> Result<JournalRecord, String> {
        let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
        let line: LineIn = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let actual = sha256_hex(line.record.get().as_bytes());
        if actual != line.checksum {
            return Err(format!(
                "checksum mismatch: the line says {} but the record hashes to {actual}",
                line.checksum
            ));
        }
        if let Some(keys) = keys {
            keys.verify(line.signature.as_deref(), line.record.get().as_bytes())?;
        }
        serde_json::from_str(line.record.get()).map_err(|e| format!("malformed record: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(executor: &str) -> JournalRecord {
        JournalRecord {
            superstep: 4,
            executor: executor.into(),
            state: Payload::encode(b"{\"n\":1}"),
            sends: vec![JournalSend {
                to: "b".into(),
                kind: "k".into(),
                body: Payload::encode(b"\xff"),
            }],
            outputs: vec![],
            writes: vec![("key".into(), None)],
            requests: vec![],
        }
    }

    #[test]
    fn reads_back_and_ignores_a_cut_short_tail_only() {
        let mut bytes = record("a").encode(None);
        bytes.extend(record("b").encode(None));
        let full = JournalRecord::decode_all(&bytes, "j", None).unwrap();
        assert_eq!(full.len(), 2);
        assert_eq!(full[1].executor, "b");
        for cut in 1..bytes.len() {
            let read = JournalRecord::decode_all(&bytes[..cut], "j", None);
            let first_len = record("a").encode(None).len();
            assert_eq!(
                read.unwrap().len(),
                usize::from(cut >= first_len),
                "cut {cut}"
            );
        }
        let mut damaged = bytes.clone();
        damaged[20] ^= 1;
        let error = JournalRecord::decode_all(&damaged, "j.journal", None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("j.journal: line 1: damaged journal record before the end"),
            "{error}"
        );
    }

    #[test]
    fn with_keys_only_records_they_signed_are_read() {
        let keys = SigningKeys::parse("k:0123456789abcdef", "keys").unwrap();
        let other = SigningKeys::parse("k:0123456789abcdef-other", "keys").unwrap();
        let signed = record("a").encode(Some(&keys));
        assert_eq!(
            JournalRecord::decode_all(&signed, "j", Some(&keys))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            JournalRecord::decode_all(&signed, "j", None).unwrap().len(),
            1
        );
        for (bytes, why) in [
            (record("a").encode(None), "not signed"),
            (signed.clone(), "does not verify with key 'k'"),
        ] {
            let keys = if why == "not signed" { &keys } else { &other };
            let error = JournalRecord::decode_all(&bytes, "j", Some(keys)).unwrap_err();
            assert!(error.to_string().contains(why), "{error}");
        }
    }
}
