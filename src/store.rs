//! The store: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`)
//! holding every artifact ferry carries. Blobs are written to a temporary file and
//! renamed into place only after their digest checked; `index.json` is replaced
//! atomically under a lock. ferry's own state lives in `.ferry/`, which OCI tools ignore.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};
use crate::exit::{Classify, ExitStatus};
use crate::oci::{self, Desc};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not an OCI image layout (no `oci-layout` file)")]
    NotAStore { path: PathBuf },
    #[error("{path} is not a valid image index")]
    BadIndex {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest {digest} is nested more than {MAX_DEPTH} levels deep")]
    TooDeep { digest: Digest },
    #[error("artifact {digest} in the store has an invalid record: {reason}")]
    BadRecord { digest: Digest, reason: String },
    #[error(
        "{what}: expected {expected} ({expected_size} bytes), got {actual} ({actual_size} bytes)"
    )]
    DigestMismatch {
        what: String,
        expected: Digest,
        expected_size: u64,
        actual: Digest,
        actual_size: u64,
    },
}

impl Classify for StoreError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            StoreError::DigestMismatch { .. }
            | StoreError::BadRecord { .. }
            | StoreError::TooDeep { .. } => ExitStatus::Verification,
            StoreError::NotAStore { .. } => ExitStatus::Usage,
            _ => ExitStatus::Error,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            StoreError::NotAStore { .. } => {
                Some("point --store at a directory that ferry created, or at an empty one".into())
            }
            _ => None,
        }
    }
}

