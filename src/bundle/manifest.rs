//! The bundle manifest: what an auditor reads, what the signature covers.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::ecosystems::AnyArtifact;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleManifest {
    /// `dev.ferry.bundle.v1`.
    pub format: String,
    /// The series (the spec's `name`); sequence numbers count per series.
    pub series: String,
    /// Higher than every earlier bundle of the series: importers refuse older ones.
    pub sequence: u64,
    /// RFC 3339, UTC.
    pub created: String,
    /// The ferry that wrote it.
    pub tool: String,
    pub policy: PolicyVerdict,
    pub artifacts: Vec<AnyArtifact>,
    /// The SBOMs this bundle carries (absent in bundles written before ferry carried
    /// them): an OCI artifact in the layout whose two layers are a CycloneDX and an SPDX
    /// JSON document. Importers keep it under `ferry/sbom:<series>-<sequence>` (see
    /// `crate::sbom::tag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<SbomRef>,
    /// For an incremental bundle (`--since`): what it was made against. The blobs it
    /// leaves out must already be in the target (import checks that first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseRef>,
    /// Every tar entry after the signatures, in order.
    pub entries: Vec<Entry>,
}

/// The base of an incremental bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BaseRef {
    /// `bundle`, `manifest` or `receipt`.
    pub kind: String,
    /// sha256 of the base's manifest bytes (a bundle or manifest) or of the receipt.
    pub digest: Digest,
    pub series: String,
    pub sequence: u64,
    /// How many blobs this bundle leaves out because the base has them.
    pub omitted: u64,
}

