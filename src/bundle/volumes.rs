//! Volumes: a bundle written as `NAME.ferry.001`, `.002`, ... of at most a fixed size
//! each, for media of a fixed size. The one zstd stream is cut at arbitrary bytes, so
//! `cat NAME.ferry.0?? | zstd -dc` is still the tar. A small index,
//! `NAME.ferry.volumes.json`, names every volume's size and sha256 and the digest of the
//! bundle manifest, and is signed with the creator's key (`NAME.ferry.volumes.json.minisig`
//! beside it, checkable with `minisign -V`). It is written last: a set without it is not
//! finished.
//!
//! Readers take the path of any volume, of the index, or the name without a suffix, and
//! look for the others beside it and in the `--volumes` folders (one per mounted medium),
//! in any order. Before anything is read, every volume must be found with the size the
//! index gives (else exit 3 naming each one missing); each is hashed as it streams and
//! one whose bytes differ is named. File names come from the name the reader was given
//! and the volume's number, never from the index.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::exit::{Classify, ExitStatus};
use crate::sign::{KeyId, SecretKey, SignatureFile};

use super::signers::Trust;

/// The `format` of the volume index this version writes and reads.
pub const INDEX_FORMAT: &str = "dev.ferry.volumes.v1";
/// Volume numbers have three digits.
pub const MAX_VOLUMES: usize = 999;
/// Smaller volumes make no sense on any medium and would make a set of thousands.
pub const MIN_VOLUME_SIZE: u64 = 64 * 1024;
const MAX_INDEX_SIZE: u64 = 1 << 20;
const MAX_SIGNATURE_SIZE: u64 = super::MAX_SIGNATURE_SIZE;

/// `NAME.ferry.volumes.json`: what a set of volumes is, signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeIndex {
    pub format: String,
    /// sha256 (hex) of the bundle manifest the volumes carry.
    pub manifest_sha256: String,
    pub series: String,
    pub sequence: u64,
    /// The `--split` size: every volume but the last is exactly this long.
    pub volume_size: u64,
    pub volumes: Vec<VolumeEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeEntry {
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "{} is part of split bundle {bundle}, but its index {bundle}.volumes.json is in none of: {}",
        given.display(),
        list_paths(searched)
    )]
    NoIndex {
        given: PathBuf,
        bundle: String,
        searched: Vec<PathBuf>,
    },
    #[error("volume index {} is not one ferry reads: {reason}", path.display())]
    BadIndex { path: PathBuf, reason: String },
    #[error("volume index {} is not signed by a trusted key: {reason}", path.display())]
    IndexSignature { path: PathBuf, reason: String },
    #[error("{} of {count} volumes not found (looked in: {}): {}", missing.len(), list_paths(searched), missing.join("; "))]
    Missing {
        count: usize,
        missing: Vec<String>,
        searched: Vec<PathBuf>,
    },
    #[error("volume {number} of {count} ({}) is damaged: {reason}", path.display())]
    Damaged {
        number: usize,
        count: usize,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "the volumes' index names bundle manifest sha256:{index}, but volume 1 holds sha256:{actual}: the volumes are of another bundle"
    )]
    OtherBundle { index: String, actual: String },
    #[error("{split} would need more than {MAX_VOLUMES} volumes: choose a larger --split")]
    TooMany { split: u64 },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Classify for VolumeError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            VolumeError::Io { .. } | VolumeError::TooMany { .. } => ExitStatus::Error,
            _ => ExitStatus::Verification,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            VolumeError::NoIndex { .. } => Some(
                "copy NAME.ferry.volumes.json and its .minisig (written beside the volumes) onto the medium, or pass the folder that holds them with --volumes DIR".into(),
            ),
            VolumeError::Missing { .. } => Some(
                "mount the media that hold them and pass each folder with --volumes DIR (repeatable); nothing was written".into(),
            ),
            VolumeError::Damaged { .. } => Some(
                "copy that volume again from the connected side (its sha256 is in the signed index); nothing was written".into(),
            ),
            VolumeError::OtherBundle { .. } => Some(
                "volumes and index of different bundles are mixed in these folders: keep each set apart".into(),
            ),
            VolumeError::BadIndex { .. } | VolumeError::IndexSignature { .. } => Some(
                "the index was altered, or is of another site: fetch it again from its source".into(),
            ),
            _ => None,
        }
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// `4GiB`, `25GB`, `4.7GB`, `700MB`, `1048576`: decimal (kB, MB, GB, TB) and binary
/// (KiB, MiB, GiB, TiB) units, case-insensitive, a fraction allowed; at least 64 KiB.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit_bytes: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown unit `{other}` (use kB, MB, GB, TB, KiB, MiB, GiB or TiB)"
            ));
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || fraction.len() > 9 {
        return Err(format!(
            "`{text}` is not a size such as 4GiB, 25GB or 4.7GB"
        ));
    }
    let parse = |s: &str| -> Result<u128, String> {
        if s.is_empty() {
            return Ok(0);
        }
        s.parse::<u128>()
            .map_err(|_| format!("`{text}` is not a size such as 4GiB, 25GB or 4.7GB"))
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction = parse(fraction)?;
    let scaled = parse(whole)?
        .checked_mul(scale)
        .and_then(|w| w.checked_add(fraction))
        .and_then(|n| n.checked_mul(unit_bytes))
        .ok_or_else(|| format!("`{text}` is too large"))?;
    let bytes = u64::try_from(scaled / scale).map_err(|_| format!("`{text}` is too large"))?;
    if bytes < MIN_VOLUME_SIZE {
        return Err(format!(
            "`{text}` is less than the smallest volume ({MIN_VOLUME_SIZE} bytes, 64KiB)"
        ));
    }
    Ok(bytes)
}