impl StoreError {
    pub fn from_io(action: &'static str, path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

const LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

/// A store path that exists but is not a directory (a bundle given as `--store`, say).
fn refuse_non_directory(root: &Path) -> Result<(), StoreError> {
    match fs::metadata(root) {
        Ok(meta) if !meta.is_dir() => Err(StoreError::NotAStore {
            path: root.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

impl Store {
    /// Opens the store at `root`, creating an empty layout if the directory is absent
    /// or empty.
    pub fn open_or_create(root: &Path) -> Result<Store, StoreError> {
        refuse_non_directory(root)?;
        if root.join("oci-layout").is_file() {
            return Store::open(root);
        }
        // Two processes creating one store: the second waits, then finds it made.
        let parent = match root.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => p,
            None => Path::new("."),
        };
        fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
        let lock = File::open(parent).map_err(io_err("cannot open", parent))?;
        lock.lock().map_err(io_err("cannot lock", parent))?;
        let empty = match fs::read_dir(root) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(io_err("cannot read", root)(e)),
        };
        if empty {
            return Store::create_beside(root, parent);
        }
        if interrupted_creation(root) {
            return Store::create_in(root);
        }
        Store::open(root)
    }

    /// Makes the layout in a sibling of `root` and renames it into place (over `root`
    /// when that is an empty directory), so a process killed at any point leaves either
    /// no store or a whole one. The caller holds the lock on `parent`, so a sibling left
    /// by a killed creation is nobody's and is removed first.
    fn create_beside(root: &Path, parent: &Path) -> Result<Store, StoreError> {
        // A symlink to an empty directory stays a symlink: create behind it.
        let root = match fs::symlink_metadata(root) {
            Ok(m) if m.file_type().is_symlink() => {
                fs::canonicalize(root).map_err(io_err("cannot resolve", root))?
            }
            _ => root.to_path_buf(),
        };
        // A bare name (`--store S`) has the empty path as its parent: use the caller's.
        let parent = root
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(parent);
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "store".into());
        let staging = parent.join(format!(".{name}.ferry-creating"));
        match fs::remove_dir_all(&staging) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot remove", &staging)(e)),
        }
        Store::create_in(&staging)?;
        fs::rename(&staging, &root).map_err(io_err("cannot create", &root))?;
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_err("cannot sync", parent))?;
        Ok(Store { root })
    }

    /// Makes an empty layout in `root`, a directory nobody else uses yet (a fresh
    /// temporary one, say). `oci-layout` is written last: a directory without it is not
    /// a store yet.
    pub fn create_in(root: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(root.join("blobs/sha256")).map_err(io_err("cannot create", root))?;
        let store = Store {
            root: root.to_path_buf(),
        };
        store.write_atomic(&root.join("index.json"), &index_json(&[]))?;
        store.write_atomic(&root.join("oci-layout"), LAYOUT.as_bytes())?;
        Ok(store)
    }
}

/// Whether `root` holds only what a `create_in` in place (as ferry before atomic
/// creation did it) killed before it wrote `oci-layout` leaves (an empty `blobs/sha256`, perhaps `index.json` and a temporary file): the
/// creation is finished rather than the directory refused as "not a store".
fn interrupted_creation(root: &Path) -> bool {
    let Ok(entries) = fs::read_dir(root) else {
        return false;
    };
    entries.into_iter().all(|e| {
        let Ok(e) = e else { return false };
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Ok(kind) = e.file_type() else {
            return false;
        };
        match name.as_ref() {
            "index.json" => kind.is_file(),
            "blobs" => {
                kind.is_dir()
                    && fs::read_dir(e.path()).is_ok_and(|inner| {
                        inner.into_iter().all(|i| {
                            i.is_ok_and(|i| {
                                i.file_name() == "sha256"
                                    && fs::read_dir(i.path()).is_ok_and(|mut d| d.next().is_none())
                            })
                        })
                    })
            }
            n => n.starts_with(".tmp") && kind.is_file(),
        }
    })
}

impl Store {
    /// The store at `root` to read from, as it is: an existing store, or (when `root`
    /// does not exist) an empty one that is not created. For dry runs.
    pub fn at(root: &Path) -> Result<Store, StoreError> {
        let empty = fs::read_dir(root).map_or(true, |mut d| d.next().is_none());
        if !empty && !root.join("oci-layout").is_file() {
            return Err(StoreError::NotAStore {
                path: root.to_path_buf(),
            });
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// Opens an existing store.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        refuse_non_directory(root)?;
        if !root.join("oci-layout").is_file() {
            return Err(StoreError::NotAStore {
                path: root.to_path_buf(),
            });
        }
        fs::create_dir_all(root.join("blobs/sha256")).map_err(io_err("cannot create", root))?;
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where ferry keeps its own state: locks, temporary files, series counters.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(".ferry")
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the blob is present with the expected size (its bytes were checked
    /// before it was renamed into place).
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Whether the store holds the blob (with `size`, when given). Blobs are renamed into
    /// place only after their digest checked, so one that is there was verified.
    pub fn has_verified_blob(&self, digest: &Digest, size: Option<u64>) -> bool {
        fs::metadata(self.blob_path(digest))
            .is_ok_and(|m| m.is_file() && size.is_none_or(|s| m.len() == s))
    }

    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(digest)).ok().map(|m| m.len())
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(io_err("cannot open blob", &path))
    }

    /// Reads a small blob (a manifest) whole, checking its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_err("cannot read blob", &path))?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(StoreError::DigestMismatch {
                what: format!("blob {} in store {}", digest, self.root.display()),
                expected: *digest,
                expected_size: bytes.len() as u64,
                actual,
                actual_size: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// Whether an interrupted download of `digest` left bytes to resume from.
    pub fn has_partial(&self, digest: &Digest) -> bool {
        self.state_dir()
            .join("partial")
            .join(digest.hex())
            .is_file()
    }

    /// Starts writing the blob `expected` to `.ferry/partial/<hex>`. With `resume`, bytes
    /// left there by an interrupted run are kept (and hashed again) and `offset` says how
    /// many; without, the file starts empty.
    ///
    /// One writer per digest at a time across processes: a lock next to the partial file
    /// is held until the blob is committed or dropped, so two pulls or creates sharing
    /// the store never write into one partial file.
    pub fn blob_writer(&self, expected: &Digest, resume: bool) -> Result<BlobWriter, StoreError> {
        let lock = PartialLock::acquire(self.partial_lock(expected)?)?;
        self.blob_writer_locked(expected, resume, lock)
    }

    /// `blob_writer`, or `None` at once while another writer holds the blob's lock. A
    /// download among others in one task waits for the lock by retrying this between
    /// awaits: blocking the thread would hold up the other downloads of the task, and
    /// with them the locks they hold (two pulls sharing a store, each holding the lock
    /// the other waits for, stopped both for good).
    pub fn try_blob_writer(
        &self,
        expected: &Digest,
        resume: bool,
    ) -> Result<Option<BlobWriter>, StoreError> {
        match PartialLock::try_acquire(self.partial_lock(expected)?)? {
            Some(lock) => self.blob_writer_locked(expected, resume, lock).map(Some),
            None => Ok(None),
        }
    }

    /// `blob_writer` for a download among others in one task: waits for the lock
    /// between awaits (`try_blob_writer`).
    pub async fn blob_writer_when_free(
        &self,
        expected: &Digest,
        resume: bool,
    ) -> Result<BlobWriter, StoreError> {
        loop {
            if let Some(w) = self.try_blob_writer(expected, resume)? {
                return Ok(w);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn partial_lock(&self, expected: &Digest) -> Result<PathBuf, StoreError> {
        let dir = self.state_dir().join("partial");
        fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        Ok(dir.join(format!("{}.lock", expected.hex())))
    }

    fn blob_writer_locked(
        &self,
        expected: &Digest,
        resume: bool,
        lock: PartialLock,
    ) -> Result<BlobWriter, StoreError> {
        let path = self.state_dir().join("partial").join(expected.hex());
        let mut hasher = crate::digest::Hasher::default();
        use std::os::unix::fs::OpenOptionsExt as _;
        // Readable, so that `commit_open` can hand on the bytes it checked; never
        // through a link; not writable by the group or others, whatever the umask.
        let mut open = fs::OpenOptions::new();
        open.read(true).mode(0o644).custom_flags(libc::O_NOFOLLOW);
        let (file, resumed) = if resume && path.is_file() {
            // The bytes left are hashed through the descriptor that appends to them.
            let mut file = open
                .append(true)
                .open(&path)
                .map_err(io_err("cannot open", &path))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).map_err(io_err("cannot read", &path))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            (file, hasher.len())
        } else {
            // A file of our own, made here: not one that somebody left at the name.
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err("cannot remove", &path)(e));
                }
                _ => {}
            }
            let file = open
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io_err("cannot create", &path))?;
            (file, 0)
        };
        Ok(BlobWriter {
            inner: Some(HashingWriter::resume(
                BufWriter::with_capacity(WRITE_BUFFER, WritebackFile::at(file, resumed)),
                hasher,
            )),
            path,
            keep_on_drop: resume,
            done: false,
            _lock: Some(lock),
        })
    }

    /// A writer for a blob whose sha256 is not known in advance (it is checked against
    /// something else): a private scratch file, never resumed, committed under the digest
    /// its bytes have.
    pub fn scratch_writer(&self) -> Result<BlobWriter, StoreError> {
        let dir = self.state_dir().join("partial");
        fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        let (file, path) = tempfile::Builder::new()
            .prefix("scratch-")
            .tempfile_in(&dir)
            .map_err(io_err("cannot create a file in", &dir))?
            .keep()
            .map_err(|e| io_err("cannot create a file in", &dir)(e.error))?;
        Ok(BlobWriter {
            inner: Some(HashingWriter::resume(
                BufWriter::with_capacity(WRITE_BUFFER, WritebackFile::new(file)),
                Default::default(),
            )),
            path,
            keep_on_drop: false,
            done: false,
            _lock: None,
        })
    }

    /// Writes a small blob whose digest is known.
    pub fn put_blob(&self, bytes: &[u8], expected: &Digest, what: &str) -> Result<(), StoreError> {
        if self.has_blob(expected, bytes.len() as u64) {
            return Ok(());
        }
        let mut w = self.blob_writer(expected, false)?;
        w.write_all(bytes)
            .map_err(io_err("cannot write into", &self.root))?;
        w.commit(self, expected, bytes.len() as u64, what)
    }

