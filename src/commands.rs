//! Command glue: turn parsed arguments into plain settings, run the work, print results.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::bundle::BundleManifest;
use crate::bundle::manifest::PolicyVerdict;
use crate::bundle::reader::{self, Trust};
use crate::bundle::writer::{self, BundleSpec, WriteOptions};
use crate::cli::{BundleCommand, Cli, Command, ExportCommand, KeyCommand, TrustArgs};
use crate::exit::{Classify, ExitStatus};
use crate::import::{self, ImportOptions, Outcome, Target};
use crate::pull::{self, PullOptions};
use crate::reporter::{self, Reporter};
use crate::sign::{self, PublicKey, SecretKey};
use crate::sources::registry::RegistryOptions;
use crate::spec::Spec;
use crate::store::Store;
use crate::targets::registry::RegistryTarget;
use crate::trust::TargetState;
use std::sync::Arc;

/// A command line that parses but makes no sense.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    pub message: String,
    pub hint: Option<String>,
}

impl Classify for UsageError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Usage
    }
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let reporter = reporter::for_stderr(cli.quiet);
    let registry = RegistryOptions {
        plain_http: cli.plain_http.clone(),
    };
    match cli.command {
        Command::Key(KeyCommand::Generate { name }) => {
            let (secret, public, id) = sign::generate(&name)?;
            if !cli.quiet {
                println!("key id {id}");
                println!(
                    "secret key: {} (0600; keep it on the connected side)",
                    secret.display()
                );
                println!("public key: {} (give it to importers)", public.display());
            }
            Ok(())
        }
        Command::Pull {
            spec,
            store,
            jobs,
            plan,
        } => {
            if plan.dry_run {
                return dry_run(&spec, store.store, registry, jobs, plan.json, &reporter);
            }
            let (_, store, artifacts) = pull_spec(
                &spec,
                store.store,
                PullOptions {
                    registry,
                    jobs,
                    plan: None,
                },
                &reporter,
            )?;
            if !cli.quiet {
                println!(
                    "{} artifact(s) in {}",
                    artifacts.len(),
                    store.root().display()
                );
            }
            Ok(())
        }
        Command::Bundle(BundleCommand::Create {
            spec,
            output,
            key,
            store,
            policy,
            sequence,
            level,
            jobs,
            plan,
        }) => {
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
                        "leave --policy out; the bundle records its verdict as `not-evaluated`"
                            .into(),
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
            if !cli.quiet {
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
        Command::Bundle(BundleCommand::Verify {
            bundle,
            trust,
            json,
        }) => {
            let keys = load_trust(&trust)?;
            let verified = import::verify(
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
            } else if !cli.quiet {
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
        Command::Bundle(BundleCommand::Inspect { bundle, json }) => {
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
        Command::Import {
            bundle,
            trust,
            to,
            store,
            state_dir,
            json,
            force,
        } => {
            let keys = load_trust(&trust)?;
            let target = match (to, store) {
                (Some(to), None) => Target::Registry(RegistryTarget::parse(&to)?),
                (None, Some(dir)) => Target::Store(dir),
                _ => unreachable!("clap requires exactly one of --to and --store"),
            };
            let options = ImportOptions {
                force,
                trust: Trust {
                    keys: &keys,
                    threshold: trust.threshold,
                },
                target,
                state_dir: state_dir.unwrap_or_else(default_state_dir),
                registry,
            };
            let runtime = runtime()?;
            let outcome = import::import(&bundle, &options, &runtime, reporter.as_ref())?;
            let (verified, already) = match &outcome {
                Outcome::Imported(v) => (v, false),
                Outcome::AlreadyImported(v) => (v, true),
            };
            if json {
                let mut v = summary_json(
                    &verified.manifest,
                    &verified.manifest_digest,
                    &verified.signers,
                    true,
                );
                v["alreadyImported"] = already.into();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if !cli.quiet {
                let m = &verified.manifest;
                if already {
                    println!(
                        "already imported: series {} sequence {} (nothing to do)",
                        m.series, m.sequence
                    );
                } else {
                    println!(
                        "imported series {} sequence {}: {} artifact(s)",
                        m.series,
                        m.sequence,
                        m.artifacts.len()
                    );
                }
            }
            Ok(())
        }
        Command::Export(ExportCommand::Python {
            store,
            to,
            upload,
            username,
            password,
        }) => {
            let store = Store::open(&store)?;
            match (to, upload) {
                (Some(dir), _) => {
                    let n = crate::export::python_tree(&store, &dir)?;
                    if !cli.quiet {
                        println!(
                            "wrote {n} file(s) to {}: serve it, or use --index-url file://{}/simple/",
                            dir.display(),
                            std::path::absolute(&dir)?.display()
                        );
                    }
                }
                (None, Some(url)) => {
                    let upload = crate::export::Upload {
                        url: &url,
                        username: username.as_deref(),
                        password: password.as_deref(),
                    };
                    let (sent, present) =
                        runtime()?.block_on(crate::export::python_upload(&store, &upload))?;
                    if !cli.quiet {
                        println!("uploaded {sent} file(s) to {url} ({present} already there)");
                    }
                }
                (None, None) => unreachable!("clap requires --to or --upload"),
            }
            Ok(())
        }
        Command::Export(ExportCommand::Conda { store, to }) => {
            let store = Store::open(&store)?;
            let n = crate::export::conda_channels(&store, &to)?;
            if !cli.quiet {
                println!(
                    "wrote {n} package(s) to {}: use the channel file://{}/<channel>",
                    to.display(),
                    std::path::absolute(&to)?.display()
                );
            }
            Ok(())
        }
        Command::Export(ExportCommand::Hf { store, to }) => {
            let store = Store::open(&store)?;
            let n = crate::export::hf_cache(&store, &to)?;
            if !cli.quiet {
                println!(
                    "wrote {n} file(s) to {}: load with HF_HUB_OFFLINE=1 HF_HUB_CACHE={}",
                    to.display(),
                    std::path::absolute(&to)?.display()
                );
            }
            Ok(())
        }
        Command::Serve {
            store,
            listen,
            idle_timeout,
        } => {
            let store = Store::open(&store)?;
            let options = crate::serve::ServeOptions {
                listen,
                idle_timeout: std::time::Duration::from_secs(idle_timeout),
                quiet: cli.quiet,
            };
            runtime()?.block_on(crate::serve::serve(store, options))
        }
    }
}

/// `--dry-run`: resolves the spec against the store (which is not created when it does
/// not exist) and prints the plan.
fn dry_run(
    spec: &Path,
    store: Option<PathBuf>,
    registry: RegistryOptions,
    jobs: usize,
    json: bool,
    reporter: &Arc<dyn Reporter>,
) -> anyhow::Result<()> {
    let spec_file = Spec::load(spec)?;
    let store = Store::at(&store.unwrap_or_else(default_store))?;
    let plan = Arc::new(crate::plan::Plan::default());
    let options = PullOptions {
        registry,
        jobs,
        plan: Some(plan.clone()),
    };
    runtime()?.block_on(pull::pull(&spec_file, spec, &store, &options, reporter))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&plan.to_json())?);
    } else {
        print!("{}", plan.to_text(human));
    }
    Ok(())
}

/// Loads the spec and pulls it into the store (the default one unless given).
fn pull_spec(
    spec: &Path,
    store: Option<PathBuf>,
    options: PullOptions,
    reporter: &Arc<dyn Reporter>,
) -> anyhow::Result<(Spec, Store, Vec<crate::artifact::Artifact>)> {
    let spec_file = Spec::load(spec)?;
    let store = Store::open_or_create(&store.unwrap_or_else(default_store))?;
    let artifacts =
        runtime()?.block_on(pull::pull(&spec_file, spec, &store, &options, reporter))?;
    Ok((spec_file, store, artifacts))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn load_trust(trust: &TrustArgs) -> anyhow::Result<Vec<PublicKey>> {
    if trust.threshold == 0 || trust.threshold > trust.keys.len() {
        return Err(UsageError {
            message: format!(
                "--threshold {} with {} trusted key(s)",
                trust.threshold,
                trust.keys.len()
            ),
            hint: Some(
                "the threshold counts distinct --trust keys: between 1 and their number".into(),
            ),
        }
        .into());
    }
    trust
        .keys
        .iter()
        .map(|k| PublicKey::load(k).map_err(Into::into))
        .collect()
}

fn home_dir(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(fallback)))
        .unwrap_or_else(|| PathBuf::from(".").join(fallback))
}

fn default_store() -> PathBuf {
    home_dir("XDG_CACHE_HOME", ".cache").join("ferry/store")
}

fn default_state_dir() -> PathBuf {
    home_dir("XDG_STATE_HOME", ".local/state").join("ferry")
}

fn summary_json(
    m: &BundleManifest,
    digest: &crate::digest::Digest,
    signers: &[sign::KeyId],
    verified: bool,
) -> serde_json::Value {
    let mut v = serde_json::to_value(m).expect("manifest serialises");
    v["manifestDigest"] = digest.to_string().into();
    v["signatures"] = signers
        .iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .into();
    v["verified"] = verified.into();
    v
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
        let kind = match a.kind {
            crate::artifact::Kind::Image => "image",
            crate::artifact::Kind::Referrer => "referrer",
            crate::artifact::Kind::Python => "python",
            crate::artifact::Kind::Model => "model",
            crate::artifact::Kind::Conda => "conda",
        };
        println!("  {kind:<8} {}  {}", a.name(), a.digest);
        println!("           from {}", a.origin);
        if !a.platforms.is_empty() {
            println!("           platforms {}", a.platforms.join(", "));
        }
        if let Some(s) = &a.subject {
            println!("           attached to {s}");
        }
        for f in a.python.iter().flat_map(|p| &p.files) {
            println!("           {}  sha256:{}", f.filename, f.sha256);
        }
        if let Some(m) = &a.model {
            println!("           {} {} at commit {}", m.kind, m.repo, m.commit);
            for f in &m.files {
                println!("           {}  sha256:{}", f.path, f.sha256);
            }
        }
    }
}

fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}
