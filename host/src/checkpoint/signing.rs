//! Signed checkpoints: with keys configured, every checkpoint file and journal record
//! carries `"signature": "hmac-sha256:<key id>:<hex>"`, an HMAC-SHA256 over the same
//! bytes its checksum covers, and reading refuses a file that is unsigned, signed with
//! a key that is not configured, or whose signature does not verify. The checksum finds
//! accidents; the signature finds a file that anyone without the key wrote or changed.
//!
//! Keys come from `SUPERSTEP_CHECKPOINT_KEY` (`<key id>:<secret>`) or from the file
//! that `SUPERSTEP_CHECKPOINT_KEY_FILE` names (one `<key id>:<secret>` per line, `#`
//! comments): the first key signs, every key verifies, so a key being rotated out stays
//! on a later line until no checkpoint signed with it is needed.

use crate::error::Result;
use crate::error::invalid;
use crate::limited_read::{self, FileKind};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;

/// The variable holding one key, `<key id>:<secret>`.
pub const KEY_ENV: &str = "SUPERSTEP_CHECKPOINT_KEY";
/// The variable naming a file of keys, one `<key id>:<secret>` per line.
pub const KEY_FILE_ENV: &str = "SUPERSTEP_CHECKPOINT_KEY_FILE";
/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

const SCHEME: &str = "hmac-sha256";

/// The keys that sign and verify checkpoints: the first signs, all verify.
#[derive(Clone)]
pub struct SigningKeys {
    keys: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("SigningKeys").field("ids", &ids).finish()
    }
}

impl SigningKeys {
    /// The keys the environment configures (see the module docs); `None` when neither
    /// variable is set. A malformed key or key file is an error naming the variable.
    pub fn from_env() -> Result<Option<SigningKeys>> {
        let key = std::env::var_os(KEY_ENV);
        let file = std::env::var_os(KEY_FILE_ENV);
        match (key, file) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(invalid(format!(
                "both {KEY_ENV} and {KEY_FILE_ENV} are set; set one"
            ))),
            (Some(key), None) => {
                let key = key
                    .into_string()
                    .map_err(|_| invalid(format!("{KEY_ENV}: not UTF-8")))?;
                SigningKeys::parse(&key, KEY_ENV).map(Some)
            }
            (None, Some(path)) => {
                let path = Path::new(&path);
                let origin = format!("{KEY_FILE_ENV}={}", path.display());
                let text = limited_read::read_to_string(path, FileKind::Manifest)
                    .map_err(|e| invalid(format!("{origin}: cannot read: {e}")))?;
                SigningKeys::parse(&text, &origin).map(Some)
            }
        }
    }

    /// Keys from text, one `<key id>:<secret>` per line (blank lines and `#` comments
    /// skipped); `origin` names the text in errors, which never quote a secret.
    pub fn parse(text: &str, origin: &str) -> Result<SigningKeys> {
        let mut keys: Vec<(String, Vec<u8>)> = Vec::new();
        let lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        for (n, line) in lines {
            let bad = |why: &str| invalid(format!("{origin}: line {}: {why}", n + 1));
            let Some((id, secret)) = line.trim().split_once(':') else {
                return Err(bad("expected <key id>:<secret>"));
            };
            let plain = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
            if id.is_empty() || id.len() > 64 || !id.chars().all(plain) {
                return Err(bad(
                    "the key id must be 1 to 64 letters, digits, '-', '_' or '.'",
                ));
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(bad(&format!(
                    "the secret of key '{id}' is shorter than {MIN_SECRET_LEN} bytes"
                )));
            }
            if keys.iter().any(|(known, _)| known == id) {
                return Err(bad(&format!("key '{id}' is given twice")));
            }
            keys.push((id.to_string(), secret.as_bytes().to_vec()));
        }
        if keys.is_empty() {
            return Err(invalid(format!("{origin}: no key")));
        }
        Ok(SigningKeys { keys })
    }

    /// The id of the key that signs.
    pub fn signing_key_id(&self) -> &str {
        &self.keys[0].0
    }

    /// The signature of `content` with the signing key.
    pub fn sign(&self, content: &[u8]) -> String {
        let (id, secret) = &self.keys[0];
        format!(
            "{SCHEME}:{id}:{}",
            hex::encode(mac(secret, content).finalize().into_bytes())
        )
    }

    /// How long [`SigningKeys::sign`]'s signatures are.
    pub fn signature_len(&self) -> usize {
        SCHEME.len() + 1 + self.keys[0].0.len() + 1 + 64
    }

    /// Checks that `signature` is a signature of `content` by one of the keys; the
    /// error says what is wrong without revealing anything of a key.
    pub fn verify(&self, signature: Option<&str>, content: &[u8]) -> Result<(), String> {
        let Some(signature) = signature else {
            return Err(format!(
                "not signed, but a checkpoint key is configured ({KEY_ENV} or {KEY_FILE_ENV}): only checkpoints this host's keys signed are read"
            ));
        };
        let parts = signature
            .strip_prefix(SCHEME)
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|rest| rest.rsplit_once(':'));
        let Some((id, hex_mac)) = parts else {
            return Err(format!("the signature is not {SCHEME}:<key id>:<hex>"));
        };
        let Some((_, secret)) = self.keys.iter().find(|(known, _)| known == id) else {
            return Err(format!(
                "signed with key '{id}', which is not configured (a key rotated out, or another host's)"
            ));
        };
        let tag = hex::decode(hex_mac).map_err(|_| "the signature is not hex".to_string())?;
        mac(secret, content).verify_slice(&tag).map_err(|_| {
            format!(
                "the signature does not verify with key '{id}': the file was changed after it was signed, or signed with another secret"
            )
        })
    }
}