    /// The descriptors of `index.json`.
    pub fn entries(&self) -> Result<Vec<Desc>, StoreError> {
        let path = self.root.join("index.json");
        let bytes = fs::read(&path).map_err(io_err("cannot read", &path))?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::BadIndex {
                path: path.clone(),
                source,
            })?;
        Ok(value
            .get("manifests")
            .and_then(|m| m.as_array())
            .map(|m| m.iter().filter_map(Desc::from_json).collect())
            .unwrap_or_default())
    }

    /// Changes `index.json` under an exclusive lock and replaces it atomically.
    pub fn update_entries<T>(&self, f: impl FnOnce(&mut Vec<Desc>) -> T) -> Result<T, StoreError> {
        let lock_path = self.state_dir().join("lock");
        fs::create_dir_all(self.state_dir()).map_err(io_err("cannot create", &lock_path))?;
        let lock = File::create(&lock_path).map_err(io_err("cannot create", &lock_path))?;
        lock.lock().map_err(io_err("cannot lock", &lock_path))?;
        let mut entries = self.entries()?;
        let out = f(&mut entries);
        self.write_atomic(&self.root.join("index.json"), &index_json(&entries))?;
        Ok(out)
    }

    /// Writes a file by writing a temporary sibling, syncing it and renaming it.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(io_err("cannot create a file in", dir))?;
        tmp.write_all(bytes).map_err(io_err("cannot write", path))?;
        // Tempfiles are 0600; a store is read by other tools and users.
        tmp.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .map_err(io_err("cannot write", path))?;
        tmp.as_file()
            .sync_all()
            .map_err(io_err("cannot sync", path))?;
        tmp.persist(path)
            .map_err(|e| io_err("cannot replace", path)(e.error))?;
        Ok(())
    }
}

impl Store {
    /// Every blob reachable from `root` (itself included), children before parents,
    /// each once; manifests come back parsed and their bytes checked.
    pub fn reachable(&self, root: &Desc) -> Result<Vec<(Desc, Option<oci::Manifest>)>, StoreError> {
        reachable_in(&[self], root)
    }
}

/// An artifact's manifest bytes and config bytes.
pub type StoredArtifact = (Vec<u8>, Vec<u8>);

impl Store {
    /// Writes an OCI artifact whose blobs are already in the store: its config and a
    /// manifest over `layers`. Returns the manifest's descriptor and exact bytes.
    pub fn put_artifact(
        &self,
        artifact_type: &str,
        config_type: &str,
        config: &[u8],
        layers: Vec<serde_json::Value>,
        annotations: serde_json::Value,
    ) -> Result<(Desc, Vec<u8>), StoreError> {
        ArtifactBlobs::new(artifact_type, config_type, config, layers, annotations)
            .put(config, |bytes, digest, what| {
                self.put_blob(bytes, digest, what)
            })
    }

    /// A batch of small blobs made durable together (see [`Batch`]).
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            pending: Vec::new(),
            seen: std::collections::HashSet::new(),
        }
    }
}

/// The config and manifest of an artifact, as `put_artifact` writes them.
struct ArtifactBlobs {
    config_digest: Digest,
    config_what: String,
    bytes: Vec<u8>,
    manifest_what: String,
    desc: Desc,
}

impl ArtifactBlobs {
    fn new(
        artifact_type: &str,
        config_type: &str,
        config: &[u8],
        layers: Vec<serde_json::Value>,
        annotations: serde_json::Value,
    ) -> ArtifactBlobs {
        let config_digest = Digest::of(config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci::OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": config_type, "digest": config_digest.to_string(), "size": config.len()},
            "layers": layers,
            "annotations": annotations,
        });
        let bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
        let desc = Desc {
            media_type: oci::OCI_MANIFEST.into(),
            digest: Digest::of(&bytes),
            size: bytes.len() as u64,
            platform: None,
            artifact_type: Some(artifact_type.into()),
            annotations: Default::default(),
        };
        ArtifactBlobs {
            config_digest,
            config_what: format!("{artifact_type} config"),
            bytes,
            manifest_what: format!("{artifact_type} manifest"),
            desc,
        }
    }

    /// Puts the config, then the manifest that names it, with `put_blob`.
    fn put(
        self,
        config: &[u8],
        mut put_blob: impl FnMut(&[u8], &Digest, &str) -> Result<(), StoreError>,
    ) -> Result<(Desc, Vec<u8>), StoreError> {
        put_blob(config, &self.config_digest, &self.config_what)?;
        put_blob(&self.bytes, &self.desc.digest, &self.manifest_what)?;
        Ok((self.desc, self.bytes))
    }
}

/// Blobs promised to the store by downloads that are still running, so that a reader
/// (`bundle create` writing the bundle while its layers arrive) can wait for each one.
/// A blob is `promise`d before anyone waits for it; `arrived` once it is in the store
/// under its name; `fail` when the downloads stop, which wakes every waiter with an
/// error (nothing waits for a blob that will not come).
#[derive(Default)]
pub struct Arrivals {
    state: std::sync::Mutex<ArrivalState>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct ArrivalState {
    /// Every blob ever promised (it stays when it arrives).
    promised: std::collections::HashSet<Digest>,
    pending: std::collections::HashSet<Digest>,
    /// Blobs that arrived by a download of this process, each file open as the writer
    /// that hashed it left it (`BlobWriter::commit_open`), until the waiter takes it.
    checked: std::collections::HashMap<Digest, File>,
    failed: bool,
}

impl Arrivals {
    /// At most this many checked files are kept open for the waiter.
    const CHECKED_OPEN: usize = 64;

    fn state(&self) -> std::sync::MutexGuard<'_, ArrivalState> {
        // A waiter that panicked leaves nothing half-done in the set.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Promises `digest`; false when it was promised already.
    pub fn promise(&self, digest: Digest) -> bool {
        let mut state = self.state();
        state.pending.insert(digest);
        state.promised.insert(digest)
    }

