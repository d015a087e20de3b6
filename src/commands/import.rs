//! `ferry import`: verify, stage, commit into a store or a registry.

use super::bundle::{LoadedTrust, signed_by, verified_json, warn_not_counted};
use super::*;

/// The arguments of `ferry import`.
pub struct Import {
    pub bundle: PathBuf,
    pub trust: TrustArgs,
    pub to: Option<String>,
    pub store: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub json: bool,
    pub force: bool,
    pub policy: Option<PathBuf>,
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
    } = args;
    let registry = g.registry.clone();
    let reporter = g.reporter.clone();

    let trust = LoadedTrust::load(&trust)?;
    let policy = policy
        .map(|p| crate::policy::Policy::load(&p))
        .transpose()?;
    let target = match (to, store) {
        (Some(to), None) => Target::Registry(RegistryTarget::parse(&to)?),
        (None, Some(dir)) => Target::Store(dir),
        _ => unreachable!("clap requires exactly one of --to and --store"),
    };
    let options = ImportOptions {
        force,
        trust: trust.as_trust(),
        target,
        state_dir: state_dir.unwrap_or_else(default_state_dir),
        registry,
        policy: policy.as_ref(),
    };
    let runtime = runtime()?;
    let outcome = crate::import::import(&bundle, &options, &runtime, reporter.as_ref())?;
    let (verified, already) = match &outcome {
        Outcome::Imported(v) => (v, false),
        Outcome::AlreadyImported(v) => (v, true),
    };
    warn_not_counted(verified, g);
    if json {
        let mut v = verified_json(verified, &trust);
        v["alreadyImported"] = already.into();
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
