//! Ed25519 keys and signatures in minisign's formats, so that `minisign -V` checks a
//! bundle without trusting ferry. Keys: `NAME.key` (minisign's unencrypted secret key
//! format, 0600) and `NAME.pub`. Signatures: prehashed (`ED`, Ed25519 over BLAKE2b-512
//! of the message), with a trusted comment covered by a second signature.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Blake2b512, Digest as _};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::exit::{Classify, ExitStatus};

const ALG_ED: &[u8; 2] = b"Ed";
const ALG_PREHASHED: &[u8; 2] = b"ED";
const KDF_NONE: &[u8; 2] = &[0, 0];
const CHECKSUM_B2: &[u8; 2] = b"B2";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write key file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} already exists")]
    Exists { path: PathBuf },
    #[error("secret key {path} is readable by others (mode {mode:o})")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} is not a minisign {what}: {reason}")]
    Malformed {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("secret key {path} is encrypted with a password, which ferry does not support")]
    Encrypted { path: PathBuf },
    #[error("{path} is a public key (key id {id}); signing needs the secret key")]
    PublicKeyGiven { path: PathBuf, id: KeyId },
}

impl Classify for KeyError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            KeyError::Exists { .. } | KeyError::PublicKeyGiven { .. } => ExitStatus::Usage,
            _ => ExitStatus::Error,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            KeyError::TooOpen { path, .. } => Some(format!(
                "run `chmod 600 {}`, and consider the key exposed if others could read it",
                path.display()
            )),
            KeyError::Exists { path } => Some(format!(
                "pick another name, or remove {} if you mean to replace that key",
                path.display()
            )),
            KeyError::PublicKeyGiven { path, .. } => Some(format!(
                "pass the secret half with --key (`{}`, made beside it by `ferry key generate`); the .pub file is what importers trust",
                path.with_extension("key").display()
            )),
            KeyError::Encrypted { .. } => Some(
                "make a password-less key with `ferry key generate NAME` (or `minisign -G -W`)"
                    .into(),
            ),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("signature is malformed: {0}")]
    Malformed(String),
    #[error("signature was made by key {found}, which is not among the trusted keys ({trusted})")]
    UntrustedKey { found: String, trusted: String },
    #[error("signature by key {key_id} does not match the signed content")]
    Invalid { key_id: String },
    #[error("{have} of {need} required signatures (signed by: {signed}){}", not_counted(.ignored))]
    TooFew {
        have: usize,
        need: usize,
        /// Who signed, trusted or not.
        signed: String,
        /// Signatures found but not counted (detached files that do not verify), with why.
        ignored: Vec<String>,
    },
}

/// `; not counted: A; B`, or nothing.
pub fn not_counted(ignored: &[String]) -> String {
    if ignored.is_empty() {
        String::new()
    } else {
        format!("; not counted: {}", ignored.join("; "))
    }
}

impl Classify for SignatureError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Verification
    }
    fn hint(&self) -> Option<String> {
        match self {
            SignatureError::UntrustedKey { .. } => Some(
                "pass the signer's public key with --trust, after checking it out of band".into(),
            ),
            SignatureError::TooFew { .. } => Some(
                "collect the missing approvals with `ferry bundle sign BUNDLE --key APPROVER.key` and carry the BUNDLE.<KEYID>.minisig files beside the bundle".into(),
            ),
            _ => None,
        }
    }
}

/// An 8-byte minisign key id, printed as minisign prints it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

