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
//! shorter log is a valid chain), or a log rewritten from scratch. A signed checkpoint
//! (`checkpoint`) of the log shows both, up to the records it covers.

pub mod checkpoint;

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
    /// Found by an append, which reads only the log's end.
    #[error("cannot append to audit log {path}: {reason}")]
    BrokenEnd { path: PathBuf, reason: String },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
}

impl Classify for AuditError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            AuditError::Broken { .. } | AuditError::BrokenEnd { .. } => ExitStatus::Verification,
            AuditError::Checkpoint(e) => e.exit_status(),
            AuditError::Write { .. } | AuditError::Read { .. } => ExitStatus::Error,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            AuditError::Broken { .. } => Some(
                "the log was edited, cut or reordered at that record: compare it with a copy kept elsewhere and treat what follows as unproven".into(),
            ),
            AuditError::BrokenEnd { path, .. } => Some(format!(
                "`ferry audit verify --log {}` names the broken record; compare the log with a copy kept elsewhere",
                path.display()
            )),
            AuditError::Checkpoint(e) => e.hint(),
            AuditError::Write { .. } | AuditError::Read { .. } => None,
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

/// The log's lock (a file beside it), held while this lives.
pub struct Locked {
    _file: File,
}

/// Waits for the lock of the log at `path` (creating its directory).
pub fn lock(path: &Path) -> Result<Locked, AuditError> {
    let write = |source| AuditError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(write)?;
    }
    let file = File::create(lock_path(path)).map_err(write)?;
    file.lock().map_err(write)?;
    Ok(Locked { _file: file })
}

/// Appends `record` (an object: `action` and what it did) to the log at `path`, with
/// `seq`, `prev`, `time`, `user` and `host` set here.
pub fn append(path: &Path, record: serde_json::Value) -> Result<(), AuditError> {
    let locked = lock(path)?;
    append_locked(&locked, path, record)
}

/// [`append`], for a caller that already holds the log's lock.
///
/// A log whose last byte is not a newline ends in a fragment of a record whose writer
/// died mid-write (`kill -9`, a full disk, a crash). The fragment is dropped and the new
/// record says so (`recovered`: its length and sha256), and both happen in one atomic
/// replace of the log, so the loss is itself a link of the chain. Only a fragment that
/// could be a record's start is dropped this way; anything else stays refused.
pub fn append_locked(_: &Locked, path: &Path, record: serde_json::Value) -> Result<(), AuditError> {
    let write = |source| AuditError::Write {
        path: path.to_path_buf(),
        source,
    };
    let broken = |reason: String| AuditError::BrokenEnd {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(write)?;
    let tail = Tail::read(&mut file, path)?;
    let (seq, prev) = match &tail.last {
        None => (1, genesis()),
        Some(line) => {
            let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
                broken(format!(
                    "its last record does not parse ({e}); nothing was appended"
                ))
            })?;
            let seq = v["seq"].as_u64().ok_or_else(|| {
                broken(
                    "its last line is not a record (it has no `seq`); nothing was appended".into(),
                )
            })?;
            (seq + 1, Digest::of(line).to_string())
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
    if let Some(cut) = &tail.cut {
        if !cut.fragment.starts_with(b"{") {
            return Err(broken(
                "it ends in bytes that are no record's start, without an end of line; nothing was appended".into(),
            ));
        }
        full["recovered"] = serde_json::json!({
            "cutBytes": cut.fragment.len(),
            "sha256": Digest::of(&cut.fragment).to_string(),
        });
    }
    if let (Some(full), serde_json::Value::Object(rest)) = (full.as_object_mut(), record) {
        for (k, v) in rest {
            full.entry(k).or_insert(v);
        }
    }
    let mut line = serde_json::to_vec(&full).expect("a record serialises");
    line.push(b'\n');
    match tail.cut {
        None => {
            file.write_all(&line).map_err(write)?;
            file.sync_all().map_err(write)
        }
        Some(cut) => replace(path, |tmp| {
            file.seek(SeekFrom::Start(0))?;
            let kept = std::io::copy(&mut (&file).take(cut.keep), tmp)?;
            if kept != cut.keep {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the log shrank while it was locked",
                ));
            }
            tmp.set_permissions(file.metadata()?.permissions())?;
            tmp.write_all(&line)
        })
        .map_err(write),
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Writes a file atomically: `fill` writes a temporary file beside `path` (mode 0644
/// unless `fill` sets another), which reaches the disk and is then renamed over `path`.
pub fn replace(
    path: &Path,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".ferry-audit-")
        .tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// The end of a log: its last complete line, and a cut fragment after it.
struct Tail {
    /// The last complete line, without its newline.
    last: Option<Vec<u8>>,
    cut: Option<Cut>,
}

/// Bytes after the last newline: a record whose writer died mid-write.
struct Cut {
    /// The length of the log up to and including its last newline.
    keep: u64,
    fragment: Vec<u8>,
}

impl Tail {
    /// Reads the end of the log backwards, at most two records' worth.
    fn read(file: &mut File, path: &Path) -> Result<Tail, AuditError> {
        let write = |source| AuditError::Write {
            path: path.to_path_buf(),
            source,
        };
        let too_long = |what: &str| AuditError::BrokenEnd {
            path: path.to_path_buf(),
            reason: format!("{what} is larger than 1 MiB; nothing was appended"),
        };
        let len = file.seek(SeekFrom::End(0)).map_err(write)?;
        if len == 0 {
            return Ok(Tail {
                last: None,
                cut: None,
            });
        }
        let mut byte = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1)).map_err(write)?;
        file.read_exact(&mut byte).map_err(write)?;
        let cut = match byte[0] {
            b'\n' => None,
            _ => match back_to_newline(file, len).map_err(write)? {
                Back::Line(keep, fragment) => Some(Cut { keep, fragment }),
                Back::TooLong => return Err(too_long("the text after its last end of line")),
            },
        };
        // Where the last complete line's newline ends.
        let end = cut.as_ref().map_or(len, |c| c.keep);
        let last = match end {
            0 => None,
            _ => match back_to_newline(file, end - 1).map_err(write)? {
                Back::Line(_, line) => Some(line),
                Back::TooLong => return Err(too_long("its last record")),
            },
        };
        Ok(Tail { last, cut })
    }
}

