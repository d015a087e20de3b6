//! The bundle manifest: what an auditor reads, what the signature covers.

use std::collections::HashSet;

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    /// Lowercase hex, as `sha256sum` prints it.
    pub sha256: String,
}

impl Entry {
    pub fn digest(&self) -> Option<Digest> {
        Digest::from_hex(&self.sha256).ok()
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
        let mut seen = HashSet::new();
        for e in &self.entries {
            if !safe_path(&e.path) {
                return Err(format!("entry `{}` has an unsafe path", e.path));
            }
            if !seen.insert(e.path.as_str()) {
                return Err(format!("entry `{}` is listed twice", e.path));
            }
            let digest = e
                .digest()
                .ok_or_else(|| format!("entry `{}` has an invalid sha256", e.path))?;
            if let Some(hex) = e.path.strip_prefix("blobs/sha256/")
                && hex != digest.hex()
            {
                return Err(format!(
                    "blob entry `{}` is not named by its sha256",
                    e.path
                ));
            }
        }
        for required in ["oci-layout", "index.json"] {
            if !seen.contains(required) {
                return Err(format!("the layout lacks `{required}`"));
            }
        }
        let sizes: std::collections::HashMap<&str, u64> = self
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.size))
            .collect();
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
                if sizes.get(format!("blobs/sha256/{}", digest.hex()).as_str()) != Some(&size) {
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
            match sizes.get(format!("blobs/sha256/{}", a.digest.hex()).as_str()) {
                None => return Err(format!("artifact {} has no blob in the bundle", a.name())),
                Some(&size) if size != a.size => {
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
}