/// `NAME.ferry.007` for volume 7 of `NAME.ferry`.
pub fn volume_name(bundle_name: &OsStr, number: usize) -> std::ffi::OsString {
    let mut name = bundle_name.to_os_string();
    name.push(format!(".{number:03}"));
    name
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn index_path(bundle: &Path) -> PathBuf {
    with_suffix(bundle, ".volumes.json")
}

fn signature_path(index: &Path) -> PathBuf {
    with_suffix(index, ".minisig")
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

// --- writing ---------------------------------------------------------------------------

/// The output side: the zstd stream goes into `NAME.ferry.NNN.partial` files of `size`
/// bytes each, hashed as they are written; `commit` renames them into place and writes
/// the signed index last.
pub struct VolumeWriter {
    bundle: PathBuf,
    size: u64,
    current: Option<(crate::store::WritebackFile, Hasher)>,
    written: Vec<(PathBuf, VolumeEntry)>,
}

impl VolumeWriter {
    pub fn new(bundle: &Path, size: u64) -> VolumeWriter {
        VolumeWriter {
            bundle: bundle.to_path_buf(),
            size,
            current: None,
            written: Vec::new(),
        }
    }

    fn partial(&self, number: usize) -> PathBuf {
        let name = volume_name(self.bundle.file_name().unwrap_or_default(), number);
        with_suffix(&self.bundle.with_file_name(name), ".partial")
    }

    fn close_current(&mut self) -> io::Result<()> {
        if let Some((file, hasher)) = self.current.take() {
            file.file().sync_all()?;
            let (digest, size) = hasher.finish();
            let path = self.partial(self.written.len() + 1);
            self.written.push((
                path,
                VolumeEntry {
                    size,
                    sha256: digest.hex(),
                },
            ));
        }
        Ok(())
    }

    /// Renames the volumes into place, signs the index and writes it last; removes
    /// what an earlier bundle of this name left (a single file, more volumes).
    pub fn commit(
        mut self,
        manifest_digest: &Digest,
        series: &str,
        sequence: u64,
        key: &SecretKey,
    ) -> Result<PathBuf, VolumeError> {
        let last = self.partial(self.written.len() + 1);
        self.close_current()
            .map_err(io_err("cannot write", &last))?;
        let index = VolumeIndex {
            format: INDEX_FORMAT.into(),
            manifest_sha256: manifest_digest.hex(),
            series: series.into(),
            sequence,
            volume_size: self.size,
            volumes: self.written.iter().map(|(_, e)| e.clone()).collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&index).expect("index serialises");
        bytes.push(b'\n');
        let comment = format!(
            "ferry volumes series={series} sequence={sequence} count={} manifest-sha256={}",
            index.volumes.len(),
            manifest_digest.hex()
        );
        let signature = key.sign(&bytes, &comment);
        let index_file = index_path(&self.bundle);
        let signature_file = signature_path(&index_file);
        // An old index never describes new volumes: it goes first.
        for old in [&index_file, &signature_file] {
            remove_if_present(old)?;
        }
        let bundle_name = self.bundle.file_name().unwrap_or_default().to_os_string();
        for (n, (partial, _)) in self.written.iter().enumerate() {
            let done = self.bundle.with_file_name(volume_name(&bundle_name, n + 1));
            fs::rename(partial, &done).map_err(io_err("cannot rename into", &done))?;
        }
        write_atomic(&signature_file, signature.as_bytes())?;
        write_atomic(&index_file, &bytes)?;
        remove_if_present(&self.bundle)?;
        remove_volumes_from(&self.bundle, self.written.len() + 1)?;
        sync_dir(dir_of(&self.bundle))?;
        self.written.clear();
        Ok(index_file)
    }
}

impl Write for VolumeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self
            .current
            .as_ref()
            .is_some_and(|(_, h)| h.len() >= self.size)
        {
            self.close_current()?;
        }
        if self.current.is_none() {
            if self.written.len() == MAX_VOLUMES {
                return Err(io::Error::other(VolumeError::TooMany { split: self.size }));
            }
            let path = self.partial(self.written.len() + 1);
            self.current = Some((
                crate::store::WritebackFile::new(File::create(&path)?),
                Hasher::default(),
            ));
        }
        let (file, hasher) = self.current.as_mut().expect("a volume is open");
        let room = (self.size - hasher.len()).min(buf.len() as u64) as usize;
        let n = file.write(&buf[..room])?;
        hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some((file, _)) => file.flush(),
            None => Ok(()),
        }
    }
}

