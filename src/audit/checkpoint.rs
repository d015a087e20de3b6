//! Signed checkpoints of an audit log: a small JSON statement ("this log held N records,
//! the Nth hashing to HEAD") beside the log as `<log>.checkpoint`, signed with a site
//! key in minisign's format (`<log>.checkpoint.minisig`, so `minisign -V` checks it
//! without ferry). A log checked against a checkpoint shows what its chain alone cannot:
//! that records up to the checkpoint were cut off, or that the log up to it was
//! rewritten from scratch.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::exit::{Classify, ExitStatus};
use crate::sign::{PublicKey, SecretKey, SignatureError, SignatureFile};

use super::{AuditError, Entry};

/// The `format` of a checkpoint statement.
pub const FORMAT: &str = "dev.ferry.audit-checkpoint.v1";
/// A statement and a signature are a few hundred bytes: read at most this much of one.
const MAX_FILE: u64 = 4 << 10;

/// What a checkpoint states, in the order it is written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checkpoint {
    pub format: String,
    /// How many records the log held.
    pub records: u64,
    /// The sha256 of the last of them (`sha256:<hex>`, as the next `prev` would be).
    pub head: String,
    /// When it was signed (RFC 3339).
    pub time: String,
    /// The key that signed it.
    pub key_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("audit log {path} holds no records: there is nothing to checkpoint")]
    EmptyLog { path: PathBuf },
    #[error("no checkpoint at {path}")]
    Missing { path: PathBuf },
    #[error("checkpoint {path} has no signature beside it ({signature})")]
    Unsigned { path: PathBuf, signature: PathBuf },
    #[error("cannot read checkpoint {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write checkpoint {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {path} does not verify")]
    Signature {
        path: PathBuf,
        #[source]
        source: SignatureError,
    },
    #[error("checkpoint {path} is not an audit checkpoint: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "the checkpoint signed by {key_id} at {time} covers {records} records; the log {log} holds {held}: the newest records were deleted"
    )]
    Cut {
        log: PathBuf,
        key_id: String,
        time: String,
        records: u64,
        held: usize,
    },
    #[error(
        "record {record} of {log} differs from the one the checkpoint signed by {key_id} at {time}: the log up to it was rewritten"
    )]
    Differs {
        log: PathBuf,
        record: u64,
        key_id: String,
        time: String,
    },
}

impl Classify for CheckpointError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            CheckpointError::Read { .. } | CheckpointError::Write { .. } => ExitStatus::Error,
            // An empty log where records were expected may be one cut to nothing.
            CheckpointError::EmptyLog { .. }
            | CheckpointError::Missing { .. }
            | CheckpointError::Unsigned { .. }
            | CheckpointError::Signature { .. }
            | CheckpointError::Malformed { .. }
            | CheckpointError::Cut { .. }
            | CheckpointError::Differs { .. } => ExitStatus::Verification,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            CheckpointError::EmptyLog { .. } => Some(
                "checkpoint a log after ferry has written to it (bundle create, bundle sign, import)".into(),
            ),
            CheckpointError::Missing { .. } => Some(
                "make one with `ferry audit checkpoint --key SITE.key`, or pass the copy kept elsewhere with --checkpoint FILE (its .minisig beside it); a missing checkpoint may have been deleted to hide a cut log".into(),
            ),
            CheckpointError::Unsigned { .. } => Some(
                "a checkpoint counts only with its signature: put the .minisig kept with it beside it".into(),
            ),
            CheckpointError::Signature {
                source: SignatureError::UntrustedKey { .. },
                ..
            } => Some(
                "pass the site key that signs checkpoints with --trust, after checking it out of band; a checkpoint by any other key proves nothing".into(),
            ),
            CheckpointError::Signature { .. } | CheckpointError::Malformed { .. } => Some(
                "the checkpoint or its signature was altered or replaced: compare it with the copy kept elsewhere".into(),
            ),
            CheckpointError::Cut { .. } | CheckpointError::Differs { .. } => Some(
                "restore the log from a backup or compare it with a copy kept elsewhere; treat what it says up to the checkpoint as unproven".into(),
            ),
            CheckpointError::Read { .. } | CheckpointError::Write { .. } => None,
        }
    }
}

/// `<log>.checkpoint`: where a log's checkpoint is written.
pub fn path_for(log: &Path) -> PathBuf {
    with_suffix(log, ".checkpoint")
}

