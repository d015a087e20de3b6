//! What a store holds now: its `index.json` entries by ecosystem, and the licences per
//! component of the CycloneDX SBOMs importers keep under `ferry/sbom` (an OCI artifact
//! whose layers are a CycloneDX and an SPDX JSON document). Store content is untrusted:
//! blobs are read bounded and checked against their digests, documents parsed
//! defensively, and whatever cannot be read becomes a warning in the report.

use std::io::Read;

use serde_json::Value;

use super::{Component, StoreContent, StoreGroup, StoreRow, StoreSbom};
use crate::digest::Digest;
use crate::oci;
use crate::store::{Store, StoreError};

/// The repository importers keep SBOMs under.
pub const SBOM_REPOSITORY: &str = "ferry/sbom";
pub const SBOM_ARTIFACT_TYPE: &str = "application/vnd.dev.ferry.sbom.v1";
pub const CYCLONEDX_TYPE: &str = "application/vnd.cyclonedx+json";
/// The largest SBOM manifest and CycloneDX document read.
const MAX_MANIFEST: u64 = 4 << 20;
const MAX_DOCUMENT: u64 = 64 << 20;
/// Components listed per SBOM (the rest are counted).
const MAX_COMPONENTS: usize = 10_000;
/// The longest string shown from a document.
const MAX_TEXT: usize = 1024;

pub fn store_content(store: &Store) -> Result<StoreContent, StoreError> {
    let entries = store.entries()?;
    let order = ["image", "python", "conda", "model", "sbom", "other"];
    let mut groups: Vec<StoreGroup> = order
        .iter()
        .map(|e| StoreGroup {
            ecosystem: e.to_string(),
            entries: Vec::new(),
        })
        .collect();
    let mut sboms = Vec::new();
    let mut warnings = Vec::new();
    for e in &entries {
        let (repository, tag) = crate::inventory::name_of(e);
        let ecosystem = ecosystem_of(&repository, e.artifact_type.as_deref(), &e.media_type);
        if ecosystem == "sbom" {
            let name = format!("{repository}:{}", tag.as_deref().unwrap_or("(untagged)"));
            match read_sbom(store, &e.digest, e.size) {
                Ok((components, omitted)) => sboms.push(StoreSbom {
                    name,
                    digest: e.digest.to_string(),
                    components,
                    omitted,
                }),
                Err(why) => warnings.push(format!("SBOM {name} ({}): {why}", e.digest)),
            }
        }
        let row = StoreRow {
            repository,
            tag,
            digest: e.digest.to_string(),
            size: e.size,
            media_type: e.media_type.clone(),
            artifact_type: e.artifact_type.clone(),
        };
        let i = order.iter().position(|o| *o == ecosystem).unwrap_or(5);
        groups[i].entries.push(row);
    }
    groups.retain(|g| !g.entries.is_empty());
    Ok(StoreContent {
        entries: entries.len(),
        groups,
        sboms,
        warnings,
    })
}

pub fn ecosystem_of(
    repository: &str,
    artifact_type: Option<&str>,
    media_type: &str,
) -> &'static str {
    use crate::ecosystems::{conda, model, python};
    match artifact_type {
        Some(python::record::ARTIFACT_TYPE) => "python",
        Some(conda::record::ARTIFACT_TYPE) => "conda",
        Some(model::record::ARTIFACT_TYPE) => "model",
        Some(SBOM_ARTIFACT_TYPE) => "sbom",
        _ if repository == SBOM_REPOSITORY => "sbom",
        None if oci::MANIFEST_MEDIA_TYPES.contains(&media_type) => "image",
        // Signatures, attestations and other OCI artifacts attached to images.
        Some(_) if oci::MANIFEST_MEDIA_TYPES.contains(&media_type) => "image",
        _ => "other",
    }
}

/// A blob of at most `max` bytes whose content matches `digest`.
fn read_bounded(store: &Store, digest: &Digest, max: u64) -> Result<Vec<u8>, String> {
    let file = store.open_blob(digest).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read blob {digest}: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("blob {digest} is larger than {max} bytes"));
    }
    if Digest::of(&bytes) != *digest {
        return Err(format!("blob {digest} does not match its digest"));
    }
    Ok(bytes)
}

