//! `ferry report`: what an auditor reads. One data model ([`Report`]) is built from a
//! bundle, a store or an audit log; `report.json` is its serialisation, `report.md` and
//! `report.html` are renderings of the same struct, so the three always agree.
//!
//! Every string in a report came from a bundle, a store or a log and is hostile: the
//! renderers escape all of it (`markdown::cell`, `crate::escape::html`), the page runs
//! no script and loads nothing (a Content-Security-Policy of `default-src 'none'`), and
//! characters that reorder or hide text are shown as `\u{FFFD}`.

mod bundle;
mod history;
pub mod html;
pub mod markdown;
mod output;
pub(crate) mod store;

use serde::Serialize;

pub use bundle::{BundleTrust, from_bundle};
pub use history::read as read_history;
pub use output::write;
pub use store::store_content;

/// The `format` of `report.json`.
pub const FORMAT: &str = "dev.ferry.report.v1";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub format: &'static str,
    pub summary: Summary,
    /// What a bundle carries, grouped by ecosystem (bundle mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crossed: Option<Crossed>,
    /// What a store holds now (store mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signatures: Option<Signatures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sbom: Option<Sbom>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<History>,
    /// Commands an auditor runs with standard tools, without ferry.
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// `bundle`, `store` or `log`.
    pub mode: &'static str,
    /// The bundle file, store directory or log file, as given.
    pub subject: String,
    pub generated: String,
    pub ferry_version: String,
    /// `ok` (verified / intact), `unchecked` (nothing contradicts it, but signatures
    /// were not checked against a trust list) or `failed`.
    pub status: Status,
    /// One line that says it all.
    pub verdict: String,
    /// What failed: each is shown in a red banner.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// What an auditor should know that is not a failure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Key facts as (label, value): series, sequence, created, manifest digest, ...
    pub facts: Vec<Fact>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    Unchecked,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fact {
    pub label: String,
    pub value: String,
    /// A digest or other identifier, shown in monospace.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub code: bool,
}