    /// Whether `digest` was promised (it may have arrived since).
    pub fn is_promised(&self, digest: &Digest) -> bool {
        self.state().promised.contains(digest)
    }

    /// `digest` is in the store; `checked` is its file as the download that hashed it
    /// left it open, if it came so.
    pub fn arrived(&self, digest: &Digest, checked: Option<File>) {
        let mut state = self.state();
        state.pending.remove(digest);
        // Downloads may run far ahead of the waiter: past a few, the file is closed and
        // the waiter reads (and hashes) the blob from the store.
        if let Some(file) = checked
            && state.checked.len() < Self::CHECKED_OPEN
        {
            state.checked.insert(*digest, file);
        }
        drop(state);
        self.changed.notify_all();
    }

    /// The file of `digest` as the download that hashed it in this process left it
    /// open (once): its bytes need no second hashing; `None` when it came otherwise
    /// (it was in the store already).
    pub fn take_checked(&self, digest: &Digest) -> Option<File> {
        self.state().checked.remove(digest)
    }

    /// The downloads stopped: whatever is still pending will not arrive.
    pub fn fail(&self) {
        self.state().failed = true;
        self.changed.notify_all();
    }

    /// Blocks until `digest` is in the store (at once when it was never promised); false
    /// when the downloads stopped before it arrived.
    pub fn wait(&self, digest: &Digest) -> bool {
        let mut state = self.state();
        while state.pending.contains(digest) {
            if state.failed {
                return false;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        true
    }
}

/// Small blobs (records: configs and manifests) written together. Each goes to its
/// partial file without a sync; [`Batch::commit`] makes all of them durable with one
/// `syncfs` and only then renames them into place, so a blob under its name holds its
/// bytes after a crash just as with `put_blob`, for one journal commit per batch where
/// `put_blob` costs one per blob. Nothing is visible before `commit`; a batch dropped
/// uncommitted leaves nothing behind.
pub struct Batch<'a> {
    store: &'a Store,
    pending: Vec<Deferred>,
    seen: std::collections::HashSet<Digest>,
}

/// A blob written and checked, waiting for its batch's sync to be renamed into place.
struct Deferred {
    path: PathBuf,
    dest: PathBuf,
    /// Held until the rename, so no other writer takes the partial file meanwhile.
    _lock: Option<PartialLock>,
}

impl Drop for Deferred {
    fn drop(&mut self) {
        // Renamed: the path is gone and this does nothing.
        let _ = fs::remove_file(&self.path);
    }
}

impl Batch<'_> {
    /// `Store::put_blob`, deferred to the batch's commit.
    pub fn put_blob(
        &mut self,
        bytes: &[u8],
        expected: &Digest,
        what: &str,
    ) -> Result<(), StoreError> {
        if self.seen.contains(expected) {
            // Put before in this batch: the same bytes, or a caller's mistake to refuse.
            let actual = Digest::of(bytes);
            if actual != *expected {
                return Err(StoreError::DigestMismatch {
                    what: what.to_string(),
                    expected: *expected,
                    expected_size: bytes.len() as u64,
                    actual,
                    actual_size: bytes.len() as u64,
                });
            }
            return Ok(());
        }
        if self.store.has_blob(expected, bytes.len() as u64) {
            return Ok(());
        }
        let mut w = self.store.blob_writer(expected, false)?;
        w.write_all(bytes)
            .map_err(io_err("cannot write into", &self.store.root))?;
        self.pending
            .push(w.check(self.store, expected, bytes.len() as u64, what)?);
        self.seen.insert(*expected);
        Ok(())
    }

    /// `Store::put_artifact`, deferred to the batch's commit.
    pub fn put_artifact(
        &mut self,
        artifact_type: &str,
        config_type: &str,
        config: &[u8],
        layers: Vec<serde_json::Value>,
        annotations: serde_json::Value,
    ) -> Result<(Desc, Vec<u8>), StoreError> {
        ArtifactBlobs::new(artifact_type, config_type, config, layers, annotations)
            .put(config, |bytes, digest, what| {
                self.put_blob(bytes, digest, what)
            })
    }

    /// Makes every blob of the batch durable, then renames each into place (configs
    /// before the manifests that name them: the order they were put in).
    pub fn commit(mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let dir = self.store.state_dir().join("partial");
        syncfs(&dir).map_err(io_err("cannot sync", &dir))?;
        for d in self.pending.drain(..) {
            fs::rename(&d.path, &d.dest).map_err(io_err("cannot rename into", &d.dest))?;
        }
        Ok(())
    }
}

/// Writes everything of the file system that holds `path` to the disk: one journal
/// commit, where a sync per file commits it per file.
pub(crate) fn syncfs(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = File::open(path)?;
    // SAFETY: `dir` is an open descriptor for the call's duration.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Store {
    /// The manifests (bytes) and config blobs (bytes) of the entries of `artifact_type`
    /// in repositories under `prefix`.
    pub fn artifacts(
        &self,
        prefix: &str,
        artifact_type: &str,
    ) -> Result<Vec<StoredArtifact>, StoreError> {
        let mut out = Vec::new();
        for entry in self.entries()? {
            let ours = entry
                .annotations
                .get(oci::REPOSITORY)
                .is_some_and(|r| r.starts_with(prefix));
            if !ours || entry.artifact_type.as_deref() != Some(artifact_type) {
                continue;
            }
            let bytes = self.read_blob(&entry.digest)?;
            let manifest = oci::Manifest::parse(&bytes, Some(&entry.media_type)).map_err(|e| {
                StoreError::Io {
                    action: "invalid artifact manifest",
                    path: self.blob_path(&entry.digest),
                    source: io::Error::new(io::ErrorKind::InvalidData, e),
                }
            })?;
            let Some(config) = manifest.children.first() else {
                continue;
            };
            let config = self.read_blob(&config.digest)?;
            out.push((bytes, config));
        }
        Ok(out)
    }
}

/// Like `Store::reachable`, looking each blob up in the first of `stores` that has it
/// (a staging area in front of a target, say).
pub fn reachable_in(
    stores: &[&Store],
    root: &Desc,
) -> Result<Vec<(Desc, Option<oci::Manifest>)>, StoreError> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    visit(
        stores,
        root,
        &mut seen,
        &mut |d, m| out.push((d, m)),
        &|_| false,
        0,
    )?;
    Ok(out)
}

