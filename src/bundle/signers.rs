//! Which of a bundle's signatures count: those embedded after the manifest and the
//! co-signatures beside the bundle, each checked against the trusted keys (`--trust`)
//! or a trust policy's keys, before the manifest is parsed.
//!
//! An embedded signature by a trusted key that does not verify means the bundle was
//! altered: that is fatal, as it always was. A detached file that does not verify
//! (made for another bundle, damaged, a link, too large, named for another key) is
//! reported with its path and does not count; if the signatures that remain are not
//! enough, the refusal (exit 3) lists it.

use std::path::PathBuf;

use serde_json::json;

use super::cosign::Detached;
use crate::sign::{KeyId, PublicKey, SignatureError, SignatureFile};
use crate::trust::policy::{Lookup, TrustPolicy};

/// What a reader accepts.
pub enum Trust<'a> {
    /// `--trust K.pub ... [--threshold N]`: N distinct keys of these.
    Keys {
        keys: &'a [PublicKey],
        threshold: usize,
    },
    /// `--trust-policy TRUST.toml`.
    Policy(&'a TrustPolicy),
}

#[derive(Debug, Clone)]
pub enum Source {
    /// A tar entry of the bundle.
    Embedded(String),
    /// A `B.ferry.<KEYID>.minisig` file beside it.
    Detached(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Verified against a trusted key.
    Valid,
    /// By a key that is not trusted (or not in the policy).
    Untrusted,
    /// By a key the policy revoked: never counts.
    Revoked,
    /// A detached file that is not a valid signature of this manifest.
    Invalid(String),
}

/// One signature found, and what became of it.
#[derive(Debug, Clone)]
pub struct Found {
    pub source: Source,
    /// The key id it claims (for an unreadable file, the one its name gives).
    pub key_id: KeyId,
    pub status: Status,
    /// The policy's name and role for the key, where a policy names it.
    pub holder: Option<(String, String)>,
}

impl Found {
    /// `embedded ferry-manifest.json.minisig (key X)` / `FILE (key X)`.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Embedded(entry) => format!("embedded {entry} (key {})", self.key_id),
            Source::Detached(path) => format!("{} (key {})", path.display(), self.key_id),
        }
    }

    /// Why it does not count, for one that does not.
    pub fn problem(&self) -> Option<String> {
        match &self.status {
            Status::Valid => None,
            Status::Untrusted => Some(format!("{}: key is not trusted", self.describe())),
            Status::Revoked => Some(format!("{}: key is revoked", self.describe())),
            Status::Invalid(reason) => Some(format!("{}: {reason}", self.describe())),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let (source, file) = match &self.source {
            Source::Embedded(entry) => ("embedded", entry.clone()),
            Source::Detached(path) => ("detached", path.display().to_string()),
        };
        let mut v = json!({"keyId": self.key_id.to_string(), "source": source, "file": file});
        let status = match &self.status {
            Status::Valid => "valid",
            Status::Untrusted => "untrusted",
            Status::Revoked => "revoked",
            Status::Invalid(reason) => {
                v["reason"] = reason.clone().into();
                "invalid"
            }
        };
        v["status"] = status.into();
        if let Some((name, role)) = &self.holder {
            v["name"] = name.clone().into();
            v["role"] = role.clone().into();
        }
        v
    }
}

enum Known<'a> {
    Trusted(&'a PublicKey, Option<(String, String)>),
    Revoked(Option<(String, String)>),
    Unknown,
}

impl Trust<'_> {
    /// The key with this id, when the trust holds it and has not revoked it.
    pub fn trusted_key(&self, id: KeyId) -> Option<&PublicKey> {
        match self.known(id) {
            Known::Trusted(key, _) => Some(key),
            _ => None,
        }
    }

    fn known(&self, id: KeyId) -> Known<'_> {
        match self {
            Trust::Keys { keys, .. } => match keys.iter().find(|k| k.id == id) {
                Some(k) => Known::Trusted(k, None),
                None => Known::Unknown,
            },
            Trust::Policy(p) => match p.lookup(id) {
                Lookup::Trusted(k) => {
                    Known::Trusted(&k.key, Some((k.names.join("/"), k.role.clone())))
                }
                Lookup::Revoked(label) => {
                    Known::Revoked(Some((label.to_string(), "revoked".into())))
                }
                Lookup::Unknown => Known::Unknown,
            },
        }
    }
}

