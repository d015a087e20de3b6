//! Who may read from `ferry serve`, and the log of what they read.
//!
//! - Users of an htpasswd file (`--htpasswd`, bcrypt only, as docker-registry takes it:
//!   `htpasswd -B`) sign in with HTTP Basic.
//! - Tokens of a token file (`--tokens`, lines `NAME:TOKEN`) are sent as
//!   `Authorization: Bearer TOKEN` (huggingface_hub's `HF_TOKEN`) or as the password of
//!   HTTP Basic with the token's name as the user (podman, pip, rattler).
//!
//! With either file, every request but `/healthz` needs credentials, and one without them
//! gets 401 with a `Basic` challenge (a `Bearer` challenge would send OCI clients looking
//! for a token service). Without both, reading is anonymous. A bcrypt check costs
//! milliseconds, so a pair that passed is remembered (by its SHA-256, never in clear) and
//! checks run off the async workers.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::exit::{Classify, ExitStatus};
use crate::respond::text;

/// A token shorter than this is refused when the file is read: it could be guessed.
const MIN_TOKEN_LEN: usize = 16;
/// Credentials remembered as checked; past this, the memory starts over.
const REMEMBERED: usize = 4096;
/// The longest path written to the access log (a hostile client may send 64 KiB).
const LOGGED_PATH: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read {what} {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}")]
    Htpasswd {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path} line {line}: {reason}")]
    Tokens {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{what} {path} is readable by others (mode {mode:o})")]
    TooOpen {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
    #[error("{path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error("cannot write the access log {path}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Classify for ServeError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            ServeError::Read { .. } | ServeError::Log { .. } => ExitStatus::Error,
            _ => ExitStatus::Usage,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ServeError::Htpasswd { .. } => Some(
                "write entries as `htpasswd -B FILE USER` does (bcrypt, `USER:$2y$...`); \
                 docker-registry takes the same file"
                    .into(),
            ),
            ServeError::Tokens { .. } => Some(format!(
                "one `NAME:TOKEN` per line, the token at least {MIN_TOKEN_LEN} characters \
                 without spaces or colons (e.g. `openssl rand -hex 32`)"
            )),
            ServeError::TooOpen { path, .. } => Some(format!(
                "run `chmod 600 {}`, and consider what it holds exposed if others could read it",
                path.display()
            )),
            ServeError::Tls { .. } => Some(
                "--tls-cert takes the server's certificate chain in PEM (leaf first), \
                 --tls-key its private key in PEM (PKCS#8, PKCS#1 or SEC1)"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// Who a request comes from, once its credentials were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reader {
    /// No credentials needed (the server has no users).
    Anonymous,
    User(String),
}

impl Reader {
    fn name(&self) -> Option<&str> {
        match self {
            Reader::Anonymous => None,
            Reader::User(name) => Some(name),
        }
    }
}

/// The users and tokens a server accepts.
#[derive(Default)]
pub struct Access {
    /// User name to bcrypt hash.
    users: HashMap<String, String>,
    /// Token name and the SHA-256 of the token.
    tokens: Vec<(String, [u8; 32])>,
    /// SHA-256 of `user \0 password` pairs that passed bcrypt.
    checked: Mutex<HashSet<[u8; 32]>>,
}

impl Access {
    /// Reads the htpasswd and token files given (none: anonymous reading).
    pub fn load(htpasswd: Option<&Path>, tokens: Option<&Path>) -> Result<Access, ServeError> {
        let mut access = Access::default();
        if let Some(path) = htpasswd {
            access.users = parse_htpasswd(path, &read("htpasswd file", path)?)?;
        }
        if let Some(path) = tokens {
            refuse_open(path, "token file")?;
            access.tokens = parse_tokens(path, &read("token file", path)?)?;
        }
        Ok(access)
    }

    /// True when anyone may read.
    pub fn is_open(&self) -> bool {
        self.users.is_empty() && self.tokens.is_empty()
    }

    /// Who sent a request with these headers, or None when it may not read.
    pub async fn check(self: &Arc<Self>, headers: &HeaderMap) -> Option<Reader> {
        if self.is_open() {
            return Some(Reader::Anonymous);
        }
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, credentials) = value.trim().split_once(' ')?;
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return self.token(None, credentials).map(Reader::User);
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        if let Some(name) = self.token(Some(user), password) {
            return Some(Reader::User(name));
        }
        let hash = self.users.get(user)?.clone();
        let pair = sha256(format!("{user}\0{password}").as_bytes());
        if self.remembered(&pair) {
            return Some(Reader::User(user.to_string()));
        }
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()?
            .ok()?;
        if !ok {
            return None;
        }
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if checked.len() >= REMEMBERED {
            checked.clear();
        }
        checked.insert(pair);
        Some(Reader::User(user.to_string()))
    }

    fn remembered(&self, pair: &[u8; 32]) -> bool {
        self.checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(pair)
    }

    /// The name of the token `token` (filed under `name`, when one is given). Every
    /// token is compared, in constant time, so timing tells nothing of which was close.
    fn token(&self, name: Option<&str>, token: &str) -> Option<String> {
        let wanted = sha256(token.as_bytes());
        let mut found = None;
        for (n, hash) in &self.tokens {
            let same = hash
                .iter()
                .zip(wanted.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
            if same && name.is_none_or(|name| name == n) {
                found = Some(n.clone());
            }
        }
        found
    }
}

/// 401, with the challenge every client of ferry's understands.
pub fn unauthorized(path: &str) -> Response {
    use crate::ecosystems::Ecosystem as _;
    let mut r = if crate::ecosystems::image::Image::claims(path) {
        let body = serde_json::json!({"errors": [{
            "code": "UNAUTHORIZED",
            "message": "authentication required",
            "detail": null,
        }]});
        let mut r = Response::new(axum::body::Body::from(body.to_string()));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r.headers_mut().insert(
            "Docker-Distribution-API-Version",
            HeaderValue::from_static("registry/2.0"),
        );
        r
    } else {
        text(StatusCode::UNAUTHORIZED, "authentication required\n")
    };
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"ferry\", charset=\"UTF-8\""),
    );
    r
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn read(what: &'static str, path: &Path) -> Result<String, ServeError> {
    std::fs::read_to_string(path).map_err(|source| ServeError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Refuses a secret file that group or others may read.
pub(super) fn refuse_open(path: &Path, what: &'static str) -> Result<(), ServeError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|source| ServeError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ServeError::TooOpen {
            what,
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// `USER:HASH` lines (blank lines and `#` comments skipped); bcrypt hashes only.
fn parse_htpasswd(path: &Path, text: &str) -> Result<HashMap<String, String>, ServeError> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: String| ServeError::Htpasswd {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err(bad("not `USER:HASH`".into()));
        };
        check_name(user).map_err(|r| bad(r.into()))?;
        let printable = format!("{user:?}");
        if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            return Err(bad(format!(
                "the password of {printable} is not a bcrypt hash (only `htpasswd -B` entries are taken)"
            )));
        }
        if bcrypt::verify("", hash).is_err() {
            return Err(bad(format!("the bcrypt hash of {printable} is malformed")));
        }
        if users.insert(user.to_string(), hash.to_string()).is_some() {
            return Err(bad(format!("{printable} is listed twice")));
        }
    }
    if users.is_empty() {
        return Err(ServeError::Htpasswd {
            path: path.to_path_buf(),
            line: 0,
            reason: "no users (every request would be refused)".into(),
        });
    }
    Ok(users)
}

/// `NAME:TOKEN` lines (blank lines and `#` comments skipped).
fn parse_tokens(path: &Path, text: &str) -> Result<Vec<(String, [u8; 32])>, ServeError> {
    let mut tokens: Vec<(String, [u8; 32])> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: String| ServeError::Tokens {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, token)) = line.split_once(':') else {
            return Err(bad("not `NAME:TOKEN`".into()));
        };
        check_name(name).map_err(|r| bad(r.into()))?;
        if token.len() < MIN_TOKEN_LEN {
            return Err(bad(format!(
                "the token is shorter than {MIN_TOKEN_LEN} characters"
            )));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(bad(
                "the token has a space, a colon or a character outside printable ASCII".into(),
            ));
        }
        let hash = sha256(token.as_bytes());
        if tokens.iter().any(|(_, h)| *h == hash) {
            return Err(bad("this token is listed twice".into()));
        }
        tokens.push((name.to_string(), hash));
    }
    if tokens.is_empty() {
        return Err(ServeError::Tokens {
            path: path.to_path_buf(),
            line: 0,
            reason: "no tokens (every request would be refused)".into(),
        });
    }
    Ok(tokens)
}