/// Walks what `root` reaches like `reachable_in`, skipping what `seen` already holds
/// (so many artifacts that share blobs are walked in time linear in the blobs), and
/// hands each new blob to `each`.
pub fn reachable_into(
    stores: &[&Store],
    root: &Desc,
    seen: &mut std::collections::HashSet<Digest>,
    each: &mut dyn FnMut(Desc, Option<oci::Manifest>),
) -> Result<(), StoreError> {
    visit(stores, root, seen, each, &|_| false, 0)
}

/// Like `reachable_into`, but a blob that is not a manifest and is in none of `stores`
/// is handed to `each` too when `elsewhere` says it is held elsewhere (an incremental
/// bundle's blobs that its target already holds). A missing manifest is still an error.
pub fn reachable_with(
    stores: &[&Store],
    root: &Desc,
    seen: &mut std::collections::HashSet<Digest>,
    elsewhere: &dyn Fn(&Desc) -> bool,
    each: &mut dyn FnMut(Desc, Option<oci::Manifest>),
) -> Result<(), StoreError> {
    visit(stores, root, seen, each, elsewhere, 0)
}

/// How deep manifests may nest (an index of indexes of manifests is 3): a chain deeper
/// than this is refused rather than walked (it could exhaust the stack).
pub const MAX_DEPTH: usize = 16;

fn visit(
    stores: &[&Store],
    desc: &Desc,
    seen: &mut std::collections::HashSet<Digest>,
    out: &mut dyn FnMut(Desc, Option<oci::Manifest>),
    elsewhere: &dyn Fn(&Desc) -> bool,
    depth: usize,
) -> Result<(), StoreError> {
    if depth > MAX_DEPTH {
        return Err(StoreError::TooDeep {
            digest: desc.digest,
        });
    }
    if !seen.insert(desc.digest) {
        return Ok(());
    }
    let Some(store) = stores.iter().find(|s| s.has_blob(&desc.digest, desc.size)) else {
        if !oci::is_manifest_type(&desc.media_type) && elsewhere(desc) {
            out(desc.clone(), None);
            return Ok(());
        }
        return Err(StoreError::Io {
            action: "missing or wrong-sized blob",
            path: stores[0].blob_path(&desc.digest),
            source: io::Error::from(io::ErrorKind::NotFound),
        });
    };
    if !oci::is_manifest_type(&desc.media_type) {
        out(desc.clone(), None);
        return Ok(());
    }
    let bytes = store.read_blob(&desc.digest)?;
    let manifest =
        oci::Manifest::parse(&bytes, Some(&desc.media_type)).map_err(|e| StoreError::Io {
            action: "invalid manifest",
            path: store.blob_path(&desc.digest),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
    for child in &manifest.children {
        visit(stores, child, seen, out, elsewhere, depth + 1)?;
    }
    out(desc.clone(), Some(manifest));
    Ok(())
}

/// Adds a tagged or untagged image to the entries. A tag moves to the new digest; an
/// untagged entry is added once per repository and digest.
///
/// Docker-typed manifests are listed under their OCI equivalent media type: OCI tools
/// (skopeo among them) resolve only OCI-typed entries of `index.json`. The manifest's own
/// `mediaType` field, which its digest covers, still says what it is, and ferry reads that.
pub fn upsert_entry(entries: &mut Vec<Desc>, repository: &str, tag: Option<&str>, desc: &Desc) {
    upsert_entries(entries, &[(repository, tag, desc.clone())]);
}

/// `upsert_entry` for many at once, in time linear in entries and items.
pub fn upsert_entries(entries: &mut Vec<Desc>, items: &[(&str, Option<&str>, Desc)]) {
    use std::collections::{HashMap, HashSet};
    let mut new: Vec<Desc> = Vec::with_capacity(items.len());
    // A tag named twice keeps the last: the position in `new` of each tagged name.
    let mut tagged: HashMap<String, usize> = HashMap::new();
    let mut untagged: HashSet<(Digest, String)> = HashSet::new();
    for (repository, tag, desc) in items {
        let mut entry = desc.clone();
        entry.platform = None;
        entry.media_type = match entry.media_type.as_str() {
            oci::DOCKER_LIST => oci::OCI_INDEX.to_string(),
            oci::DOCKER_MANIFEST => oci::OCI_MANIFEST.to_string(),
            other => other.to_string(),
        };
        entry.annotations.clear();
        entry
            .annotations
            .insert(oci::REPOSITORY.into(), repository.to_string());
        match tag {
            Some(tag) => {
                let name = format!("{repository}:{tag}");
                entry.annotations.insert(oci::REF_NAME.into(), name.clone());
                match tagged.get(&name) {
                    Some(&i) => new[i] = entry,
                    None => {
                        tagged.insert(name, new.len());
                        new.push(entry);
                    }
                }
            }
            None => {
                if untagged.insert((desc.digest, repository.to_string())) {
                    new.push(entry);
                }
            }
        }
    }
    entries.retain(|e| {
        e.annotations
            .get(oci::REF_NAME)
            .is_none_or(|n| !tagged.contains_key(n))
    });
    let present: HashSet<(Digest, &str)> = entries
        .iter()
        .chain(
            new.iter()
                .filter(|e| e.annotations.contains_key(oci::REF_NAME)),
        )
        .filter_map(|e| {
            e.annotations
                .get(oci::REPOSITORY)
                .map(|r| (e.digest, r.as_str()))
        })
        .collect();
    let keep: Vec<bool> = new
        .iter()
        .map(|e| {
            e.annotations.contains_key(oci::REF_NAME)
                || !present.contains(&(
                    e.digest,
                    e.annotations
                        .get(oci::REPOSITORY)
                        .map_or("", String::as_str),
                ))
        })
        .collect();
    drop(present);
    entries.extend(
        new.into_iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(e, _)| e),
    );
}

pub fn index_json(entries: &[Desc]) -> Vec<u8> {
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_INDEX,
        "manifests": entries.iter().map(Desc::to_json).collect::<Vec<_>>(),
    });
    let mut bytes = serde_json::to_vec_pretty(&doc).expect("index serialises");
    bytes.push(b'\n');
    bytes
}

