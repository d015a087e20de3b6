//! Export of models and datasets as a Hugging Face hub cache.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::Context as _;

use crate::export::{copy_blob, tmp_path, write_atomic};
use crate::names;
use crate::store::Store;

/// Writes a Hugging Face hub cache (what `HF_HUB_CACHE` points at) from which
/// huggingface_hub loads with `HF_HUB_OFFLINE=1`: `models--org--name/blobs/<etag>`,
/// `snapshots/<commit>/<path>` as relative links into blobs, and `refs/<revision>`.
pub fn hf_cache(
    store: &Store,
    out: &Path,
    reporter: &dyn crate::reporter::Reporter,
) -> crate::error::Result<usize> {
    let mut count = 0;
    // Every record is read and checked before the first file is written.
    let snapshots = super::record::snapshots(store)?;
    let progress = crate::export::progress(
        store,
        snapshots
            .iter()
            .flat_map(|s| s.files.iter().map(|f| &f.sha256)),
        reporter,
    );
    for info in snapshots {
        let folder = out.join(format!("{}s--{}", info.kind, info.repo.replace('/', "--")));
        let blobs = folder.join("blobs");
        let snapshot = names::join(&folder.join("snapshots"), &info.commit);
        fs::create_dir_all(&blobs).with_context(|| format!("cannot create {}", blobs.display()))?;
        for f in &info.files {
            let blob = blob_name(f)?;
            copy_blob(
                store,
                &f.sha256,
                &names::join(&blobs, &blob),
                progress.as_ref(),
            )?;
            let link = names::join_rel(&snapshot, &f.path);
            let target = PathBuf::from(format!(
                "{}../../blobs/{}",
                "../".repeat(f.path.depth()),
                blob.as_str()
            ));
            if let Some(dir) = link.parent() {
                fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
                let tmp = tmp_path(&link);
                let _ = fs::remove_file(&tmp);
                std::os::unix::fs::symlink(&target, &tmp)
                    .with_context(|| format!("cannot link {}", link.display()))?;
                fs::rename(&tmp, &link)
                    .with_context(|| format!("cannot write {}", link.display()))?;
            }
            count += 1;
        }
        if info.revision != info.commit.as_str() {
            write_atomic(
                &names::join_rel(&folder.join("refs"), &info.revision.as_rel_path()),
                info.commit.as_bytes(),
            )?;
        }
    }
    Ok(count)
}

/// The name of a file's blob in a hub cache: its etag (the LFS sha256 or git oid).
fn blob_name(f: &super::record::ModelFile) -> crate::error::Result<names::GitOid> {
    Ok(names::GitOid::new(f.etag())?)
}
