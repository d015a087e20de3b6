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

/// Checks what an artifact's stored records say against its signed record: the config
/// of a Python release or conda package, the annotations of a model, parsed with every
/// name checked, must equal the record in the bundle manifest. Exports and `serve` read
/// those stored records, so a hostile name in them is refused here, before the import
/// writes anything. `stores` are searched in order (staging, then the target).
pub fn check_records(a: &Artifact, stores: &[&crate::store::Store]) -> Result<(), String> {
    use crate::{conda, models, python};
    let read = |digest: &Digest| -> Result<Vec<u8>, String> {
        let store = stores
            .iter()
            .find(|s| s.blob_path(digest).is_file())
            .ok_or_else(|| format!("blob {digest} is missing"))?;
        store.read_blob(digest).map_err(|e| e.to_string())
    };
    let manifest_bytes = read(&a.digest)?;
    let config = || -> Result<Vec<u8>, String> {
        let m = crate::oci::Manifest::parse(&manifest_bytes, Some(&a.media_type))
            .map_err(|e| e.to_string())?;
        let c = m.children.first().ok_or("the manifest has no config")?;
        read(&c.digest)
    };
    let differs = |what: &str| format!("its stored {what} differs from the signed record");
    match a.artifact_type.as_deref() {
        Some(python::release::ARTIFACT_TYPE) => {
            let stored = python::release::read(&config()?)?;
            if a.python.as_ref().is_some_and(|p| *p != stored) {
                return Err(differs("release config"));
            }
        }
        Some(conda::artifact::ARTIFACT_TYPE) => {
            let stored = conda::artifact::read(&config()?)?;
            if a.conda.as_ref().is_some_and(|p| *p != stored) {
                return Err(differs("package config"));
            }
        }
        _ => {}
    }
    if let Some(stored) = models::artifact::read(&manifest_bytes) {
        let stored = stored?;
        if a.model.as_ref().is_some_and(|m| *m != stored) {
            return Err(differs("model annotations"));
        }
    }
    Ok(())
}
