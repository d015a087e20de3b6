//! Store management: what a store holds (`store ls`), taking entries out (`store rm`),
//! removing blobs nothing references (`store gc`) and checking every blob and reference
//! (`store check`). Store content is not trusted: names are shown escaped, every walk is
//! bounded (`store::MAX_DEPTH`), and `gc` refuses to run on a store whose references it
//! cannot all follow, so a damaged index never makes it delete what something needs.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::oci::{self, Desc};
use crate::store::{Store, StoreError};

/// The annotation of an `index.json` entry naming the bundle that placed it there
/// (`SERIES-SEQUENCE`, as the SBOM tags are named).
pub const BUNDLE: &str = "dev.ferry.bundle";

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the store has no entry {reference}")]
    NoSuchEntry { reference: String },
    #[error(
        "`{0}` is not a reference: give REPOSITORY:TAG, REPOSITORY@sha256:DIGEST or REPOSITORY"
    )]
    BadReference(String),
    #[error("a pull or an import is using store {path} now")]
    Busy { path: PathBuf },
    #[error(
        "the store has {count} problem(s); gc removes nothing from a store it cannot fully read"
    )]
    Damaged { count: usize },
    #[error("{count} problem(s) in store {path}")]
    CheckFailed { path: PathBuf, count: usize },
}

impl crate::exit::Classify for InventoryError {
    fn exit_status(&self) -> crate::exit::ExitStatus {
        use crate::exit::ExitStatus;
        match self {
            InventoryError::Store(e) => e.exit_status(),
            InventoryError::BadReference(_) => ExitStatus::Usage,
            InventoryError::CheckFailed { .. } | InventoryError::Damaged { .. } => {
                ExitStatus::Verification
            }
            _ => ExitStatus::Error,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            InventoryError::NoSuchEntry { .. } => {
                Some("`ferry store ls` lists what the store holds".into())
            }
            InventoryError::Busy { .. } => {
                Some("run gc again when the pull or import has ended".into())
            }
            InventoryError::Damaged { .. } => Some(
                "`ferry store check` lists the problems; import the bundle that brought the damaged entry again, or `ferry store rm` it"
                    .into(),
            ),
            InventoryError::CheckFailed { .. } => Some(
                "import the bundles that brought the damaged entries again (`import --force`), or `ferry store rm` them and gc"
                    .into(),
            ),
            InventoryError::Store(e) => e.hint(),
            _ => None,
        }
    }
}

/// One `index.json` entry, as `store ls` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    pub ecosystem: &'static str,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: String,
    /// Every blob it reaches, each once; None when its graph cannot be followed.
    pub size: Option<u64>,
    pub blobs: Option<usize>,
    /// The bundle that placed it (`SERIES-SEQUENCE`); None for what `pull` fetched or an
    /// import before ferry recorded it.
    pub bundle: Option<String>,
    /// Why its graph cannot be followed, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Every entry of the store with what it reaches.
pub fn list(store: &Store) -> Result<Vec<Listed>, StoreError> {
    let mut out = Vec::new();
    for e in store.entries()? {
        let mut seen = HashSet::new();
        let mut size = 0u64;
        let walked = crate::store::reachable_into(&[store], &e, &mut seen, &mut |d, _| {
            size = size.saturating_add(d.size);
        });
        let mut listed = Listed::of(&e);
        match walked {
            Ok(()) => (listed.size, listed.blobs) = (Some(size), Some(seen.len())),
            Err(err) => listed.problem = Some(err.to_string()),
        }
        out.push(listed);
    }
    Ok(out)
}

impl Listed {
    /// An entry as listed, before its graph is walked.
    fn of(e: &Desc) -> Listed {
        let (repository, tag) = name_of(e);
        Listed {
            ecosystem: crate::report::store::ecosystem_of(
                &repository,
                e.artifact_type.as_deref(),
                &e.media_type,
            ),
            repository,
            tag,
            digest: e.digest.to_string(),
            size: None,
            blobs: None,
            bundle: e.annotations.get(BUNDLE).cloned(),
            problem: None,
        }
    }
}

/// An entry's repository and tag, from its annotations.
pub fn name_of(e: &Desc) -> (String, Option<String>) {
    let repository = e
        .annotations
        .get(oci::REPOSITORY)
        .cloned()
        .unwrap_or_default();
    let tag = e.annotations.get(oci::REF_NAME).map(|n| {
        n.strip_prefix(&format!("{repository}:"))
            .unwrap_or(n)
            .to_string()
    });
    (repository, tag)
}