/// A user or token name: printable ASCII, no spaces (it is written to the access log and
/// compared with what clients send).
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.len() > 255 || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err("the name is not printable ASCII without spaces (at most 255 characters)");
    }
    Ok(())
}

/// The access log: one JSON object per answered request, a line each.
pub struct AccessLog {
    out: Mutex<Box<dyn std::io::Write + Send>>,
}

/// One request, as the access log records it once its response has ended.
pub struct Entry {
    pub client: SocketAddr,
    pub reader: Option<Reader>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub started: time::OffsetDateTime,
}

impl AccessLog {
    /// `-` is standard output; anything else a file appended to (made 0640).
    pub fn open(path: &Path) -> Result<AccessLog, ServeError> {
        if path == Path::new("-") {
            return Ok(AccessLog {
                out: Mutex::new(Box::new(std::io::stdout())),
            });
        }
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)
            .map_err(|source| ServeError::Log {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(AccessLog {
            out: Mutex::new(Box::new(file)),
        })
    }

    /// Writes one line (errors are dropped: a full disk must not stop serving).
    pub fn write(&self, entry: &Entry, bytes: u64, duration: Duration) {
        let mut path = entry.path.clone();
        if path.len() > LOGGED_PATH {
            let mut cut = LOGGED_PATH;
            while !path.is_char_boundary(cut) {
                cut -= 1;
            }
            path.truncate(cut);
            path.push_str("...");
        }
        let time = entry
            .started
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let user = entry.reader.as_ref().and_then(Reader::name);
        let line = serde_json::json!({
            "time": time,
            "client": entry.client.to_string(),
            "user": user,
            "method": entry.method,
            "path": path,
            "status": entry.status,
            "bytes": bytes,
            "duration_ms": (duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
        });
        let mut text = line.to_string();
        text.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers(&format!("Basic {b64}"))
    }

    #[tokio::test]
    async fn htpasswd_users_and_tokens_are_checked_and_nothing_else_passes() {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        std::fs::write(&htpasswd, format!("# readers\nalice:{hash}\n\n")).unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "ci:0123456789abcdef0123\n").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
        let access = Arc::new(Access::load(Some(&htpasswd), Some(&tokens)).unwrap());
        assert!(!access.is_open());

        let alice = Some(Reader::User("alice".into()));
        let ci = Some(Reader::User("ci".into()));
        assert_eq!(access.check(&basic("alice", "s3cret")).await, alice);
        // Twice: the second answer comes from memory and must be the same.
        assert_eq!(access.check(&basic("alice", "s3cret")).await, alice);
        assert_eq!(
            access.check(&headers("Bearer 0123456789abcdef0123")).await,
            ci
        );
        assert_eq!(
            access
                .check(&headers("bearer  0123456789abcdef0123 "))
                .await,
            ci
        );
        assert_eq!(access.check(&basic("ci", "0123456789abcdef0123")).await, ci);

        for refused in [
            basic("alice", "s3cre"),
            basic("alice", "s3cret "),
            basic("bob", "s3cret"),
            // A token under another name, and a user's password as a token.
            basic("alice", "0123456789abcdef0123"),
            headers("Bearer s3cret"),
            headers("Bearer 0123456789abcdef012"),
            headers("Digest username=\"alice\""),
            headers("Basic !!!not-base64"),
            headers("Basic"),
            HeaderMap::new(),
        ] {
            assert_eq!(access.check(&refused).await, None, "{refused:?}");
        }
        // A wrong password is not remembered as right after a right one.
        assert_eq!(access.check(&basic("alice", "S3cret")).await, None);
    }

    #[test]
    fn files_that_would_weaken_access_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let hash = bcrypt::hash("x", 4).unwrap();
        for (text, needle) in [
            ("alice:$apr1$abc$def\n", "not a bcrypt hash"),
            (
                "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n",
                "not a bcrypt hash",
            ),
            ("alice:plain\n", "not a bcrypt hash"),
            ("alice\n", "not `USER:HASH`"),
            ("alice:$2y$05$short\n", "malformed"),
            (&format!("alice:{hash}\nalice:{hash}\n"), "twice"),
            (&format!("al ice:{hash}\n"), "printable"),
            ("# nobody\n", "no users"),
        ] {
            let path = file("htpasswd", text, 0o644);
            let e = Access::load(Some(&path), None)
                .err()
                .expect(text)
                .to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        for (text, needle) in [
            ("ci:short\n", "shorter"),
            ("ci:0123456789abcdef 0123\n", "space"),
            ("0123456789abcdef0123\n", "not `NAME:TOKEN`"),
            ("a:0123456789abcdef0123\nb:0123456789abcdef0123\n", "twice"),
            ("", "no tokens"),
        ] {
            let path = file("tokens", text, 0o600);
            let e = Access::load(None, Some(&path))
                .err()
                .expect(text)
                .to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        let open = file("open-tokens", "ci:0123456789abcdef0123\n", 0o640);
        let e = Access::load(None, Some(&open)).err().unwrap();
        assert!(matches!(e, ServeError::TooOpen { .. }), "{e}");
        assert!(Access::load(None, None).unwrap().is_open());
    }
}
