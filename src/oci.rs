//! OCI and Docker manifests: media types, parsing, and walking a manifest's children.
//! Manifest bytes are never re-serialised: their sha256 is their identity.

use std::collections::BTreeMap;

use std::fmt;

use oci_spec::image::{ImageIndex, ImageManifest};

use crate::digest::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What ferry asks a registry for, in order of preference.
pub const MANIFEST_MEDIA_TYPES: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// Annotation holding an image's tag (or `repository:tag`) in an image layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation holding the repository path an entry of the store belongs to.
pub const REPOSITORY: &str = "dev.ferry.repository";

pub fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

pub fn is_manifest_type(media_type: &str) -> bool {
    MANIFEST_MEDIA_TYPES.contains(&media_type)
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {digest} is not valid JSON of an image index or manifest")]
    Parse {
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest {digest} has media type `{media_type}`, which ferry does not carry")]
    UnsupportedType { digest: Digest, media_type: String },
    #[error("manifest {digest} refers to `{reference}`, which is not a sha256 digest")]
    BadReference { digest: Digest, reference: String },
}

/// Where an import puts one root manifest: its repository and tag on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub repository: String,
    pub tag: Option<String>,
    pub root: Desc,
}

/// A descriptor, reduced to what ferry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desc {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub platform: Option<Platform>,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

impl Desc {
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest.to_string(),
            "size": self.size,
        });
        if let Some(p) = &self.platform {
            v["platform"] = serde_json::to_value(p).expect("platform serialises");
        }
        if let Some(a) = &self.artifact_type {
            v["artifactType"] = a.clone().into();
        }
        if !self.annotations.is_empty() {
            v["annotations"] = serde_json::to_value(&self.annotations).expect("map serialises");
        }
        v
    }

    pub fn from_json(v: &serde_json::Value) -> Option<Desc> {
        let d: oci_spec::image::Descriptor = serde_json::from_value(v.clone()).ok()?;
        convert(&d).ok()
    }
}

/// A parsed index or manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    /// Index entries (for an index), or config and layers (for an image manifest).
    pub children: Vec<Desc>,
    pub subject: Option<Desc>,
    pub artifact_type: Option<String>,
}

impl Manifest {
    pub fn is_index(&self) -> bool {
        is_index_type(&self.media_type)
    }

    /// Parses manifest bytes. `declared` is the media type the registry or the referring
    /// descriptor gave; the document's own `mediaType` wins when present.
    pub fn parse(bytes: &[u8], declared: Option<&str>) -> Result<Manifest, ManifestError> {
        let digest = Digest::of(bytes);
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|source| ManifestError::Parse { digest, source })?;
        let own = value.get("mediaType").and_then(|m| m.as_str());
        let looks_like_index = value.get("manifests").is_some();
        let media_type = own
            .or(declared.filter(|d| is_manifest_type(d)))
            .unwrap_or(if looks_like_index {
                OCI_INDEX
            } else {
                OCI_MANIFEST
            })
            .to_string();
        if !is_manifest_type(&media_type) {
            return Err(ManifestError::UnsupportedType { digest, media_type });
        }
        let parse_err = |source| ManifestError::Parse { digest, source };
        let bad_ref = |reference: String| ManifestError::BadReference { digest, reference };
        if is_index_type(&media_type) {
            let index: ImageIndex = serde_json::from_value(value).map_err(parse_err)?;
            let children = index
                .manifests()
                .iter()
                .map(convert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad_ref)?;
            let subject = index
                .subject()
                .as_ref()
                .map(convert)
                .transpose()
                .map_err(bad_ref)?;
            Ok(Manifest {
                digest,
                media_type,
                children,
                subject,
                artifact_type: index.artifact_type().as_ref().map(|m| m.to_string()),
            })
        } else {
            let m: ImageManifest = serde_json::from_value(value).map_err(parse_err)?;
            let mut children = vec![convert(m.config()).map_err(bad_ref)?];
            for layer in m.layers() {
                children.push(convert(layer).map_err(bad_ref)?);
            }
            let subject = m
                .subject()
                .as_ref()
                .map(convert)
                .transpose()
                .map_err(bad_ref)?;
            Ok(Manifest {
                digest,
                media_type,
                children,
                subject,
                artifact_type: m.artifact_type().as_ref().map(|m| m.to_string()),
            })
        }
    }
}

fn convert(d: &oci_spec::image::Descriptor) -> Result<Desc, String> {
    let text = d.digest().to_string();
    let digest: Digest = text.parse().map_err(|_| text.clone())?;
    Ok(Desc {
        media_type: d.media_type().to_string(),
        digest,
        size: d.size(),
        platform: d.platform().as_ref().map(|p| Platform {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone(),
        }),
        artifact_type: d.artifact_type().as_ref().map(|m| m.to_string()),
        annotations: d
            .annotations()
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    })
}

/// A repository path as the distribution spec allows it: lowercase components
/// separated by `/`, each `[a-z0-9]+` joined by `.`, `_`, `__` or `-`.
pub fn valid_repository(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 255
        && path.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        })
}

/// A tag as the distribution spec allows it.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && (tag.as_bytes()[0].is_ascii_alphanumeric() || tag.as_bytes()[0] == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `os/arch[/variant]`, as platforms are written on the command line of every OCI tool.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Option<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            return None;
        }
        Some(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// Whether an index entry's platform is what this one asks for. A request without a
    /// variant matches every variant.
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == arch
            && (self.variant.is_none() || self.variant.as_deref() == variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_and_oci() {
        let idx = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":7,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}"#;
        let m = Manifest::parse(idx, None).unwrap();
        assert!(m.is_index());
        assert_eq!(
            m.children[0].platform.as_ref().unwrap().to_string(),
            "linux/arm64/v8"
        );
        let man = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        let m = Manifest::parse(man, Some(OCI_MANIFEST)).unwrap();
        assert!(!m.is_index());
        assert_eq!(m.children.len(), 1);
    }

    #[test]
    fn repository_names() {
        assert!(valid_repository("e2e/multi"));
        assert!(valid_repository("library/alpine"));
        assert!(!valid_repository("E2E/x"));
        assert!(!valid_repository("../x"));
        assert!(!valid_repository("a//b"));
        assert!(valid_tag("sha256-abc.sig"));
        assert!(!valid_tag(".x"));
    }
}
