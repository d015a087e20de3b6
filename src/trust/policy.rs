//! The trust policy (`--trust-policy TRUST.toml`): named keys with roles, the signatures
//! each series needs per role, revoked keys and a maximum bundle age. Loading reads
//! the file and its keys and refuses anything ambiguous (exit 2); [`TrustPolicy::evaluate`]
//! is pure: which rule applies to a series, who of the signers counts, and whether
//! the rule is met (exit 3 when not).
//!
//! Decisions: the first rule whose `series` glob matches applies; a key counts once
//! however many names or signatures it has; a revoked key's signature never counts
//! (and is named); one key holds one role; a bundle dated more than [`MAX_SKEW`] ahead
//! of this machine's clock fails a rule with a `max-age`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;
use toml::Spanned;

use crate::exit::{Classify, ExitStatus};
use crate::sign::{KeyError, KeyId, PublicKey};

/// How far in the future a bundle's creation time may lie (clocks differ) before a
/// rule with a `max-age` refuses it.
pub const MAX_SKEW: time::Duration = time::Duration::minutes(5);

/// A trust policy file that cannot be used: exit 2, naming the file (and the line,
/// where there is one).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read trust policy {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("trust policy {path} is not valid TOML for a trust policy")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("trust policy {path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("trust policy {path}:{line}: cannot load key {name}")]
    Key {
        path: PathBuf,
        line: usize,
        name: String,
        #[source]
        source: KeyError,
    },
}

impl Classify for PolicyError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Usage
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            PolicyError::Read { .. } => "check the path given to --trust-policy".into(),
            PolicyError::Key { .. } => {
                "key paths in a trust policy are relative to the policy file".into()
            }
            _ => "see \"Trust policy\" in the README for the fields a trust policy takes".into(),
        })
    }
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    revoked: Vec<Spanned<String>>,
    #[serde(default)]
    keys: BTreeMap<String, Spanned<KeyEntry>>,
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RuleEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    key: PathBuf,
    role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RuleEntry {
    series: String,
    require: BTreeMap<String, usize>,
    #[serde(default)]
    max_age: Option<String>,
}

/// A key the policy names.
#[derive(Debug, Clone)]
pub struct NamedKey {
    /// Every name the key is listed under (one key may be listed twice, with one role).
    pub names: Vec<String>,
    pub role: String,
    pub key: PublicKey,
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// 1-based, in file order.
    pub number: usize,
    pub series: glob::Pattern,
    pub require: BTreeMap<String, usize>,
    pub max_age: Option<time::Duration>,
}

#[derive(Debug, Clone)]
pub struct TrustPolicy {
    pub path: PathBuf,
    keys: Vec<NamedKey>,
    /// Revoked key ids, with how the policy names each.
    revoked: BTreeMap<KeyId, String>,
    rules: Vec<Rule>,
}

/// What the policy thinks of one key id.
pub enum Lookup<'a> {
    Trusted(&'a NamedKey),
    Revoked(&'a str),
    Unknown,
}

/// A signer as the policy names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub name: String,
    pub role: String,
    pub id: KeyId,
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.role, self.id)
    }
}

/// A bundle the policy accepts: by which rule, and who counted.
#[derive(Debug, Clone)]
pub struct Approval {
    pub rule: usize,
    pub series_pattern: String,
    pub signers: Vec<Signer>,
    /// Names of revoked keys that signed (never counted).
    pub revoked: Vec<String>,
}

