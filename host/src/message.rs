//! Messages between executors, and how byte payloads (message bodies, states, shared
//! values) are written in checkpoints and events: as JSON when they are JSON, else
//! as base64; a checkpoint file may keep a large state beside it as a blob.
//!
//! The engine holds payloads as the bytes they are ([`Payload::of`]): whether they are
//! JSON is found out when they are written, by the thread that writes them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// The source of the run's input message in superstep 0.
pub const INPUT_SOURCE: &str = "$input";

/// The kind of a message that answers a request for outside input.
pub const RESPONSE_KIND: &str = "response";

/// The id of an executor's `n`th request (from 1) in a superstep: stable across
/// resumes, because supersteps are deterministic.
pub fn request_id(executor: &str, superstep: u64, n: usize) -> String {
    format!("{executor}:{superstep}:{n}")
}

/// The executor, superstep and number a [`request_id`] was made of, if `id` is one.
pub fn parse_request_id(id: &str) -> Option<(&str, u64, usize)> {
    let mut parts = id.rsplitn(3, ':');
    let n = parts.next()?.parse().ok().filter(|&n| n >= 1)?;
    let superstep = parts.next()?.parse().ok()?;
    let executor = parts.next().filter(|e| !e.is_empty())?;
    (request_id(executor, superstep, n) == id).then_some((executor, superstep, n))
}

/// A message: `kind` routes it, `body` is bytes (JSON by convention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The routing kind; edges may filter on it.
    pub kind: String,
    /// The body bytes.
    pub body: Bytes,
}

/// A message with its sender, as queued for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sending executor, or [`INPUT_SOURCE`].
    pub source: String,
    /// What was sent.
    pub message: Message,
}

/// Bytes as written in a checkpoint or an event: `{"json": <value>}` when the bytes are
/// one JSON value (kept byte for byte), otherwise `{"base64": "<text>"}`. In checkpoint
/// files only, a large executor state is `{"blob": {"digest": …, "size": …}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Payload {
    /// The bytes are this JSON text, verbatim.
    Json(Box<RawValue>),
    /// The bytes, base64-encoded (standard alphabet, padded).
    Base64(String),
    /// Bytes held in memory as they are (no copy, no check): written as
    /// `{"json": …}` when they are one JSON value, else as `{"base64": …}` (a checkpoint
    /// store may keep them in a blob instead, unencoded). Never read from a file:
    /// reading gives [`Payload::Json`] or [`Payload::Base64`].
    #[serde(skip_deserializing)]
    Held(Bytes),
    /// The bytes are kept beside the checkpoint file, named by their digest; the
    /// checkpoint store that wrote the file resolves it.
    Blob(BlobRef),
    /// A body queued for several executors, written once as entry `n` of the
    /// checkpoint's `shared_bodies`; only in queued bodies, and reading a checkpoint
    /// puts the body in its place.
    Shared(usize),
}

/// Bytes kept outside a document, named by their content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobRef {
    /// `sha256:` and the lowercase hex SHA-256 of the bytes.
    pub digest: String,
    /// The number of bytes.
    pub size: u64,
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const NAME: &str = "Payload";
        match self {
            Payload::Json(raw) => serializer.serialize_newtype_variant(NAME, 0, "json", raw),
            Payload::Base64(text) => serializer.serialize_newtype_variant(NAME, 1, "base64", text),
            Payload::Held(bytes) => match json_value(bytes) {
                Some(raw) => serializer.serialize_newtype_variant(NAME, 0, "json", raw),
                None => {
                    let text = BASE64.encode(bytes);
                    serializer.serialize_newtype_variant(NAME, 1, "base64", &text)
                }
            },
            Payload::Blob(blob) => serializer.serialize_newtype_variant(NAME, 3, "blob", blob),
            Payload::Shared(n) => serializer.serialize_newtype_variant(NAME, 4, "shared", n),
        }
    }
}

/// `bytes` as one JSON value, if that is exactly what they are (no whitespace around).
fn json_value(bytes: &[u8]) -> Option<&RawValue> {
    let text = std::str::from_utf8(bytes).ok()?;
    let raw = serde_json::from_str::<&RawValue>(text).ok()?;
    (raw.get().len() == text.len()).then_some(raw)
}

impl Payload {
    /// Encodes `bytes`, as JSON when they are exactly one JSON value.
    pub fn encode(bytes: &[u8]) -> Payload {
        match json_value(bytes) {
            Some(raw) => Payload::Json(raw.to_owned()),
            None => Payload::Base64(BASE64.encode(bytes)),
        }
    }