/// A blob being written; nothing is visible in the store until `commit`.
pub struct BlobWriter {
    inner: Option<HashingWriter<BufWriter<WritebackFile>>>,
    path: PathBuf,
    keep_on_drop: bool,
    done: bool,
    /// Dropped after the fields above (declaration order): the partial file is settled
    /// before another writer may take it. Scratch writers need none.
    _lock: Option<PartialLock>,
}

/// Starts writing `len` bytes of `file` from `offset` (0 and 0: all of it) to the disk
/// without waiting, so that the disk works while more comes and the sync that makes them
/// durable finds little left to do. Only a hint: the sync is what makes data durable.
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: `file` is an open descriptor; the call reads no memory of ours.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// A file written start to end that starts the writeback of what it was given every
/// [`WRITEBACK_STEP`] (see `start_writeback`): for big outputs synced once at their end
/// (a bundle), so that the sync does not find the whole file still to write.
pub(crate) struct WritebackFile {
    file: File,
    written: u64,
    written_back: u64,
}

impl WritebackFile {
    pub(crate) fn new(file: File) -> WritebackFile {
        WritebackFile::at(file, 0)
    }

    /// For a file opened to append after `len` bytes already written.
    fn at(file: File, len: u64) -> WritebackFile {
        WritebackFile {
            file,
            written: len,
            written_back: len,
        }
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    fn into_file(self) -> File {
        self.file
    }
}

impl Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.written_back >= WRITEBACK_STEP {
            start_writeback(
                &self.file,
                self.written_back,
                self.written - self.written_back,
            );
            self.written_back = self.written;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// An exclusive lock on `<partial>.lock`, removed when released. A waiter that got the
/// lock on a file already removed tries again on the new one.
pub(crate) struct PartialLock {
    file: File,
    path: PathBuf,
}

impl PartialLock {
    /// The lock if nobody holds it, else `None` (without waiting).
    pub(crate) fn try_acquire(path: PathBuf) -> Result<Option<PartialLock>, StoreError> {
        PartialLock::lock(path, false)
    }

    /// The lock, waiting for whoever holds it.
    fn acquire(path: PathBuf) -> Result<PartialLock, StoreError> {
        Ok(PartialLock::lock(path, true)?.expect("a waiting lock is always taken"))
    }

    fn lock(path: PathBuf, wait: bool) -> Result<Option<PartialLock>, StoreError> {
        use std::os::unix::fs::MetadataExt;
        loop {
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io_err("cannot create", &path))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) if !wait => return Ok(None),
                Err(fs::TryLockError::WouldBlock) => {
                    let wait = || file.lock();
                    // In a multi-threaded runtime, let other tasks run while we wait.
                    let waited = match tokio::runtime::Handle::try_current() {
                        Ok(h)
                            if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
                        {
                            tokio::task::block_in_place(wait)
                        }
                        _ => wait(),
                    };
                    waited.map_err(io_err("cannot lock", &path))?;
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_err("cannot lock", &path)(e)),
            }
            let ours = file.metadata().map_err(io_err("cannot read", &path))?.ino();
            if fs::metadata(&path).is_ok_and(|m| m.ino() == ours) {
                return Ok(Some(PartialLock { file, path }));
            }
        }
    }
}

impl Drop for PartialLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// What a blob writer gathers before it writes: downloads run each in a task of its own
/// (`fetch::in_own_task`), several at once on several threads, so this is held several
/// times over.
const WRITE_BUFFER: usize = 256 << 10;

