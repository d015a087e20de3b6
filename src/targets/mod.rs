//! Where an import lands: a store directory (served by `ferry serve`) or any OCI
//! registry. Both receive only what the bundle reader already verified, from a staging
//! area, and make it visible last (index entries, tags).

pub mod registry;
pub mod store;

use std::fs::File;
use std::io::{self, Read};

use crate::bundle::reader::stage_error;
use crate::bundle::{Entry, EntrySink};
use crate::digest::Digest;
use crate::store::Store;

/// Stages verified entries into an OCI layout of its own. Blobs that `skip` already
/// holds are hashed (to verify the bundle) but not written again.
pub struct Staging<'a> {
    pub layout: Store,
    pub skip: Option<&'a Store>,
    _dir: tempfile::TempDir,
    pub staged: Vec<Digest>,
    /// Blobs larger than this are hashed but not kept (`bundle verify` keeps only the
    /// manifests and configs it reads back).
    pub max_size: u64,
    /// Whether each staged blob is synced before it is renamed in. Off only where the
    /// staging is thrown away when the process ends (`bundle verify`): a crash there
    /// loses nothing, and 10,000 small blobs took 15-70 s of fsync.
    pub durable: bool,
}

impl<'a> Staging<'a> {
    /// A fresh staging layout in `parent`, named `<prefix><random>`.
    pub fn new(
        parent: &std::path::Path,
        prefix: &str,
        skip: Option<&'a Store>,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(parent)?;
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
        let layout = Store::create_in(dir.path()).map_err(io::Error::other)?;
        Ok(Staging {
            layout,
            skip,
            _dir: dir,
            staged: Vec::new(),
            max_size: u64::MAX,
            durable: true,
        })
    }

    /// Makes the staging layout itself the store at `dest` (absent or an empty
    /// directory) with one rename, so nobody sees a store that is half there.
    pub fn publish(self, dest: &std::path::Path) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = self._dir.keep();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        if let Err(e) = std::fs::rename(&path, dest) {
            let _ = std::fs::remove_dir_all(&path);
            return Err(e);
        }
        if let Some(parent) = dest.parent()
            && let Ok(d) = File::open(if parent.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                parent
            })
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl EntrySink for Staging<'_> {
    fn stage(&mut self, entry: &Entry, content: &mut dyn Read) -> io::Result<()> {
        let Some(digest) = entry.blob_digest() else {
            return io::copy(content, &mut io::sink()).map(|_| ());
        };
        if entry.size > self.max_size || self.skip.is_some_and(|s| s.has_blob(&digest, entry.size))
        {
            return io::copy(content, &mut io::sink()).map(|_| ());
        }
        let path = self.layout.blob_path(&digest);
        let tmp = path.with_extension("part");
        let mut file = StageWriter(File::create(&tmp).map_err(stage_error)?);
        // A read error is the bundle's fault and passes through as it is; write errors
        // are marked as ours by `StageWriter`.
        io::copy(content, &mut file)?;
        if self.durable {
            file.0.sync_data().map_err(stage_error)?;
        }
        std::fs::rename(&tmp, &path).map_err(stage_error)?;
        self.staged.push(digest);
        Ok(())
    }
}

struct StageWriter(File);

impl io::Write for StageWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(stage_error)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(stage_error)
    }
}