impl KeyId {
    /// The key id as ferry and minisign print it (16 hex digits, either case).
    pub fn parse(text: &str) -> Option<KeyId> {
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(text, 16)
            .ok()
            .map(|n| KeyId(n.to_le_bytes()))
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub id: KeyId,
    key: VerifyingKey,
}

pub struct SecretKey {
    pub id: KeyId,
    key: SigningKey,
}

/// A detached minisign signature file, parsed.
#[derive(Clone, Debug)]
pub struct SignatureFile {
    pub key_id: KeyId,
    prehashed: bool,
    signature: Signature,
    pub trusted_comment: String,
    global_signature: Signature,
}

/// Generates a key pair and writes `NAME.key` (0600, never overwritten) and `NAME.pub`.
pub fn generate(base: &Path) -> Result<(PathBuf, PathBuf, KeyId), KeyError> {
    let secret_path = with_suffix(base, "key");
    let public_path = with_suffix(base, "pub");
    for path in [&secret_path, &public_path] {
        if path.exists() {
            return Err(KeyError::Exists { path: path.clone() });
        }
    }
    let mut seed = [0u8; 32];
    let mut id = [0u8; 8];
    getrandom::fill(&mut seed).expect("the operating system's random source failed");
    getrandom::fill(&mut id).expect("the operating system's random source failed");
    let secret = SecretKey {
        id: KeyId(id),
        key: SigningKey::from_bytes(&seed),
    };

    write_new(&secret_path, 0o600, secret.to_file_text().as_bytes())?;
    write_new(
        &public_path,
        0o644,
        secret.public().to_file_text().as_bytes(),
    )?;
    Ok((secret_path, public_path, secret.id))
}

fn with_suffix(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn write_new(path: &Path, mode: u32, bytes: &[u8]) -> Result<(), KeyError> {
    let werr = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(werr)?;
    f.write_all(bytes).map_err(werr)?;
    f.sync_all().map_err(werr)
}

/// The base64 payload of the second line of a minisign file.
fn payload(path: &Path, text: &str, what: &'static str) -> Result<Vec<u8>, KeyError> {
    let malformed = |reason: &str| KeyError::Malformed {
        path: path.to_path_buf(),
        what,
        reason: reason.to_string(),
    };
    let mut lines = text.lines();
    let first = lines.next().ok_or_else(|| malformed("empty file"))?;
    if !first.starts_with("untrusted comment:") {
        return Err(malformed("first line is not `untrusted comment: ...`"));
    }
    let line = lines.next().ok_or_else(|| malformed("no key line"))?;
    B64.decode(line.trim())
        .map_err(|_| malformed("key line is not base64"))
}

/// Key files are a few hundred bytes: read at most this much of one.
const MAX_KEY_FILE: u64 = 4 << 10;

fn read_key_text(path: &Path) -> Result<String, KeyError> {
    use std::io::Read as _;
    let read_err = |source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    fs::File::open(path)
        .map_err(read_err)?
        .take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    let malformed = |reason: &str| KeyError::Malformed {
        path: path.to_path_buf(),
        what: "key",
        reason: reason.to_string(),
    };
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(malformed("larger than any key file"));
    }
    String::from_utf8(bytes).map_err(|_| malformed("not text"))
}

impl PublicKey {
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = read_key_text(path)?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, KeyError> {
        let bytes = payload(path, text, "public key")?;
        let malformed = |reason: &str| KeyError::Malformed {
            path: path.to_path_buf(),
            what: "public key",
            reason: reason.to_string(),
        };
        if bytes.len() != 42 || &bytes[..2] != ALG_ED {
            return Err(malformed("expected 42 bytes starting with `Ed`"));
        }
        let id = KeyId(bytes[2..10].try_into().unwrap());
        let key = VerifyingKey::from_bytes(bytes[10..42].try_into().unwrap())
            .map_err(|_| malformed("not a valid Ed25519 point"))?;
        Ok(PublicKey { id, key })
    }

    pub fn to_file_text(&self) -> String {
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            self.id,
            self.key_line()
        )
    }

    /// The second line of the `.pub` file (what `minisign -P` takes).
    pub fn key_line(&self) -> String {
        let mut bytes = Vec::with_capacity(42);
        bytes.extend_from_slice(ALG_ED);
        bytes.extend_from_slice(&self.id.0);
        bytes.extend_from_slice(self.key.as_bytes());
        B64.encode(bytes)
    }

