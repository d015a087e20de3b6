//! The import and audit history of a report: the records of an audit log and what its
//! hash chain says. The chain is checked by `crate::audit::verify`; when it is broken the
//! records are read once more, leniently (each line bounded, the count bounded), so the
//! report can show what the log says before and after the break, marked unproven.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::Value;

use super::{Chain, History, Record};
use crate::audit::AuditError;
use crate::digest::Digest;

/// At most this many records are listed (the rest are counted).
const MAX_RECORDS: usize = 5000;
/// The longest line read (as `crate::audit` bounds a record).
const MAX_LINE: u64 = 1 << 20;
/// The longest field shown.
const MAX_FIELD: usize = 512;

/// Reads the log at `path`. A broken chain is part of the history (and the caller's
/// exit 3); a log that cannot be read at all is an error. `missing_ok`: a log that does
/// not exist is a history without records (a store that never logged).
pub fn read(path: &Path, missing_ok: bool) -> Result<(History, Option<AuditError>), AuditError> {
    let log = path.display().to_string();
    if missing_ok && !path.exists() {
        return Ok((
            History {
                log,
                present: false,
                chain: Chain {
                    intact: true,
                    records: 0,
                    broken_at: None,
                    reason: None,
                    last_hash: None,
                },
                records: Vec::new(),
                omitted: 0,
            },
            None,
        ));
    }
    let (broken, verified) = match crate::audit::verify(path) {
        Ok(records) => (None, Some(records.len())),
        Err(AuditError::Broken { record, reason, .. }) => (Some((record, reason)), None),
        Err(e) => return Err(e),
    };
    let lines = lenient(path).map_err(|source| AuditError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let break_at = broken.as_ref().map(|(n, _)| *n);
    let mut records = Vec::new();
    let mut omitted = 0;
    let mut last_hash = None;
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        if verified.is_some() && n == lines.len() {
            last_hash = Some(Digest::of(line).to_string());
        }
        if records.len() == MAX_RECORDS {
            omitted += 1;
            continue;
        }
        records.push(record(n, line, break_at.is_none_or(|b| n < b)));
    }
    let chain = Chain {
        intact: broken.is_none(),
        records: verified.unwrap_or(lines.len()),
        broken_at: break_at,
        reason: broken.as_ref().map(|(_, r)| r.clone()),
        last_hash,
    };
    let err = broken.map(|(record, reason)| AuditError::Broken {
        path: path.to_path_buf(),
        record,
        reason,
    });
    Ok((
        History {
            log,
            present: true,
            chain,
            records,
            omitted,
        },
        err,
    ))
}

/// Every line of the log (without its newline), each cut at [`MAX_LINE`] bytes.
fn lenient(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let got = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line)?;
        if got == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if got as u64 == MAX_LINE {
            // Skip the rest of an overlong line.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let n = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut rest)?;
                if n == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
        }
        lines.push(line);
        if lines.len() > 10 * MAX_RECORDS {
            break;
        }
    }
    Ok(lines)
}

/// One line as the report shows it. A line that is not a JSON object is shown as such.
fn record(line_no: usize, line: &[u8], proven: bool) -> Record {
    let v: Value = match serde_json::from_slice(line) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            let text = String::from_utf8_lossy(line);
            return Record {
                line: line_no,
                proven,
                error: format!("not a JSON record: {}", cut(&text)),
                ..Record::empty(line_no)
            };
        }
    };
    let claimed = &v["claimed"];
    let or_claimed = |k: &str| {
        if v[k].is_null() && !claimed[k].is_null() {
            format!("{} (claimed)", text(&claimed[k]))
        } else {
            text(&v[k])
        }
    };
    let signers = signers(&v);
    // A verdict (`{policy, verdict}`, as create records it), or an import's pair of the
    // bundle's own verdict and the site's.
    let verdict = |p: &serde_json::Map<String, Value>| {
        let name = p.get("policy").map(text).unwrap_or_default();
        let verdict = p.get("verdict").map(text).unwrap_or_default();
        if name.is_empty() {
            verdict
        } else {
            format!("{name}: {verdict}")
        }
    };
    let policy = match &v["policy"] {
        Value::Object(p) if p.contains_key("bundle") || p.contains_key("site") => {
            let part = |k: &str| match p.get(k) {
                Some(Value::Object(o)) => Some(format!("{k} {}", verdict(o))),
                _ => None,
            };
            [part("bundle"), part("site")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ")
        }
        Value::Object(p) => verdict(p),
        other => text(other),
    };
    Record {
        line: line_no,
        proven,
        seq: text(&v["seq"]),
        time: text(&v["time"]),
        user: text(&v["user"]),
        host: text(&v["host"]),
        action: text(&v["action"]),
        outcome: text(&v["outcome"]),
        series: or_claimed("series"),
        sequence: or_claimed("sequence"),
        manifest: text(&v["manifest"]),
        signers: cut(&signers),
        policy: cut(&policy),
        artifacts: text(&v["artifacts"]),
        bytes: text(&v["bytes"]),
        error: text(&v["error"]),
    }
}