/// Why a bundle is refused: exit 3, naming who signed, what is missing and the rule.
#[derive(Debug, thiserror::Error)]
#[error("trust policy {}: {kind}; signed by: {}{}{}", .policy.display(), signed_text(.signers), revoked_text(.revoked), crate::sign::not_counted(.ignored))]
pub struct Refusal {
    pub policy: PathBuf,
    pub kind: RefusalKind,
    pub signers: Vec<Signer>,
    pub revoked: Vec<String>,
    /// Signatures found but not counted for another reason (set by the reader).
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalKind {
    /// No signature verified against a key the policy trusts.
    NoTrustedSignature,
    NoRule {
        series: String,
    },
    Missing {
        rule: String,
        /// (role, have, need, keys of that role that did not sign).
        roles: Vec<(String, usize, usize, Vec<String>)>,
    },
    Expired {
        rule: String,
        created: String,
        max_age: String,
    },
    FromTheFuture {
        rule: String,
        created: String,
    },
    BadCreated {
        created: String,
    },
}

impl std::fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefusalKind::NoTrustedSignature => {
                write!(f, "no signature verifies against a key the policy trusts")
            }
            RefusalKind::NoRule { series } => write!(f, "no rule matches series `{series}`"),
            RefusalKind::Missing { rule, roles } => {
                write!(f, "{rule} is not met:")?;
                for (i, (role, have, need, unsigned)) in roles.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    write!(f, "{sep}{role} needs {need}, has {have}")?;
                    if !unsigned.is_empty() {
                        write!(f, " (not signed by {})", unsigned.join(", "))?;
                    }
                }
                Ok(())
            }
            RefusalKind::Expired {
                rule,
                created,
                max_age,
            } => write!(
                f,
                "{rule}: the bundle was created {created}, longer ago than its max-age {max_age}"
            ),
            RefusalKind::FromTheFuture { rule, created } => write!(
                f,
                "{rule}: the bundle says it was created {created}, more than {} minutes ahead of this machine's clock",
                MAX_SKEW.whole_minutes()
            ),
            RefusalKind::BadCreated { created } => {
                write!(f, "the bundle's creation time `{created}` is not RFC 3339")
            }
        }
    }
}

