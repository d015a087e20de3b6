//! How a Python release (one project version and its wheels) is carried: an OCI
//! artifact whose config describes the release and whose layers are the wheels, each
//! followed by its core metadata. Stored under the repository `python/<project>`,
//! tagged with the version.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::names::{ProjectName, Sha256Hex, Token, WheelFileName};
use crate::oci::Desc;
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
    pub project: ProjectName,
    pub version: Token,
    /// The index it came from.
    pub index: String,
    pub files: Vec<PythonFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PythonFile {
    pub filename: WheelFileName,
    pub sha256: Sha256Hex,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_python: Option<String>,
    /// The core metadata (PEP 658).
    pub metadata_sha256: Sha256Hex,
    pub metadata_size: u64,
}

impl PythonFile {
    pub fn digest(&self) -> Digest {
        self.sha256.digest()
    }
    pub fn metadata_digest(&self) -> Digest {
        self.metadata_sha256.digest()
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

pub fn repository(project: &ProjectName) -> String {
    format!("{REPOSITORY_PREFIX}{project}")
}

/// Writes the release's config and manifest into the store (its wheels and metadata must
/// be there already); returns the manifest's descriptor.
pub fn write(store: &Store, release: &PythonRelease) -> Result<(Desc, Vec<u8>), StoreError> {
    let config = serde_json::to_vec(release).expect("release serialises");
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
    let annotations = serde_json::json!({"dev.ferry.python.project": release.project, "dev.ferry.python.version": release.version});
    store.put_artifact(ARTIFACT_TYPE, CONFIG_TYPE, &config, layers, annotations)
}

/// Reads a release back from its stored config, checking every name in it.
pub fn read(config: &[u8]) -> Result<PythonRelease, String> {
    serde_json::from_slice(config).map_err(|e| format!("invalid Python release config: {e}"))
}

/// Every Python release a store holds (the entries under `python/`). A record that does
/// not parse (a store edited by hand) is an error naming it, never skipped in silence.
pub fn releases(store: &Store) -> Result<Vec<PythonRelease>, StoreError> {
    store
        .artifacts(REPOSITORY_PREFIX, ARTIFACT_TYPE)?
        .into_iter()
        .map(|(manifest, config)| {
            read(&config).map_err(|reason| StoreError::BadRecord {
                digest: Digest::of(&manifest),
                reason,
            })
        })
        .collect()
}
