//! Incremental bundles: `bundle create --since BASE` leaves out the blobs that BASE says
//! the other side already holds. BASE is an earlier bundle, its manifest
//! (`ferry-manifest.json`), or a receipt that an import wrote (`import --receipt`: the
//! digests the target held afterwards). Manifests and configs are always carried (they
//! are small, and they are what lets an importer walk every artifact and check, before
//! writing anything, that each blob the bundle leaves out is already in its target).

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::BundleManifest;
use super::manifest::{BaseRef, Entry};
use crate::digest::Digest;

/// The format of receipts.
pub const RECEIPT_FORMAT: &str = "dev.ferry.receipt.v1";
/// A receipt lists every blob of a target: bound what is read.
const MAX_RECEIPT: u64 = 256 << 20;

/// What a receipt says: after importing `series` `sequence` (manifest `manifest`), the
/// target held these blobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Receipt {
    pub format: String,
    /// The target, as the import named it (`store:/abs/dir` or `registry:host/prefix`).
    pub target: String,
    /// RFC 3339, UTC.
    pub time: String,
    pub series: String,
    pub sequence: u64,
    /// The manifest digest of the bundle imported.
    pub manifest: Digest,
    /// Every blob the target holds (a store), or every blob the imported artifacts
    /// reach (a registry, whose blobs cannot be listed).
    pub blobs: Vec<Digest>,
}

/// A base, read: what it is, and the blobs it vouches for.
pub struct Base {
    pub reference: BaseRef,
    pub blobs: HashSet<Digest>,
}

impl Base {
    /// A base must be of the series the new bundle continues.
    pub fn check_series(&self, path: &Path, series: &str) -> Result<(), BaseError> {
        if self.reference.series == series {
            return Ok(());
        }
        Err(BaseError::OtherSeries {
            path: path.display().to_string(),
            found: self.reference.series.clone(),
            series: series.into(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("cannot read --since {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--since {path} is not a ferry bundle, bundle manifest or import receipt: {reason}")]
    Invalid { path: String, reason: String },
    #[error("--since {path} is of series `{found}`, this bundle's is `{series}`")]
    OtherSeries {
        path: String,
        found: String,
        series: String,
    },
}

impl crate::exit::Classify for BaseError {
    fn exit_status(&self) -> crate::exit::ExitStatus {
        match self {
            BaseError::Read { .. } => crate::exit::ExitStatus::Error,
            _ => crate::exit::ExitStatus::Usage,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            BaseError::OtherSeries { .. } => Some(
                "a base must be an earlier bundle of the same series (or a receipt of its import)"
                    .into(),
            ),
            BaseError::Invalid { .. } => Some(
                "pass an earlier .ferry bundle, its ferry-manifest.json, or the file `ferry import --receipt` wrote".into(),
            ),
            BaseError::Read { .. } => None,
        }
    }
}

/// Reads BASE: a bundle (zstd), or JSON (a bundle manifest or a receipt).
pub fn load(path: &Path) -> Result<Base, BaseError> {
    let shown = path.display().to_string();
    let invalid = |reason: String| BaseError::Invalid {
        path: shown.clone(),
        reason,
    };
    let mut magic = [0u8; 4];
    let is_zstd = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|source| BaseError::Read {
            path: shown.clone(),
            source,
        })?;
        f.read(&mut magic).map_err(|source| BaseError::Read {
            path: shown.clone(),
            source,
        })? == 4
            && magic == [0x28, 0xb5, 0x2f, 0xfd]
    };
    let (kind, bytes) = if is_zstd {
        let head = super::reader::head(&super::reader::Input::from(path))
            .map_err(|e| invalid(e.to_string()))?;
        ("bundle", head.manifest)
    } else {
        use std::io::Read;
        let f = std::fs::File::open(path).map_err(|source| BaseError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut bytes = Vec::new();
        f.take(MAX_RECEIPT + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| BaseError::Read {
                path: shown.clone(),
                source,
            })?;
        if bytes.len() as u64 > MAX_RECEIPT {
            return Err(invalid("it is larger than 256 MiB".into()));
        }
        let format = serde_json::from_slice::<serde_json::Value>(&bytes)
            .map_err(|e| invalid(format!("not JSON ({e})")))?["format"]
            .as_str()
            .map(String::from);
        match format.as_deref() {
            Some(RECEIPT_FORMAT) => ("receipt", bytes),
            Some(super::FORMAT) => ("manifest", bytes),
            _ => return Err(invalid(format!("its format is {format:?}"))),
        }
    };
    let digest = Digest::of(&bytes);
    let (found_series, sequence, blobs) = if kind == "receipt" {
        let r: Receipt = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        (r.series, r.sequence, r.blobs.into_iter().collect())
    } else {
        let m: BundleManifest =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        m.validate().map_err(invalid)?;
        let blobs = m.entries.iter().filter_map(Entry::blob_digest);
        (m.series.clone(), m.sequence, blobs.collect())
    };
    Ok(Base {
        reference: BaseRef {
            kind: kind.into(),
            digest,
            series: found_series,
            sequence,
            omitted: 0,
        },
        blobs,
    })
}
