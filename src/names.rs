//! Names that come from outside (a bundle manifest, an artifact config, an upstream
//! response, a spec) and later reach a path, a URL, a header or an HTML page. Each is a
//! newtype whose only constructor checks it, so an unchecked string cannot reach the
//! functions that join paths or build headers: they take these types. Deserialising one
//! checks it too (`serde(try_from)`), so a hostile bundle fails while its signed manifest
//! or an artifact config is parsed, before anything is written.
//!
//! Serialised, each is the plain string it holds: bundles and store records keep their
//! bytes.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exit::{Classify, ExitStatus};

/// A value that is not a safe name of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct NameError {
    /// What the value was meant to be: `python file name`, `conda subdir`, ...
    pub what: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl Classify for NameError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Verification
    }
    fn hint(&self) -> Option<String> {
        Some("the bundle or upstream names something that could escape its folder or forge a header or page; nothing was written. Do not use this source".into())
    }
}

/// Longest single path component ferry writes (most filesystems' limit).
const MAX_COMPONENT: usize = 255;

/// Why `s` is not one safe path component, if it is not: empty, `.` or `..`, too long,
/// a separator, a NUL or another control character.
fn component_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        Some("it is empty")
    } else if s == "." || s == ".." {
        Some("it names a directory (`.` or `..`)")
    } else if s.len() > MAX_COMPONENT {
        Some("it is longer than 255 bytes")
    } else if s.contains(['/', '\\']) {
        Some("it holds a path separator")
    } else if s.chars().any(char::is_control) {
        Some("it holds a control character")
    } else {
        None
    }
}

/// `[A-Za-z0-9._+!~-]`, not starting with `.` or `-`: the characters of package file
/// names, versions and builds. Nothing in it needs quoting in a URL path, a header or
/// an HTML attribute.
fn token_problem(s: &str, max: usize) -> Option<&'static str> {
    if let Some(p) = component_problem(s) {
        return Some(p);
    }
    if s.len() > max {
        return Some("it is too long");
    }
    if s.starts_with(['.', '-']) {
        return Some("it starts with `.` or `-`");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'!' | b'~' | b'-'))
    {
        return Some("only ASCII letters, digits and `._+!~-` are allowed");
    }
    None
}

fn lower_hex_problem(s: &str, lens: &[usize]) -> Option<&'static str> {
    if !lens.contains(&s.len()) {
        return Some("it is not a hex digest of the right length");
    }
    if !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Some("it is not lowercase hex");
    }
    None
}