fn signed_text(signers: &[Signer]) -> String {
    if signers.is_empty() {
        "nobody the policy trusts".into()
    } else {
        signers
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn revoked_text(revoked: &[String]) -> String {
    if revoked.is_empty() {
        String::new()
    } else {
        format!("; revoked, not counted: {}", revoked.join(", "))
    }
}

impl Classify for Refusal {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Verification
    }
    fn hint(&self) -> Option<String> {
        Some(match &self.kind {
            RefusalKind::NoTrustedSignature | RefusalKind::Missing { .. } => {
                "collect the missing approvals with `ferry bundle sign BUNDLE --key APPROVER.key` and carry every BUNDLE.<KEYID>.minisig file beside the bundle".into()
            }
            RefusalKind::NoRule { .. } => {
                "add a [[rule]] for this series to the trust policy (rules are tried in order; `series = \"*\"` matches every series)".into()
            }
            RefusalKind::Expired { .. } => {
                "make a fresh bundle: this one is older than the trust policy allows".into()
            }
            RefusalKind::FromTheFuture { .. } | RefusalKind::BadCreated { .. } => {
                "check the clocks of the machine that made the bundle and of this one".into()
            }
        })
    }
}

impl TrustPolicy {
    /// Reads `path` and every key it names (relative to its directory).
    pub fn load(path: &Path) -> Result<TrustPolicy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(path, &text, &|p| PublicKey::load(&base.join(p)))
    }

    /// Builds the policy from its text; `load_key` turns a key path into a key.
    pub fn parse(
        path: &Path,
        text: &str,
        load_key: &dyn Fn(&Path) -> Result<PublicKey, KeyError>,
    ) -> Result<TrustPolicy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|source| PolicyError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let line = |span: std::ops::Range<usize>| line_of(text, span.start);
        let invalid = |span: std::ops::Range<usize>, message: String| PolicyError::Invalid {
            path: path.to_path_buf(),
            line: line(span),
            message,
        };

        let mut keys: Vec<NamedKey> = Vec::new();
        for (name, entry) in &file.keys {
            let span = entry.span();
            let entry = entry.get_ref();
            let key = load_key(&entry.key).map_err(|source| PolicyError::Key {
                path: path.to_path_buf(),
                line: line(span.clone()),
                name: name.clone(),
                source,
            })?;
            if entry.role.trim().is_empty() {
                return Err(invalid(span, format!("key {name} has an empty role")));
            }
            match keys.iter_mut().find(|k| k.key.id == key.id) {
                Some(k) if k.key != key => {
                    return Err(invalid(
                        span,
                        format!(
                            "keys {} and {name} are different keys with the same key id {}",
                            k.names.join(", "),
                            key.id
                        ),
                    ));
                }
                Some(k) if k.role != entry.role => {
                    return Err(invalid(
                        span,
                        format!(
                            "key {name} is the same key as {} but with role `{}` instead of `{}`; one key holds one role",
                            k.names.join(", "),
                            entry.role,
                            k.role
                        ),
                    ));
                }
                Some(k) => k.names.push(name.clone()),
                None => keys.push(NamedKey {
                    names: vec![name.clone()],
                    role: entry.role.clone(),
                    key,
                }),
            }
        }

        let mut revoked = BTreeMap::new();
        for r in &file.revoked {
            let value = r.get_ref();
            let id = match KeyId::parse(value) {
                Some(id) => id,
                None => {
                    load_key(Path::new(value))
                        .map_err(|source| PolicyError::Key {
                            path: path.to_path_buf(),
                            line: line(r.span()),
                            name: format!("`{value}` (revoked)"),
                            source,
                        })?
                        .id
                }
            };
            let label = keys
                .iter()
                .find(|k| k.key.id == id)
                .map(|k| k.names.join("/"))
                .unwrap_or_else(|| value.clone());
            revoked.insert(id, label);
        }

        if file.rules.is_empty() {
            return Err(invalid(
                0..0,
                "no [[rule]]: a trust policy must say what each series needs".into(),
            ));
        }
        let mut rules = Vec::new();
        for (i, entry) in file.rules.iter().enumerate() {
            let span = entry.span();
            let entry = entry.get_ref();
            let number = i + 1;
            let series = glob::Pattern::new(&entry.series).map_err(|e| {
                invalid(
                    span.clone(),
                    format!(
                        "rule {number}: series `{}` is not a glob: {e}",
                        entry.series
                    ),
                )
            })?;
            if entry.require.values().all(|&n| n == 0) {
                return Err(invalid(
                    span,
                    format!("rule {number} requires no signature at all"),
                ));
            }
            for (role, &need) in &entry.require {
                let have = keys
                    .iter()
                    .filter(|k| k.role == *role && !revoked.contains_key(&k.key.id))
                    .count();
                if have == 0 && !keys.iter().any(|k| k.role == *role) {
                    return Err(invalid(
                        span,
                        format!(
                            "rule {number} requires role `{role}`, which no key has (roles: {})",
                            roles(&keys)
                        ),
                    ));
                }
                if need > have {
                    return Err(invalid(
                        span,
                        format!(
                            "rule {number} requires {need} `{role}` signature(s), but the policy has only {have} unrevoked `{role}` key(s)"
                        ),
                    ));
                }
            }
            let max_age = match &entry.max_age {
                None => None,
                Some(text) => Some(parse_age(text).ok_or_else(|| {
                    invalid(
                        span.clone(),
                        format!(
                            "rule {number}: max-age `{text}` is not a number followed by s, m, h or d (e.g. \"30d\")"
                        ),
                    )
                })?),
            };
            rules.push(Rule {
                number,
                series,
                require: entry.require.clone(),
                max_age,
            });
        }
        Ok(TrustPolicy {
            path: path.to_path_buf(),
            keys,
            revoked,
            rules,
        })
    }

    /// What the policy makes of a key id (revoked wins over listed).
    pub fn lookup(&self, id: KeyId) -> Lookup<'_> {
        if let Some(label) = self.revoked.get(&id) {
            return Lookup::Revoked(label);
        }
        match self.keys.iter().find(|k| k.key.id == id) {
            Some(k) => Lookup::Trusted(k),
            None => Lookup::Unknown,
        }
    }

    /// The first rule whose series glob matches.
    pub fn rule_for(&self, series: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.series.matches(series))
    }

    /// A refusal before the manifest is even read: nothing the policy trusts signed.
    pub fn refuse_unsigned(&self, signed: &[KeyId]) -> Box<Refusal> {
        let (signers, revoked) = self.classify(signed);
        self.refusal(RefusalKind::NoTrustedSignature, signers, revoked)
    }

    /// Decides on a bundle of `series` created at `created` (RFC 3339), signed by
    /// `signed` (key ids whose signatures verified, or that claim a revoked key), at
    /// time `now`.
    pub fn evaluate(
        &self,
        series: &str,
        created: &str,
        now: OffsetDateTime,
        signed: &[KeyId],
    ) -> Result<Approval, Box<Refusal>> {
        let (signers, revoked) = self.classify(signed);
        let Some(rule) = self.rule_for(series) else {
            return Err(self.refusal(
                RefusalKind::NoRule {
                    series: series.into(),
                },
                signers,
                revoked,
            ));
        };
        let rule_name = format!("rule {} (series = \"{}\")", rule.number, rule.series);
        if let Some(max_age) = rule.max_age {
            let Ok(at) =
                OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
            else {
                return Err(self.refusal(
                    RefusalKind::BadCreated {
                        created: created.into(),
                    },
                    signers,
                    revoked,
                ));
            };
            if at > now + MAX_SKEW {
                return Err(self.refusal(
                    RefusalKind::FromTheFuture {
                        rule: rule_name,
                        created: created.into(),
                    },
                    signers,
                    revoked,
                ));
            }
            if now - at > max_age {
                return Err(self.refusal(
                    RefusalKind::Expired {
                        rule: rule_name,
                        created: created.into(),
                        max_age: format_age(max_age),
                    },
                    signers,
                    revoked,
                ));
            }
        }
        let mut missing = Vec::new();
        for (role, &need) in &rule.require {
            let have = signers.iter().filter(|s| s.role == *role).count();
            if have < need {
                let unsigned = self
                    .keys
                    .iter()
                    .filter(|k| k.role == *role && !self.revoked.contains_key(&k.key.id))
                    .filter(|k| !signers.iter().any(|s| s.id == k.key.id))
                    .map(|k| k.names.join("/"))
                    .collect();
                missing.push((role.clone(), have, need, unsigned));
            }
        }
        if !missing.is_empty() {
            return Err(self.refusal(
                RefusalKind::Missing {
                    rule: rule_name,
                    roles: missing,
                },
                signers,
                revoked,
            ));
        }
        Ok(Approval {
            rule: rule.number,
            series_pattern: rule.series.to_string(),
            signers,
            revoked,
        })
    }

    /// The distinct trusted signers among `signed`, and the revoked ones by name.
    fn classify(&self, signed: &[KeyId]) -> (Vec<Signer>, Vec<String>) {
        let distinct: BTreeSet<[u8; 8]> = signed.iter().map(|id| id.0).collect();
        let mut signers = Vec::new();
        let mut revoked = Vec::new();
        for id in distinct.into_iter().map(KeyId) {
            match self.lookup(id) {
                Lookup::Trusted(k) => signers.push(Signer {
                    name: k.names.join("/"),
                    role: k.role.clone(),
                    id,
                }),
                Lookup::Revoked(label) => revoked.push(format!("{label} ({id})")),
                Lookup::Unknown => {}
            }
        }
        (signers, revoked)
    }

    fn refusal(
        &self,
        kind: RefusalKind,
        signers: Vec<Signer>,
        revoked: Vec<String>,
    ) -> Box<Refusal> {
        Box::new(Refusal {
            policy: self.path.clone(),
            kind,
            signers,
            revoked,
            ignored: Vec::new(),
        })
    }
}

