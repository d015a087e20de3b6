//! Writing `report.json`, `report.md` and `report.html` into a directory, each
//! atomically (a temporary file in the same directory, synced, renamed over any earlier
//! one), so a reader never sees half a report.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Report;
use crate::error::Context as _;

/// Writes the three renderings into `dir` (created if absent); returns their paths.
/// The caller has checked that `dir` is not a file.
pub fn write(dir: &Path, report: &Report) -> crate::error::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut json = serde_json::to_vec_pretty(report)?;
    json.push(b'\n');
    let files = [
        ("report.html", super::html::render(report).into_bytes()),
        ("report.json", json),
        ("report.md", super::markdown::render(report).into_bytes()),
    ];
    let mut written = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        atomic(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".ferry-report-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
