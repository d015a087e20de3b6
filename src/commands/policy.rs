//! `ferry policy check`: what a Rego policy says of a spec or a bundle, without writing a
//! bundle or importing anything.

use super::*;
use crate::cli::PolicyCheckArgs;
use crate::policy::{Policy, Verdict};

/// zstd's frame magic: every bundle starts with it, no spec does.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

pub fn check(args: PolicyCheckArgs, g: &Globals) -> crate::error::Result<()> {
    let policy = Policy::load(&args.policy)?;
    let mut head = [0u8; 4];
    // `-` is a bundle on standard input (a spec names files beside it: it is a file).
    let is_bundle = crate::bundle::reader::is_stdin(&args.input)
        || std::fs::File::open(&args.input)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok()
            && head == ZSTD_MAGIC;
    let (verdict, what) = if is_bundle {
        // The manifest as it was signed; its signatures are not checked here (that is
        // `bundle verify`), so `signers` lists the key ids the signatures claim.
        let peeked =
            crate::bundle::reader::peek(&crate::bundle::reader::Input::from(args.input.as_path()))?;
        let signers: Vec<serde_json::Value> = peeked
            .embedded
            .iter()
            .map(|(_, id)| serde_json::json!({"keyId": id.to_string()}))
            .collect();
        let input = crate::policy::input(&peeked.manifest, signers.into());
        (
            policy.evaluate(&input)?,
            format!("bundle {}", args.input.display()),
        )
    } else {
        let (spec, store, artifacts) = pull_spec(
            &args.input,
            args.store,
            PullOptions {
                registry: g.registry.clone(),
                jobs: args.jobs,
                plan: None,
            },
            &g.reporter,
        )?;
        // What `bundle create` would sign (sequence 0: a check reserves none).
        let layout = crate::bundle::writer::layout(&store, &spec.name, 0, &artifacts, None, None)?;
        let input = crate::policy::input(&layout.manifest, serde_json::json!([]));
        (
            policy.evaluate(&input)?,
            format!("spec {}", args.input.display()),
        )
    };
    print_verdict(&verdict, &what, args.json)?;
    // Denied: exit 4, the reasons again on stderr (the JSON verdict says it already).
    verdict.enforce(&what).map_err(|e| {
        let e = crate::error::Error::from(e);
        if args.json { e.printed() } else { e }
    })
}

fn print_verdict(verdict: &Verdict, what: &str, json: bool) -> crate::error::Result<()> {
    if json {
        let mut v = serde_json::to_value(verdict)?;
        v["input"] = what.into();
        v["allowed"] = verdict.allowed().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "policy {} ({}) on {what}: {}",
        verdict.policy,
        verdict.digest,
        if verdict.allowed() {
            "allowed"
        } else {
            "denied"
        }
    );
    for d in &verdict.deny {
        println!("  deny  {d}");
    }
    for w in &verdict.warn {
        println!("  warn  {w}");
    }
    Ok(())
}
