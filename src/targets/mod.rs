//! Where an import lands: a store directory (served by `ferry serve`) or any OCI
//! registry. Both receive only what the bundle reader already verified (from a staging
//! area, or for a registry from a second pass that checks the bytes again), and make
//! it visible last (index entries, tags).

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
    /// Keep only blobs that may be JSON documents (their first byte that is not white
    /// space is `{` or `[`, or none in the first 4 KiB): manifests, indexes, configs, records and SBOMs, all that
    /// `bundle verify` reads back. Layers, wheels, packages and model files are only
    /// hashed: writing 300 MB of small layers to a temporary directory had made verify
    /// write-bound (1.2 s instead of 0.2 s).
    pub json_only: bool,
    /// Whether the staged blobs are made durable (`Staging::sync`) before anything
    /// takes them. Off where the staging is thrown away when the process ends (`bundle
    /// verify`) or the target makes the bytes durable itself (a registry).
    pub durable: bool,
    /// Blobs that were hashed against the manifest but not kept (over `max_size`, or
    /// not documents under `json_only`): the bundle carries them, checked, and a second
    /// pass over it can stream them on (`targets::registry::push`).
    pub passed: std::collections::HashSet<Digest>,
    /// Where in the bundle file the zstd frame that an entry begins starts
    /// (`EntrySink::starts_frame`): a blob of `passed` found there is read again from it
    /// alone (`reader::entry_at`), beside the others, rather than by a pass over all.
    pub frames: std::collections::HashMap<Digest, u64>,
    /// For `copy`: allocated once.
    buffer: Vec<u8>,
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
            json_only: false,
            durable: true,
            passed: std::collections::HashSet::new(),
            frames: std::collections::HashMap::new(),
            buffer: Vec::new(),
        })
    }

    /// Makes every staged blob durable: one `syncfs` of the staging's file system, which
    /// writes what `start_writeback` began and commits the journal once, where a
    /// `fsync` per blob committed it per blob (10,000 small blobs took 15-70 s) and held
    /// the stream while each one reached the disk. Called before the blobs are moved
    /// into a store or the staging becomes one.
    pub fn sync(&self) -> io::Result<()> {
        if !self.durable || self.staged.is_empty() {
            return Ok(());
        }
        crate::store::syncfs(self.layout.root())
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
    fn starts_frame(&mut self, entry: &Entry, at: u64) {
        if let Some(digest) = entry.blob_digest() {
            self.frames.insert(digest, at);
        }
    }

    fn stage(&mut self, entry: &Entry, content: &mut dyn Read) -> io::Result<()> {
        let Some(digest) = entry.blob_digest() else {
            return Ok(());
        };
        if self.skip.is_some_and(|s| s.has_blob(&digest, entry.size)) {
            return Ok(()); // the reader hashes what is left unread
        }
        if entry.size > self.max_size {
            self.passed.insert(digest);
            return Ok(());
        }
        let mut head = Vec::new();
        if self.json_only {
            // The first bytes up to one that is not white space. A blob still blank
            // after 4 KiB is kept: only what is surely no document is left out.
            let mut ended = false;
            while head.len() < 4096 && head.iter().all(u8::is_ascii_whitespace) {
                let mut some = [0u8; 64];
                match content.read(&mut some)? {
                    0 => {
                        ended = true;
                        break;
                    }
                    n => head.extend_from_slice(&some[..n]),
                }
            }
            let undecided = !ended && head.iter().all(u8::is_ascii_whitespace);
            let first = head.iter().find(|b| !b.is_ascii_whitespace());
            if !undecided && !matches!(first, Some(b'{' | b'[')) {
                self.passed.insert(digest);
                return Ok(());
            }
        }
        let path = self.layout.blob_path(&digest);
        let tmp = path.with_extension("part");
        let mut file = StageWriter(File::create(&tmp).map_err(stage_error)?);
        // A read error is the bundle's fault and passes through as it is; write errors
        // are marked as ours by `StageWriter`.
        io::Write::write_all(&mut file, &head)?;
        copy(content, &mut file, &mut self.buffer)?;
        if self.durable {
            crate::store::start_writeback(&file.0, 0, 0);
        }
        std::fs::rename(&tmp, &path).map_err(stage_error)?;
        self.staged.push(digest);
        Ok(())
    }
}

/// `io::copy` with a large buffer: it copies 8 KiB at a time from a `dyn Read`, a write
/// call (and a hash update upstream) per 8 KiB.
fn copy(from: &mut dyn Read, to: &mut StageWriter, buffer: &mut Vec<u8>) -> io::Result<()> {
    buffer.resize(256 << 10, 0);
    loop {
        match from.read(buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => io::Write::write_all(to, &buffer[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
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

#[cfg(test)]
mod tests {
    use super::Staging;
    use crate::bundle::{Entry, EntrySink};
    use crate::digest::Digest;

    fn stage(staging: &mut Staging<'_>, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        let entry = Entry::blob(digest, bytes.len() as u64);
        staging.stage(&entry, &mut &bytes[..]).unwrap();
        digest
    }

    #[test]
    fn json_only_staging_keeps_json_documents_whole_and_only_hashes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut staging = Staging::new(dir.path(), "s-", None).unwrap();
        staging.json_only = true;
        staging.durable = false;
        let manifest = br#"{"schemaVersion":2}"#.to_vec();
        let spaced = b" \n\t\r  [1, 2, 3]".to_vec();
        // White space alone for longer than the first read, then a document; and white
        // space beyond what is looked at (kept: it is not surely no document).
        let mut late = vec![b' '; 100];
        late.extend_from_slice(b"{}");
        let mut undecided = vec![b'\n'; 5000];
        undecided.extend_from_slice(b"x");
        let layer = b"\x1f\x8b\x08\x00 a gzip layer".to_vec();
        let blank = b"      ".to_vec();
        for kept in [&manifest, &spaced, &late, &undecided] {
            let d = stage(&mut staging, kept);
            assert_eq!(&std::fs::read(staging.layout.blob_path(&d)).unwrap(), kept);
        }
        for dropped in [&layer, &blank, &Vec::new()] {
            let d = stage(&mut staging, dropped);
            assert!(!staging.layout.blob_path(&d).exists());
        }
        assert_eq!(staging.staged.len(), 4);
    }

    #[test]
    fn durable_staging_keeps_a_staged_blob_whole_and_syncs_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut staging = Staging::new(dir.path(), "s-", None).unwrap();
        let big: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
        let d = stage(&mut staging, &big);
        assert_eq!(std::fs::read(staging.layout.blob_path(&d)).unwrap(), big);
        staging.sync().unwrap();
    }
}