fn roles(keys: &[NamedKey]) -> String {
    let roles: BTreeSet<&str> = keys.iter().map(|k| k.role.as_str()).collect();
    if roles.is_empty() {
        "none".into()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(", ")
    }
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// `30d`, `12h`, `90m`, `3600s`: a positive whole number and one unit.
pub fn parse_age(text: &str) -> Option<time::Duration> {
    let unit = text.chars().last()?;
    let number = &text[..text.len() - unit.len_utf8()];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = number.parse().ok()?;
    let seconds = match unit {
        's' => Some(1i64),
        'm' => Some(60),
        'h' => Some(3600),
        'd' => Some(86400),
        _ => None,
    }?;
    let total = n.checked_mul(seconds)?;
    // Beyond a thousand years is a typo, and would overflow date arithmetic.
    (total > 0 && total <= 1000 * 366 * 86400).then(|| time::Duration::seconds(total))
}

fn format_age(d: time::Duration) -> String {
    let s = d.whole_seconds();
    match s {
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::SecretKey;

    fn key(n: u8) -> PublicKey {
        SecretKey::for_tests(n).public()
    }

    /// A policy over test keys: the path `kN.pub` loads test key N.
    fn policy(text: &str) -> Result<TrustPolicy, PolicyError> {
        TrustPolicy::parse(Path::new("trust.toml"), text, &|p| {
            let name = p.to_string_lossy();
            let n = name
                .strip_prefix('k')
                .and_then(|s| s.strip_suffix(".pub"))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| KeyError::Read {
                    path: p.to_path_buf(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })?;
            Ok(key(n))
        })
    }

    const BASE: &str = r#"
[keys.build]
key = "k1.pub"
role = "builder"
[keys.alice]
key = "k2.pub"
role = "approver"
[keys.bob]
key = "k3.pub"
role = "approver"
[keys.carol]
key = "k4.pub"
role = "approver"
"#;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2025-06-01 12:00 UTC)
    }

    const CREATED: &str = "2025-06-01T11:00:00Z";

    fn ids(ns: &[u8]) -> Vec<KeyId> {
        ns.iter().map(|&n| key(n).id).collect()
    }

    #[test]
    fn first_matching_rule_applies_and_counts_roles() {
        let p = policy(&format!(
            "{BASE}[[rule]]\nseries = \"prod-*\"\nrequire = {{ builder = 1, approver = 2 }}\n[[rule]]\nseries = \"*\"\nrequire = {{ builder = 1 }}\n"
        ))
        .unwrap();
        let a = p.evaluate("dev", CREATED, now(), &ids(&[1])).unwrap();
        assert_eq!(a.rule, 2);
        let refused = p
            .evaluate("prod-eu", CREATED, now(), &ids(&[1, 2]))
            .unwrap_err();
        match &refused.kind {
            RefusalKind::Missing { rule, roles } => {
                assert!(rule.contains("rule 1"), "{rule}");
                assert_eq!(roles.len(), 1);
                assert_eq!((roles[0].1, roles[0].2), (1, 2));
                assert_eq!(roles[0].3, vec!["bob".to_string(), "carol".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        let text = refused.to_string();
        assert!(
            text.contains("build (builder") && text.contains("alice (approver"),
            "{text}"
        );
        let a = p
            .evaluate("prod-eu", CREATED, now(), &ids(&[1, 2, 3]))
            .unwrap();
        assert_eq!(a.rule, 1);
        assert_eq!(a.signers.len(), 3);
    }

    #[test]
    fn no_rule_for_the_series_is_refused() {
        let p = policy(&format!(
            "{BASE}[[rule]]\nseries = \"prod-*\"\nrequire = {{ builder = 1 }}\n"
        ))
        .unwrap();
        let r = p.evaluate("dev", CREATED, now(), &ids(&[1])).unwrap_err();
        assert_eq!(
            r.kind,
            RefusalKind::NoRule {
                series: "dev".into()
            }
        );
    }

    #[test]
    fn a_key_counts_once_however_often_it_signed_or_is_listed() {
        let p = policy(&format!(
            "{BASE}[keys.alice-again]\nkey = \"k2.pub\"\nrole = \"approver\"\n[[rule]]\nseries = \"*\"\nrequire = {{ approver = 2 }}\n"
        ))
        .unwrap();
        assert!(p.evaluate("s", CREATED, now(), &ids(&[2, 2, 2])).is_err());
        let a = p.evaluate("s", CREATED, now(), &ids(&[2, 3, 2])).unwrap();
        assert_eq!(a.signers.len(), 2);
        assert!(a.signers.iter().any(|s| s.name == "alice/alice-again"));
    }

    #[test]
    fn revoked_keys_never_count_and_are_named() {
        let p = policy(&format!(
            "revoked = [\"k3.pub\"]\n{BASE}[[rule]]\nseries = \"*\"\nrequire = {{ approver = 2 }}\n"
        ))
        .unwrap();
        let r = p.evaluate("s", CREATED, now(), &ids(&[2, 3])).unwrap_err();
        assert_eq!(r.revoked.len(), 1);
        assert!(r.revoked[0].starts_with("bob"), "{:?}", r.revoked);
        assert!(r.to_string().contains("revoked, not counted: bob"));
        let a = p.evaluate("s", CREATED, now(), &ids(&[2, 3, 4])).unwrap();
        assert_eq!(a.signers.len(), 2);
        assert!(matches!(p.lookup(key(3).id), Lookup::Revoked(_)));
        // By key id, too.
        let p = policy(&format!(
            "revoked = [\"{}\"]\n{BASE}[[rule]]\nseries = \"*\"\nrequire = {{ builder = 1 }}\n",
            key(4).id
        ))
        .unwrap();
        assert!(matches!(p.lookup(key(4).id), Lookup::Revoked(_)));
    }

    #[test]
    fn age_is_bounded_both_ways() {
        let p = policy(&format!(
            "{BASE}[[rule]]\nseries = \"*\"\nrequire = {{ builder = 1 }}\nmax-age = \"2h\"\n"
        ))
        .unwrap();
        let signed = ids(&[1]);
        assert!(
            p.evaluate("s", "2025-06-01T10:00:01Z", now(), &signed)
                .is_ok()
        );
        let r = p
            .evaluate("s", "2025-06-01T09:59:59Z", now(), &signed)
            .unwrap_err();
        assert!(matches!(r.kind, RefusalKind::Expired { .. }), "{r}");
        assert!(
            p.evaluate("s", "2025-06-01T12:04:00Z", now(), &signed)
                .is_ok()
        );
        let r = p
            .evaluate("s", "2025-06-01T12:06:00Z", now(), &signed)
            .unwrap_err();
        assert!(matches!(r.kind, RefusalKind::FromTheFuture { .. }), "{r}");
        let r = p.evaluate("s", "yesterday", now(), &signed).unwrap_err();
        assert!(matches!(r.kind, RefusalKind::BadCreated { .. }), "{r}");
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("30d"), Some(time::Duration::days(30)));
        assert_eq!(parse_age("90m"), Some(time::Duration::minutes(90)));
        assert_eq!(parse_age("1s"), Some(time::Duration::seconds(1)));
        for bad in [
            "",
            "d",
            "30",
            "0d",
            "-1d",
            "1.5h",
            "30 d",
            "30w",
            "99999999999999999d",
        ] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
        assert_eq!(format_age(time::Duration::days(30)), "30d");
    }

    #[test]
    fn bad_policies_say_where() {
        let bad = |text: &str, needle: &str| {
            let e = policy(text).unwrap_err();
            let all = format!(
                "{e} {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            );
            assert!(all.contains(needle), "{needle:?} not in {all:?}");
            assert_eq!(e.exit_status(), ExitStatus::Usage);
        };
        let rule = "[[rule]]\nseries = \"*\"\nrequire = { builder = 1 }\n";
        bad(
            &format!("{BASE}[[rule]]\nseries = \"*\"\nrequire = {{ aprover = 1 }}\n"),
            "aprover",
        );
        bad(
            &format!("{BASE}[[rule]]\nseries = \"[\"\nrequire = {{ builder = 1 }}\n"),
            "not a glob",
        );
        bad(&format!("{BASE}{rule}max-age = \"soon\"\n"), "max-age");
        bad(&format!("{BASE}{rule}maxage = \"1d\"\n"), "maxage");
        bad(
            &format!("{BASE}{rule}[keys.x]\nkey = \"nope.pub\"\nrole = \"builder\"\n"),
            "key x",
        );
        bad(BASE, "no [[rule]]");
        bad(
            &format!("{BASE}[[rule]]\nseries = \"*\"\nrequire = {{ approver = 4 }}\n"),
            "only 3",
        );
        bad(
            &format!("{BASE}[[rule]]\nseries = \"*\"\nrequire = {{ builder = 0 }}\n"),
            "no signature",
        );
        bad(
            &format!("{BASE}[keys.twice]\nkey = \"k1.pub\"\nrole = \"approver\"\n{rule}"),
            "one role",
        );
        let e = policy(&format!(
            "{BASE}[[rule]]\nseries = \"*\"\nrequire = {{ aprover = 1 }}\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("trust.toml:14:"), "{e}");
    }
}
