//! How a Python release (one project version and its wheels) is carried: an OCI
//! artifact whose config describes the release and whose layers are the wheels, each
//! followed by its core metadata. Stored under the repository `python/<project>`,
//! tagged with the version.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::oci::{self, Desc};
use crate::store::{Store, StoreError};

pub const ARTIFACT_TYPE: &str = "application/vnd.ferry.python.release.v1";
pub const CONFIG_TYPE: &str = "application/vnd.ferry.python.release.config.v1+json";
pub const WHEEL_TYPE: &str = "application/vnd.ferry.python.wheel.v1";
pub const METADATA_TYPE: &str = "application/vnd.ferry.python.metadata.v1";
pub const REPOSITORY_PREFIX: &str = "python/";
const TITLE: &str = "org.opencontainers.image.title";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PythonRelease {
    /// The project's name, PEP 503-normalised.
    pub project: String,
    pub version: String,
    /// The index it came from.
    pub index: String,
    pub files: Vec<PythonFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PythonFile {
    pub filename: String,
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_python: Option<String>,
    /// The core metadata (PEP 658), lowercase hex.
    pub metadata_sha256: String,
    pub metadata_size: u64,
}

impl PythonFile {
    pub fn digest(&self) -> Option<Digest> {
        Digest::from_hex(&self.sha256).ok()
    }
    pub fn metadata_digest(&self) -> Option<Digest> {
        Digest::from_hex(&self.metadata_sha256).ok()
    }
}

/// A tag for a version: PEP 440 allows `+` and `!`, OCI tags do not.
pub fn version_tag(version: &str) -> String {
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn repository(project: &str) -> String {
    format!("{REPOSITORY_PREFIX}{project}")
}

/// Writes the release's config and manifest into the store (its wheels and metadata must
/// be there already); returns the manifest's descriptor.
pub fn write(store: &Store, release: &PythonRelease) -> Result<(Desc, Vec<u8>), StoreError> {
    let config = serde_json::to_vec(release).expect("release serialises");
    let config_digest = Digest::of(&config);
    store.put_blob(&config, &config_digest, "python release config")?;
    let mut layers = Vec::new();
    for f in &release.files {
        layers.push(serde_json::json!({
            "mediaType": WHEEL_TYPE, "digest": format!("sha256:{}", f.sha256), "size": f.size,
            "annotations": {TITLE: f.filename},
        }));
        layers.push(serde_json::json!({
            "mediaType": METADATA_TYPE, "digest": format!("sha256:{}", f.metadata_sha256), "size": f.metadata_size,
            "annotations": {TITLE: format!("{}.metadata", f.filename)},
        }));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers,
        "annotations": {"dev.ferry.python.project": release.project, "dev.ferry.python.version": release.version},
    });
    let bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    let digest = Digest::of(&bytes);
    store.put_blob(&bytes, &digest, "python release manifest")?;
    let desc = Desc {
        media_type: oci::OCI_MANIFEST.into(),
        digest,
        size: bytes.len() as u64,
        platform: None,
        artifact_type: Some(ARTIFACT_TYPE.into()),
        annotations: Default::default(),
    };
    Ok((desc, bytes))
}

/// Every Python release a store holds (the entries under `python/`).
pub fn releases(store: &Store) -> Result<Vec<PythonRelease>, StoreError> {
    let mut out = Vec::new();
    for entry in store.entries()? {
        let in_python = entry
            .annotations
            .get(oci::REPOSITORY)
            .is_some_and(|r| r.starts_with(REPOSITORY_PREFIX));
        if !in_python || entry.artifact_type.as_deref() != Some(ARTIFACT_TYPE) {
            continue;
        }
        let manifest =
            oci::Manifest::parse(&store.read_blob(&entry.digest)?, Some(&entry.media_type))
                .map_err(|e| StoreError::Io {
                    action: "invalid python release manifest",
                    path: store.blob_path(&entry.digest),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                })?;
        let Some(config) = manifest.children.first() else {
            continue;
        };
        let bytes = store.read_blob(&config.digest)?;
        if let Ok(release) = serde_json::from_slice::<PythonRelease>(&bytes) {
            out.push(release);
        }
    }
    Ok(out)
}