    /// Holds `bytes` as they are: no copy, and no JSON check or base64 until written.
    pub fn of(bytes: &Bytes) -> Payload {
        Payload::Held(bytes.clone())
    }

    /// The number of bytes the payload stands for (for a blob, its recorded size; for
    /// a shared body, which this payload does not hold, 0).
    pub fn len(&self) -> usize {
        match self {
            Payload::Json(raw) => raw.get().len(),
            Payload::Base64(text) => text.len() / 4 * 3,
            Payload::Held(bytes) => bytes.len(),
            Payload::Blob(blob) => blob.size as usize,
            Payload::Shared(_) => 0,
        }
    }

    /// Whether the payload stands for no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload as one line of text: the JSON as written, or `(base64) <text>`.
    pub fn to_text(&self) -> String {
        match self {
            Payload::Json(raw) => raw.get().to_string(),
            Payload::Base64(b64) => format!("(base64) {b64}"),
            Payload::Held(bytes) => match json_value(bytes) {
                Some(raw) => raw.get().to_string(),
                None => format!("(base64) {}", BASE64.encode(bytes)),
            },
            Payload::Blob(blob) => format!("(blob {}, {} bytes)", blob.digest, blob.size),
            Payload::Shared(n) => format!("(shared body {n})"),
        }
    }

    /// The payload as a JSON value: itself when it is JSON, else `{"base64": ...}` (a
    /// blob or shared body not inlined reads as empty).
    pub fn to_json_value(&self) -> serde_json::Value {
        let bytes = self.decode().unwrap_or_default();
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::json!({ "base64": BASE64.encode(&bytes) }))
    }

    /// The original bytes.
    pub fn decode(&self) -> Result<Bytes, String> {
        match self {
            Payload::Json(raw) => Ok(Bytes::copy_from_slice(raw.get().as_bytes())),
            Payload::Held(bytes) => Ok(bytes.clone()),
            Payload::Base64(text) => BASE64
                .decode(text)
                .map(Bytes::from)
                .map_err(|e| format!("invalid base64: {e}")),
            Payload::Blob(blob) => Err(format!(
                "the bytes are kept in blob {}, which only a checkpoint store can read",
                blob.digest
            )),
            Payload::Shared(n) => Err(format!(
                "a reference to shared body {n}, which only a queued message may hold"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: [&[u8]; 7] = [
        b"{\"b\": 1,  \"a\":[1.50]}",
        b"\"text\"",
        b"12",
        b" 12",
        b"{\"a\":1} trailing",
        b"\xff\x00binary",
        b"",
    ];

    #[test]
    fn request_ids_parse_back_into_their_parts_only() {
        assert_eq!(parse_request_id("a.b:12:3"), Some(("a.b", 12, 3)));
        assert_eq!(parse_request_id(&request_id("x", 0, 1)), Some(("x", 0, 1)));
        for bad in [
            "", "a:1", "a:1:0", ":1:1", "a:01:1", "a:1:+1", "a:x:1", "a:1:1 ",
        ] {
            assert_eq!(parse_request_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn json_is_kept_verbatim_and_the_rest_is_base64() {
        for bytes in SAMPLES {
            let payload = Payload::encode(bytes);
            let text = serde_json::to_string(&payload).unwrap();
            let back: Payload = serde_json::from_str(&text).unwrap();
            assert_eq!(back.decode().unwrap(), bytes, "{text}");
            let is_json = matches!(payload, Payload::Json(_));
            assert_eq!(is_json, text.starts_with("{\"json\""), "{text}");
        }
        assert!(matches!(Payload::encode(b"{\"a\":1}"), Payload::Json(_)));
        assert!(matches!(Payload::encode(b" 12"), Payload::Base64(_)));
    }

    #[test]
    fn held_bytes_are_written_as_encoded_bytes_are() {
        for bytes in SAMPLES {
            let held = Payload::of(&Bytes::from_static(bytes));
            assert!(matches!(held, Payload::Held(_)));
            let encoded = Payload::encode(bytes);
            let text = serde_json::to_string(&held).unwrap();
            assert_eq!(text, serde_json::to_string(&encoded).unwrap());
            assert_eq!(
                serde_json::to_string_pretty(&held).unwrap(),
                serde_json::to_string_pretty(&encoded).unwrap()
            );
            assert_eq!(held.to_text(), encoded.to_text());
            assert_eq!(held.len(), bytes.len());
            // Reading gives the encoded form back, never held bytes.
            let back: Payload = serde_json::from_str(&text).unwrap();
            assert!(!matches!(back, Payload::Held(_)));
            assert_eq!(back.decode().unwrap(), bytes);
        }
    }
}
