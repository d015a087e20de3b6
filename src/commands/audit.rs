//! `ferry audit verify|show`: the hash-chained audit log of a store or a registry target.

use super::*;
use crate::cli::AuditArgs;

fn log_path(args: &AuditArgs) -> PathBuf {
    match (&args.store, &args.log) {
        (Some(store), _) => store.join(".ferry").join(crate::audit::FILE),
        (None, Some(log)) => log.clone(),
        (None, None) => unreachable!("clap requires --store or --log"),
    }
}

pub fn verify(args: AuditArgs, g: &Globals) -> crate::error::Result<()> {
    let path = log_path(&args);
    let records = crate::audit::verify(&path)?;
    let last = records.last();
    if args.json {
        let v = serde_json::json!({
            "log": absolute(&path),
            "records": records.len(),
            "intact": true,
            "last": last.map(|r| serde_json::json!({"seq": r["seq"], "time": r["time"], "action": r["action"]})),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if !g.quiet {
        println!(
            "audit log {} is intact: {} record(s){}",
            path.display(),
            records.len(),
            last.map(|r| format!(
                ", the last (seq {}) at {}",
                r["seq"],
                r["time"].as_str().unwrap_or("?")
            ))
            .unwrap_or_default()
        );
    }
    Ok(())
}

pub fn show(args: AuditArgs, _: &Globals) -> crate::error::Result<()> {
    let path = log_path(&args);
    let records = crate::audit::verify(&path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(());
    }
    for r in &records {
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
        let s = |k: &str| {
            clean(
                r[k].as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| r[k].to_string()),
            )
        };
        println!(
            "{:>5}  {}  {}@{}  {} {}  series {} sequence {}  {}",
            r["seq"],
            s("time"),
            s("user"),
            s("host"),
            s("action"),
            s("outcome"),
            s("series"),
            s("sequence"),
            clean(
                r.get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or("")
                    .to_string()
            ),
        );
    }
    Ok(())
}
