//! How a conda package is carried: an OCI artifact whose config is its repodata record
//! and whose one layer is the package file (`application/vnd.conda.package.v1` for
//! `.tar.bz2`, `.v2` for `.conda`). Stored under `conda/<channel>/<subdir>/<name>`,
//! tagged `<version>-<build>`.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::names::{ChannelName, CondaFileName, CondaToken, Sha256Hex, Subdir};
use crate::oci::Desc;
use crate::store::{self, Store, StoreError};

pub const ARTIFACT_TYPE: &str = "application/vnd.ferry.conda.package.v1";
pub const RECORD_TYPE: &str = "application/vnd.ferry.conda.record.v1+json";
pub const PACKAGE_V1: &str = "application/vnd.conda.package.v1";
pub const PACKAGE_V2: &str = "application/vnd.conda.package.v2";
pub const REPOSITORY_PREFIX: &str = "conda/";
const TITLE: &str = "org.opencontainers.image.title";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CondaPackage {
    /// The name the channel is served under (its last path segment).
    pub channel: ChannelName,
    /// The channel's URL, without credentials.
    pub channel_url: String,
    pub subdir: Subdir,
    pub file_name: CondaFileName,
    pub name: CondaToken,
    pub version: CondaToken,
    pub build: CondaToken,
    pub sha256: Sha256Hex,
    pub size: u64,
    /// Where it was downloaded from, without credentials.
    pub url: String,
    /// The repodata record, as the channel gave it (depends, constrains, license, ...).
    pub record: serde_json::Value,
}

fn clean(s: &str) -> String {
    s.to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

impl CondaPackage {
    pub fn repository(&self) -> String {
        format!(
            "{REPOSITORY_PREFIX}{}/{}/{}",
            clean(&self.channel),
            clean(&self.subdir),
            clean(&self.name)
        )
    }
    pub fn tag(&self) -> String {
        let t: String = format!("{}-{}", self.version, self.build)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        t.chars().take(128).collect()
    }
    pub fn media_type(&self) -> &'static str {
        if self.file_name.ends_with(".conda") {
            PACKAGE_V2
        } else {
            PACKAGE_V1
        }
    }
    pub fn digest(&self) -> Digest {
        self.sha256.digest()
    }
}

pub fn write(
    batch: &mut store::Batch<'_>,
    package: &CondaPackage,
) -> Result<(Desc, Vec<u8>), StoreError> {
    let config = serde_json::to_vec(package).expect("package serialises");
    let layers = vec![serde_json::json!({
        "mediaType": package.media_type(), "digest": format!("sha256:{}", package.sha256), "size": package.size,
        "annotations": {TITLE: package.file_name},
    })];
    let annotations = serde_json::json!({"dev.ferry.conda.channel": package.channel, "dev.ferry.conda.subdir": package.subdir});
    batch.put_artifact(ARTIFACT_TYPE, RECORD_TYPE, &config, layers, annotations)
}

/// Reads a package back from its stored config, checking every name in it. The
/// repodata record is served as it is, so what it says of the package's identity must
/// be what the checked fields say.
pub fn read(config: &[u8]) -> Result<CondaPackage, String> {
    let p: CondaPackage =
        serde_json::from_slice(config).map_err(|e| format!("invalid conda package config: {e}"))?;
    for (key, checked) in [
        ("subdir", p.subdir.as_str()),
        ("fn", p.file_name.as_str()),
        ("name", p.name.as_str()),
        ("version", p.version.as_str()),
        ("build", p.build.as_str()),
    ] {
        if let Some(v) = p.record.get(key)
            && v.as_str() != Some(checked)
        {
            return Err(format!(
                "conda package {}: its repodata record says {key} {v}, not {checked:?}",
                p.file_name
            ));
        }
    }
    Ok(p)
}

/// Every conda package the store holds. A record that does not parse is an error
/// naming it, never skipped in silence.
pub fn packages(store: &Store) -> Result<Vec<CondaPackage>, StoreError> {
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

/// A channel's `repodata.json` for one subdir, from the packages it holds.
pub fn repodata(subdir: &str, packages: &[&CondaPackage]) -> serde_json::Value {
    let mut v1 = serde_json::Map::new();
    let mut v2 = serde_json::Map::new();
    for p in packages {
        let mut record = p.record.clone();
        record["sha256"] = p.sha256.as_str().into();
        record["size"] = p.size.into();
        if p.file_name.ends_with(".conda") {
            v2.insert(p.file_name.to_string(), record);
        } else {
            v1.insert(p.file_name.to_string(), record);
        }
    }
    serde_json::json!({"info": {"subdir": subdir}, "packages": v1, "packages.conda": v2, "removed": [], "repodata_version": 1})
}