macro_rules! checked_name {
    ($(#[$doc:meta])* $name:ident, $what:literal, |$s:ident| $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// What this kind of value is called in errors.
            pub const WHAT: &'static str = $what;

            pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                let problem: Option<&'static str> = {
                    let $s: &str = &value;
                    $check
                };
                match problem {
                    None => Ok($name(value)),
                    Some(reason) => Err(NameError { what: $what, value, reason }),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, NameError> {
                $name::new(value)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

/// A value that is safe as one path component; `join` is the only way ferry puts one
/// under a directory.
pub trait Component {
    fn component(&self) -> &str;
}

/// `base/name`, re-checked: the result is a direct child of `base`.
pub fn join(base: &Path, name: &impl Component) -> PathBuf {
    let c = name.component();
    assert!(
        component_problem(c).is_none(),
        "a checked name is a single path component"
    );
    base.join(c)
}

/// `base/a/b/c` for a relative path whose every component was checked.
pub fn join_rel(base: &Path, rel: &RelPath) -> PathBuf {
    let mut out = base.to_path_buf();
    for c in rel.components() {
        assert!(component_problem(c).is_none(), "a checked path component");
        out.push(c);
    }
    out
}

macro_rules! component {
    ($($name:ident),*) => {$(
        impl Component for $name {
            fn component(&self) -> &str {
                &self.0
            }
        }
    )*};
}

checked_name!(
    /// A lowercase sha256 in hex, as `sha256sum` prints it.
    Sha256Hex,
    "sha256",
    |s| lower_hex_problem(s, &[64])
);

impl Sha256Hex {
    pub fn digest(&self) -> crate::digest::Digest {
        crate::digest::Digest::from_hex(&self.0).expect("checked hex")
    }
}

impl From<crate::digest::Digest> for Sha256Hex {
    fn from(d: crate::digest::Digest) -> Self {
        Sha256Hex(d.hex())
    }
}

checked_name!(
    /// A Python project name as PEP 503 normalises it: `[a-z0-9]` runs joined by `-`.
    ProjectName,
    "python project name",
    |s| {
        if s.is_empty() || s.len() > 200 {
            Some("it is empty or too long")
        } else if !s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
            || s.starts_with('-')
            || s.ends_with('-')
            || s.contains("--")
        {
            Some("it is not a PEP 503-normalised name")
        } else {
            None
        }
    }
);

checked_name!(
    /// A wheel's file name: `*.whl`, package-name characters only.
    WheelFileName,
    "python file name",
    |s| token_problem(s, MAX_COMPONENT - 16)
        .or_else(|| (!s.ends_with(".whl")).then_some("it does not end in `.whl`"))
);

checked_name!(
    /// A version, build string or similar token: `[A-Za-z0-9._+!~-]`.
    Token,
    "version",
    |s| token_problem(s, 128)
);

checked_name!(
    /// A conda channel name as served and exported: one component.
    ChannelName,
    "conda channel name",
    |s| token_problem(s, 100)
);

checked_name!(
    /// A conda subdir: `linux-64`, `noarch`, `osx-arm64`, ...
    Subdir,
    "conda subdir",
    |s| {
        if s.is_empty() || s.len() > 40 {
            Some("it is empty or too long")
        } else if !s
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'))
            || s.starts_with('-')
        {
            Some("only lowercase letters, digits, `-` and `_` are allowed")
        } else {
            None
        }
    }
);

checked_name!(
    /// A conda package file name: `*.tar.bz2` or `*.conda`.
    CondaFileName,
    "conda file name",
    |s| token_problem(s, MAX_COMPONENT - 16).or_else(|| {
        (!(s.ends_with(".tar.bz2") || s.ends_with(".conda")))
            .then_some("it does not end in `.tar.bz2` or `.conda`")
    })
);

checked_name!(
    /// A conda package name, version or build: `[A-Za-z0-9._+!~-]`.
    CondaToken,
    "conda package field",
    |s| token_problem(s, 200)
);

checked_name!(
    /// A repository id on a Hugging Face hub: `name` or `org/name`, each part
    /// `[A-Za-z0-9._-]`, not starting with `.` or `-`, no `--` or `..`.
    HubRepoId,
    "hub repository id",
    |s| {
        let parts: Vec<&str> = s.split('/').collect();
        if s.len() > 200 || parts.is_empty() || parts.len() > 2 {
            Some("it is not `name` or `org/name`")
        } else if s.contains("--") || s.contains("..") {
            Some("it holds `--` or `..`")
        } else if parts.iter().any(|p| {
            p.is_empty()
                || p.starts_with(['.', '-'])
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }) {
            Some("each part must be `[A-Za-z0-9._-]`, not starting with `.` or `-`")
        } else {
            None
        }
    }
);

checked_name!(
    /// A revision (branch, tag or commit) on a hub: `/`-separated parts of
    /// `[A-Za-z0-9._-]`, none of them `.` or `..`.
    Revision,
    "hub revision",
    |s| {
        if s.is_empty() || s.len() > 255 {
            Some("it is empty or too long")
        } else if s.split('/').any(|p| {
            p.is_empty()
                || p == "."
                || p == ".."
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }) {
            Some("each `/`-separated part must be `[A-Za-z0-9._-]` and not `.` or `..`")
        } else {
            None
        }
    }
);

impl Revision {
    /// The revision as a relative path (for `refs/<revision>`).
    pub fn as_rel_path(&self) -> RelPath {
        RelPath::new(self.0.clone()).expect("a revision is a safe relative path")
    }
}

checked_name!(
    /// A git commit id: 40 lowercase hex.
    CommitId,
    "commit",
    |s| lower_hex_problem(s, &[40])
);

checked_name!(
    /// A git object id (sha1, 40 hex; sha256 repositories, 64).
    GitOid,
    "git oid",
    |s| lower_hex_problem(s, &[40, 64])
);

checked_name!(
    /// A relative path of safe components separated by `/`: a file inside a model
    /// repository. Any printable characters, but no `.`/`..`/empty component, no `\`,
    /// no control character, not absolute.
    RelPath,
    "file path",
    |s| {
        if s.is_empty() || s.len() > 4096 {
            Some("it is empty or too long")
        } else {
            s.split('/').find_map(component_problem)
        }
    }
);

impl RelPath {
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
    /// How many directories deep the file is.
    pub fn depth(&self) -> usize {
        self.0.matches('/').count()
    }
}

component!(
    Sha256Hex,
    ProjectName,
    WheelFileName,
    ChannelName,
    Subdir,
    CondaFileName,
    CommitId,
    GitOid
);

/// `model` or `dataset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum RepoType {
    Model,
    Dataset,
}

impl RepoType {
    pub fn as_str(self) -> &'static str {
        match self {
            RepoType::Model => "model",
            RepoType::Dataset => "dataset",
        }
    }
    pub fn parse(s: &str) -> Result<RepoType, NameError> {
        match s {
            "model" => Ok(RepoType::Model),
            "dataset" => Ok(RepoType::Dataset),
            _ => Err(NameError {
                what: "hub repository type",
                value: s.to_string(),
                reason: "it is neither `model` nor `dataset`",
            }),
        }
    }
}

impl TryFrom<String> for RepoType {
    type Error = NameError;
    fn try_from(s: String) -> Result<RepoType, NameError> {
        RepoType::parse(&s)
    }
}

impl fmt::Display for RepoType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A character that must not reach a terminal, a report or a policy message: controls,
/// and the invisible ones that reorder or hide text (bidirectional overrides and
/// isolates, zero-width spaces and joiners, the byte-order mark).
pub fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// A label from a spec entry, as it goes into the manifest, policies and reports: a key
/// of 1-64 lowercase letters, digits, `.`, `_`, `-` or `/` (starting with a letter or
/// digit), a value of at most 256 printable characters.
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    let key_ok = (1..=64).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && key.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/')
        });
    if !key_ok {
        return Err(format!(
            "label key {key:?} must be 1-64 lowercase letters, digits, `.`, `_`, `-` or `/`"
        ));
    }
    if value.chars().count() > 256 || value.chars().any(is_deceptive) {
        return Err(format!(
            "label {key} = {value:?} must be at most 256 printable characters"
        ));
    }
    Ok(())
}