/// Checks every signature against `trust`; fails only on an embedded signature by a
/// trusted key that does not verify.
pub fn check(
    message: &[u8],
    embedded: Vec<(String, SignatureFile)>,
    detached: Vec<Detached>,
    trust: &Trust<'_>,
) -> Result<Vec<Found>, SignatureError> {
    let mut found = Vec::new();
    for (entry, sig) in embedded {
        let (status, holder) = match trust.known(sig.key_id) {
            Known::Trusted(key, holder) => {
                key.verify(message, &sig)?;
                (Status::Valid, holder)
            }
            Known::Revoked(holder) => (Status::Revoked, holder),
            Known::Unknown => (Status::Untrusted, None),
        };
        found.push(Found {
            source: Source::Embedded(entry),
            key_id: sig.key_id,
            status,
            holder,
        });
    }
    for d in detached {
        let (status, holder) = match (&d.signature, trust.known(d.named)) {
            (Err(reason), _) => (Status::Invalid(reason.clone()), None),
            (Ok(_), Known::Unknown) => (Status::Untrusted, None),
            (Ok(_), Known::Revoked(holder)) => (Status::Revoked, holder),
            (Ok(sig), Known::Trusted(key, holder)) => match key.verify(message, sig) {
                Ok(()) => (Status::Valid, holder),
                Err(_) => (
                    Status::Invalid(
                        "does not verify against this bundle's manifest (made for another bundle, or altered)"
                            .into(),
                    ),
                    holder,
                ),
            },
        };
        found.push(Found {
            source: Source::Detached(d.path),
            key_id: d.named,
            status,
            holder,
        });
    }
    Ok(found)
}

/// The distinct key ids whose signatures verified.
pub fn valid_ids(found: &[Found]) -> Vec<KeyId> {
    let mut ids: Vec<KeyId> = Vec::new();
    for f in found.iter().filter(|f| f.status == Status::Valid) {
        if !ids.contains(&f.key_id) {
            ids.push(f.key_id);
        }
    }
    ids
}

/// What does not count, and why (for errors and warnings).
pub fn problems(found: &[Found]) -> Vec<String> {
    found.iter().filter_map(Found::problem).collect()
}

/// `--trust`: at least `threshold` distinct trusted keys signed.
pub fn meet_threshold(
    found: &[Found],
    keys: &[PublicKey],
    threshold: usize,
) -> Result<Vec<KeyId>, SignatureError> {
    let signers = valid_ids(found);
    if signers.len() >= threshold.max(1) {
        return Ok(signers);
    }
    let rejected = found.iter().any(|f| matches!(f.status, Status::Invalid(_)));
    let first_untrusted = found.iter().find(|f| f.status == Status::Untrusted);
    match first_untrusted {
        Some(f) if signers.is_empty() && !rejected => Err(SignatureError::UntrustedKey {
            found: f.key_id.to_string(),
            trusted: keys
                .iter()
                .map(|k| k.id.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
        _ => Err(SignatureError::TooFew {
            have: signers.len(),
            need: threshold,
            signed: if signers.is_empty() {
                "no trusted key".into()
            } else {
                signers
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            ignored: problems(found),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::SecretKey;

    fn sig(k: &SecretKey, m: &[u8]) -> SignatureFile {
        SignatureFile::parse(&k.sign(m, "c")).unwrap()
    }

    fn detached(k: &SecretKey, m: &[u8]) -> Detached {
        Detached {
            path: PathBuf::from(format!("b.ferry.{}.minisig", k.id)),
            named: k.id,
            signature: Ok(sig(k, m)),
        }
    }

    #[test]
    fn threshold_counts_distinct_keys_over_embedded_and_detached() {
        let (a, b, c) = (
            SecretKey::for_tests(1),
            SecretKey::for_tests(2),
            SecretKey::for_tests(3),
        );
        let keys = [a.public(), b.public()];
        let trust = Trust::Keys {
            keys: &keys,
            threshold: 2,
        };
        let embedded = || vec![("e".to_string(), sig(&a, b"m"))];
        // Same key twice: one.
        let found = check(b"m", embedded(), vec![detached(&a, b"m")], &trust).unwrap();
        assert!(meet_threshold(&found, &keys, 2).is_err());
        // A second key, detached: two.
        let found = check(b"m", embedded(), vec![detached(&b, b"m")], &trust).unwrap();
        assert_eq!(meet_threshold(&found, &keys, 2).unwrap().len(), 2);
        // Made for another manifest: reported, not counted, not fatal.
        let found = check(b"m", embedded(), vec![detached(&b, b"other")], &trust).unwrap();
        assert!(matches!(found[1].status, Status::Invalid(_)));
        let err = meet_threshold(&found, &keys, 2).unwrap_err().to_string();
        assert!(
            err.contains("b.ferry.") && err.contains("another bundle"),
            "{err}"
        );
        assert_eq!(meet_threshold(&found, &keys, 1).unwrap().len(), 1);
        // Untrusted: ignored.
        let found = check(b"m", embedded(), vec![detached(&c, b"m")], &trust).unwrap();
        assert_eq!(found[1].status, Status::Untrusted);
        // An embedded signature by a trusted key that fails is fatal.
        assert!(check(b"x", embedded(), vec![], &trust).is_err());
        // Nothing trusted at all: the old error.
        let only_c = [c.public()];
        let found = check(
            b"m",
            embedded(),
            vec![],
            &Trust::Keys {
                keys: &only_c,
                threshold: 1,
            },
        )
        .unwrap();
        assert!(matches!(
            meet_threshold(&found, &only_c, 1),
            Err(SignatureError::UntrustedKey { .. })
        ));
    }
}