/// What `store rm` takes: `REPO:TAG`, `REPO@sha256:HEX`, or `REPO` (every entry of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String, String),
    Digest(String, Digest),
    Repository(String),
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, InventoryError> {
        let bad = || InventoryError::BadReference(s.to_string());
        if let Some((repo, digest)) = s.split_once('@') {
            let digest: Digest = digest.parse().map_err(|_| bad())?;
            return oci::valid_repository(repo)
                .then(|| Reference::Digest(repo.to_string(), digest))
                .ok_or_else(bad);
        }
        // The tag follows the last colon after the last slash (a repository has no colon).
        let last = s.rsplit('/').next().unwrap_or(s);
        if let Some((_, tag)) = last.rsplit_once(':') {
            let repo = &s[..s.len() - tag.len() - 1];
            return (oci::valid_repository(repo) && valid_tag(tag))
                .then(|| Reference::Tag(repo.to_string(), tag.to_string()))
                .ok_or_else(bad);
        }
        oci::valid_repository(s)
            .then(|| Reference::Repository(s.to_string()))
            .ok_or_else(bad)
    }

    fn matches(&self, e: &Desc) -> bool {
        let (repository, tag) = name_of(e);
        match self {
            Reference::Tag(r, t) => *r == repository && tag.as_deref() == Some(t.as_str()),
            Reference::Digest(r, d) => *r == repository && e.digest == *d,
            Reference::Repository(r) => *r == repository,
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(r, t) => write!(f, "{r}:{t}"),
            Reference::Digest(r, d) => write!(f, "{r}@{d}"),
            Reference::Repository(r) => write!(f, "{r}"),
        }
    }
}

/// The OCI tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && t.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Takes the entries `reference` names out of `index.json` (their blobs stay until
/// `gc`); returns what was removed.
pub fn remove(store: &Store, reference: &Reference) -> Result<Vec<Listed>, InventoryError> {
    let removed = store.update_entries(|entries| {
        let (gone, kept): (Vec<Desc>, Vec<Desc>) =
            entries.drain(..).partition(|e| reference.matches(e));
        *entries = kept;
        gone
    })?;
    if removed.is_empty() {
        return Err(InventoryError::NoSuchEntry {
            reference: reference.to_string(),
        });
    }
    Ok(removed.iter().map(Listed::of).collect())
}