/// What lies between the newline before some offset and that offset.
enum Back {
    /// Where those bytes start (after the newline, or 0), and the bytes.
    Line(u64, Vec<u8>),
    /// More than [`MAX_RECORD`] bytes.
    TooLong,
}

/// Reads backwards from `end` to the newline before it.
fn back_to_newline(file: &mut File, end: u64) -> std::io::Result<Back> {
    let mut at = end;
    let mut line: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 4096];
    while at > 0 {
        let n = chunk.len().min(at as usize);
        at -= n as u64;
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut chunk[..n])?;
        let part = &chunk[..n];
        let newline = part.iter().rposition(|b| *b == b'\n');
        let mut joined = part[newline.map_or(0, |i| i + 1)..].to_vec();
        joined.extend_from_slice(&line);
        line = joined;
        if line.len() > MAX_RECORD {
            return Ok(Back::TooLong);
        }
        if let Some(i) = newline {
            return Ok(Back::Line(at + i as u64 + 1, line));
        }
    }
    Ok(Back::Line(0, line))
}
/// A record of a verified log and the sha256 of its line (what the next `prev` holds).
#[derive(Debug, Clone)]
pub struct Entry {
    pub record: serde_json::Value,
    pub hash: Digest,
}

/// Reads and checks the whole chain; returns its records.
pub fn verify(path: &Path) -> Result<Vec<Entry>, AuditError> {
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
    let mut entries: Vec<Entry> = Vec::new();
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
                    "the record is cut off (no end of line): the log was truncated, or its writer died mid-write (the next append drops the fragment and records that)".into()
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
        let prev = entries.last().map_or_else(genesis, |e| e.hash.to_string());
        if v["prev"].as_str() != Some(prev.as_str()) {
            return Err(broken(
                n,
                "its `prev` is not the hash of the record before it: that record was edited, removed or moved".into(),
            ));
        }
        entries.push(Entry {
            record: v,
            hash: Digest::of(&line),
        });
    }
    Ok(entries)
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
        assert_eq!(records[3].record["seq"], 4);
        assert!(records[0].record["user"].is_string() && records[0].record["host"].is_string());
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
        // Truncated mid-record: broken until an append repairs it.
        fs::write(&path, &text[..text.len() - 10]).unwrap();
        assert_eq!(broken_at(&path), 4);
    }

    #[test]
    fn an_append_drops_a_cut_last_record_and_records_the_loss() {
        let (_dir, path) = log_with(3);
        let text = fs::read(&path).unwrap();
        let last_start = text[..text.len() - 1]
            .iter()
            .rposition(|b| *b == b'\n')
            .unwrap()
            + 1;
        // The writer of record 3 died 7 bytes into its line.
        let cut = &text[last_start..last_start + 7];
        fs::write(&path, &text[..last_start + 7]).unwrap();
        assert_eq!(broken_at(&path), 3);

        append(&path, serde_json::json!({"action": "after"})).unwrap();
        let entries = verify(&path).unwrap();
        assert_eq!(entries.len(), 3);
        let r = &entries[2].record;
        assert_eq!(r["seq"], 3);
        assert_eq!(r["action"], "after");
        assert_eq!(r["recovered"]["cutBytes"], 7);
        assert_eq!(r["recovered"]["sha256"], Digest::of(cut).to_string());
        assert!(entries[1].record.get("recovered").is_none());
        // The kept part is byte for byte what it was.
        assert_eq!(fs::read(&path).unwrap()[..last_start], text[..last_start]);
        // The next append is an ordinary one.
        append(&path, serde_json::json!({"action": "next"})).unwrap();
        let entries = verify(&path).unwrap();
        assert_eq!(entries.len(), 4);
        assert!(entries[3].record.get("recovered").is_none());
    }

    #[test]
    fn a_cut_first_record_leaves_an_empty_chain_to_start_again() {
        let (_dir, path) = log_with(1);
        let text = fs::read(&path).unwrap();
        fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert_eq!(broken_at(&path), 1);
        append(&path, serde_json::json!({"action": "after"})).unwrap();
        let entries = verify(&path).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].record["prev"], genesis());
        assert_eq!(entries[0].record["recovered"]["cutBytes"], text.len() / 2);
    }

    #[test]
    fn a_recovery_keeps_the_logs_mode_and_a_caller_cannot_forge_it() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = log_with(2);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let text = fs::read(&path).unwrap();
        fs::write(&path, &text[..text.len() - 3]).unwrap();
        append(
            &path,
            serde_json::json!({"action": "x", "recovered": "nothing", "seq": 99}),
        )
        .unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let r = &verify(&path).unwrap()[1].record;
        assert_eq!(r["seq"], 2);
        let second_line = text.iter().position(|b| *b == b'\n').unwrap() + 1;
        assert_eq!(r["recovered"]["cutBytes"], text.len() - 3 - second_line);
        // Without a cut, a caller's `recovered` is the caller's field, not the log's.
        append(
            &path,
            serde_json::json!({"action": "y", "recovered": "nothing"}),
        )
        .unwrap();
        assert_eq!(verify(&path).unwrap()[2].record["recovered"], "nothing");
    }

    #[test]
    fn what_is_not_a_cut_record_is_not_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, Vec<u8>); 4] = [
            ("random bytes", vec![0x8f, 0x00, 0x41, 0xfe, 0x13]),
            ("a JSON array", br#"[{"seq":1}]"#.to_vec()),
            ("a JSON array, one line", b"[{\"seq\":1}]\n".to_vec()),
            ("one huge unterminated line", {
                let mut v = b"{".to_vec();
                v.resize(MAX_RECORD + 10, b'a');
                v
            }),
        ];
        for (what, bytes) in cases {
            let path = dir.path().join("log.jsonl");
            fs::write(&path, &bytes).unwrap();
            assert_eq!(broken_at(&path), 1, "{what}");
            match append(&path, serde_json::json!({"action": "x"})) {
                Err(e @ AuditError::BrokenEnd { .. }) => {
                    assert_eq!(e.exit_status(), ExitStatus::Verification, "{what}")
                }
                other => panic!("{what}: {other:?}"),
            }
            assert_eq!(
                fs::read(&path).unwrap(),
                bytes,
                "{what}: the log was changed"
            );
        }
    }

    #[test]
    fn a_cut_record_in_the_middle_stays_broken() {
        let (_dir, path) = log_with(3);
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        fs::write(
            &path,
            format!("{}\n{}\n{}\n", lines[0], &lines[1][..10], lines[2]),
        )
        .unwrap();
        append(&path, serde_json::json!({"action": "x"})).unwrap();
        assert_eq!(broken_at(&path), 2);
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
