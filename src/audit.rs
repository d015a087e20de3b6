//! The audit log: what crossed, when, by whom, as JSON lines that each hold the sha256 of
//! the line before them (`prev`) and a running number (`seq`), so an edited, removed,
//! reordered or truncated record breaks the chain at that record.
//!
//! Every `bundle create` (and a create a policy denied) appends to the log of its store;
//! `bundle sign` to the signer's own log; every `import`, and every refused import, to
//! the log of its target: `<store>/.ferry/audit.jsonl`, or the registry target's state
//! directory. Appends are serialised by a lock beside the log and reach the disk before
//! the command reports success.
//!
//! What the chain does not show on its own: that the newest records were cut off (the
//! shorter log is a valid chain). Compare `ferry audit show`'s last `seq` and hash with a
//! copy kept elsewhere.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::exit::{Classify, ExitStatus};

/// The log's file name inside a state directory.
pub const FILE: &str = "audit.jsonl";
/// The longest record accepted when reading (a record is small; this bounds a hostile log).
const MAX_RECORD: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot write audit log {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read audit log {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit log {path} is broken at record {record} (line {record}): {reason}")]
    Broken {
        path: PathBuf,
        record: usize,
        reason: String,
    },
}

impl Classify for AuditError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            AuditError::Broken { .. } => ExitStatus::Verification,
            _ => ExitStatus::Error,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            AuditError::Broken { .. } => Some(
                "the log was edited, cut or reordered at that record: compare it with a copy kept elsewhere and treat what follows as unproven".into(),
            ),
            _ => None,
        }
    }
}

/// The `prev` of the first record.
fn genesis() -> String {
    format!("sha256:{}", "0".repeat(64))
}

/// Who and where: the user and host an auditor sees on every record.
fn actor() -> (String, String) {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions and cannot fail.
            format!("uid {}", unsafe { libc::getuid() })
        });
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    (user, host)
}

/// Appends `record` (an object: `action` and what it did) to the log at `path`, with
/// `seq`, `prev`, `time`, `user` and `host` set here.
pub fn append(path: &Path, record: serde_json::Value) -> Result<(), AuditError> {
    let write = |source| AuditError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(write)?;
    }
    let lock_path = lock_path(path);
    let lock = File::create(&lock_path).map_err(write)?;
    lock.lock().map_err(write)?;
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(write)?;
    let (seq, prev) = match last_line(&mut file).map_err(write)? {
        None => (1, genesis()),
        Some(line) => {
            let v: serde_json::Value =
                serde_json::from_slice(&line).map_err(|e| AuditError::Broken {
                    path: path.to_path_buf(),
                    record: 0,
                    reason: format!("its last record does not parse ({e}); nothing was appended"),
                })?;
            let seq = v["seq"].as_u64().unwrap_or(0);
            (seq + 1, Digest::of(&line).to_string())
        }
    };
    let (user, host) = actor();
    let mut full = serde_json::json!({
        "seq": seq,
        "prev": prev,
        "time": crate::trust::now_rfc3339(),
        "user": user,
        "host": host,
    });
    if let (Some(full), serde_json::Value::Object(rest)) = (full.as_object_mut(), record) {
        for (k, v) in rest {
            full.entry(k).or_insert(v);
        }
    }
    let mut line = serde_json::to_vec(&full).expect("a record serialises");
    line.push(b'\n');
    file.write_all(&line).map_err(write)?;
    file.sync_all().map_err(write)?;
    Ok(())
}

fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// The last complete line (without its newline), read backwards from the end. A log
/// whose last byte is not a newline was cut mid-record: that is reported as broken by
/// `verify`, and appending after it is refused here by the parse of that fragment.
fn last_line(file: &mut File) -> std::io::Result<Option<Vec<u8>>> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    let mut end = len;
    let mut tail: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 4096];
    // Skip the final newline, then collect bytes back to the previous one.
    let mut first = true;
    while end > 0 {
        let n = chunk.len().min(end as usize);
        end -= n as u64;
        file.seek(SeekFrom::Start(end))?;
        file.read_exact(&mut chunk[..n])?;
        let mut part = &chunk[..n];
        if first {
            if part.last() == Some(&b'\n') {
                part = &part[..part.len() - 1];
            }
            first = false;
        }
        match part.iter().rposition(|b| *b == b'\n') {
            Some(i) => {
                let mut line = part[i + 1..].to_vec();
                line.extend_from_slice(&tail);
                return Ok(Some(line));
            }
            None => {
                let mut joined = part.to_vec();
                joined.extend_from_slice(&tail);
                tail = joined;
                if tail.len() > MAX_RECORD {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the last record is larger than 1 MiB",
                    ));
                }
            }
        }
    }
    Ok(Some(tail))
}

