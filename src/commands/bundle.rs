//! `ferry bundle create|verify|inspect|sign|sbom`.

use super::*;
use crate::bundle::reader::Peeked;
use crate::bundle::signers::{Found, Status};
use crate::bundle::{Verified, cosign};
use crate::policy::Policy;
use crate::trust::policy::TrustPolicy;

/// The arguments of `ferry bundle create`.
pub struct Create {
    pub spec: PathBuf,
    pub output: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub store: Option<PathBuf>,
    pub policy: Option<PathBuf>,
    pub since: Option<PathBuf>,
    pub split: Option<u64>,
    pub sequence: Option<u64>,
    pub level: i32,
    pub jobs: usize,
    /// Replace an existing bundle at `output`.
    pub force: bool,
    pub plan: PlanArgs,
}

pub fn create(args: Create, g: &Globals) -> crate::error::Result<()> {
    let Create {
        spec,
        output,
        key,
        store,
        policy,
        since,
        split,
        sequence,
        level,
        jobs,
        force,
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
    let key = SecretKey::load(&key)?;
    writer::check_output_free(&output)
        .with_context(|| format!("cannot create bundle {}", output.display()))?;
    if !force && let Some(existing) = writer::existing_output(&output) {
        return Err(UsageError {
            message: format!("{} already exists", existing.display()),
            hint: Some(format!(
                "pass --force to replace it, or write to another -o than {}",
                output.display()
            )),
        }
        .into());
    }
    // A policy that does not compile fails before anything is pulled.
    let policy = policy.map(|p| Policy::load(&p)).transpose()?;
    let base = since
        .as_ref()
        .map(|p| crate::bundle::base::load(p))
        .transpose()?;
    // The images' layers are fetched while the bundle is written: the pull brings the
    // manifests and configs (all the signed manifest needs), and `deferred` the rest, in
    // the order the bundle holds it. The hold keeps gc off the store until it is done.
    let spec_file = Spec::load(&spec)?;
    let store = Store::open_or_create(&store.unwrap_or_else(default_store))?;
    reporter.line(&format!("store {}", absolute(store.root()).display()));
    let _hold = crate::inventory::hold(store.root())?;
    let rt = runtime()?;
    let deferred = crate::ecosystems::image::Deferred::default();
    let log = store.state_dir().join(crate::audit::FILE);
    let created = store.state_dir().join("created");
    // The layers download from the first promise on (`Deferred::run`), while the
    // other images are still resolved; the bundle is written once all are.
    let (prepared, fetched) = std::thread::scope(|s| {
        let fetching = s.spawn(|| rt.block_on(deferred.run(&store, jobs, &reporter)));
        let prepared = (|| -> crate::error::Result<_> {
            // However this ends (an error, a panic, or done), the downloads stop with
            // it: nothing else would end `run`, which the scope waits for.
            struct Stop<'a>(&'a crate::ecosystems::image::Deferred);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.stop();
                }
            }
            let _stop = Stop(&deferred);
            let pulled = pull_entries(
                &spec_file,
                &store,
                &PullOptions {
                    registry,
                    jobs,
                    plan: None,
                },
                &reporter,
                &rt,
                Some(&deferred),
            );
            deferred.close();
            let artifacts = pulled?;
            if let (Some(base), Some(path)) = (&base, &since) {
                base.check_series(path, &spec_file.name)?;
            }
            let sequence = match sequence {
                Some(s) => s,
                None => TargetState::reserve_sequence(&created, &spec_file.name)?,
            };
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
            let bundle_spec = BundleSpec {
                series: &spec_file.name,
                sequence,
                artifacts: &artifacts,
                gate: &|manifest| {
                    let Some(policy) = &policy else {
                        return Ok(PolicyVerdict::not_evaluated());
                    };
                    let signers = serde_json::json!([{ "keyId": key.id.to_string() }]);
                    let verdict = policy.evaluate(&crate::policy::input(manifest, signers))?;
                    verdict.show_warnings(reporter.as_ref());
                    verdict.enforce(&format!(
                        "bundle {} (series {})",
                        output.display(),
                        manifest.series
                    ))?;
                    Ok(PolicyVerdict::allowed(&verdict))
                },
                base: base.as_ref(),
                arriving: Some(deferred.arrivals()),
            };
            let written = writer::write(
                &store,
                bundle_spec,
                &key,
                &output,
                &WriteOptions {
                    level,
                    threads,
                    split,
                },
                reporter.as_ref(),
            );
            Ok((sequence, written))
        })();
        let fetched = fetching
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (prepared, fetched)
    });
    let (sequence, written) = prepared?;
    // A download that failed is the cause of the write's failure: say that one.
    let written = fetched
        .and_then(|()| written.map_err(Into::into))
        .with_context(|| format!("cannot create bundle {}", output.display()));
    let (manifest, manifest_digest) = match written {
        Ok(w) => w,
        Err(e) => {
            audit(
                &log,
                serde_json::json!({
                    "action": "bundle create",
                    "outcome": if e.classify().0 == crate::exit::ExitStatus::PolicyDenied { "denied" } else { "failed" },
                    "exit": e.classify().0 as u8,
                    "error": error_text(&e),
                    "bundle": absolute(&output),
                    "series": spec_file.name,
                    "sequence": sequence,
                    "store": absolute(store.root()),
                }),
                reporter.as_ref(),
            );
            return Err(e);
        }
    };
    audit(
        &log,
        serde_json::json!({
            "action": "bundle create",
            "outcome": "created",
            "bundle": absolute(&output),
            "manifest": manifest_digest,
            "series": manifest.series,
            "sequence": manifest.sequence,
            "signers": [key.id.to_string()],
            "policy": manifest.policy,
            "artifacts": manifest.artifacts.len(),
            "bytes": manifest.total_size(),
            "store": absolute(store.root()),
        }),
        reporter.as_ref(),
    );
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
    pub bundle: reader::Input,
    pub trust: TrustArgs,
    pub json: bool,
}