fn mac(secret: &[u8], content: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(content);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123";

    #[test]
    fn the_first_key_signs_and_every_key_verifies() {
        let old = SigningKeys::parse(&format!("old:{SECRET}"), "k").unwrap();
        let rotating = SigningKeys::parse(
            &format!("# new first\nnew:{SECRET}x\n\nold:{SECRET}\n"),
            "k",
        )
        .unwrap();
        let new = SigningKeys::parse(&format!("new:{SECRET}x"), "k").unwrap();
        let by_old = old.sign(b"content");
        assert_eq!(by_old.len(), old.signature_len());
        assert!(by_old.starts_with("hmac-sha256:old:"));
        assert_eq!(rotating.verify(Some(&by_old), b"content"), Ok(()));
        assert!(rotating.sign(b"content").starts_with("hmac-sha256:new:"));
        assert_eq!(
            new.verify(Some(&by_old), b"content").unwrap_err(),
            "signed with key 'old', which is not configured (a key rotated out, or another host's)"
        );
        assert!(
            old.verify(Some(&by_old), b"contents")
                .unwrap_err()
                .contains("does not verify with key 'old'")
        );
        assert!(
            old.verify(None, b"content")
                .unwrap_err()
                .starts_with("not signed")
        );
        let other_secret = SigningKeys::parse(&format!("old:{SECRET}-other"), "k").unwrap();
        assert!(other_secret.verify(Some(&by_old), b"content").is_err());
    }

    #[test]
    fn refuses_malformed_keys_without_quoting_secrets() {
        let err = |text: &str| {
            SigningKeys::parse(text, "keys.txt")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err(""), "keys.txt: no key");
        assert_eq!(
            err("nocolon"),
            "keys.txt: line 1: expected <key id>:<secret>"
        );
        assert_eq!(
            err("k:short"),
            "keys.txt: line 1: the secret of key 'k' is shorter than 16 bytes"
        );
        assert!(err(&format!("a b:{SECRET}")).contains("line 1: the key id must be"));
        assert_eq!(
            err(&format!("k:{SECRET}\nk:{SECRET}")),
            "keys.txt: line 2: key 'k' is given twice"
        );
        assert!(!err(&format!("k:{SECRET}\nk:{SECRET}")).contains(SECRET));
    }
}