impl Fact {
    pub fn text(label: &str, value: impl Into<String>) -> Fact {
        Fact {
            label: label.into(),
            value: value.into(),
            code: false,
        }
    }
    pub fn code(label: &str, value: impl Into<String>) -> Fact {
        Fact {
            code: true,
            ..Fact::text(label, value)
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Crossed {
    pub artifacts: usize,
    pub entries: usize,
    /// Bytes of content (the sum of the entries' sizes).
    pub bytes: u64,
    pub groups: Vec<Group>,
}

/// The artifacts of one ecosystem (`image`, `referrer`, `python`, `conda`, `model`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub ecosystem: String,
    pub artifacts: Vec<ArtifactRow>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRow {
    pub name: String,
    pub repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub origin: String,
    /// Licences as declared, with the SPDX expression where there is one.
    pub licences: Vec<LicenceRow>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// What the ecosystem says of it (platforms, files, package record).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenceRow {
    pub declared: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spdx: Option<String>,
    pub source: String,
}

impl LicenceRow {
    /// `MIT`, `Apache 2.0 (Apache-2.0)`, `BSD License (not SPDX)`.
    pub fn display(&self) -> String {
        match &self.spdx {
            Some(s) if *s == self.declared => s.clone(),
            Some(s) => format!("{} ({s})", self.declared),
            None => format!("{} (not SPDX)", self.declared),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreContent {
    pub entries: usize,
    pub groups: Vec<StoreGroup>,
    /// Licences per component from the CycloneDX SBOMs the store keeps (`ferry/sbom`).
    pub sboms: Vec<StoreSbom>,
    /// Why something could not be read (a hostile or damaged entry).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreGroup {
    pub ecosystem: String,
    pub entries: Vec<StoreRow>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreRow {
    pub repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreSbom {
    /// `ferry/sbom:<series>-<sequence>`.
    pub name: String,
    pub digest: String,
    pub components: Vec<Component>,
    /// Components not listed (over the limit).
    #[serde(skip_serializing_if = "is_zero")]
    pub omitted: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    pub licences: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Signatures {
    /// Whether they were checked against a trust list (`--trust`, `--trust-policy`).
    pub checked: bool,
    /// `--trust build.pub (1 of 1)`, `trust policy TRUST.toml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    /// With a trust list: whether the bundle verified (signatures and every digest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Why it did not verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Under a trust policy: the rule that was met.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub found: Vec<SignatureRow>,
    /// The command that checks them.
    pub verify_command: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureRow {
    /// `embedded` or `detached`.
    pub source: &'static str,
    /// The tar entry or the file beside the bundle.
    pub file: String,
    pub key_id: String,
    /// `valid`, `untrusted`, `revoked`, `invalid`, or `not checked`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The trust policy's name and role for the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sbom {
    pub carried: bool,
    pub note: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<SbomDocument>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SbomDocument {
    /// `OCI manifest`, `CycloneDX 1.5 JSON`, `SPDX 2.3 JSON`.
    pub what: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub log: String,
    /// Whether the log exists (a store that never imported or created has none).
    pub present: bool,
    pub chain: Chain,
    pub records: Vec<Record>,
    /// Records past the limit, not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub omitted: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Chain {
    pub intact: bool,
    /// Records read (all of them when intact).
    pub records: usize,
    /// The first record that breaks the chain (1-based), and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// sha256 of the last record of an intact chain: compare it with a copy kept
    /// elsewhere (the chain cannot show that newer records were cut off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_hash: Option<String>,
}

/// One audit record as the report shows it: each field flattened to text.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The line number in the log.
    pub line: usize,
    /// Whether the chain proves it (it comes before the break).
    pub proven: bool,
    pub seq: String,
    pub time: String,
    pub user: String,
    pub host: String,
    pub action: String,
    pub outcome: String,
    pub series: String,
    pub sequence: String,
    pub manifest: String,
    pub signers: String,
    pub policy: String,
    pub artifacts: String,
    pub bytes: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub command: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Report {
    pub fn new(mode: &'static str, subject: String) -> Report {
        Report {
            format: FORMAT,
            summary: Summary {
                mode,
                subject,
                generated: crate::trust::now_rfc3339(),
                ferry_version: env!("CARGO_PKG_VERSION").into(),
                status: Status::Ok,
                verdict: String::new(),
                problems: Vec::new(),
                notes: Vec::new(),
                facts: Vec::new(),
            },
            crossed: None,
            store: None,
            signatures: None,
            policy: None,
            sbom: None,
            history: None,
            checks: Vec::new(),
        }
    }

    /// Records a failure: the status becomes `failed` and the banner shows it.
    pub fn fail(&mut self, problem: impl Into<String>) {
        self.summary.status = Status::Failed;
        self.summary.problems.push(problem.into());
    }

    /// Adds the audit history and what its chain says to the summary.
    pub fn add_history(&mut self, h: History) {
        if !h.present {
            self.summary
                .notes
                .push(format!("there is no audit log at {}", h.log));
        } else if let (Some(at), Some(reason)) = (h.chain.broken_at, &h.chain.reason) {
            self.fail(format!(
                "the audit log's hash chain is broken at record {at}: {reason}. Records from {at} on are not proven."
            ));
        }
        self.summary.facts.push(Fact::text(
            "Audit chain",
            if !h.present {
                "no log".to_string()
            } else if h.chain.intact {
                format!("intact, {} record(s)", h.chain.records)
            } else {
                format!("BROKEN at record {}", h.chain.broken_at.unwrap_or(0))
            },
        ));
        if let Some(hash) = &h.chain.last_hash {
            self.summary
                .facts
                .push(Fact::code("Last record sha256", hash.clone()));
        }
        if h.present {
            let log = shell_quote(&h.log);
            self.checks.push(Check {
                what: "Recompute the audit chain: the sha256 of line N (without its newline) must be the `prev` of line N+1".into(),
                command: format!("head -n N {log} | tail -n 1 | tr -d '\\n' | sha256sum"),
            });
            if let Some(hash) = &h.chain.last_hash {
                self.checks.push(Check {
                    what: format!(
                        "The last record's sha256 must print {}: compare it with a copy kept elsewhere (a chain cannot show that newer records were cut off)",
                        hash.trim_start_matches("sha256:")
                    ),
                    command: format!("tail -n 1 {log} | tr -d '\\n' | sha256sum"),
                });
            }
        }
        self.history = Some(h);
    }
}

/// The report of a store: what it holds now and its audit log's history. The error is
/// the broken chain, when it is (the report is written all the same).
pub fn from_store(
    dir: &std::path::Path,
) -> crate::error::Result<(Report, Option<crate::error::Error>)> {
    let store = crate::store::Store::open(dir)?;
    let content = store_content(&store)?;
    let mut r = Report::new("store", dir.display().to_string());
    let counts: Vec<String> = content
        .groups
        .iter()
        .map(|g| format!("{} {}", g.entries.len(), g.ecosystem))
        .collect();
    r.summary.facts.push(Fact::text(
        "Store holds",
        if counts.is_empty() {
            "nothing".to_string()
        } else {
            format!("{} entries: {}", content.entries, counts.join(", "))
        },
    ));
    r.summary
        .facts
        .push(Fact::text("SBOMs kept", content.sboms.len().to_string()));
    for w in &content.warnings {
        r.summary.notes.push(w.clone());
    }
    r.checks.push(Check {
        what: "Every blob of the store is named by its sha256: this must print nothing".into(),
        command: format!(
            "cd {} && for f in blobs/sha256/*; do [ \"$(sha256sum < \"$f\" | cut -d' ' -f1)\" = \"${{f##*/}}\" ] || echo \"MISMATCH $f\"; done",
            shell_quote(&dir.display().to_string())
        ),
    });
    r.checks.push(Check {
        what: "What the store's index lists (repository, tag, digest)".into(),
        command: format!(
            "jq -r '.manifests[] | \"\\(.annotations[\"org.opencontainers.image.ref.name\"] // .annotations[\"dev.ferry.repository\"])  \\(.digest)\"' {}/index.json",
            shell_quote(&dir.display().to_string())
        ),
    });
    let log = store.state_dir().join(crate::audit::FILE);
    let (history, broken) = read_history(&log, true)?;
    let n = content.entries;
    r.store = Some(content);
    let records = history.chain.records;
    let intact = history.chain.intact;
    let present = history.present;
    r.add_history(history);
    r.summary.verdict = match (present, intact) {
        (false, _) => format!("Store holds {n} entries; it has no audit log."),
        (true, true) => {
            format!("Store holds {n} entries; its audit log is intact ({records} record(s)).")
        }
        (true, false) => format!("Store holds {n} entries; its audit log's chain is BROKEN."),
    };
    Ok((r, broken.map(Into::into)))
}

/// The report of an audit log alone: its history and what its chain says.
pub fn from_log(
    path: &std::path::Path,
) -> crate::error::Result<(Report, Option<crate::error::Error>)> {
    let (history, broken) = read_history(path, false)?;
    let mut r = Report::new("log", path.display().to_string());
    r.summary.verdict = match &history.chain {
        c if c.intact => format!("Audit log intact: {} record(s).", c.records),
        c => format!(
            "Audit log BROKEN at record {}: records from there on are not proven.",
            c.broken_at.unwrap_or(0)
        ),
    };
    r.add_history(history);
    Ok((r, broken.map(Into::into)))
}

/// `s` as one shell word (for the commands of "How to check").
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `s` with the characters that reorder or hide text (and controls) shown as U+FFFD,
/// for the human renderings (JSON keeps the text as it was).
pub fn visible(s: &str) -> String {
    s.chars()
        .map(|c| {
            if crate::names::is_deceptive(c) {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// `12.3 KiB`.
pub fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_and_visible_text() {
        assert_eq!(shell_quote("a/b.ferry"), "a/b.ferry");
        assert_eq!(shell_quote("it's here"), "'it'\\''s here'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(visible("a\u{202E}b\u{1b}c"), "a\u{FFFD}b\u{FFFD}c");
    }
}
