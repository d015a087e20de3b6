//! `ferry audit verify|show|checkpoint`: the hash-chained audit log of a store or a
//! registry target, and its signed checkpoints.

use super::*;
use crate::audit::checkpoint::{self, Checkpoint};
use crate::cli::{AuditArgs, AuditCommand};

/// The arguments of `ferry audit verify`.
pub struct Verify {
    pub log: PathBuf,
    pub json: bool,
    /// Site keys whose checkpoint is accepted; none: the checkpoint is not checked.
    pub trust: Vec<PathBuf>,
    /// The checkpoint to check against [default: LOG.checkpoint].
    pub checkpoint: Option<PathBuf>,
}

/// The arguments of `ferry audit show`.
pub struct Show {
    pub log: PathBuf,
    pub json: bool,
}

/// The arguments of `ferry audit checkpoint`.
pub struct MakeCheckpoint {
    pub log: PathBuf,
    pub key: PathBuf,
    pub json: bool,
}

pub fn run(command: AuditCommand, g: &Globals) -> crate::error::Result<()> {
    match command {
        AuditCommand::Verify(a) => verify(
            Verify {
                log: log_path(&a.log),
                json: a.log.json,
                trust: a.trust,
                checkpoint: a.checkpoint,
            },
            g,
        ),
        AuditCommand::Show(a) => show(
            Show {
                log: log_path(&a),
                json: a.json,
            },
            g,
        ),
        AuditCommand::Checkpoint(a) => make_checkpoint(
            MakeCheckpoint {
                log: log_path(&a.log),
                key: a.key,
                json: a.log.json,
            },
            g,
        ),
    }
}

fn log_path(args: &AuditArgs) -> PathBuf {
    match (&args.store, &args.log) {
        (Some(store), _) => store.join(".ferry").join(crate::audit::FILE),
        (None, Some(log)) => log.clone(),
        (None, None) => unreachable!("clap requires --store or --log"),
    }
}

/// What `verify` found out about the checkpoint.
enum CheckpointOutcome {
    /// None was asked for and none lies beside the log.
    Absent,
    /// One lies beside the log, but no --trust was given.
    Unchecked(PathBuf),
    /// It verified and the log holds what it covers.
    Checked(PathBuf, Checkpoint),
}

pub fn verify(args: Verify, g: &Globals) -> crate::error::Result<()> {
    let Verify {
        log,
        json,
        trust,
        checkpoint,
    } = args;

    let trusted: Vec<PublicKey> = trust
        .iter()
        .map(|k| PublicKey::load(k))
        .collect::<Result<_, _>>()?;
    let entries = crate::audit::verify(&log)?;
    let path = checkpoint.unwrap_or_else(|| checkpoint::path_for(&log));
    let outcome = if !trusted.is_empty() {
        let c = checkpoint::check(&log, &entries, &path, &trusted)
            .map_err(crate::audit::AuditError::from)?;
        CheckpointOutcome::Checked(path, c)
    } else if path.exists() {
        CheckpointOutcome::Unchecked(path)
    } else {
        CheckpointOutcome::Absent
    };

    let last = entries.last().map(|e| &e.record);
    if json {
        let checkpoint = match &outcome {
            CheckpointOutcome::Absent => serde_json::Value::Null,
            CheckpointOutcome::Unchecked(path) => serde_json::json!({
                "path": absolute(path),
                "checked": false,
            }),
            CheckpointOutcome::Checked(path, c) => serde_json::json!({
                "path": absolute(path),
                "checked": true,
                "records": c.records,
                "head": c.head,
                "time": c.time,
                "keyId": c.key_id,
            }),
        };
        let v = serde_json::json!({
            "log": absolute(&log),
            "records": entries.len(),
            "intact": true,
            "last": last.map(|r| serde_json::json!({"seq": r["seq"], "time": r["time"], "action": r["action"]})),
            "checkpoint": checkpoint,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if !g.quiet {
        println!(
            "audit log {} is intact: {} record(s){}",
            log.display(),
            entries.len(),
            last.map(|r| format!(
                ", the last (seq {}) at {}",
                r["seq"],
                r["time"].as_str().unwrap_or("?")
            ))
            .unwrap_or_default()
        );
        match &outcome {
            CheckpointOutcome::Absent => {}
            CheckpointOutcome::Unchecked(path) => println!(
                "checkpoint {} was not checked: pass --trust SITE.pub to check the log against it",
                path.display()
            ),
            CheckpointOutcome::Checked(path, c) => println!(
                "checkpoint {} signed by {} at {}: the log holds the {} record(s) it covers",
                path.display(),
                c.key_id,
                c.time,
                c.records
            ),
        }
    }
    Ok(())
}

pub fn show(args: Show, _: &Globals) -> crate::error::Result<()> {
    let Show { log, json } = args;

    let entries = crate::audit::verify(&log)?;
    if json {
        let records: Vec<&serde_json::Value> = entries.iter().map(|e| &e.record).collect();
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(());
    }
    for r in entries.iter().map(|e| &e.record) {
        // A log is local, but a forged one could still carry terminal escapes.
        let clean = |t: String| -> String {
            t.chars()
                .map(|c| {
                    if crate::names::is_deceptive(c) {
                        '?'
                    } else {
                        c
                    }
                })
                .collect()
        };
        let s = |v: &serde_json::Value| {
            clean(
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            )
        };
        let what = match r["action"].as_str() {
            Some("checkpoint") => format!(
                "checkpoint of {} record(s), head {}, signed by {}",
                s(&r["records"]),
                s(&r["head"]),
                s(&r["keyId"])
            ),
            _ => format!(
                "{} {}  series {} sequence {}  {}",
                s(&r["action"]),
                s(&r["outcome"]),
                s(&r["series"]),
                s(&r["sequence"]),
                clean(
                    r.get("error")
                        .and_then(|e| e.as_str())
                        .unwrap_or("")
                        .to_string()
                ),
            ),
        };
        let recovered = match r.get("recovered") {
            Some(cut) => format!(
                "  (recovered: the log ended in a cut record, {} byte(s) with {}, dropped before this one)",
                s(&cut["cutBytes"]),
                s(&cut["sha256"])
            ),
            None => String::new(),
        };
        println!(
            "{:>5}  {}  {}@{}  {what}{recovered}",
            r["seq"],
            s(&r["time"]),
            s(&r["user"]),
            s(&r["host"]),
        );
    }
    Ok(())
}

pub fn make_checkpoint(args: MakeCheckpoint, g: &Globals) -> crate::error::Result<()> {
    let MakeCheckpoint { log, key, json } = args;

    let key = SecretKey::load(&key)?;
    let written = checkpoint::write(&log, &key)?;
    let c = &written.checkpoint;
    if json {
        let v = serde_json::json!({
            "log": absolute(&log),
            "checkpoint": absolute(&written.path),
            "signature": absolute(&written.signature),
            "statement": c,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if !g.quiet {
        println!(
            "checkpoint of audit log {}: {} record(s), the last hashing to {}, signed by {} at {}",
            log.display(),
            c.records,
            c.head,
            c.key_id,
            c.time
        );
        println!(
            "wrote {} and {}; keep a copy of both off this machine, and check the log against it with `ferry audit verify --log {} --trust SITE.pub --checkpoint COPY`",
            written.path.display(),
            written.signature.display(),
            log.display()
        );
        print!("{}", written.text);
    }
    Ok(())
}