/// Where a bundle's SBOMs are: the OCI manifest that holds them and each document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SbomRef {
    /// The OCI image manifest (artifactType `application/vnd.dev.ferry.sbom.v1`).
    pub digest: Digest,
    pub size: u64,
    /// CycloneDX 1.5 JSON (`application/vnd.cyclonedx+json`).
    pub cyclonedx: Document,
    /// SPDX 2.3 JSON (`application/spdx+json`).
    pub spdx: Document,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Document {
    pub digest: Digest,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyVerdict {
    /// The policy file's name, when one was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// sha256 of the policy file, when one was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// `allowed`, or `not-evaluated` when no policy was given (a denied bundle is never
    /// written).
    pub verdict: String,
    /// What the policy's `warn` rules said.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl PolicyVerdict {
    pub fn not_evaluated() -> PolicyVerdict {
        PolicyVerdict {
            policy: None,
            digest: None,
            verdict: "not-evaluated".into(),
            warnings: Vec::new(),
        }
    }

    /// The record of a policy that allowed.
    pub fn allowed(v: &crate::policy::Verdict) -> PolicyVerdict {
        PolicyVerdict {
            policy: Some(v.policy.clone()),
            digest: Some(v.digest),
            verdict: "allowed".into(),
            warnings: v.warn.clone(),
        }
    }
}

/// A tar entry of the layout: `oci-layout`, `index.json`, or a blob named by its sha256.
/// On the wire `{"path": ..., "size": ..., "sha256": <lowercase hex>}`; in memory the
/// path is implied by `name` (and a blob's by its digest), so an entry holds no string:
/// a manifest of 10,000 blobs parses into 10,000 small fixed-size values. Parsing refuses
/// any other path and a blob path that is not its own digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub name: EntryName,
    pub size: u64,
    pub sha256: Digest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryName {
    OciLayout,
    IndexJson,
    Blob,
}

const BLOB_PREFIX: &str = "blobs/sha256/";

impl Entry {
    /// The entry for a small file of the layout (`oci-layout`, `index.json`).
    pub fn file(name: EntryName, bytes: &[u8]) -> Entry {
        Entry {
            name,
            size: bytes.len() as u64,
            sha256: Digest::of(bytes),
        }
    }

    pub fn blob(digest: Digest, size: u64) -> Entry {
        Entry {
            name: EntryName::Blob,
            size,
            sha256: digest,
        }
    }

    /// Its path in the tar.
    pub fn path(&self) -> String {
        match self.name {
            EntryName::OciLayout => "oci-layout".into(),
            EntryName::IndexJson => "index.json".into(),
            EntryName::Blob => format!("{BLOB_PREFIX}{}", self.sha256.hex()),
        }
    }

    /// Whether `path` is this entry's path (without building it).
    pub fn is_at(&self, path: &str) -> bool {
        match self.name {
            EntryName::OciLayout => path == "oci-layout",
            EntryName::IndexJson => path == "index.json",
            EntryName::Blob => path
                .strip_prefix(BLOB_PREFIX)
                .is_some_and(|hex| Digest::from_hex(hex).ok() == Some(self.sha256)),
        }
    }

    /// The blob's digest, for a blob entry.
    pub fn blob_digest(&self) -> Option<Digest> {
        (self.name == EntryName::Blob).then_some(self.sha256)
    }

    fn from_wire(path: &str, size: u64, sha256: &str) -> Result<Entry, String> {
        let shown = path.escape_debug();
        let name = match path {
            "oci-layout" => EntryName::OciLayout,
            "index.json" => EntryName::IndexJson,
            _ if safe_path(path) => EntryName::Blob,
            _ => return Err(format!("entry `{shown}` has an unsafe path")),
        };
        let digest = Digest::from_hex(sha256)
            .map_err(|_| format!("entry `{shown}` has an invalid sha256"))?;
        if name == EntryName::Blob && path[BLOB_PREFIX.len()..] != *sha256 {
            return Err(format!("blob entry `{shown}` is not named by its sha256"));
        }
        Ok(Entry {
            name,
            size,
            sha256: digest,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEntry<'a> {
    #[serde(borrow)]
    path: std::borrow::Cow<'a, str>,
    size: u64,
    #[serde(borrow)]
    sha256: std::borrow::Cow<'a, str>,
}

impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireEntry {
            path: self.path().into(),
            size: self.size,
            sha256: self.sha256.hex().into(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Entry, D::Error> {
        let w = WireEntry::deserialize(d)?;
        Entry::from_wire(&w.path, w.size, &w.sha256).map_err(serde::de::Error::custom)
    }
}

impl BundleManifest {
    /// What an import names in its target: every artifact, then the SBOM artifact.
    pub fn placements(&self) -> Vec<crate::oci::Placement> {
        let mut out: Vec<_> = self
            .artifacts
            .iter()
            .map(|a| crate::oci::Placement {
                repository: a.repository.clone(),
                tag: a.tag.clone(),
                root: a.root(),
            })
            .collect();
        if let Some(s) = &self.sbom {
            out.push(crate::oci::Placement {
                repository: crate::sbom::REPOSITORY.into(),
                tag: Some(crate::sbom::tag(&self.series, self.sequence)),
                root: crate::oci::Desc {
                    media_type: crate::oci::OCI_MANIFEST.into(),
                    digest: s.digest,
                    size: s.size,
                    platform: None,
                    artifact_type: Some(crate::sbom::ARTIFACT_TYPE.into()),
                    annotations: Default::default(),
                },
            });
        }
        out
    }

    pub fn total_size(&self) -> u64 {
        self.entries
            .iter()
            .fold(0u64, |total, e| total.saturating_add(e.size))
    }

    /// Checks what the signature alone cannot: a known format, safe and unique paths,
    /// blobs named by their own digest, and every artifact present.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != super::FORMAT {
            return Err(format!(
                "unknown bundle format `{}` (this ferry reads `{}`)",
                self.format,
                super::FORMAT
            ));
        }
        if !crate::names::valid_series_name(&self.series) {
            return Err(format!("invalid series name `{}`", self.series));
        }
        // Paths are unique (and safe, and blobs named by their digest: see `Entry`'s
        // parsing). Checked on a sorted list of positions, not a set of strings: a
        // manifest of 10,000 entries costs 40 KiB here.
        let mut order: Vec<u32> = (0..self.entries.len() as u32).collect();
        let key = |i: &u32| {
            let e = &self.entries[*i as usize];
            (e.name as u8, e.sha256)
        };
        order.sort_unstable_by_key(key);
        if let Some(w) = order.windows(2).find(|w| key(&w[0]) == key(&w[1]))
            && let Some(e) = self.entries.get(w[0] as usize)
        {
            return Err(format!("entry `{}` is listed twice", e.path()));
        }
        for (required, name) in [
            ("oci-layout", EntryName::OciLayout),
            ("index.json", EntryName::IndexJson),
        ] {
            if !self.entries.iter().any(|e| e.name == name) {
                return Err(format!("the layout lacks `{required}`"));
            }
        }
        let blob_size = |digest: &Digest| {
            let at = order
                .binary_search_by_key(&(EntryName::Blob as u8, *digest), key)
                .ok()?;
            Some(self.entries[order[at] as usize].size)
        };
        let printable =
            |s: &str| s.chars().count() <= 4096 && !s.chars().any(crate::names::is_deceptive);
        let p = &self.policy;
        if !matches!(p.verdict.as_str(), "allowed" | "not-evaluated")
            || !p.policy.as_deref().is_none_or(printable)
            || !p.warnings.iter().all(|w| printable(w))
        {
            return Err("the policy verdict is not one ferry writes".into());
        }
        if let Some(b) = &self.base
            && (!matches!(b.kind.as_str(), "bundle" | "manifest" | "receipt")
                || b.series != self.series)
        {
            return Err("the base is not one ferry writes".into());
        }
        if let Some(s) = &self.sbom {
            let parts = [
                ("manifest", s.digest, s.size),
                ("CycloneDX document", s.cyclonedx.digest, s.cyclonedx.size),
                ("SPDX document", s.spdx.digest, s.spdx.size),
            ];
            for (what, digest, size) in parts {
                if blob_size(&digest) != Some(size) {
                    return Err(format!(
                        "the SBOM's {what} {digest} ({size} bytes) is not a blob of the bundle"
                    ));
                }
                if size > crate::sbom::MAX_DOCUMENT {
                    return Err(format!(
                        "the SBOM's {what} is {size} bytes, more than ferry writes"
                    ));
                }
            }
        }
        for a in &self.artifacts {
            match blob_size(&a.digest) {
                None => return Err(format!("artifact {} has no blob in the bundle", a.name())),
                Some(size) if size != a.size => {
                    return Err(format!(
                        "artifact {} says it is {} bytes, its blob is {size}",
                        a.name(),
                        a.size
                    ));
                }
                Some(_) => {}
            }
            if !crate::oci::valid_repository(&a.repository)
                || a.tag.as_deref().is_some_and(|t| !crate::oci::valid_tag(t))
            {
                return Err(format!("artifact {:?} has an invalid name", a.name()));
            }
            let types = std::iter::once(&a.media_type).chain(a.artifact_type.as_ref());
            for t in types {
                if !crate::names::valid_media_type(t) {
                    return Err(format!(
                        "artifact {} has an invalid media type {t:?}",
                        a.name()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Only `oci-layout`, `index.json` and `blobs/sha256/<64 hex>` may stand in a bundle's
/// layout: no `..`, no absolute paths, nothing a filesystem could interpret.
pub fn safe_path(path: &str) -> bool {
    match path {
        "oci-layout" | "index.json" => true,
        _ => path
            .strip_prefix("blobs/sha256/")
            .is_some_and(|hex| Digest::from_hex(hex).is_ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(safe_path("index.json"));
        assert!(safe_path(&format!("blobs/sha256/{}", "a".repeat(64))));
        assert!(!safe_path("../index.json"));
        assert!(!safe_path("/index.json"));
        assert!(!safe_path(&format!("blobs/sha256/../{}", "a".repeat(61))));
        assert!(!safe_path("blobs/sha256/x"));
    }

    fn wire(path: &str, sha256: &str) -> String {
        format!(r#"{{"path": "{path}", "size": 3, "sha256": "{sha256}"}}"#)
    }

    #[test]
    fn an_entry_keeps_its_wire_form_and_holds_no_path() {
        let digest = Digest::of(b"abc");
        let hex = digest.hex();
        let blob = format!(r#"{{"path":"blobs/sha256/{hex}","size":3,"sha256":"{hex}"}}"#);
        let e: Entry = serde_json::from_str(&blob).unwrap();
        assert_eq!(e, Entry::blob(digest, 3));
        assert_eq!(serde_json::to_string(&e).unwrap(), blob);
        assert!(e.is_at(&format!("blobs/sha256/{hex}")));
        assert!(!e.is_at("index.json"));
        let index: Entry = serde_json::from_str(&wire("index.json", &hex)).unwrap();
        assert_eq!(
            (index.name, index.blob_digest()),
            (EntryName::IndexJson, None)
        );
        assert_eq!(index.path(), "index.json");
    }

    #[test]
    fn an_entry_with_a_path_ferry_does_not_write_does_not_parse() {
        let hex = Digest::of(b"abc").hex();
        let other = Digest::of(b"abd").hex();
        let refused = [
            (wire("../index.json", &hex), "unsafe path"),
            (
                wire(&format!("blobs/sha256/{other}"), &hex),
                "not named by its sha256",
            ),
            (
                wire(&format!("blobs/sha256/{}", hex.to_uppercase()), &hex),
                "unsafe path",
            ),
            (wire("index.json", &hex.to_uppercase()), "invalid sha256"),
            (wire("oci-layout\\u001b[2J", &hex), "unsafe path"),
        ];
        for (json, why) in refused {
            let e = serde_json::from_str::<Entry>(&json)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{json}: {e}");
            assert!(
                !e.contains('\u{1b}'),
                "a control character reached the message: {e}"
            );
        }
        let extra = format!(r#"{{"path":"index.json","size":3,"sha256":"{hex}","x":1}}"#);
        assert!(serde_json::from_str::<Entry>(&extra).is_err());
    }
}