/// The components of the CycloneDX layer of the SBOM manifest `digest`.
fn read_sbom(store: &Store, digest: &Digest, size: u64) -> Result<(Vec<Component>, usize), String> {
    let manifest = read_bounded(store, digest, MAX_MANIFEST.min(size.max(1)))?;
    let m: Value = serde_json::from_slice(&manifest).map_err(|e| format!("manifest: {e}"))?;
    let layer = m["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["mediaType"] == CYCLONEDX_TYPE)
        .ok_or("no CycloneDX layer")?;
    let doc_digest = layer["digest"]
        .as_str()
        .and_then(|d| d.parse::<Digest>().ok())
        .ok_or("the CycloneDX layer has no valid digest")?;
    let doc = read_bounded(store, &doc_digest, MAX_DOCUMENT)?;
    cyclonedx_components(&doc)
}

/// Each component's name, version, purl and licences, from a CycloneDX JSON document
/// (`licenses: [{"license": {"id"|"name": ..}} | {"expression": ..}]`), nested
/// components included.
pub fn cyclonedx_components(doc: &[u8]) -> Result<(Vec<Component>, usize), String> {
    let v: Value = serde_json::from_slice(doc).map_err(|e| format!("CycloneDX: {e}"))?;
    if v["bomFormat"] != "CycloneDX" {
        return Err("not a CycloneDX document (no `bomFormat: CycloneDX`)".into());
    }
    let mut out = Vec::new();
    let mut omitted = 0;
    walk(&v["components"], 0, &mut out, &mut omitted);
    Ok((out, omitted))
}

fn walk(components: &Value, depth: usize, out: &mut Vec<Component>, omitted: &mut usize) {
    let Some(list) = components.as_array() else {
        return;
    };
    for c in list {
        if out.len() == MAX_COMPONENTS {
            *omitted += 1;
            continue;
        }
        let licences = c["licenses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| {
                l["expression"]
                    .as_str()
                    .or_else(|| l["license"]["id"].as_str())
                    .or_else(|| l["license"]["name"].as_str())
                    .map(text)
            })
            .take(64)
            .collect();
        out.push(Component {
            name: c["name"].as_str().map(text).unwrap_or_default(),
            version: c["version"].as_str().map(text),
            purl: c["purl"].as_str().map(text),
            licences,
        });
        if depth < 8 {
            walk(&c["components"], depth + 1, out, omitted);
        }
    }
}

fn text(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyclonedx_licences_by_id_name_and_expression() {
        let doc = serde_json::json!({
            "bomFormat": "CycloneDX", "specVersion": "1.5",
            "components": [
                {"type": "library", "name": "six", "version": "1.16.0",
                 "purl": "pkg:pypi/six@1.16.0", "licenses": [{"license": {"id": "MIT"}}]},
                {"name": "x", "licenses": [{"expression": "Apache-2.0 OR MIT"},
                    {"license": {"name": "<script>alert(1)</script>"}}],
                 "components": [{"name": "inner"}]},
                {"name": 7, "licenses": "nope"},
            ]
        });
        let (c, omitted) = cyclonedx_components(doc.to_string().as_bytes()).unwrap();
        assert_eq!(omitted, 0);
        assert_eq!(c.len(), 4);
        assert_eq!(c[0].licences, ["MIT"]);
        assert_eq!(c[0].purl.as_deref(), Some("pkg:pypi/six@1.16.0"));
        assert_eq!(
            c[1].licences,
            ["Apache-2.0 OR MIT", "<script>alert(1)</script>"]
        );
        assert_eq!(c[2].name, "inner");
        assert_eq!(c[3].name, "");
        assert!(cyclonedx_components(b"{\"bomFormat\": \"SPDX\"}").is_err());
        assert!(cyclonedx_components(b"[").is_err());
    }
}