/// Removes the `OUT.NNN.partial` files a failed write left.
pub fn remove_partials(bundle: &Path) {
    let name = bundle.file_name().unwrap_or_default();
    for n in 1..=MAX_VOLUMES {
        let path = with_suffix(&bundle.with_file_name(volume_name(name, n)), ".partial");
        if fs::remove_file(&path).is_err() {
            break;
        }
    }
}

/// What a bundle written whole leaves of an earlier split one of the same name: the
/// index, its signature and the volumes.
pub fn remove_set(bundle: &Path) -> Result<(), VolumeError> {
    let index = index_path(bundle);
    remove_if_present(&index)?;
    remove_if_present(&signature_path(&index))?;
    remove_volumes_from(bundle, 1)
}

fn remove_volumes_from(bundle: &Path, first: usize) -> Result<(), VolumeError> {
    let name = bundle.file_name().unwrap_or_default();
    for n in first..=MAX_VOLUMES {
        let path = bundle.with_file_name(volume_name(name, n));
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {
                fs::remove_file(&path).map_err(io_err("cannot remove", &path))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(io_err("cannot read", &path)(e)),
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), VolumeError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() || m.file_type().is_symlink() => {
            fs::remove_file(path).map_err(io_err("cannot remove", path))
        }
        _ => Ok(()),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), VolumeError> {
    let dir = dir_of(path);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err("cannot write in", dir))?;
    tmp.write_all(bytes).map_err(io_err("cannot write", path))?;
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(io_err("cannot write", path))?;
    tmp.as_file()
        .sync_all()
        .map_err(io_err("cannot sync", path))?;
    tmp.persist(path)
        .map_err(|e| io_err("cannot write", path)(e.error))?;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), VolumeError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot sync", dir))
}

// --- reading ---------------------------------------------------------------------------

/// A set of volumes found from the path a reader was given.
#[derive(Debug, Clone)]
pub struct Set {
    /// `DIR/NAME.ferry`, DIR being where the index is: the name the bundle goes by
    /// (co-signatures sit beside it).
    pub bundle: PathBuf,
    pub index: VolumeIndex,
    index_path: PathBuf,
    index_bytes: Vec<u8>,
    signature: Result<SignatureFile, String>,
    /// Where each volume was found (the first folder holding one of the right size).
    located: Vec<Option<PathBuf>>,
    searched: Vec<PathBuf>,
}