pub fn verify(args: Verify, g: &Globals) -> crate::error::Result<()> {
    let Verify {
        bundle,
        trust,
        json,
    } = args;

    let trust = LoadedTrust::load(&trust)?;
    let verified = crate::import::verify(&bundle, &trust.as_trust(), g.reporter.as_ref())?;
    warn_not_counted(&verified, g);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&verified_json(&verified, &trust))?
        );
    } else if !g.quiet {
        let m = &verified.manifest;
        println!(
            "verified {}: series {} sequence {}, {} artifact(s), {} entries, {}, signed by {}",
            bundle.path.display(),
            m.series,
            m.sequence,
            m.artifacts.len(),
            m.entries.len(),
            human(m.total_size()),
            signed_by(&verified)
        );
    }
    Ok(())
}

/// The trust chosen on the command line (`--trust ... [--threshold]` or
/// `--trust-policy`), loaded.
pub(super) enum LoadedTrust {
    Keys(Vec<PublicKey>, usize),
    Policy(TrustPolicy),
}

impl LoadedTrust {
    pub(super) fn load(args: &TrustArgs) -> crate::error::Result<LoadedTrust> {
        Ok(match &args.trust_policy {
            Some(path) => LoadedTrust::Policy(TrustPolicy::load(path)?),
            None => LoadedTrust::Keys(load_trust(args)?, args.threshold),
        })
    }

    pub(super) fn as_trust(&self) -> Trust<'_> {
        match self {
            LoadedTrust::Keys(keys, threshold) => Trust::Keys {
                keys,
                threshold: *threshold,
            },
            LoadedTrust::Policy(p) => Trust::Policy(p),
        }
    }
}

/// `--json` of verify and import: the summary, every signature found, and the rule met.
pub(super) fn verified_json(v: &Verified, trust: &LoadedTrust) -> serde_json::Value {
    let mut out = summary_json(&v.manifest, &v.manifest_digest, &v.signers, true);
    out["signatureDetails"] = v.signatures.iter().map(Found::to_json).collect();
    if let (Some(a), LoadedTrust::Policy(p)) = (&v.approval, trust) {
        out["trustPolicy"] = serde_json::json!({
            "file": p.path.display().to_string(),
            "rule": a.rule,
            "series": a.series_pattern,
            "approvedBy": a.signers.iter().map(|s| serde_json::json!({
                "name": s.name, "role": s.role, "keyId": s.id.to_string(),
            })).collect::<Vec<_>>(),
            "revoked": a.revoked,
        });
    }
    out
}