/// How often a blob being written starts the writeback of what it wrote.
const WRITEBACK_STEP: u64 = 8 << 20;

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.as_mut().expect("not committed").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.as_mut().expect("not committed").flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.done && !self.keep_on_drop {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl BlobWriter {
    /// Bytes written so far, including resumed ones.
    pub fn len(&self) -> u64 {
        self.inner.as_ref().map_or(0, HashingWriter::len)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops what was written (or resumed) and starts the blob again from zero, keeping
    /// the lock: a writer made anew here would wait on the lock this one holds.
    pub fn restart(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let old = self.inner.take().expect("not committed");
        let (buf, _, _) = old.finish();
        let file = buf
            .into_inner()
            .map_err(|e| io_err("cannot write", &path)(e.into_error()))?
            .into_file();
        file.set_len(0).map_err(io_err("cannot truncate", &path))?;
        let mut file = file;
        io::Seek::seek(&mut file, io::SeekFrom::Start(0)).map_err(io_err("cannot seek", &path))?;
        self.inner = Some(HashingWriter::resume(
            BufWriter::with_capacity(WRITE_BUFFER, WritebackFile::new(file)),
            Default::default(),
        ));
        Ok(())
    }

    /// Syncs and renames the blob into place under the digest its bytes have (the caller
    /// checked them against what it expected by other means).
    pub fn commit_as_is(mut self, store: &Store) -> Result<(Digest, u64), StoreError> {
        self.done = true;
        let path = self.path.clone();
        let (buf, actual, size) = self.inner.take().expect("committed once").finish();
        let file = buf
            .into_inner()
            .map_err(|e| io_err("cannot write", &path)(e.into_error()))?
            .into_file();
        file.sync_data().map_err(io_err("cannot sync", &path))?;
        let dest = store.blob_path(&actual);
        if let Err(e) = fs::rename(&path, &dest) {
            let _ = fs::remove_file(&path);
            return Err(io_err("cannot rename into", &dest)(e));
        }
        Ok((actual, size))
    }

    /// Checks digest and size, syncs, and renames the blob into place. On a mismatch the
    /// partial file is removed and the store is unchanged.
    pub fn commit(
        self,
        store: &Store,
        expected: &Digest,
        expected_size: u64,
        what: &str,
    ) -> Result<(), StoreError> {
        self.settle(store, expected, expected_size, what).map(drop)
    }

    /// Checks, syncs and renames the blob into place; its file, still open.
    fn settle(
        self,
        store: &Store,
        expected: &Digest,
        expected_size: u64,
        what: &str,
    ) -> Result<(File, PathBuf), StoreError> {
        let (file, deferred) = self.finish(store, expected, expected_size, what)?;
        file.sync_data()
            .map_err(io_err("cannot sync", &deferred.path))?;
        fs::rename(&deferred.path, &deferred.dest)
            .map_err(io_err("cannot rename into", &deferred.dest))?;
        Ok((file, deferred.dest.clone()))
    }

    /// `commit`, and the blob's file still open, read from its start: the very bytes
    /// this writer hashed, whatever is renamed over its name in the store afterwards.
    /// `None` when somebody else could have written into the file since (it has
    /// another link, another owner, or the group or others may write it): then a reader
    /// must take the blob by its name and hash it.
    pub fn commit_open(
        self,
        store: &Store,
        expected: &Digest,
        expected_size: u64,
        what: &str,
    ) -> Result<Option<File>, StoreError> {
        use std::io::Seek as _;
        use std::os::unix::fs::MetadataExt as _;
        let (mut file, dest) = self.settle(store, expected, expected_size, what)?;
        file.rewind().map_err(io_err("cannot read", &dest))?;
        let meta = file.metadata().map_err(io_err("cannot read", &dest))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let ours = meta.uid() == unsafe { libc::geteuid() };
        let private = meta.nlink() == 1 && ours && meta.mode() & 0o022 == 0;
        Ok((private && meta.len() == expected_size).then_some(file))
    }

    /// Checks digest and size and closes the file, unsynced, for a [`Batch`].
    fn check(
        self,
        store: &Store,
        expected: &Digest,
        expected_size: u64,
        what: &str,
    ) -> Result<Deferred, StoreError> {
        self.finish(store, expected, expected_size, what)
            .map(|(_, deferred)| deferred)
    }

    fn finish(
        mut self,
        store: &Store,
        expected: &Digest,
        expected_size: u64,
        what: &str,
    ) -> Result<(File, Deferred), StoreError> {
        self.done = true;
        let path = self.path.clone();
        let (buf, actual, actual_size) = self.inner.take().expect("committed once").finish();
        let file = buf
            .into_inner()
            .map(WritebackFile::into_file)
            .map_err(|e| io_err("cannot write", &path)(e.into_error()));
        // From here the partial file is the deferred's to remove if it is not renamed.
        let deferred = Deferred {
            path: path.clone(),
            dest: store.blob_path(expected),
            _lock: self._lock.take(),
        };
        if actual != *expected || actual_size != expected_size {
            return Err(StoreError::DigestMismatch {
                what: what.to_string(),
                expected: *expected,
                expected_size,
                actual,
                actual_size,
            });
        }
        Ok((file?, deferred))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file a download hands on unhashed is one nobody else can write: a name left
    /// at the partial path (a link to somebody's file) is replaced, not written through,
    /// and a file with a second link is not handed on.
    #[test]
    fn a_checked_file_is_handed_on_only_when_nobody_else_can_write_it() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(&dir.path().join("s")).unwrap();
        let bytes = b"layer bytes".to_vec();
        let digest = Digest::of(&bytes);
        let partial = store.state_dir().join("partial");
        fs::create_dir_all(&partial).unwrap();
        let theirs = dir.path().join("theirs");
        fs::write(&theirs, b"somebody's").unwrap();
        fs::hard_link(&theirs, partial.join(digest.hex())).unwrap();
        let mut w = store.blob_writer(&digest, false).unwrap();
        w.write_all(&bytes).unwrap();
        let mut file = w
            .commit_open(&store, &digest, bytes.len() as u64, "layer")
            .unwrap()
            .expect("a file of its own");
        assert_eq!(fs::read(&theirs).unwrap(), b"somebody's");
        let meta = file.metadata().unwrap();
        assert_eq!((meta.nlink(), meta.mode() & 0o022), (1, 0));
        let mut got = Vec::new();
        file.read_to_end(&mut got).unwrap();
        assert_eq!(got, bytes);

        // A second link made while it was written: taken by its name, hashed.
        let other = b"other layer".to_vec();
        let other_digest = Digest::of(&other);
        let mut w = store.blob_writer(&other_digest, false).unwrap();
        w.write_all(&other).unwrap();
        fs::hard_link(partial.join(other_digest.hex()), dir.path().join("kept")).unwrap();
        let handed = w
            .commit_open(&store, &other_digest, other.len() as u64, "layer")
            .unwrap();
        assert!(handed.is_none(), "a file others can write was handed on");
        assert!(store.has_blob(&other_digest, other.len() as u64));
    }

    /// Two writers of one store in crossed order, as two pulls sharing it: another
    /// process (a thread here: flock locks of two opens conflict) holds Y and waits for
    /// X, while one task of ours holds X in one download and wants Y in another. Waiting
    /// for Y must not hold up the download that will let X go.
    #[test]
    fn a_download_waiting_for_a_lock_lets_the_others_of_its_task_finish() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(&dir.path().join("s")).unwrap();
        let (x, y) = (Digest::of(b"x"), Digest::of(b"y"));
        let (done, finished) = std::sync::mpsc::channel();
        let (holds_y, y_held) = std::sync::mpsc::channel();
        let (wants_x, go) = std::sync::mpsc::channel();
        let other = store.clone();
        std::thread::spawn(move || {
            let y_writer = other.blob_writer(&y, false).unwrap();
            holds_y.send(()).unwrap();
            go.recv().unwrap();
            let x_writer = other.blob_writer(&x, false).unwrap();
            drop((x_writer, y_writer));
        });
        y_held.recv().unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            rt.block_on(async {
                let first = async {
                    let w = store.blob_writer_when_free(&x, false).await.unwrap();
                    wants_x.send(()).unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    drop(w);
                };
                let second = async {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    drop(store.blob_writer_when_free(&y, false).await.unwrap());
                };
                tokio::join!(first, second);
            });
            let _ = done.send(());
        });
        assert!(
            finished
                .recv_timeout(std::time::Duration::from_secs(20))
                .is_ok(),
            "the writers stopped each other"
        );
    }

    #[test]
    fn a_batch_shows_nothing_until_its_commit_and_nothing_at_all_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(&dir.path().join("s")).unwrap();
        let partials = || {
            fs::read_dir(store.state_dir().join("partial"))
                .map(|d| d.count())
                .unwrap_or(0)
        };
        let (a, b) = (b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec());
        let (da, db) = (Digest::of(&a), Digest::of(&b));

        let mut batch = store.batch();
        batch.put_blob(&a, &da, "a").unwrap();
        batch.put_blob(&a, &da, "a again").unwrap(); // once, not a wait on its own lock
        batch.put_blob(&b, &db, "b").unwrap();
        assert!(!store.has_blob(&da, a.len() as u64) && !store.has_blob(&db, b.len() as u64));
        drop(batch);
        assert!(!store.has_blob(&da, a.len() as u64) && !store.has_blob(&db, b.len() as u64));
        assert_eq!(
            partials(),
            0,
            "a dropped batch leaves partial files or locks"
        );

        let mut batch = store.batch();
        batch.put_blob(&a, &da, "a").unwrap();
        // A blob that is not what it claims is refused at once and leaves nothing.
        let err = batch.put_blob(&b, &da, "b as a").unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        let other = Digest::of(b"other");
        let err = batch.put_blob(&b, &other, "b as other").unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        batch.put_blob(&b, &db, "b").unwrap();
        batch.commit().unwrap();
        assert!(!store.has_blob(&other, b.len() as u64));
        assert_eq!(store.read_blob(&da).unwrap(), a);
        assert_eq!(store.read_blob(&db).unwrap(), b);
        assert_eq!(partials(), 0);
    }

    #[test]
    fn a_blob_written_past_several_writeback_steps_and_restarted_commits_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(&dir.path().join("s")).unwrap();
        let data: Vec<u8> = (0..(2 * WRITEBACK_STEP as usize + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let digest = Digest::of(&data);
        let mut writer = store.blob_writer(&digest, false).unwrap();
        // A first attempt that goes past one step, then starts again from zero.
        for chunk in data[..WRITEBACK_STEP as usize + 4096].chunks(65536) {
            writer.write_all(chunk).unwrap();
        }
        writer.restart().unwrap();
        for chunk in data.chunks(65536) {
            writer.write_all(chunk).unwrap();
        }
        writer
            .commit(&store, &digest, data.len() as u64, "test")
            .unwrap();
        assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), data);
    }

    #[test]
    fn a_store_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        // What a creation killed mid-way leaves beside the store: removed, not kept.
        let staging = dir.path().join(".s.ferry-creating");
        fs::create_dir_all(staging.join("blobs/sha256")).unwrap();
        fs::write(staging.join("junk"), b"x").unwrap();
        let store = Store::open_or_create(&dir.path().join("s")).unwrap();
        assert!(store.root().join("oci-layout").is_file());
        assert!(!staging.exists());

        // An empty directory is filled; a symlink to one stays a symlink.
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        Store::open_or_create(&empty).unwrap();
        assert!(empty.join("oci-layout").is_file());
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let store = Store::open_or_create(&link).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(real.join("oci-layout").is_file());
        assert!(Store::open(store.root()).is_ok());
    }

    #[test]
    fn a_creation_killed_before_oci_layout_is_finished_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        fs::write(
            root.join("index.json"),
            b"{\"schemaVersion\":2,\"manifests\":[]}",
        )
        .unwrap();
        fs::write(root.join(".tmpAbC123"), b"{").unwrap();
        let store = Store::open_or_create(&root).unwrap();
        assert!(store.root().join("oci-layout").is_file());

        // Anything else in it, and it is not ferry's to take over.
        let other = dir.path().join("o");
        fs::create_dir_all(other.join("blobs/sha256")).unwrap();
        fs::write(other.join("notes.txt"), b"mine").unwrap();
        assert!(matches!(
            Store::open_or_create(&other),
            Err(StoreError::NotAStore { .. })
        ));
        let blob = dir.path().join("b");
        fs::create_dir_all(blob.join("blobs/sha256")).unwrap();
        fs::write(blob.join("blobs/sha256").join("a".repeat(64)), b"x").unwrap();
        assert!(Store::open_or_create(&blob).is_err());
    }

    #[test]
    fn blobs_are_checked_before_they_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(&dir.path().join("s")).unwrap();
        let good = Digest::of(b"abc");
        let mut w = store.blob_writer(&good, false).unwrap();
        w.write_all(b"abd").unwrap();
        assert!(w.commit(&store, &good, 3, "t").is_err());
        assert!(!store.has_blob(&good, 3));
        store.put_blob(b"abc", &good, "t").unwrap();
        assert!(store.has_blob(&good, 3));
        assert_eq!(store.read_blob(&good).unwrap(), b"abc");
        assert!(
            fs::read_dir(store.state_dir().join("partial"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn tags_move_and_untagged_entries_are_unique() {
        let d1 = Desc {
            media_type: oci::OCI_MANIFEST.into(),
            digest: Digest::of(b"1"),
            size: 1,
            platform: None,
            artifact_type: None,
            annotations: Default::default(),
        };
        let d2 = Desc {
            digest: Digest::of(b"2"),
            ..d1.clone()
        };
        let mut entries = Vec::new();
        upsert_entry(&mut entries, "a/b", Some("v1"), &d1);
        upsert_entry(&mut entries, "a/b", Some("v1"), &d2);
        upsert_entry(&mut entries, "a/b", None, &d1);
        upsert_entry(&mut entries, "a/b", None, &d1);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].digest, d2.digest);
    }
}
