//! `ferry import`: verify, stage, commit into a store or a registry.

use super::bundle::{LoadedTrust, signed_by, verified_json, warn_not_counted};
use super::*;

/// The arguments of `ferry import`.
pub struct Import {
    pub bundle: crate::bundle::reader::Input,
    pub trust: TrustArgs,
    pub to: Option<String>,
    pub store: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub json: bool,
    pub force: bool,
    pub policy: Option<PathBuf>,
    pub receipt: Option<PathBuf>,
    pub receipt_key: Option<PathBuf>,
}

pub fn run(args: Import, g: &Globals) -> crate::error::Result<()> {
    let Import {
        bundle,
        trust,
        to,
        store,
        state_dir,
        json,
        force,
        policy,
        receipt,
        receipt_key,
    } = args;
    let registry = g.registry.clone();
    let reporter = g.reporter.clone();

    let trust = LoadedTrust::load(&trust)?;
    let policy = policy
        .map(|p| crate::policy::Policy::load(&p))
        .transpose()?;
    // A key that cannot be used fails before anything is imported.
    let receipt_key = receipt_key.map(|k| SecretKey::load(&k)).transpose()?;
    let target = match (to, store) {
        (Some(to), None) => Target::Registry(RegistryTarget::parse(&to)?),
        (None, Some(dir)) => {
            if dir.exists() && !dir.is_dir() {
                return Err(crate::store::StoreError::NotAStore { path: dir }.into());
            }
            Target::Store(dir)
        }
        _ => unreachable!("clap requires exactly one of --to and --store"),
    };
    let state_dir = state_dir.unwrap_or_else(default_state_dir);
    // The target's audit log; a refused import into a store that does not exist is
    // recorded in the importer's own state directory (the target is not created).
    let (log, target_name) = match &target {
        Target::Store(dir) => (
            if dir.join("oci-layout").exists() {
                dir.join(".ferry").join(crate::audit::FILE)
            } else {
                state_dir.join(crate::audit::FILE)
            },
            format!("store:{}", absolute(dir).display()),
        ),
        Target::Registry(r) => (
            crate::import::registry_state_dir(&state_dir, r).join(crate::audit::FILE),
            format!("registry:{}", r.display()),
        ),
    };
    let store_dir = match &target {
        Target::Store(dir) => Some(dir.clone()),
        Target::Registry(_) => None,
    };
    // What `--json` names as written: `HOST[/PREFIX]/REPO:TAG@DIGEST` in a registry,
    // `REPO:TAG@DIGEST` in a store's index.
    let registry_base = match &target {
        Target::Registry(r) => Some(r.clone()),
        Target::Store(_) => None,
    };
    let options = ImportOptions {
        force,
        trust: trust.as_trust(),
        target,
        state_dir,
        registry,
        policy: policy.as_ref(),
        receipt: receipt.is_some(),
    };
    let runtime = runtime()?;
    let outcome = match crate::import::import(&bundle, &options, &runtime, reporter.as_ref()) {
        Ok(o) => o,
        Err(e) => {
            // What the bundle claims (not verified: that is what failed, or did not
            // get that far), so an auditor can tell which bundle was refused.
            // (Standard input is read once: what it claimed is gone.)
            let claimed = (!bundle.is_stdin())
                .then(|| crate::bundle::reader::peek(&bundle).ok())
                .flatten()
                .map(|p| {
                    serde_json::json!({"series": p.manifest.series, "sequence": p.manifest.sequence})
                });
            audit(
                &log,
                serde_json::json!({
                    "action": "import",
                    "outcome": "refused",
                    "exit": e.classify().0 as u8,
                    "error": error_text(&e),
                    "bundle": logged_path(&bundle),
                    "claimed": claimed,
                    "target": target_name,
                }),
                reporter.as_ref(),
            );
            return Err(e);
        }
    };
    let (v, already) = (&outcome.verified, outcome.already);
    // A new store exists now: its log is inside it.
    let log = match &store_dir {
        Some(dir) => dir.join(".ferry").join(crate::audit::FILE),
        None => log,
    };
    audit(
        &log,
        serde_json::json!({
            "action": "import",
            "outcome": if already { "already-imported" } else { "imported" },
            "bundle": logged_path(&bundle),
            "manifest": v.manifest_digest,
            "series": v.manifest.series,
            "sequence": v.manifest.sequence,
            "created": v.manifest.created,
            "signers": v.signers.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
            "approvedBy": v.approval.as_ref().map(|a| a.signers.iter().map(|s| serde_json::json!({"name": s.name, "role": s.role, "keyId": s.id.to_string()})).collect::<Vec<_>>()),
            "trustRule": v.approval.as_ref().map(|a| a.rule),
            "policy": {
                "bundle": v.manifest.policy,
                "site": outcome.verdict.as_ref().map(|p| serde_json::json!({
                    "policy": p.policy,
                    "digest": p.digest,
                    "verdict": "allowed",
                    "warnings": p.warn,
                })),
            },
            "artifacts": v.manifest.artifacts.len(),
            "bytes": v.manifest.total_size(),
            "target": target_name,
        }),
        reporter.as_ref(),
    );
    if let Some(path) = &receipt {
        write_receipt(path, receipt_key.as_ref(), &outcome, &target_name, g)?;
    }
    let verified = v;
    warn_not_counted(verified, g);
    if json {
        let mut v = verified_json(verified, &trust);
        v["alreadyImported"] = already.into();
        v["target"] = target_name.clone().into();
        let references: Vec<String> = verified
            .manifest
            .placements()
            .iter()
            .map(|p| {
                let repository = match &registry_base {
                    Some(r) => format!("{}/{}", r.registry, r.repository(&p.repository)),
                    None => p.repository.clone(),
                };
                match &p.tag {
                    Some(tag) => format!("{repository}:{tag}@{}", p.root.digest),
                    None => format!("{repository}@{}", p.root.digest),
                }
            })
            .collect();
        v["references"] = references.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if !g.quiet {
        let m = &verified.manifest;
        if already {
            println!(
                "already imported: series {} sequence {} (nothing to do)",
                m.series, m.sequence
            );
        } else {
            println!(
                "imported series {} sequence {}: {} artifact(s), signed by {}",
                m.series,
                m.sequence,
                m.artifacts.len(),
                signed_by(verified)
            );
        }
    }
    Ok(())
}

/// `--receipt`: what the target holds now, for `bundle create --since`; signed with the
/// site key when one is given (`HAVE.json.minisig`, which `minisign -V` checks).
fn write_receipt(
    path: &Path,
    key: Option<&SecretKey>,
    outcome: &crate::import::Outcome,
    target: &str,
    g: &Globals,
) -> crate::error::Result<()> {
    let v = &outcome.verified;
    let receipt = crate::bundle::base::Receipt {
        format: crate::bundle::base::RECEIPT_FORMAT.into(),
        target: target.into(),
        time: crate::trust::now_rfc3339(),
        series: v.manifest.series.clone(),
        sequence: v.manifest.sequence,
        manifest: v.manifest_digest,
        blobs: outcome.held.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&receipt)?;
    bytes.push(b'\n');
    let mut sig = path.as_os_str().to_owned();
    sig.push(".minisig");
    let sig = std::path::PathBuf::from(sig);
    // A signature of an earlier receipt must not stand beside this one: gone first, so
    // that a kill between the two writes below leaves a receipt without a signature
    // (which `minisign -V` refuses plainly), never one with another receipt's.
    match std::fs::remove_file(&sig) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(crate::error::Error::from(e))
                .with_context(|| format!("cannot remove {}", sig.display()));
        }
        _ => {}
    }
    crate::export::write_atomic(path, &bytes)?;
    if let Some(key) = key {
        let comment = format!(
            "ferry receipt series={} sequence={} blobs={} sha256={}",
            receipt.series,
            receipt.sequence,
            receipt.blobs.len(),
            crate::digest::Digest::of(&bytes).hex()
        );
        crate::export::write_atomic(&sig, key.sign(&bytes, &comment).as_bytes())?;
    }
    if !g.quiet {
        eprintln!(
            "wrote receipt {} ({} blob(s){})",
            path.display(),
            receipt.blobs.len(),
            if key.is_some() { ", signed" } else { "" }
        );
    }
    Ok(())
}

/// How the audit log names the bundle: its absolute path, or `-` for standard input.
fn logged_path(bundle: &crate::bundle::reader::Input) -> PathBuf {
    if bundle.is_stdin() {
        bundle.path.clone()
    } else {
        absolute(&bundle.path)
    }
}
