//! `ferry store ls|rm|gc|check`: what a store holds, and keeping it.

use super::*;
use crate::cli::StoreCommand;
use crate::inventory::{self, Listed, shown};

pub fn run(command: StoreCommand, g: &Globals) -> crate::error::Result<()> {
    match command {
        StoreCommand::Ls { store, json } => ls(&Store::open(&store.store)?, json),
        StoreCommand::Rm { reference, store } => rm(&Store::open(&store.store)?, &reference, g),
        StoreCommand::Gc {
            store,
            dry_run,
            json,
        } => gc(&Store::open(&store.store)?, dry_run, json, g),
        StoreCommand::Check { store, json } => check(&Store::open(&store.store)?, json, g),
    }
}

fn ls(store: &Store, json: bool) -> crate::error::Result<()> {
    let listed = inventory::list(store)?;
    let mut by_ecosystem: std::collections::BTreeMap<&str, Vec<&Listed>> = Default::default();
    for l in &listed {
        by_ecosystem.entry(l.ecosystem).or_default().push(l);
    }
    if json {
        let v = serde_json::json!({
            "store": absolute(store.root()),
            "entries": listed,
            "ecosystems": by_ecosystem.iter().map(|(e, items)| (e.to_string(), serde_json::json!({
                "entries": items.len(),
                "bytes": items.iter().filter_map(|l| l.size).sum::<u64>(),
            }))).collect::<serde_json::Map<_, _>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if listed.is_empty() {
        println!("store {} holds nothing", store.root().display());
        return Ok(());
    }
    for (ecosystem, items) in &by_ecosystem {
        let bytes: u64 = items.iter().filter_map(|l| l.size).sum();
        let n = items.len();
        let entries = if n == 1 { "entry" } else { "entries" };
        println!("{ecosystem} ({n} {entries}, {})", human(bytes));
        for l in items {
            let name = match &l.tag {
                Some(t) => format!("{}:{}", shown(&l.repository), shown(t)),
                None => format!("{}@{}", shown(&l.repository), l.digest),
            };
            let size = l.size.map_or_else(|| "?".to_string(), human);
            let bundle = l.bundle.as_deref().map_or("-".to_string(), shown);
            println!("  {name}  {size}  {}  from {bundle}", short(&l.digest));
            if let Some(p) = &l.problem {
                println!("    damaged: {}", shown(p));
            }
        }
    }
    Ok(())
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

fn rm(store: &Store, reference: &str, g: &Globals) -> crate::error::Result<()> {
    let reference = inventory::Reference::parse(reference)?;
    let removed = inventory::remove(store, &reference)?;
    audit(
        &store.state_dir().join(crate::audit::FILE),
        serde_json::json!({
            "action": "store rm",
            "reference": reference.to_string(),
            "removed": removed.iter().map(|l| serde_json::json!({
                "repository": l.repository, "tag": l.tag, "digest": l.digest, "bundle": l.bundle,
            })).collect::<Vec<_>>(),
        }),
        g.reporter.as_ref(),
    );
    if !g.quiet {
        println!(
            "removed {} entr{} for {reference}; `ferry store gc` frees the blobs nothing else reaches",
            removed.len(),
            if removed.len() == 1 { "y" } else { "ies" }
        );
    }
    Ok(())
}

fn gc(store: &Store, dry_run: bool, json: bool, g: &Globals) -> crate::error::Result<()> {
    let collected = inventory::gc(store, dry_run)?;
    if !dry_run {
        audit(
            &store.state_dir().join(crate::audit::FILE),
            serde_json::json!({
                "action": "store gc",
                "removed": collected.removed.len(),
                "bytes": collected.removed_bytes,
            }),
            g.reporter.as_ref(),
        );
    }
    if json {
        let mut v = serde_json::to_value(&collected)?;
        v["dryRun"] = dry_run.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if !g.quiet {
        let verb = if dry_run { "would remove" } else { "removed" };
        println!(
            "{verb} {} unreferenced blob(s), {}; kept {} blob(s), {}",
            collected.removed.len(),
            human(collected.removed_bytes),
            collected.kept,
            human(collected.kept_bytes)
        );
        if dry_run {
            for d in &collected.removed {
                println!("  {d}");
            }
        }
    }
    Ok(())
}

fn check(store: &Store, json: bool, g: &Globals) -> crate::error::Result<()> {
    let checked = inventory::check(store)?;
    let problems = checked.problems.len();
    if json {
        let mut v = serde_json::to_value(&checked)?;
        v["ok"] = (problems == 0).into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if !g.quiet || problems > 0 {
        for p in &checked.problems {
            eprintln!("problem: {}", shown(p));
        }
        if problems == 0 {
            println!(
                "store {} is intact: {} blob(s), {}, {} entr{} resolve",
                store.root().display(),
                checked.blobs,
                human(checked.bytes),
                checked.entries,
                if checked.entries == 1 { "y" } else { "ies" }
            );
        }
    }
    if problems > 0 {
        let e = crate::error::Error::from(inventory::InventoryError::CheckFailed {
            path: store.root().to_path_buf(),
            count: problems,
        });
        return Err(if json { e.printed() } else { e });
    }
    Ok(())
}