    /// Checks `sig` over `message`, and its trusted comment.
    pub fn verify(&self, message: &[u8], sig: &SignatureFile) -> Result<(), SignatureError> {
        let invalid = || SignatureError::Invalid {
            key_id: self.id.to_string(),
        };
        if sig.key_id != self.id {
            return Err(invalid());
        }
        let ok = if sig.prehashed {
            self.key
                .verify_strict(&Blake2b512::digest(message), &sig.signature)
        } else {
            self.key.verify_strict(message, &sig.signature)
        };
        ok.map_err(|_| invalid())?;
        let mut global = sig.signature.to_bytes().to_vec();
        global.extend_from_slice(sig.trusted_comment.as_bytes());
        self.key
            .verify_strict(&global, &sig.global_signature)
            .map_err(|_| invalid())
    }
}

impl SecretKey {
    /// Loads a secret key, refusing one that group or others may read (and saying so
    /// when the file is a public key instead).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let read_err = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = fs::metadata(path).map_err(read_err)?;
        let text = read_key_text(path)?;
        if let Ok(public) = PublicKey::parse(path, &text) {
            return Err(KeyError::PublicKeyGiven {
                path: path.to_path_buf(),
                id: public.id,
            });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
        let bytes = payload(path, &text, "secret key")?;
        let malformed = |reason: &str| KeyError::Malformed {
            path: path.to_path_buf(),
            what: "secret key",
            reason: reason.to_string(),
        };
        if bytes.len() != 158 || &bytes[..2] != ALG_ED || &bytes[4..6] != CHECKSUM_B2 {
            return Err(malformed(
                "expected 158 bytes, `Ed` keys with a BLAKE2b checksum",
            ));
        }
        if &bytes[2..4] != KDF_NONE {
            return Err(KeyError::Encrypted {
                path: path.to_path_buf(),
            });
        }
        let keynum = &bytes[54..];
        let id: [u8; 8] = keynum[..8].try_into().unwrap();
        let sk: [u8; 64] = keynum[8..72].try_into().unwrap();
        let checksum = &keynum[72..104];
        if checksum != key_checksum(&id, &sk) {
            return Err(malformed("checksum does not match (corrupted key file?)"));
        }
        let key = SigningKey::from_keypair_bytes(&sk)
            .map_err(|_| malformed("public half does not match the secret half"))?;
        Ok(SecretKey { id: KeyId(id), key })
    }

