//! What every ecosystem's export (`ferry export`) writes with: files copied out of the
//! store and written atomically, under names created exclusively. The exports
//! themselves live in each ecosystem's folder (`ecosystems/*/export.rs`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Context as _;

use crate::names::Sha256Hex;
use crate::reporter::{Reporter, Task};
use crate::store::Store;

/// Copies a blob of the store to `dest` (unless `dest` already holds it), counting its
/// size into `progress` either way.
pub fn copy_blob(
    store: &Store,
    hex: &Sha256Hex,
    dest: &Path,
    progress: &dyn Task,
) -> crate::error::Result<()> {
    let digest = hex.digest();
    let src = store.blob_path(&digest);
    let size = fs::metadata(&src).ok().map(|m| m.len());
    if fs::metadata(dest).ok().map(|m| m.len()) == size {
        let same = crate::digest::Digest::of(&fs::read(dest)?) == digest;
        if same {
            progress.advance(size.unwrap_or(0));
            return Ok(());
        }
    }
    let mut from =
        fs::File::open(&src).with_context(|| format!("cannot read {}", src.display()))?;
    let mut tmp = new_temp(dest)?;
    std::io::copy(&mut from, tmp.as_file_mut())
        .with_context(|| format!("cannot copy {} next to {}", src.display(), dest.display()))?;
    persist(tmp, dest)?;
    progress.advance(size.unwrap_or(0));
    Ok(())
}

/// The overall progress of an export of these blobs (their sizes in the store).
pub fn progress<'a>(
    store: &Store,
    blobs: impl Iterator<Item = &'a Sha256Hex>,
    reporter: &dyn Reporter,
) -> Box<dyn Task> {
    let total = blobs
        .filter_map(|h| store.blob_size(&h.digest()))
        .sum::<u64>();
    reporter.overall("export", Some(total))
}

/// A new file beside `dest`, created exclusively under a random name (never through a
/// link someone left there), readable as an export should be.
pub fn new_temp(dest: &Path) -> crate::error::Result<tempfile::NamedTempFile> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".ferry-tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    Ok(tmp)
}

pub fn persist(tmp: tempfile::NamedTempFile, dest: &Path) -> crate::error::Result<()> {
    tmp.as_file().sync_all()?;
    tmp.persist(dest)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(())
}

pub fn tmp_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".ferry-tmp");
    PathBuf::from(s)
}

pub fn write_atomic(dest: &Path, bytes: &[u8]) -> crate::error::Result<()> {
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut tmp = new_temp(dest)?;
    tmp.write_all(bytes)?;
    persist(tmp, dest)
}