/// A hold on the store against `gc`: pulls and imports take it shared for as long as
/// they write blobs that no entry names yet; `gc` takes it alone.
pub struct Hold(#[allow(dead_code)] File);

fn hold_file(store_root: &Path) -> Result<File, StoreError> {
    let dir = store_root.join(".ferry");
    std::fs::create_dir_all(&dir).map_err(|e| StoreError::from_io("cannot create", &dir, e))?;
    let path = dir.join("gc.lock");
    File::create(&path).map_err(|e| StoreError::from_io("cannot create", &path, e))
}

/// Taken by pulls and imports into a store (shared: they do not wait for each other).
pub fn hold(store_root: &Path) -> Result<Hold, StoreError> {
    let file = hold_file(store_root)?;
    file.lock_shared()
        .map_err(|e| StoreError::from_io("cannot lock", &store_root.join(".ferry/gc.lock"), e))?;
    Ok(Hold(file))
}

/// What `gc` did (or, with `dry_run`, would do).
#[derive(Debug, Default, serde::Serialize)]
pub struct Collected {
    pub removed: Vec<String>,
    pub removed_bytes: u64,
    pub kept: usize,
    pub kept_bytes: u64,
}

/// Removes every blob no entry reaches. Refused while a pull or import holds the store
/// (they write blobs before entries name them) and when an entry cannot be followed (its
/// blobs would look unreferenced). Only files named as digests are considered.
pub fn gc(store: &Store, dry_run: bool) -> Result<Collected, InventoryError> {
    let file = hold_file(store.root())?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(InventoryError::Busy {
                path: store.root().to_path_buf(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(StoreError::from_io(
                "cannot lock",
                &store.root().join(".ferry/gc.lock"),
                e,
            )
            .into());
        }
    }
    let entries = store.entries()?;
    let mut seen = HashSet::new();
    let mut problems = 0;
    for e in &entries {
        if crate::store::reachable_into(&[store], e, &mut seen, &mut |_, _| {}).is_err() {
            problems += 1;
        }
    }
    if problems > 0 {
        return Err(InventoryError::Damaged { count: problems });
    }
    let mut out = Collected::default();
    for (digest, path, size) in blob_files(store)? {
        if seen.contains(&digest) {
            out.kept += 1;
            out.kept_bytes += size;
            continue;
        }
        if !dry_run {
            std::fs::remove_file(&path)
                .map_err(|e| StoreError::from_io("cannot remove", &path, e))?;
        }
        out.removed.push(digest.to_string());
        out.removed_bytes += size;
    }
    drop(file);
    Ok(out)
}

/// Every file of `blobs/sha256` named as a digest, with its size (anything else there,
/// such as a temporary file, is not a blob and left alone).
fn blob_files(store: &Store) -> Result<Vec<(Digest, PathBuf, u64)>, StoreError> {
    let dir = store.root().join("blobs/sha256");
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(&dir).map_err(|e| StoreError::from_io("cannot read", &dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::from_io("cannot read", &dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !crate::escape::is_lower_hex(name, 64) {
            continue;
        }
        let Ok(digest) = Digest::from_hex(name) else {
            continue;
        };
        let meta = entry
            .metadata()
            .map_err(|e| StoreError::from_io("cannot read", &entry.path(), e))?;
        if meta.is_file() {
            out.push((digest, entry.path(), meta.len()));
        }
    }
    out.sort_by_key(|(d, _, _)| *d);
    Ok(out)
}

/// What `store check` found.
#[derive(Debug, Default, serde::Serialize)]
pub struct Checked {
    pub blobs: usize,
    pub bytes: u64,
    pub entries: usize,
    /// Each problem, in words: a blob whose content is not its name, an entry whose
    /// graph reaches a missing, wrong-sized or invalid blob.
    pub problems: Vec<String>,
}

/// Hashes every blob against its name and follows every entry's references.
pub fn check(store: &Store) -> Result<Checked, StoreError> {
    let mut out = Checked::default();
    let mut damaged: BTreeMap<Digest, String> = BTreeMap::new();
    for (digest, path, size) in blob_files(store)? {
        out.blobs += 1;
        out.bytes += size;
        match hash_file(&path) {
            Ok(actual) if actual == digest => {}
            Ok(actual) => {
                damaged.insert(digest, format!("blob {digest} holds content of {actual}"));
            }
            Err(e) => {
                damaged.insert(digest, format!("blob {digest} cannot be read: {e}"));
            }
        }
    }
    out.problems.extend(damaged.values().cloned());
    for e in store.entries()? {
        out.entries += 1;
        let (repository, tag) = name_of(&e);
        let name = match &tag {
            Some(t) => format!("{}:{}", shown(&repository), shown(t)),
            None => format!("{}@{}", shown(&repository), e.digest),
        };
        let mut seen = HashSet::new();
        let mut reaches_damaged = Vec::new();
        let walked = crate::store::reachable_into(&[store], &e, &mut seen, &mut |d, _| {
            if damaged.contains_key(&d.digest) {
                reaches_damaged.push(d.digest);
            }
        });
        if let Err(err) = walked {
            out.problems.push(format!("{name}: {err}"));
        }
        for d in reaches_damaged {
            out.problems
                .push(format!("{name} reaches the damaged blob {d}"));
        }
    }
    Ok(out)
}

fn hash_file(path: &Path) -> std::io::Result<Digest> {
    let mut reader = crate::digest::HashingReader::new(File::open(path)?);
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok(reader.finish().0)
}

/// A name from the store as it may be printed: control characters escaped.
pub fn shown(s: &str) -> String {
    if crate::escape::has_control(s) {
        s.escape_debug().to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_as_store_rm_takes_them() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            Reference::parse("e2e/multi:v1").unwrap(),
            Reference::Tag("e2e/multi".into(), "v1".into())
        );
        assert_eq!(
            Reference::parse(&format!("e2e/multi@{d}")).unwrap(),
            Reference::Digest("e2e/multi".into(), d.parse().unwrap())
        );
        assert_eq!(
            Reference::parse("python/six").unwrap(),
            Reference::Repository("python/six".into())
        );
        for bad in [
            "",
            ":v1",
            "e2e/multi:",
            "e2e/multi:-v1",
            "E2E/multi:v1",
            "e2e/../x:v1",
            "e2e/multi@sha256:zz",
            "e2e multi",
            "e2e/multi:v1\n",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