/// What `path` names: `Ok(None)` for a bundle in one file (or nothing at all: opening
/// it then says so), `Ok(Some(set))` for a split one.
pub fn find(path: &Path, volume_dirs: &[PathBuf]) -> Result<Option<Set>, VolumeError> {
    let Some(name) = path.file_name().and_then(OsStr::to_str) else {
        return Ok(None);
    };
    #[derive(PartialEq)]
    enum Named {
        Bundle,
        Volume,
        Index,
    }
    let (bundle_name, named) = match name.strip_suffix(".volumes.json") {
        Some(base) => (base, Named::Index),
        None => match name.rsplit_once('.') {
            Some((base, n)) if n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()) => {
                (base, Named::Volume)
            }
            _ => (name, Named::Bundle),
        },
    };
    if bundle_name.is_empty() || named == Named::Bundle && path.is_file() {
        return Ok(None);
    }
    let mut searched: Vec<PathBuf> = vec![dir_of(path).to_path_buf()];
    for d in volume_dirs {
        if !searched.contains(d) {
            searched.push(d.clone());
        }
    }
    let bundle_name = OsStr::new(bundle_name);
    let Some(dir) = searched
        .iter()
        .find(|d| index_path(&d.join(bundle_name)).is_file())
    else {
        // A file named like a volume, alone, may be a bundle in one file (or a set of
        // one volume, which is): read as such. Beside others, it is part of a set.
        let others = |n: usize| {
            searched
                .iter()
                .any(|d| d.join(volume_name(bundle_name, n)).exists())
        };
        let alone = named == Named::Volume && path.is_file() && !others(2);
        if alone {
            return Ok(None);
        }
        if named != Named::Bundle || others(1) {
            return Err(VolumeError::NoIndex {
                given: path.to_path_buf(),
                bundle: bundle_name.to_string_lossy().into_owned(),
                searched,
            });
        }
        return Ok(None);
    };
    let bundle = dir.join(bundle_name);
    let index_path = index_path(&bundle);
    let index_bytes = read_bounded(&index_path, MAX_INDEX_SIZE)?;
    let index: VolumeIndex =
        serde_json::from_slice(&index_bytes).map_err(|e| VolumeError::BadIndex {
            path: index_path.clone(),
            reason: e.to_string(),
        })?;
    check_index(&index).map_err(|reason| VolumeError::BadIndex {
        path: index_path.clone(),
        reason,
    })?;
    let signature_path = signature_path(&index_path);
    let signature = read_bounded(&signature_path, MAX_SIGNATURE_SIZE)
        .map_err(|e| e.to_string())
        .and_then(|b| String::from_utf8(b).map_err(|_| "is not text".to_string()))
        .and_then(|t| SignatureFile::parse(&t).map_err(|e| e.to_string()))
        .map_err(|e| format!("{}: {e}", signature_path.display()));
    let located = index
        .volumes
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let name = volume_name(bundle_name, i + 1);
            let candidates: Vec<PathBuf> = searched
                .iter()
                .map(|d| d.join(&name))
                .filter(|p| p.is_file())
                .collect();
            let right_size = candidates
                .iter()
                .find(|p| fs::metadata(p).is_ok_and(|m| m.len() == v.size));
            right_size.or(candidates.first()).cloned()
        })
        .collect();
    Ok(Some(Set {
        bundle,
        index,
        index_path,
        index_bytes,
        signature,
        located,
        searched,
    }))
}

fn check_index(index: &VolumeIndex) -> Result<(), String> {
    if index.format != INDEX_FORMAT {
        return Err(format!(
            "format `{}`, this ferry reads `{INDEX_FORMAT}` (made by a newer ferry?)",
            index.format
        ));
    }
    let n = index.volumes.len();
    if n == 0 || n > MAX_VOLUMES {
        return Err(format!("{n} volumes (1 to {MAX_VOLUMES})"));
    }
    Digest::from_hex(&index.manifest_sha256).map_err(|e| e.0)?;
    for (i, v) in index.volumes.iter().enumerate() {
        Digest::from_hex(&v.sha256).map_err(|e| format!("volume {}: {}", i + 1, e.0))?;
        let full = i + 1 < n;
        if (full && v.size != index.volume_size) || v.size == 0 || v.size > index.volume_size {
            return Err(format!(
                "volume {} is {} bytes; every volume but the last is {} and none is empty",
                i + 1,
                v.size,
                index.volume_size
            ));
        }
    }
    Ok(())
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, VolumeError> {
    let file = File::open(path).map_err(io_err("cannot open", path))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("cannot read", path))?;
    if bytes.len() as u64 > max {
        return Err(VolumeError::BadIndex {
            path: path.to_path_buf(),
            reason: format!("more than {max} bytes"),
        });
    }
    Ok(bytes)
}

impl Set {
    pub fn count(&self) -> usize {
        self.index.volumes.len()
    }

    fn describe(&self, number: usize) -> String {
        format!(
            "{} (volume {number}, {} bytes)",
            volume_name(self.bundle.file_name().unwrap_or_default(), number).to_string_lossy(),
            self.index.volumes[number - 1].size
        )
    }

