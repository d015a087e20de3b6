//! `ferry bundle create|verify|inspect`.

use super::*;

/// The arguments of `ferry bundle create`.
pub struct Create {
    pub spec: PathBuf,
    pub output: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub store: Option<PathBuf>,
    pub policy: Option<PathBuf>,
    pub sequence: Option<u64>,
    pub level: i32,
    pub jobs: usize,
    pub plan: PlanArgs,
}

pub fn create(args: Create, g: &Globals) -> crate::error::Result<()> {
    let Create {
        spec,
        output,
        key,
        store,
        policy,
        sequence,
        level,
        jobs,
        plan,
    } = args;
    let registry = g.registry.clone();
    let reporter = g.reporter.clone();

    if plan.dry_run {
        return dry_run(&spec, store, registry, jobs, plan.json, &reporter);
    }
    let (Some(output), Some(key)) = (output, key) else {
        unreachable!("clap requires -o and --key without --dry-run")
    };
    if policy.is_some() {
        return Err(UsageError {
            message: "--policy is not supported by this version of ferry yet".into(),
            hint: Some(
                "leave --policy out; the bundle records its verdict as `not-evaluated`".into(),
            ),
        }
        .into());
    }
    let key = SecretKey::load(&key)?;
    let (spec_file, store, artifacts) = pull_spec(
        &spec,
        store,
        PullOptions {
            registry,
            jobs,
            plan: None,
        },
        &reporter,
    )?;
    let created = store.state_dir().join("created");
    let sequence = match sequence {
        Some(s) => s,
        None => TargetState::reserve_sequence(&created, &spec_file.name)?,
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let bundle_spec = BundleSpec {
        series: &spec_file.name,
        sequence,
        artifacts: &artifacts,
        policy: PolicyVerdict {
            policy: None,
            verdict: "not-evaluated".into(),
        },
    };
    let (manifest, manifest_digest) = writer::write(
        &store,
        bundle_spec,
        &key,
        &output,
        &WriteOptions { level, threads },
        reporter.as_ref(),
    )
    .with_context(|| format!("cannot create bundle {}", output.display()))?;
    TargetState::record_created(&created, &spec_file.name, sequence, manifest_digest)?;
    if !g.quiet {
        let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
        println!(
            "wrote {} ({} compressed, {} of content): series {} sequence {}, {} artifact(s), signed by {}",
            output.display(),
            human(size),
            human(manifest.total_size()),
            manifest.series,
            manifest.sequence,
            manifest.artifacts.len(),
            key.id
        );
    }
    Ok(())
}

/// The arguments of `ferry bundle verify`.
pub struct Verify {
    pub bundle: PathBuf,
    pub trust: TrustArgs,
    pub json: bool,
}

pub fn verify(args: Verify, g: &Globals) -> crate::error::Result<()> {
    let Verify {
        bundle,
        trust,
        json,
    } = args;

    let keys = load_trust(&trust)?;
    let verified = crate::import::verify(
        &bundle,
        &Trust {
            keys: &keys,
            threshold: trust.threshold,
        },
    )?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary_json(
                &verified.manifest,
                &verified.manifest_digest,
                &verified.signers,
                true
            ))?
        );
    } else if !g.quiet {
        let m = &verified.manifest;
        println!(
            "verified {}: series {} sequence {}, {} artifact(s), {} entries, {}, signed by {}",
            bundle.display(),
            m.series,
            m.sequence,
            m.artifacts.len(),
            m.entries.len(),
            human(m.total_size()),
            verified
                .signers
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// The arguments of `ferry bundle inspect`.
pub struct Inspect {
    pub bundle: PathBuf,
    pub json: bool,
}

pub fn inspect(args: Inspect, _: &Globals) -> crate::error::Result<()> {
    let Inspect { bundle, json } = args;

    let (manifest, keys) = reader::peek(&bundle)?;
    if json {
        let mut v = serde_json::to_value(&manifest)?;
        v["signatures"] = keys
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .into();
        v["verified"] = false.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_inspect(&bundle, &manifest, &keys);
    }
    Ok(())
}

fn print_inspect(path: &Path, m: &BundleManifest, keys: &[sign::KeyId]) {
    println!("bundle   {}", path.display());
    println!("series   {} (sequence {})", m.series, m.sequence);
    println!("created  {} by {}", m.created, m.tool);
    println!(
        "signed   {} (not verified here: use `ferry bundle verify`)",
        if keys.is_empty() {
            "by nobody".to_string()
        } else {
            keys.iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!("policy   {}", m.policy.verdict);
    println!(
        "content  {} in {} entries",
        human(m.total_size()),
        m.entries.len()
    );
    println!("artifacts:");
    for a in &m.artifacts {
        let kind = crate::ecosystems::Kind::of(&a.record).as_str();
        println!("  {kind:<8} {}  {}", a.name(), a.digest);
        println!("           from {}", a.origin);
        for line in crate::ecosystems::describe(a) {
            println!("           {line}");
        }
    }
}