/// Reads and checks the whole chain; returns the records.
pub fn verify(path: &Path) -> Result<Vec<serde_json::Value>, AuditError> {
    let read = |source| AuditError::Read {
        path: path.to_path_buf(),
        source,
    };
    let broken = |record: usize, reason: String| AuditError::Broken {
        path: path.to_path_buf(),
        record,
        reason,
    };
    let file = File::open(path).map_err(read)?;
    let mut reader = std::io::BufReader::new(file);
    let mut records = Vec::new();
    let mut prev = genesis();
    let mut line = Vec::new();
    for n in 1.. {
        line.clear();
        let got = (&mut reader)
            .take(MAX_RECORD as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(read)?;
        if got == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            return Err(broken(
                n,
                if line.len() > MAX_RECORD {
                    "the record is larger than 1 MiB".into()
                } else {
                    "the record is cut off (no end of line): the log was truncated".into()
                },
            ));
        }
        line.pop();
        let v: serde_json::Value = serde_json::from_slice(&line)
            .map_err(|e| broken(n, format!("it does not parse: {e}")))?;
        if v["seq"].as_u64() != Some(n as u64) {
            return Err(broken(
                n,
                format!(
                    "it says seq {}, its place is {n}: a record before it was removed or moved",
                    v["seq"]
                ),
            ));
        }
        if v["prev"].as_str() != Some(prev.as_str()) {
            return Err(broken(
                n,
                "its `prev` is not the hash of the record before it: that record was edited, removed or moved".into(),
            ));
        }
        prev = Digest::of(&line).to_string();
        records.push(v);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(n: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        for i in 0..n {
            append(&path, serde_json::json!({"action": "test", "i": i})).unwrap();
        }
        (dir, path)
    }

    fn broken_at(path: &Path) -> usize {
        match verify(path) {
            Err(AuditError::Broken { record, .. }) => record,
            other => panic!("not broken: {other:?}"),
        }
    }

    #[test]
    fn a_chain_verifies_and_every_tampering_breaks_it() {
        let (_dir, path) = log_with(4);
        let records = verify(&path).unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(records[3]["seq"], 4);
        assert!(records[0]["user"].is_string() && records[0]["host"].is_string());
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        // Edited: record 2's content changes, so record 3's prev no longer matches.
        fs::write(&path, text.replacen("\"i\":1", "\"i\":9", 1)).unwrap();
        assert_eq!(broken_at(&path), 3);
        // Removed: record 2 gone.
        fs::write(&path, format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3])).unwrap();
        assert_eq!(broken_at(&path), 2);
        // Reordered.
        fs::write(
            &path,
            format!("{}\n{}\n{}\n{}\n", lines[0], lines[2], lines[1], lines[3]),
        )
        .unwrap();
        assert_eq!(broken_at(&path), 2);
        // Truncated mid-record.
        fs::write(&path, &text[..text.len() - 10]).unwrap();
        assert_eq!(broken_at(&path), 4);
        // And nothing is appended after a cut record.
        assert!(append(&path, serde_json::json!({"action": "x"})).is_err());
    }

    #[test]
    fn appends_from_many_threads_keep_one_chain() {
        let (_dir, path) = log_with(0);
        std::thread::scope(|s| {
            for t in 0..4 {
                let path = &path;
                s.spawn(move || {
                    for i in 0..10 {
                        append(path, serde_json::json!({"action": "t", "t": t, "i": i})).unwrap();
                    }
                });
            }
        });
        assert_eq!(verify(&path).unwrap().len(), 40);
    }
}