/// A licence declaration from an upstream (or a bundle): bounded and printable.
pub fn check_licence(l: &crate::artifact::Licence) -> Result<(), String> {
    for (what, s) in [
        ("declared", Some(&l.declared)),
        ("spdx", l.spdx.as_ref()),
        ("source", Some(&l.source)),
    ] {
        if let Some(s) = s
            && (s.is_empty() || s.chars().count() > 1024 || s.chars().any(is_deceptive))
        {
            return Err(format!(
                "licence {what} {s:?} must be 1-1024 printable characters"
            ));
        }
    }
    Ok(())
}

/// A bundle series (a spec's `name`): 1-128 letters, digits, `.`, `_` or `-`.
pub fn valid_series_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Whether `s` is a media type as RFC 6838 allows it (`type/subtype`, restricted-name
/// characters, no parameters): what may go into a `Content-Type` header.
pub fn valid_media_type(s: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 127
            && p.as_bytes()[0].is_ascii_alphanumeric()
            && p.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'!' | b'#' | b'$' | b'&' | b'^' | b'_' | b'.' | b'+' | b'-'
                    )
            })
    };
    matches!(s.split_once('/'), Some((t, sub)) if part(t) && part(sub))
}

/// A URL with any `user:password@` removed: what ferry writes into manifests, records,
/// logs and output. The credentials stay only in the URL the client sends requests to.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(_) => url.to_string(),
        // Not a URL ferry can parse: cut anything up to an `@` in its authority.
        Err(_) => match url.split_once("://") {
            Some((scheme, rest)) => {
                let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                match rest[..end].rfind('@') {
                    Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                    None => url.to_string(),
                }
            }
            None => url.to_string(),
        },
    }
}