    /// Every volume is there with the size the index gives: checked before reading.
    pub fn check_present(&self) -> Result<(), VolumeError> {
        let missing: Vec<String> = (1..=self.count())
            .filter(|n| self.located[n - 1].is_none())
            .map(|n| self.describe(n))
            .collect();
        if !missing.is_empty() {
            return Err(VolumeError::Missing {
                count: self.count(),
                missing,
                searched: self.searched.clone(),
            });
        }
        for (i, (path, v)) in self.located.iter().zip(&self.index.volumes).enumerate() {
            let path = path.as_ref().expect("checked above");
            let len = fs::metadata(path)
                .map_err(io_err("cannot read", path))?
                .len();
            if len != v.size {
                return Err(self.damaged(
                    i + 1,
                    format!("it is {len} bytes, the signed index says {}", v.size),
                ));
            }
        }
        Ok(())
    }

    fn damaged(&self, number: usize, reason: String) -> VolumeError {
        VolumeError::Damaged {
            number,
            count: self.count(),
            path: self.located[number - 1]
                .clone()
                .unwrap_or_else(|| self.bundle.with_file_name(self.describe(number))),
            reason,
        }
    }

    /// The index is signed by a key `trust` holds.
    pub fn check_signature(&self, trust: &Trust<'_>) -> Result<(), VolumeError> {
        let refuse = |reason: String| VolumeError::IndexSignature {
            path: self.index_path.clone(),
            reason,
        };
        let sig = self.signature.as_ref().map_err(|e| refuse(e.clone()))?;
        let key = trust.trusted_key(sig.key_id).ok_or_else(|| {
            refuse(format!(
                "signed by key {}, which the trust given does not hold",
                sig.key_id
            ))
        })?;
        key.verify(&self.index_bytes, sig)
            .map_err(|e| refuse(e.to_string()))
    }

    /// The key that signed the index, as its signature claims (unverified).
    pub fn signer(&self) -> Option<KeyId> {
        self.signature.as_ref().ok().map(|s| s.key_id)
    }

    /// The manifest volume 1 begins with is the one the index names.
    pub fn check_manifest(&self, manifest: &Digest) -> Result<(), VolumeError> {
        if manifest.hex() != self.index.manifest_sha256 {
            return Err(VolumeError::OtherBundle {
                index: self.index.manifest_sha256.clone(),
                actual: manifest.hex(),
            });
        }
        Ok(())
    }
}

/// The volumes as one stream, each checked against the index as it ends. Clones share
/// the position: `VolumeStream::finish` reads on from where the decoder stopped.
#[derive(Clone)]
pub struct VolumeStream {
    state: Rc<RefCell<State>>,
}

struct State {
    set: Set,
    /// 0-based number of the volume being read.
    current: usize,
    file: Option<File>,
    hasher: Hasher,
    /// The problem a read reported, for the caller to name.
    failed: Option<VolumeError>,
}

impl VolumeStream {
    pub fn new(set: Set) -> VolumeStream {
        VolumeStream {
            state: Rc::new(RefCell::new(State {
                set,
                current: 0,
                file: None,
                hasher: Hasher::default(),
                failed: None,
            })),
        }
    }

    pub fn bundle(&self) -> PathBuf {
        self.state.borrow().set.bundle.clone()
    }

    pub fn with_set<T>(&self, f: impl FnOnce(&Set) -> T) -> T {
        f(&self.state.borrow().set)
    }

    /// The problem behind a failed read, when a volume is: the one a read reported, or
    /// (for an error the bytes caused, found before the volume ended) the volume being
    /// read if its bytes do not match the index.
    pub fn explain(&self) -> Option<VolumeError> {
        let mut state = self.state.borrow_mut();
        if let Some(e) = state.failed.take() {
            return Some(e);
        }
        let number = state.current + 1;
        if number > state.set.count() {
            return None;
        }
        let path = state.set.located[state.current].clone()?;
        let mut hasher = match state.file {
            Some(_) => state.hasher.clone(),
            None => Hasher::default(),
        };
        let mut file = File::open(&path).ok()?;
        file.seek(io::SeekFrom::Start(hasher.len())).ok()?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(_) => return None,
            }
        }
        state.check_end(hasher).err()
    }

    /// Reads what the decoder left (the end of the stream), so every volume's sha256
    /// is checked, and that there is nothing after the last.
    pub fn finish(&self) -> Result<(), VolumeError> {
        let mut reader = self.clone();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => {
                    return Err(self.explain().unwrap_or_else(|| VolumeError::Io {
                        action: "read",
                        path: self.bundle(),
                        source: e,
                    }));
                }
            }
        }
    }
}

