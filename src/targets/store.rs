//! Import into a store directory: staged blobs are renamed in, then `index.json` gains
//! the artifacts' entries in one atomic replace.

use std::collections::HashSet;

use crate::digest::Digest;
use crate::oci::Placement;
use crate::store::{self, Store, StoreError};

use super::Staging;

/// Moves the staged blobs in and adds the entries (the caller checked that every
/// placement is complete across staging and target). Blobs land before any entry names
/// them, so a reader never sees a tag whose content is not all there.
pub fn commit(
    target: &Store,
    staging: &Staging<'_>,
    placements: &[Placement],
    bundle: &str,
) -> Result<(), StoreError> {
    staging.sync().map_err(|source| StoreError::Io {
        action: "cannot sync the staged blobs in",
        path: staging.layout.root().to_path_buf(),
        source,
    })?;
    let same = target.root() == staging.layout.root();
    for digest in staging.staged.iter().filter(|_| !same) {
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
    let items: Vec<_> = placements
        .iter()
        .map(|p| (p.repository.as_str(), p.tag.as_deref(), p.root.clone()))
        .collect();
    target.update_entries(|entries| {
        store::upsert_entries(entries, &items);
        // Which bundle placed each entry, for `store ls`.
        let placed: HashSet<(Digest, &str)> =
            items.iter().map(|(r, _, d)| (d.digest, *r)).collect();
        for e in entries.iter_mut() {
            let ours = e
                .annotations
                .get(crate::oci::REPOSITORY)
                .is_some_and(|r| placed.contains(&(e.digest, r.as_str())));
            if ours {
                e.annotations
                    .insert(crate::inventory::BUNDLE.into(), bundle.to_string());
            }
        }
    })
}

/// Whether the store already holds every artifact, complete: named as the bundle names
/// it, and every blob it reaches present. Linear in artifacts and blobs.
pub fn holds(target: &Store, placements: &[Placement]) -> bool {
    let Ok(entries) = target.entries() else {
        return false;
    };
    let mut named: HashSet<(Digest, &str, Option<&str>)> = HashSet::new();
    for e in &entries {
        let Some(repo) = e.annotations.get(crate::oci::REPOSITORY) else {
            continue;
        };
        let tag = e
            .annotations
            .get(crate::oci::REF_NAME)
            .and_then(|n| n.strip_prefix(repo.as_str()))
            .and_then(|n| n.strip_prefix(':'));
        named.insert((e.digest, repo.as_str(), tag));
        named.insert((e.digest, repo.as_str(), None));
    }
    let mut seen = HashSet::new();
    placements.iter().all(|p| {
        named.contains(&(p.root.digest, p.repository.as_str(), p.tag.as_deref()))
            && store::reachable_into(&[target], &p.root, &mut seen, &mut |_, _| {}).is_ok()
    })
}

fn sync_dir(dir: &std::path::Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
