//! What a bundle carries, one record per artifact: identity, where it came from and
//! where it goes. Written into the signed bundle manifest and the store's records.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A container image (manifest or index) named in the spec.
    Image,
    /// A signature, attestation or SBOM attached to an image.
    Referrer,
    /// A Python release: one project version and its wheels.
    Python,
    /// A model or dataset repository pinned to one commit.
    Model,
    /// A conda package with its repodata record.
    Conda,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    pub kind: Kind,
    /// The repository path on the target, without any registry host: `e2e/multi`.
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Where it was pulled from: the spec's reference.
    pub origin: String,
    /// Platforms of an index, or the one platform of a manifest, when known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// For a referrer: the image it is attached to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    /// When only some platforms of an index were kept: the digest of the source index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// For a Python release: project, version, index and every file with its sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<crate::python::release::PythonRelease>,
    /// For a model or dataset: repository, revision, commit and every file's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<crate::models::artifact::ModelInfo>,
    /// For a conda package: channel, subdir, file, hashes and its repodata record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conda: Option<crate::conda::artifact::CondaPackage>,
}

impl Artifact {
    /// The descriptor of the artifact's top manifest.
    pub fn root(&self) -> crate::oci::Desc {
        crate::oci::Desc {
            media_type: self.media_type.clone(),
            digest: self.digest,
            size: self.size,
            platform: None,
            artifact_type: self.artifact_type.clone(),
            annotations: Default::default(),
        }
    }

    /// `repository:tag` or `repository@digest`.
    pub fn name(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}:{}", self.repository, t),
            None => format!("{}@{}", self.repository, self.digest),
        }
    }
}