/// `<checkpoint>.minisig`: its signature.
pub fn signature_path(checkpoint: &Path) -> PathBuf {
    with_suffix(checkpoint, ".minisig")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// A checkpoint just written.
#[derive(Debug)]
pub struct Written {
    pub checkpoint: Checkpoint,
    /// The statement's exact bytes, as signed.
    pub text: String,
    pub path: PathBuf,
    pub signature: PathBuf,
}

/// Under the log's lock: verifies its chain, writes a checkpoint of it signed by `key`
/// (statement, then signature, each atomically), then appends a `checkpoint` record.
/// A crash between the two files leaves a pair that does not verify, never a valid
/// checkpoint of a log it does not describe; running the command again repairs it.
pub fn write(log: &Path, key: &SecretKey) -> Result<Written, AuditError> {
    let locked = super::lock(log)?;
    let entries = super::verify(log)?;
    let last = entries.last().ok_or_else(|| CheckpointError::EmptyLog {
        path: log.to_path_buf(),
    })?;
    let checkpoint = Checkpoint {
        format: FORMAT.into(),
        records: entries.len() as u64,
        head: last.hash.to_string(),
        time: crate::trust::now_rfc3339(),
        key_id: key.id.to_string(),
    };
    let mut bytes = serde_json::to_vec_pretty(&checkpoint).expect("a checkpoint serialises");
    bytes.push(b'\n');
    let comment = format!(
        "ferry audit checkpoint records={} head={} time={}",
        checkpoint.records, checkpoint.head, checkpoint.time
    );
    let signature_text = key.sign(&bytes, &comment);
    let path = path_for(log);
    let signature = signature_path(&path);
    for (file, content) in [(&path, &bytes[..]), (&signature, signature_text.as_bytes())] {
        super::replace(file, |tmp| tmp.write_all(content)).map_err(|source| {
            CheckpointError::Write {
                path: file.clone(),
                source,
            }
        })?;
    }
    super::append_locked(
        &locked,
        log,
        serde_json::json!({
            "action": "checkpoint",
            "records": checkpoint.records,
            "head": checkpoint.head,
            "keyId": checkpoint.key_id,
        }),
    )?;
    Ok(Written {
        text: String::from_utf8(bytes).expect("JSON is UTF-8"),
        checkpoint,
        path,
        signature,
    })
}

/// Checks the checkpoint at `path` (its signature beside it) against `trusted`, then
/// the verified `entries` of `log` against it: the log must hold at least the records
/// it covers, and the last of them must hash to its `head`. The signature is checked
/// before the statement is parsed.
pub fn check(
    log: &Path,
    entries: &[Entry],
    path: &Path,
    trusted: &[PublicKey],
) -> Result<Checkpoint, CheckpointError> {
    let signature_path = signature_path(path);
    let bytes = read_small(path)?.ok_or_else(|| CheckpointError::Missing {
        path: path.to_path_buf(),
    })?;
    let signature_bytes =
        read_small(&signature_path)?.ok_or_else(|| CheckpointError::Unsigned {
            path: path.to_path_buf(),
            signature: signature_path.clone(),
        })?;
    let not_verified = |source| CheckpointError::Signature {
        path: path.to_path_buf(),
        source,
    };
    let signature_text = String::from_utf8(signature_bytes)
        .map_err(|_| not_verified(SignatureError::Malformed("not text".into())))?;
    let signature = SignatureFile::parse(&signature_text).map_err(not_verified)?;
    let key = trusted
        .iter()
        .find(|k| k.id == signature.key_id)
        .ok_or_else(|| {
            not_verified(SignatureError::UntrustedKey {
                found: signature.key_id.to_string(),
                trusted: trusted
                    .iter()
                    .map(|k| k.id.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        })?;
    key.verify(&bytes, &signature).map_err(not_verified)?;

    let malformed = |reason: String| CheckpointError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let checkpoint: Checkpoint =
        serde_json::from_slice(&bytes).map_err(|e| malformed(format!("it does not parse: {e}")))?;
    if checkpoint.format != FORMAT {
        return Err(malformed(format!(
            "its format is {:?}, not {FORMAT:?}",
            checkpoint.format
        )));
    }
    if checkpoint.key_id != signature.key_id.to_string() {
        return Err(malformed(format!(
            "it names key {} but was signed by key {}",
            checkpoint.key_id, signature.key_id
        )));
    }
    let head: Digest = checkpoint
        .head
        .parse()
        .map_err(|e: crate::digest::BadDigest| malformed(e.to_string()))?;
    if checkpoint.records == 0 {
        return Err(malformed("it covers no records".into()));
    }
    let covered = usize::try_from(checkpoint.records)
        .ok()
        .and_then(|n| entries.get(n - 1));
    match covered {
        None => Err(CheckpointError::Cut {
            log: log.to_path_buf(),
            key_id: checkpoint.key_id,
            time: checkpoint.time,
            records: checkpoint.records,
            held: entries.len(),
        }),
        Some(entry) if entry.hash != head => Err(CheckpointError::Differs {
            log: log.to_path_buf(),
            record: checkpoint.records,
            key_id: checkpoint.key_id,
            time: checkpoint.time,
        }),
        Some(_) => Ok(checkpoint),
    }
}

/// A file's bytes, at most [`MAX_FILE`]; `None` when it does not exist.
fn read_small(path: &Path) -> Result<Option<Vec<u8>>, CheckpointError> {
    let read = |source| CheckpointError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(CheckpointError::Malformed {
            path: path.to_path_buf(),
            reason: "it is larger than any checkpoint or signature".into(),
        });
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(n: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::super::FILE);
        for i in 0..n {
            super::super::append(&path, serde_json::json!({"action": "test", "i": i})).unwrap();
        }
        (dir, path)
    }

    fn check_log(log: &Path, trusted: &[PublicKey]) -> Result<Checkpoint, CheckpointError> {
        let entries = super::super::verify(log).unwrap();
        check(log, &entries, &path_for(log), trusted)
    }

    #[test]
    fn a_checkpoint_covers_the_log_and_is_recorded_in_it() {
        let (_dir, log) = log_with(3);
        let key = SecretKey::for_tests(1);
        let written = write(&log, &key).unwrap();
        assert_eq!(written.checkpoint.records, 3);
        assert_eq!(written.checkpoint.key_id, key.id.to_string());
        assert_eq!(
            std::fs::read_to_string(&written.path).unwrap(),
            written.text
        );
        let entries = super::super::verify(&log).unwrap();
        assert_eq!(entries.len(), 4);
        assert_eq!(written.checkpoint.head, entries[2].hash.to_string());
        assert_eq!(entries[3].record["action"], "checkpoint");
        assert_eq!(entries[3].record["records"], 3);
        assert_eq!(
            check_log(&log, &[key.public()]).unwrap(),
            written.checkpoint
        );
        // Later records do not matter to it.
        super::super::append(&log, serde_json::json!({"action": "later"})).unwrap();
        check_log(&log, &[key.public()]).unwrap();
    }

    #[test]
    fn a_shorter_or_rewritten_log_or_a_foreign_key_fails() {
        let (_dir, log) = log_with(3);
        let key = SecretKey::for_tests(1);
        write(&log, &key).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        std::fs::write(&log, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
        match check_log(&log, &[key.public()]) {
            Err(
                e @ CheckpointError::Cut {
                    records: 3,
                    held: 2,
                    ..
                },
            ) => {
                assert!(e.to_string().contains("covers 3 records"), "{e}");
                assert!(e.to_string().contains("holds 2"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(&log, &text).unwrap();
        assert!(matches!(
            check_log(&log, &[SecretKey::for_tests(2).public()]),
            Err(CheckpointError::Signature {
                source: SignatureError::UntrustedKey { .. },
                ..
            })
        ));
        // Rewritten from scratch: a valid chain of three records, but not the same.
        std::fs::remove_file(&log).unwrap();
        for i in 0..3 {
            super::super::append(&log, serde_json::json!({"action": "forged", "i": i})).unwrap();
        }
        assert!(matches!(
            check_log(&log, &[key.public()]),
            Err(CheckpointError::Differs { record: 3, .. })
        ));
    }

    #[test]
    fn an_edited_statement_or_an_empty_log_is_refused() {
        let (_dir, log) = log_with(2);
        let key = SecretKey::for_tests(1);
        write(&log, &key).unwrap();
        let statement = path_for(&log);
        let text = std::fs::read_to_string(&statement).unwrap();
        std::fs::write(&statement, text.replace("\"records\": 2", "\"records\": 1")).unwrap();
        assert!(matches!(
            check_log(&log, &[key.public()]),
            Err(CheckpointError::Signature {
                source: SignatureError::Invalid { .. },
                ..
            })
        ));
        std::fs::remove_file(signature_path(&statement)).unwrap();
        assert!(matches!(
            check_log(&log, &[key.public()]),
            Err(CheckpointError::Unsigned { .. })
        ));
        std::fs::remove_file(&statement).unwrap();
        assert!(matches!(
            check_log(&log, &[key.public()]),
            Err(CheckpointError::Missing { .. })
        ));

        let (_dir, empty) = log_with(0);
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(
            write(&empty, &key),
            Err(AuditError::Checkpoint(CheckpointError::EmptyLog { .. }))
        ));
        assert!(!path_for(&empty).exists());
    }
}
