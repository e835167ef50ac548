//! A checkpoint file's bytes: the envelope written around the content, its checksum
//! and signature, and reading them back.

use super::{Checkpoint, FORMAT, FORMAT_VERSION, OLDEST_FORMAT_VERSION, SigningKeys};
use crate::error::Result;
use crate::error::bad_checkpoint;
use crate::hash::sha256_hex;
use crate::message::Payload;
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct DocumentIn<'a> {
    format: Option<String>,
    format_version: Option<serde_json::Value>,
    checksum: Option<String>,
    signature: Option<String>,
    #[serde(borrow)]
    checkpoint: Option<&'a RawValue>,
}

impl Checkpoint {
    /// The checkpoint as a file's bytes, unsigned.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_signed(None)
    }

    /// The checkpoint as a file's bytes, signed with the signing key of `keys` if any.
    pub fn encode_signed(&self, keys: Option<&SigningKeys>) -> Vec<u8> {
        // The envelope is written by hand around the content, which serde_json writes:
        // the checksum (and signature) cover exactly the bytes that follow
        // `"checkpoint": `. The head goes first with placeholders of the same length,
        // replaced once the content is hashed, so that the content is written once, in
        // place.
        let head = |checksum: &str, signature: Option<&str>| {
            let signature = signature
                .map(|s| format!("\n  \"signature\": \"{s}\","))
                .unwrap_or_default();
            format!(
                "{{\n  \"format\": \"{FORMAT}\",\n  \"format_version\": {FORMAT_VERSION},\n  \"checksum\": \"{checksum}\",{signature}\n  \"checkpoint\": "
            )
        };
        let unsigned = keys.map(|keys| "0".repeat(keys.signature_len()));
        let placeholder = head(&sha256_hex(b""), unsigned.as_deref());
        let mut bytes = Vec::with_capacity(placeholder.len() + self.size_hint());
        bytes.extend_from_slice(placeholder.as_bytes());
        serde_json::to_writer_pretty(&mut bytes, self).expect("a checkpoint serialises");
        let content = &bytes[placeholder.len()..];
        let signature = keys.map(|keys| keys.sign(content));
        let head = head(&sha256_hex(content), signature.as_deref());
        debug_assert_eq!(head.len(), placeholder.len());
        bytes[..head.len()].copy_from_slice(head.as_bytes());
        bytes.extend_from_slice(b"\n}\n");
        bytes
    }

    /// About how many bytes the encoded checkpoint takes (without blobs), to allocate
    /// once.
    pub(crate) fn size_hint(&self) -> usize {
        let payloads: usize = self.blob_capable().map(|(_, p)| p.len()).sum::<usize>()
            + self.outputs.iter().map(|o| o.body.len()).sum::<usize>();
        1024 + payloads + 256 * (self.executors.len() + self.queued_count() + self.outputs.len())
    }

    /// Reads a checkpoint from a file's bytes; `origin` names the file in errors.
    /// Refuses anything that is not a complete, unaltered checkpoint of a format
    /// version this build reads. Shared bodies are put in place; blob references are
    /// left for the store to resolve.
    pub fn decode(bytes: &[u8], origin: &str) -> Result<Checkpoint> {
        Checkpoint::decode_verified(bytes, origin, None)
    }

    /// [`Checkpoint::decode`], also refusing, when `keys` are given, a file that they
    /// did not sign (see [`signing`](super::signing)).
    pub fn decode_verified(
        bytes: &[u8],
        origin: &str,
        keys: Option<&SigningKeys>,
    ) -> Result<Checkpoint> {
        let inner = verified_content(bytes, origin, keys)?;
        let mut checkpoint: Checkpoint = serde_json::from_str(inner).map_err(|e| {
            bad_checkpoint(
                origin.to_string(),
                format!("malformed checkpoint content: {e}"),
            )
        })?;
        checkpoint
            .check()
            .map_err(|why| bad_checkpoint(origin.to_string(), why))?;
        checkpoint.inline_shared_bodies();
        Ok(checkpoint)
    }

    /// Puts each shared body in the place of the references to it (checked to exist).
    fn inline_shared_bodies(&mut self) {
        let shared = std::mem::take(&mut self.shared_bodies);
        for message in self.queued.values_mut().flatten() {
            if let Payload::Shared(n) = message.body {
                message.body = shared[n].clone();
            }
        }
    }
}