impl Record {
    fn empty(line: usize) -> Record {
        Record {
            line,
            proven: false,
            seq: String::new(),
            time: String::new(),
            user: String::new(),
            host: String::new(),
            action: String::new(),
            outcome: String::new(),
            series: String::new(),
            sequence: String::new(),
            manifest: String::new(),
            signers: String::new(),
            policy: String::new(),
            artifacts: String::new(),
            bytes: String::new(),
            error: String::new(),
        }
    }
}

/// Who signed, for a person: under a trust policy the approvals by name and role
/// (`alice (approver, 2F35EF6E446D0335)`) and the rule met; otherwise the key ids.
fn signers(v: &Value) -> String {
    let named = v["approvedBy"].as_array().map(|list| {
        list.iter()
            .map(|a| {
                format!(
                    "{} ({}, {})",
                    text(&a["name"]),
                    text(&a["role"]),
                    text(&a["keyId"])
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    });
    match (named, &v["signers"]) {
        (Some(named), _) if !named.is_empty() => match &v["trustRule"] {
            Value::Null => named,
            rule => format!("{named}; trust rule {}", text(rule)),
        },
        (_, Value::Array(list)) => list.iter().map(text).collect::<Vec<_>>().join(", "),
        (_, Value::Null) => text(&v["signer"]),
        (_, other) => text(other),
    }
}

/// A field as text: strings as they are, anything else as JSON, absent as empty; cut.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => cut(s),
        other => cut(&other.to_string()),
    }
}

fn cut(s: &str) -> String {
    if s.chars().count() <= MAX_FIELD {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_FIELD).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_and_garbage_logs_are_read_with_the_break_marked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        for i in 0..3 {
            crate::audit::append(&path, serde_json::json!({"action": "test", "i": i})).unwrap();
        }
        let (h, err) = read(&path, false).unwrap();
        assert!(h.chain.intact && err.is_none() && h.chain.last_hash.is_some());
        assert_eq!(h.records.len(), 3);
        assert!(h.records.iter().all(|r| r.proven));

        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"i\":1", "\"i\":7", 1)).unwrap();
        let (h, err) = read(&path, false).unwrap();
        assert_eq!(h.chain.broken_at, Some(3));
        assert!(matches!(err, Some(AuditError::Broken { record: 3, .. })));
        assert_eq!(
            h.records.iter().map(|r| r.proven).collect::<Vec<_>>(),
            [true, true, false]
        );

        std::fs::write(&path, "hello\n<script>alert(1)</script>\n").unwrap();
        let (h, err) = read(&path, false).unwrap();
        assert_eq!(h.chain.broken_at, Some(1));
        assert!(err.is_some());
        assert!(h.records[1].error.contains("<script>"));

        assert!(read(&dir.path().join("none"), false).is_err());
        assert!(!read(&dir.path().join("none"), true).unwrap().0.present);
    }

    #[test]
    fn approvals_are_named_with_their_roles() {
        let under_policy = serde_json::json!({
            "signers": ["65380F425E041A1E", "505CEDEFE7D8FD8C"],
            "approvedBy": [
                {"name": "build", "role": "builder", "keyId": "65380F425E041A1E"},
                {"name": "alice", "role": "approver", "keyId": "505CEDEFE7D8FD8C"}
            ],
            "trustRule": 1
        });
        assert_eq!(
            signers(&under_policy),
            "build (builder, 65380F425E041A1E), alice (approver, 505CEDEFE7D8FD8C); trust rule 1"
        );
        // Plain --trust: no names, the key ids as recorded.
        let plain = serde_json::json!({"signers": ["65380F425E041A1E"], "approvedBy": null});
        assert_eq!(signers(&plain), "65380F425E041A1E");
        // A record that is not an object of the expected shape still reads.
        assert_eq!(
            signers(&serde_json::json!({"approvedBy": "x", "signer": "K"})),
            "K"
        );
    }
}