    /// A fixed key for unit tests: id and seed derived from `n`.
    #[cfg(test)]
    pub fn for_tests(n: u8) -> SecretKey {
        SecretKey {
            id: KeyId([n, 0xfe, 0, 0, 0, 0, 0, n]),
            key: SigningKey::from_bytes(&[n; 32]),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    fn to_file_text(&self) -> String {
        let sk = self.key.to_keypair_bytes();
        let mut bytes = Vec::with_capacity(158);
        bytes.extend_from_slice(ALG_ED);
        bytes.extend_from_slice(KDF_NONE);
        bytes.extend_from_slice(CHECKSUM_B2);
        bytes.extend_from_slice(&[0u8; 32]); // kdf salt, unused without a kdf
        bytes.extend_from_slice(&0u64.to_le_bytes()); // kdf opslimit
        bytes.extend_from_slice(&0u64.to_le_bytes()); // kdf memlimit
        bytes.extend_from_slice(&self.id.0);
        bytes.extend_from_slice(&sk);
        bytes.extend_from_slice(&key_checksum(&self.id.0, &sk));
        format!(
            "untrusted comment: minisign encrypted secret key\n{}\n",
            B64.encode(bytes)
        )
    }

    /// Signs `message` (prehashed) and returns the text of a `.minisig` file.
    pub fn sign(&self, message: &[u8], trusted_comment: &str) -> String {
        assert!(
            !trusted_comment.contains('\n'),
            "trusted comments are one line"
        );
        let signature = self.key.sign(&Blake2b512::digest(message));
        let mut global = signature.to_bytes().to_vec();
        global.extend_from_slice(trusted_comment.as_bytes());
        let global_signature = self.key.sign(&global);
        let mut line = Vec::with_capacity(74);
        line.extend_from_slice(ALG_PREHASHED);
        line.extend_from_slice(&self.id.0);
        line.extend_from_slice(&signature.to_bytes());
        format!(
            "untrusted comment: signature from ferry secret key {}\n{}\ntrusted comment: {}\n{}\n",
            self.id,
            B64.encode(line),
            trusted_comment,
            B64.encode(global_signature.to_bytes())
        )
    }
}

fn key_checksum(id: &[u8; 8], sk: &[u8; 64]) -> [u8; 32] {
    let mut h = Blake2b::<U32>::new();
    h.update(ALG_ED);
    h.update(id);
    h.update(sk);
    h.finalize().into()
}

impl SignatureFile {
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let bad = |s: &str| SignatureError::Malformed(s.to_string());
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() < 4 || !lines[0].starts_with("untrusted comment:") {
            return Err(bad("expected four lines, the first an untrusted comment"));
        }
        let sig = B64
            .decode(lines[1].trim())
            .map_err(|_| bad("signature line is not base64"))?;
        if sig.len() != 74 {
            return Err(bad("signature line has the wrong length"));
        }
        let prehashed = match &sig[..2] {
            a if a == ALG_PREHASHED => true,
            a if a == ALG_ED => false,
            _ => return Err(bad("unknown signature algorithm")),
        };
        let trusted_comment = lines[2]
            .strip_prefix("trusted comment: ")
            .ok_or_else(|| bad("third line is not `trusted comment: ...`"))?
            .to_string();
        let global = B64
            .decode(lines[3].trim())
            .map_err(|_| bad("global signature is not base64"))?;
        let global: [u8; 64] = global
            .try_into()
            .map_err(|_| bad("global signature has the wrong length"))?;
        Ok(SignatureFile {
            key_id: KeyId(sig[2..10].try_into().unwrap()),
            prehashed,
            signature: Signature::from_bytes(sig[10..74].try_into().unwrap()),
            trusted_comment,
            global_signature: Signature::from_bytes(&global),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_roundtrip_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("team");
        let (sk_path, pk_path, id) = generate(&base).unwrap();
        let mode = fs::metadata(&sk_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sk = SecretKey::load(&sk_path).unwrap();
        let pk = PublicKey::load(&pk_path).unwrap();
        assert_eq!(sk.id, id);
        let text = sk.sign(b"manifest", "timestamp:0");
        let sig = SignatureFile::parse(&text).unwrap();
        pk.verify(b"manifest", &sig).unwrap();
        assert!(pk.verify(b"manifesT", &sig).is_err());
        let mut edited = sig.clone();
        edited.trusted_comment = "timestamp:1".into();
        assert!(pk.verify(b"manifest", &edited).is_err());
        assert!(matches!(generate(&base), Err(KeyError::Exists { .. })));
    }

    #[test]
    fn refuses_readable_secret_key() {
        let dir = tempfile::tempdir().unwrap();
        let (sk_path, _, _) = generate(&dir.path().join("k")).unwrap();
        fs::set_permissions(&sk_path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            SecretKey::load(&sk_path),
            Err(KeyError::TooOpen { .. })
        ));
    }

    #[test]
    fn a_public_key_is_not_taken_for_a_secret_one() {
        let dir = tempfile::tempdir().unwrap();
        let (_, pk_path, id) = generate(&dir.path().join("k")).unwrap();
        match SecretKey::load(&pk_path) {
            Err(e @ KeyError::PublicKeyGiven { .. }) => {
                assert_eq!(e.exit_status(), ExitStatus::Usage);
                assert!(e.to_string().contains("public key"), "{e}");
                assert!(e.to_string().contains(&id.to_string()), "{e}");
            }
            other => panic!("{:?}", other.err()),
        }
        assert_eq!(KeyId::parse(&id.to_string()), Some(id));
        assert_eq!(KeyId::parse(&id.to_string().to_lowercase()), Some(id));
        assert_eq!(KeyId::parse("+123456789ABCDEF"), None);
    }
}