/// `text` with the `user:password@` of every URL in it removed: the last guard before
/// an error chain is printed (messages of other crates may quote a URL as it was).
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || "\"'`<>)".contains(c)
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => out.push_str(&authority[at + 1..]),
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            "../../x.whl",
            "/tmp/x.whl",
            "a/b.whl",
            "..",
            "",
            "x\n.whl",
            ".hidden.whl",
            "a\\b.whl",
            "x.tar.gz",
        ] {
            assert!(WheelFileName::new(bad).is_err(), "{bad:?}");
        }
        assert!(WheelFileName::new("six-1.16.0-py2.py3-none-any.whl").is_ok());
        assert!(Subdir::new("linux-64/../../tmp/x").is_err());
        assert!(Subdir::new("linux-64").is_ok());
        assert!(CommitId::new("abc\r\nX-Injected: 1").is_err());
        assert!(CommitId::new("a".repeat(40)).is_ok());
        assert!(GitOid::new("bad\netag").is_err());
        assert!(ProjectName::new("../x").is_err());
        assert!(ProjectName::new("six").is_ok());
        assert!(ProjectName::new("Six").is_err());
        assert!(HubRepoId::new("org/name").is_ok());
        assert!(HubRepoId::new("org/../x").is_err());
        assert!(HubRepoId::new("a/b/c").is_err());
        assert!(Revision::new("refs/pr/1").is_ok());
        assert!(Revision::new("../../x").is_err());
        assert!(RelPath::new("sub/model.safetensors").is_ok());
        assert!(RelPath::new("sub/../../x").is_err());
        assert!(RelPath::new("/abs").is_err());
        assert!(ChannelName::new("../x").is_err());
        assert!(CondaFileName::new("pkg-1.0-0.tar.bz2").is_ok());
        assert!(RepoType::parse("../models").is_err());
        assert!(valid_media_type(
            "application/vnd.oci.image.manifest.v1+json"
        ));
        assert!(!valid_media_type("text/html\r\nX-Injected: 1"));
        assert!(!valid_media_type("text/html; charset=utf-8"));
        let t: Result<RepoType, _> = serde_json::from_str("\"../x\"");
        assert!(t.unwrap_err().to_string().contains("hub repository type"));
        let t: RepoType = serde_json::from_str("\"dataset\"").unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"dataset\"");
    }

    #[test]
    fn deserialising_checks() {
        let r: Result<WheelFileName, _> = serde_json::from_str("\"../../etc/x.whl\"");
        let message = r.unwrap_err().to_string();
        assert!(message.contains("python file name"), "{message}");
        let ok: WheelFileName = serde_json::from_str("\"a-1-py3-none-any.whl\"").unwrap();
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            "\"a-1-py3-none-any.whl\""
        );
    }

    #[test]
    fn joins_stay_inside() {
        let base = Path::new("/out");
        let p = join_rel(base, &RelPath::new("a/b.txt").unwrap());
        assert_eq!(p, Path::new("/out/a/b.txt"));
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact_url("http://user:pass@127.0.0.1:8081/simple/"),
            "http://127.0.0.1:8081/simple/"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:8081/simple/"),
            "http://127.0.0.1:8081/simple/"
        );
        assert_eq!(redact_url("x://u:p@h/y"), "x://h/y");
        assert_eq!(
            redact_text(
                "error sending request for url (https://u:s3cret@h.example/a) and `http://t@x/`"
            ),
            "error sending request for url (https://h.example/a) and `http://x/`"
        );
        assert_eq!(redact_text("no urls here: a@b"), "no urls here: a@b");
    }

    #[test]
    fn labels_and_licences_refuse_hidden_characters() {
        assert!(check_label("classification", "internal").is_ok());
        for bad in ["x\u{202E}y", "a\u{200B}", "\u{FEFF}b", "c\u{7}"] {
            assert!(check_label("k", bad).is_err(), "{bad:?}");
            let l = crate::artifact::Licence {
                declared: bad.into(),
                spdx: None,
                source: "test".into(),
            };
            assert!(check_licence(&l).is_err(), "{bad:?}");
        }
        assert!(check_label("Bad", "x").is_err());
        assert!(check_label("a/b.c_d-e", "é ü 漢字").is_ok());
    }
}