impl State {
    /// The volume being read ended with `hasher`: its size and sha256 are the index's.
    fn check_end(&self, hasher: Hasher) -> Result<(), VolumeError> {
        let number = self.current + 1;
        let expected = &self.set.index.volumes[self.current];
        let (digest, len) = hasher.finish();
        if len != expected.size {
            return Err(self.set.damaged(
                number,
                format!("it is {len} bytes, the signed index says {}", expected.size),
            ));
        }
        if digest.hex() != expected.sha256 {
            return Err(self.set.damaged(
                number,
                format!(
                    "its sha256 is {}, the signed index says {}",
                    digest.hex(),
                    expected.sha256
                ),
            ));
        }
        Ok(())
    }

    fn fail(&mut self, e: VolumeError) -> io::Error {
        let text = e.to_string();
        self.failed = Some(e);
        io::Error::other(text)
    }
}

impl Read for VolumeStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut state = self.state.borrow_mut();
        loop {
            if state.current == state.set.count() {
                return Ok(0);
            }
            if state.file.is_none() {
                let number = state.current + 1;
                let Some(path) = state.set.located[state.current].clone() else {
                    let e = VolumeError::Missing {
                        count: state.set.count(),
                        missing: vec![state.set.describe(number)],
                        searched: state.set.searched.clone(),
                    };
                    return Err(state.fail(e));
                };
                match File::open(&path) {
                    Ok(f) => state.file = Some(f),
                    Err(e) => return Err(state.fail(io_err("cannot open", &path)(e))),
                }
                state.hasher = Hasher::default();
            }
            let expected = state.set.index.volumes[state.current].size;
            let n = state.file.as_mut().expect("opened above").read(buf)?;
            if n == 0 {
                let hasher = std::mem::take(&mut state.hasher);
                if let Err(e) = state.check_end(hasher) {
                    return Err(state.fail(e));
                }
                state.file = None;
                state.current += 1;
                continue;
            }
            state.hasher.update(&buf[..n]);
            if state.hasher.len() > expected {
                let number = state.current + 1;
                let e = state.set.damaged(
                    number,
                    format!("it is longer than the {expected} bytes the signed index says"),
                );
                return Err(state.fail(e));
            }
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_decimal_and_binary_units() {
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("25GB").unwrap(), 25_000_000_000);
        assert_eq!(parse_size("4.7GB").unwrap(), 4_700_000_000);
        assert_eq!(parse_size("4.7gb").unwrap(), 4_700_000_000);
        assert_eq!(parse_size("1.5MiB").unwrap(), 3 << 19);
        assert_eq!(parse_size("700 MB").unwrap(), 700_000_000);
        assert_eq!(parse_size("65536").unwrap(), 65536);
        for bad in [
            "",
            "GB",
            "4.7.1GB",
            "4 GBytes",
            "-1GB",
            "1e9",
            "65535",
            "60kB",
            "0.5KiB",
            "99999999999999999999TB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn an_index_that_ferry_never_writes_is_refused() {
        let good = VolumeIndex {
            format: INDEX_FORMAT.into(),
            manifest_sha256: "a".repeat(64),
            series: "s".into(),
            sequence: 1,
            volume_size: 100_000,
            volumes: vec![
                VolumeEntry {
                    size: 100_000,
                    sha256: "b".repeat(64),
                },
                VolumeEntry {
                    size: 5,
                    sha256: "c".repeat(64),
                },
            ],
        };
        assert!(check_index(&good).is_ok());
        let mut short_middle = good.clone();
        short_middle.volumes[0].size = 99_999;
        let mut empty_last = good.clone();
        empty_last.volumes[1].size = 0;
        let mut none = good.clone();
        none.volumes.clear();
        let mut bad_hash = good.clone();
        bad_hash.volumes[1].sha256 = "../../etc/passwd".into();
        let mut newer = good.clone();
        newer.format = "dev.ferry.volumes.v2".into();
        for bad in [short_middle, empty_last, none, bad_hash, newer] {
            assert!(check_index(&bad).is_err(), "{bad:?} was accepted");
        }
    }
}
