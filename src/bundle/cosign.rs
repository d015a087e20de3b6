//! Co-signatures beside a bundle: `B.ferry.<KEYID>.minisig`, one minisign signature of
//! the bundle's manifest bytes per key, so approving never rewrites the payload and
//! `cp B.ferry* /media` carries them. Names that do not match the pattern are ignored;
//! a file that matches is read without following links or blocking on a FIFO, and at most
//! [`MAX_SIGNATURE_SIZE`] bytes of it, and anything wrong with it is reported with the
//! file, never trusted.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::MAX_SIGNATURE_SIZE;
use crate::sign::{KeyId, SignatureFile};

/// More matching files than this beside one bundle is refused (each costs a read and a
/// signature check).
pub const MAX_DETACHED: usize = 256;

/// A `B.ferry.<KEYID>.minisig` file, read and parsed (or why not).
#[derive(Debug)]
pub struct Detached {
    pub path: PathBuf,
    /// The key id its name gives.
    pub named: KeyId,
    pub signature: Result<SignatureFile, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    #[error("cannot list the signatures beside {bundle} in {dir}")]
    List {
        bundle: PathBuf,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("more than {MAX_DETACHED} detached signature files beside {bundle}")]
    TooMany { bundle: PathBuf },
    #[error("cannot write signature {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{bundle} does not name a file")]
    NoFileName { bundle: PathBuf },
}

impl crate::exit::Classify for CosignError {
    fn exit_status(&self) -> crate::exit::ExitStatus {
        match self {
            CosignError::TooMany { .. } => crate::exit::ExitStatus::Verification,
            CosignError::NoFileName { .. } => crate::exit::ExitStatus::Usage,
            _ => crate::exit::ExitStatus::Error,
        }
    }
}

/// `B.ferry.<KEYID>.minisig` beside `bundle`.
pub fn path_for(bundle: &Path, id: KeyId) -> Result<PathBuf, CosignError> {
    let name = bundle.file_name().ok_or_else(|| CosignError::NoFileName {
        bundle: bundle.to_path_buf(),
    })?;
    let mut file = OsString::from(name);
    file.push(format!(".{id}.minisig"));
    Ok(bundle.with_file_name(file))
}

/// The key id in `candidate` if it is `<bundle_name>.<16 upper-case hex>.minisig`.
pub fn parse_name(bundle_name: &OsStr, candidate: &OsStr) -> Option<KeyId> {
    let bundle_name = bundle_name.to_str()?;
    let middle = candidate
        .to_str()?
        .strip_prefix(bundle_name)?
        .strip_prefix('.')?
        .strip_suffix(".minisig")?;
    let upper = middle
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
    if !upper {
        return None;
    }
    KeyId::parse(middle).filter(|id| id.to_string() == middle)
}

fn dir_of(bundle: &Path) -> &Path {
    match bundle.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Every co-signature file beside `bundle`, sorted by name.
pub fn find(bundle: &Path) -> Result<Vec<Detached>, CosignError> {
    let Some(bundle_name) = bundle.file_name() else {
        return Ok(Vec::new());
    };
    let dir = dir_of(bundle);
    let list_err = |source| CosignError::List {
        bundle: bundle.to_path_buf(),
        dir: dir.to_path_buf(),
        source,
    };
    let mut named = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list_err)? {
        let entry = entry.map_err(list_err)?;
        if let Some(id) = parse_name(bundle_name, &entry.file_name()) {
            if named.len() == MAX_DETACHED {
                return Err(CosignError::TooMany {
                    bundle: bundle.to_path_buf(),
                });
            }
            // Beside the bundle as the caller spelled it (not `./NAME`).
            named.push((bundle.with_file_name(entry.file_name()), id));
        }
    }
    named.sort();
    Ok(named
        .into_iter()
        .map(|(path, named)| {
            let signature = read_signature(&path, named);
            Detached {
                path,
                named,
                signature,
            }
        })
        .collect())
}

/// Reads one file: not a link, a regular file, small, text, a minisign signature by
/// the key its name gives.
fn read_signature(path: &Path, named: KeyId) -> Result<SignatureFile, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "is a symbolic link (not followed)".to_string(),
            _ => format!("cannot be read: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.len() > MAX_SIGNATURE_SIZE {
        return Err(format!(
            "is {} bytes, more than a signature ({MAX_SIGNATURE_SIZE} at most)",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SIGNATURE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_SIGNATURE_SIZE {
        return Err("grew while it was read".into());
    }
    let text = String::from_utf8(bytes).map_err(|_| "is not text".to_string())?;
    let sig = SignatureFile::parse(&text).map_err(|e| e.to_string())?;
    if sig.key_id != named {
        return Err(format!(
            "is named for key {named} but holds a signature by key {}",
            sig.key_id
        ));
    }
    Ok(sig)
}

/// Writes `text` as the co-signature of `id` beside `bundle`, atomically (a temporary
/// file in the same directory, renamed over any earlier signature by the same key).
pub fn write(bundle: &Path, id: KeyId, text: &str) -> Result<PathBuf, CosignError> {
    let path = path_for(bundle, id)?;
    let werr = |source| CosignError::Write {
        path: path.clone(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".ferry-sign-")
        .tempfile_in(dir_of(bundle))
        .map_err(werr)?;
    tmp.write_all(text.as_bytes()).map_err(werr)?;
    tmp.as_file().sync_all().map_err(werr)?;
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(werr)?;
    tmp.persist(&path).map_err(|e| werr(e.error))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let id = KeyId([1, 2, 3, 4, 5, 6, 7, 0xab]);
        let b = OsStr::new("app.ferry");
        let good = format!("app.ferry.{id}.minisig");
        assert_eq!(parse_name(b, OsStr::new(&good)), Some(id));
        assert_eq!(
            path_for(Path::new("d/app.ferry"), id).unwrap(),
            Path::new("d").join(&good)
        );
        for bad in [
            "app.ferry.minisig".to_string(),
            format!("app.ferry.{}.minisig", id.to_string().to_lowercase()),
            format!("app.ferry..{id}.minisig"),
            format!("app.ferry.{id}.minisig.tmp"),
            format!("other.ferry.{id}.minisig"),
            "app.ferry.../../etc/passwd.minisig".into(),
            "app.ferry.0123456789ABCDE.minisig".into(),
            "app.ferry.0123456789ABCDEF0.minisig".into(),
            "app.ferry.+123456789ABCDEF.minisig".into(),
        ] {
            assert_eq!(parse_name(b, OsStr::new(&bad)), None, "{bad}");
        }
    }
}
