//! Import into a store directory: staged blobs are renamed in, then `index.json` gains
//! the artifacts' entries in one atomic replace.

use crate::artifact::Artifact;
use crate::store::{self, Store, StoreError};

use super::Staging;

/// Checks that every artifact is complete across staging and target, then moves the
/// staged blobs in and adds the entries.
pub fn commit(
    target: &Store,
    staging: &Staging<'_>,
    artifacts: &[Artifact],
) -> Result<(), StoreError> {
    for a in artifacts {
        store::reachable_in(&[&staging.layout, target], &a.root())?;
    }
    for digest in &staging.staged {
        let from = staging.layout.blob_path(digest);
        let to = target.blob_path(digest);
        if !to.exists() {
            std::fs::rename(&from, &to).map_err(|source| StoreError::Io {
                action: "cannot move a staged blob to",
                path: to,
                source,
            })?;
        }
    }
    sync_dir(&target.root().join("blobs/sha256"));
    target.update_entries(|entries| {
        for a in artifacts {
            store::upsert_entry(entries, &a.repository, a.tag.as_deref(), &a.root());
        }
    })
}

/// Whether the store already holds every artifact, complete.
pub fn holds(target: &Store, artifacts: &[Artifact]) -> bool {
    let Ok(entries) = target.entries() else {
        return false;
    };
    artifacts.iter().all(|a| {
        let named = entries.iter().any(|e| {
            e.digest == a.digest
                && e.annotations.get(crate::oci::REPOSITORY) == Some(&a.repository)
                && a.tag.as_ref().is_none_or(|t| {
                    e.annotations.get(crate::oci::REF_NAME)
                        == Some(&format!("{}:{t}", a.repository))
                })
        });
        named && target.reachable(&a.root()).is_ok()
    })
}

fn sync_dir(dir: &std::path::Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
