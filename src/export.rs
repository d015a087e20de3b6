//! What every ecosystem's export (`ferry export`) writes with: files copied out of the
//! store and written atomically, under names created exclusively. The exports
//! themselves live in each ecosystem's folder (`ecosystems/*/export.rs`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Context as _;

use crate::names::Sha256Hex;
use crate::store::Store;

pub fn copy_blob(store: &Store, hex: &Sha256Hex, dest: &Path) -> crate::error::Result<()> {
    let digest = hex.digest();
    let src = store.blob_path(&digest);
    if fs::metadata(dest).ok().map(|m| m.len()) == fs::metadata(&src).ok().map(|m| m.len()) {
        let same = crate::digest::Digest::of(&fs::read(dest)?) == digest;
        if same {
            return Ok(());
        }
    }
    let mut from =
        fs::File::open(&src).with_context(|| format!("cannot read {}", src.display()))?;
    let mut tmp = new_temp(dest)?;
    std::io::copy(&mut from, tmp.as_file_mut())
        .with_context(|| format!("cannot copy {} next to {}", src.display(), dest.display()))?;
    persist(tmp, dest)
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