/// `build (builder, ID), alice (approver, ID) (rule 1)` or the key ids.
pub(super) fn signed_by(v: &Verified) -> String {
    match &v.approval {
        Some(a) => format!(
            "{} (trust policy rule {}, series \"{}\")",
            a.signers
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            a.rule,
            a.series_pattern
        ),
        None => v
            .signers
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A `warning:` for each signature that was found but did not count because it is
/// invalid or revoked (untrusted signers are normal and not warned about).
pub(super) fn warn_not_counted(v: &Verified, g: &Globals) {
    if g.quiet {
        return;
    }
    for f in &v.signatures {
        if matches!(f.status, Status::Invalid(_) | Status::Revoked)
            && let Some(problem) = f.problem()
        {
            eprintln!("warning: {problem} (not counted)");
        }
    }
}

/// The arguments of `ferry bundle sbom`.
pub struct Sbom {
    pub bundle: PathBuf,
    pub format: crate::sbom::Format,
    pub output: Option<PathBuf>,
    /// Verify first; without it the SBOM is read unverified (and the command says so).
    pub trust: Option<TrustArgs>,
}

pub fn sbom(args: Sbom, g: &Globals) -> crate::error::Result<()> {
    let Sbom {
        bundle,
        format,
        output,
        trust,
    } = args;
    bundle_file(
        &bundle,
        "it reads the manifest, then the SBOM entry it names",
    )?;
    let manifest = match &trust {
        Some(t) => {
            let trust = LoadedTrust::load(t)?;
            crate::import::verify(
                &reader::Input::from(bundle.as_path()),
                &trust.as_trust(),
                g.reporter.as_ref(),
            )?
            .manifest
        }
        None => {
            let m = reader::peek(&reader::Input::from(bundle.as_path()))?.manifest;
            m.validate()
                .map_err(crate::bundle::VerifyError::BadManifest)?;
            if !g.quiet {
                eprintln!(
                    "warning: the bundle's signatures were not checked (pass --trust or --trust-policy to verify it first)"
                );
            }
            m
        }
    };
    let bytes = match &manifest.sbom {
        Some(s) => {
            // Checked against the manifest's digests (the verified one, with --trust).
            let paths =
                [s.cyclonedx.digest, s.spdx.digest].map(|d| format!("blobs/sha256/{}", d.hex()));
            let wanted = match format {
                crate::sbom::Format::CycloneDx => &paths[0],
                crate::sbom::Format::Spdx => &paths[1],
            };
            reader::peek_entries(
                &reader::Input::from(bundle.as_path()),
                &manifest,
                &[wanted],
                crate::sbom::MAX_DOCUMENT,
            )?
            .remove(0)
        }
        None => {
            if !g.quiet {
                eprintln!(
                    "note: {} carries no SBOM (it was written before ferry carried them); this one is derived from its signed manifest and marked as derived",
                    bundle.display()
                );
            }
            let docs =
                crate::sbom::build(&manifest, &|_| Vec::new(), crate::sbom::Provenance::Derived);
            docs.get(format).to_vec()
        }
    };
    match output {
        Some(path) => crate::export::write_atomic(&path, &bytes)?,
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
        }
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

    let peeked = reader::peek(&reader::Input::from(bundle.as_path()))?;
    if json {
        let mut v = serde_json::to_value(&peeked.manifest)?;
        v["signatures"] = peeked
            .embedded
            .iter()
            .map(|(_, k)| *k)
            .chain(
                peeked
                    .detached
                    .iter()
                    .filter(|d| d.signature.is_ok())
                    .map(|d| d.named),
            )
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .into();
        v["signatureDetails"] = signature_details(&peeked).into();
        v["verified"] = false.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_inspect(&bundle, &peeked);
    }
    Ok(())
}

/// Every signature `inspect` found: embedded entries and files beside the bundle.
fn signature_details(p: &Peeked) -> Vec<serde_json::Value> {
    let embedded = p.embedded.iter().map(|(entry, k)| {
        serde_json::json!({"keyId": k.to_string(), "source": "embedded", "file": entry})
    });
    let detached = p.detached.iter().map(|d| {
        let mut v = serde_json::json!({
            "keyId": d.named.to_string(),
            "source": "detached",
            "file": d.path.display().to_string(),
        });
        if let Err(reason) = &d.signature {
            v["problem"] = reason.clone().into();
        }
        v
    });
    embedded.chain(detached).collect()
}

fn print_inspect(path: &Path, p: &Peeked) {
    let m = &p.manifest;
    println!("bundle   {}", path.display());
    println!("series   {} (sequence {})", m.series, m.sequence);
    println!("created  {} by {}", m.created, m.tool);
    let mut signed: Vec<String> = p
        .embedded
        .iter()
        .map(|(_, k)| format!("{k} (embedded)"))
        .collect();
    signed.extend(p.detached.iter().map(|d| match &d.signature {
        Ok(_) => format!("{} ({})", d.named, d.path.display()),
        Err(reason) => format!("{} ({}: {reason})", d.named, d.path.display()),
    }));
    println!(
        "signed   {} (not verified here: use `ferry bundle verify`)",
        if signed.is_empty() {
            "by nobody".to_string()
        } else {
            signed.join(", ")
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

/// The arguments of `ferry bundle sign`.
pub struct Sign {
    pub bundle: PathBuf,
    pub key: PathBuf,
    pub log: Option<PathBuf>,
    pub json: bool,
}

/// Co-signs the bundle's manifest bytes into `BUNDLE.<KEYID>.minisig` beside it. The
/// bundle is read only as far as its signatures and never rewritten.
pub fn sign(args: Sign, g: &Globals) -> crate::error::Result<()> {
    let Sign {
        bundle,
        key,
        log,
        json,
    } = args;

    bundle_file(&bundle, "the co-signature is written beside the bundle")?;
    let key = SecretKey::load(&key)?;
    // A split bundle goes by NAME.ferry (where its index is), whichever volume is named.
    let bundle = reader::Input::from(bundle.as_path()).bundle_path()?;
    let head = reader::head(&reader::Input::from(bundle.as_path()))?;
    let manifest: BundleManifest = serde_json::from_slice(&head.manifest)
        .map_err(|e| crate::bundle::VerifyError::BadManifest(e.to_string()))?;
    manifest
        .validate()
        .map_err(crate::bundle::VerifyError::BadManifest)?;
    let digest = crate::digest::Digest::of(&head.manifest);
    let public = key.public();
    let embedded = head.signatures.iter().find(|(_, s)| s.key_id == key.id);
    let written = match embedded {
        Some((_, sig)) => {
            public.verify(&head.manifest, sig)?;
            None
        }
        None => {
            let comment = format!(
                "ferry approval series={} sequence={} created={} manifest-sha256={}",
                manifest.series,
                manifest.sequence,
                manifest.created,
                digest.hex()
            );
            let text = key.sign(&head.manifest, &comment);
            Some(cosign::write(&bundle, key.id, &text)?)
        }
    };
    audit(
        &log.unwrap_or_else(|| default_state_dir().join(crate::audit::FILE)),
        serde_json::json!({
            "action": "bundle sign",
            "outcome": if written.is_some() { "signed" } else { "already-signed" },
            "bundle": absolute(&bundle),
            "manifest": digest,
            "series": manifest.series,
            "sequence": manifest.sequence,
            "signer": key.id.to_string(),
            "file": written.as_ref().map(|p| absolute(p)),
        }),
        g.reporter.as_ref(),
    );
    if json {
        let v = serde_json::json!({
            "bundle": bundle.display().to_string(),
            "keyId": key.id.to_string(),
            "manifestDigest": digest.to_string(),
            "file": written.as_ref().map(|p| p.display().to_string()),
            "alreadySigned": written.is_none(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if !g.quiet {
        match &written {
            None => println!(
                "{} is already signed by key {} (its embedded signature): nothing written",
                bundle.display(),
                key.id
            ),
            Some(path) => println!(
                "signed {} (series {} sequence {}, manifest {}) with key {}: wrote {}; carry it beside the bundle",
                bundle.display(),
                manifest.series,
                manifest.sequence,
                digest,
                key.id,
                path.display()
            ),
        }
    }
    Ok(())
}