/// Checks a checkpoint file's envelope (text, JSON, format, version, checksum, and the
/// signature when `keys` are given) and returns the exact text of its `checkpoint`
/// value.
pub(super) fn verified_content<'a>(
    bytes: &'a [u8],
    origin: &str,
    keys: Option<&SigningKeys>,
) -> Result<&'a str> {
    let bad = |why: String| bad_checkpoint(origin.to_string(), why);
    let text = std::str::from_utf8(bytes)
        .map_err(|_| bad("not a superstep checkpoint (not UTF-8 text)".into()))?;
    let document: DocumentIn = serde_json::from_str(text).map_err(|e| {
        if e.is_eof() {
            bad(format!(
                "truncated checkpoint file (the JSON ends early: {e})"
            ))
        } else {
            bad(format!("not a superstep checkpoint (not valid JSON: {e})"))
        }
    })?;
    if document.format.as_deref() != Some(FORMAT) {
        return Err(bad(format!(
            "not a superstep checkpoint (no \"format\": \"{FORMAT}\")"
        )));
    }
    let version = document.format_version.unwrap_or_default();
    let readable = u64::from(OLDEST_FORMAT_VERSION)..=u64::from(FORMAT_VERSION);
    if !version.as_u64().is_some_and(|v| readable.contains(&v)) {
        return Err(bad(format!(
            "checkpoint format version {version} is not supported (this superstep reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
        )));
    }
    let (Some(checksum), Some(inner)) = (document.checksum, document.checkpoint) else {
        return Err(bad(
            "incomplete checkpoint (\"checksum\" or \"checkpoint\" is missing)".into(),
        ));
    };
    let actual = sha256_hex(inner.get().as_bytes());
    if checksum != actual {
        return Err(bad(format!(
            "checksum mismatch: the file says {checksum} but its content hashes to {actual}; it was changed or damaged after it was written"
        )));
    }
    if let Some(keys) = keys {
        keys.verify(document.signature.as_deref(), inner.get().as_bytes())
            .map_err(bad)?;
    }
    Ok(inner.get())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fanned_out, sample};
    use super::super::*;
    use crate::hash::sha256_hex;

    #[test]
    fn a_shared_body_is_written_once_and_read_into_each_queue() {
        let body = format!("\"{}\"", "x".repeat(2000));
        let bytes = fanned_out(body.as_bytes()).encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.matches(&"x".repeat(2000)).count(), 1);
        assert_eq!(text.matches("\"shared\": 0").count(), 2);
        let back = Checkpoint::decode(&bytes, "f").unwrap();
        assert!(back.shared_bodies.is_empty());
        for id in ["a", "b"] {
            assert_eq!(back.queued[id][0].body.decode().unwrap(), body.as_bytes());
        }
        assert_eq!(Summary::read(&bytes, "f").unwrap().queued, 2);
    }

    #[test]
    fn refuses_a_shared_body_that_is_missing_or_out_of_place() {
        let err = |c: Checkpoint| {
            Checkpoint::decode(&c.encode(), "f.json")
                .unwrap_err()
                .to_string()
        };
        let mut missing = fanned_out(b"[1]");
        missing.queued.get_mut("b").unwrap()[0].body = Payload::Shared(1);
        assert!(
            err(missing)
                .contains("f.json: queued.b[0].body: shared body 1 does not exist (there are 1)")
        );
        let mut in_state = fanned_out(b"[1]");
        in_state.executors.get_mut("a").unwrap().state = Payload::Shared(0);
        assert!(err(in_state).contains("executors.a.state: a reference to shared body 0"));
        let mut nested = fanned_out(b"[1]");
        nested.shared_bodies[0] = Payload::Shared(0);
        assert!(err(nested).contains("shared_bodies[0]: a reference to shared body 0"));
    }

    #[test]
    fn round_trips() {
        let bytes = sample().encode();
        let back = Checkpoint::decode(&bytes, "f").unwrap();
        assert_eq!(back.encode(), bytes);
        assert_eq!(
            back.executors["a"].state.decode().unwrap(),
            &br#"{"count":1}"#[..]
        );
    }

    #[test]
    fn refuses_damage() {
        let bytes = sample().encode();
        let err = |b: &[u8]| Checkpoint::decode(b, "f.json").unwrap_err().to_string();
        assert!(err(&bytes[..bytes.len() / 2]).contains("f.json: truncated checkpoint file"));
        assert!(err(b"hello").contains("not valid JSON"));
        assert!(err(b"{\"a\":1}").contains("not a superstep checkpoint"));
        let text = String::from_utf8(bytes.clone()).unwrap();
        let v1 = text.replace("\"format_version\": 2", "\"format_version\": 1");
        assert!(Checkpoint::decode(v1.as_bytes(), "f.json").is_ok());
        let v3 = text.replace("\"format_version\": 2", "\"format_version\": 3");
        assert!(
            err(v3.as_bytes()).contains(
                "format version 3 is not supported (this superstep reads versions 1 to 2)"
            )
        );
        let tampered = text.replace("\"count\":1", "\"count\":2");
        assert!(err(tampered.as_bytes()).contains("checksum mismatch"));
    }
    #[test]
    fn a_signed_checkpoint_reads_only_with_a_key_that_signed_it() {
        let keys = |text: &str| SigningKeys::parse(text, "keys").unwrap();
        let current = keys("k2:0123456789abcdef-two\nk1:0123456789abcdef-one");
        let retired = keys("k2:0123456789abcdef-two");
        let old = keys("k1:0123456789abcdef-one");
        let signed = sample().encode_signed(Some(&old));
        let read = |bytes: &[u8], keys: &SigningKeys| {
            Checkpoint::decode_verified(bytes, "f.json", Some(keys)).map(|c| c.encode())
        };
        assert_eq!(read(&signed, &current).unwrap(), sample().encode());
        assert!(
            Checkpoint::decode(&signed, "f.json").is_ok(),
            "without keys, nothing is checked"
        );
        let error = read(&signed, &retired).unwrap_err().to_string();
        assert!(
            error.contains("f.json: signed with key 'k1', which is not configured"),
            "{error}"
        );
        let error = read(&sample().encode(), &current).unwrap_err().to_string();
        assert!(error.contains("f.json: not signed"), "{error}");
        // Changed, with the checksum made right again: only the signature tells.
        let text = String::from_utf8(signed).unwrap();
        let content_at = text.find("\"checkpoint\": ").unwrap() + "\"checkpoint\": ".len();
        let changed = text[content_at..text.len() - 3].replace("\"count\":1", "\"count\":9");
        let checksum_at = text.find("sha256:").unwrap();
        let forged = format!(
            "{}{}{}{changed}\n}}\n",
            &text[..checksum_at],
            sha256_hex(changed.as_bytes()),
            &text[checksum_at + 71..content_at]
        );
        assert!(Checkpoint::decode(forged.as_bytes(), "f.json").is_ok());
        let error = read(forged.as_bytes(), &current).unwrap_err().to_string();
        assert!(
            error.contains("the signature does not verify with key 'k1'"),
            "{error}"
        );
        let summary = Summary::read_verified(forged.as_bytes(), "f.json", Some(&current));
        assert!(summary.is_err());
    }
}
