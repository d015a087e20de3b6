//! Command glue, one file per command: each turns its arguments into the plain
//! settings of the work (`ImportOptions`, `PullOptions`, ...), runs the work and prints.
//! Helpers several commands share live here.

mod audit;
mod bundle;
mod export;
mod import;
mod key;
mod policy;
mod pull;
mod report;
mod serve;
mod store;

use std::path::{Path, PathBuf};

use crate::error::Context as _;

use crate::bundle::BundleManifest;
use crate::bundle::manifest::PolicyVerdict;
use crate::bundle::reader::{self, Trust};
use crate::bundle::writer::{self, BundleSpec, WriteOptions};
use crate::cli::{
    BundleCommand, Cli, Command, ExportCommand, KeyCommand, PlanArgs, PolicyCommand, StoreArg,
    TrustArgs,
};
use crate::ecosystems::AnyArtifact;
use crate::exit::{Classify, ExitStatus};
use crate::import::{ImportOptions, Target, absolute};
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

/// Refuses `-` (standard input, read once from start to end) as the bundle of a command
/// that reads it twice or writes beside it; `why` says which.
pub(crate) fn bundle_file(path: &Path, why: &str) -> Result<(), UsageError> {
    if !crate::bundle::reader::is_stdin(path) {
        return Ok(());
    }
    Err(UsageError {
        message: format!("this command cannot take the bundle from standard input (-): {why}"),
        hint: Some("save the stream to a file and give its path (a file named - is ./-)".into()),
    })
}

/// What every command gets besides its own arguments.
pub struct Globals {
    pub quiet: bool,
    pub registry: RegistryOptions,
    pub reporter: Arc<dyn Reporter>,
}

/// The upstream arguments of the commands that have them.
fn upstream_args(command: &Command) -> Option<&crate::cli::UpstreamArgs> {
    match command {
        Command::Pull { upstream, .. }
        | Command::Import { upstream, .. }
        | Command::Bundle(BundleCommand::Create { upstream, .. }) => Some(upstream),
        Command::Policy(PolicyCommand::Check(args)) => Some(&args.upstream),
        _ => None,
    }
}

/// Registry options from `--plain-http` (before or after the command), `--ca-cert` and
/// `--authfile`: the files are read and checked here, so a typo is exit 2 before any
/// work. The CA certificates are also given to every HTTP client of the process.
fn registry_options(cli: &Cli) -> crate::error::Result<RegistryOptions> {
    let mut options = RegistryOptions {
        plain_http: cli.plain_http.clone(),
        ..Default::default()
    };
    let Some(args) = upstream_args(&cli.command) else {
        return Ok(options);
    };
    options.plain_http.extend(args.plain_http.iter().cloned());
    let usage = |message: String, hint: &str| UsageError {
        message,
        hint: Some(hint.to_string()),
    };
    for path in &args.ca_cert {
        let pem = std::fs::read(path).map_err(|e| {
            usage(
                format!("cannot read --ca-cert {}: {e}", path.display()),
                "give the CA certificate's PEM file",
            )
        })?;
        let certs = crate::fetch::pem_certificates(&pem).map_err(|e| {
            usage(
                format!("--ca-cert {} is not a PEM certificate: {e}", path.display()),
                "give the CA certificate in PEM (-----BEGIN CERTIFICATE-----), e.g. `openssl x509 -in CA.der -inform der -out CA.pem`",
            )
        })?;
        options.ca_certs.extend(certs);
    }
    if let Some(path) = &args.authfile {
        crate::sources::auth::check_file(path).map_err(|e| {
            usage(
                format!("--authfile {}: {e}", path.display()),
                "give an auth.json as `podman login --authfile FILE` writes it: {\"auths\": {\"HOST[:PORT]\": {\"auth\": base64(USER:PASSWORD)}}}",
            )
        })?;
        options.auth_file = Some(path.clone());
    }
    crate::fetch::trust_also(&options.ca_certs);
    Ok(options)
}

pub fn run(cli: Cli) -> crate::error::Result<()> {
    let g = Globals {
        quiet: cli.quiet,
        registry: registry_options(&cli)?,
        reporter: reporter::for_stderr(cli.quiet),
    };
    match cli.command {
        Command::Key(KeyCommand::Generate { name }) => key::generate(key::KeyGenerate { name }, &g),
        Command::Key(KeyCommand::Show(a)) => key::show(
            key::KeyShow {
                key: a.key,
                json: a.json,
            },
            &g,
        ),
        Command::Pull {
            spec,
            store,
            jobs,
            plan,
            ..
        } => pull::run(
            pull::Pull {
                spec,
                store,
                jobs,
                plan,
            },
            &g,
        ),
        Command::Bundle(BundleCommand::Create {
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
            ..
        }) => bundle::create(
            bundle::Create {
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
            },
            &g,
        ),
        Command::Bundle(BundleCommand::Verify {
            bundle,
            trust,
            volumes,
            json,
        }) => bundle::verify(
            bundle::Verify {
                bundle: reader::Input::new(&bundle, &volumes),
                trust,
                json,
            },
            &g,
        ),
        Command::Bundle(BundleCommand::Inspect { bundle, json }) => {
            bundle::inspect(bundle::Inspect { bundle, json }, &g)
        }
        Command::Bundle(BundleCommand::Sbom(a)) => bundle::sbom(
            bundle::Sbom {
                bundle: a.bundle,
                format: match a.format {
                    crate::cli::SbomFormat::Cyclonedx => crate::sbom::Format::CycloneDx,
                    crate::cli::SbomFormat::Spdx => crate::sbom::Format::Spdx,
                },
                output: a.output,
                trust: a.trust.given(),
            },
            &g,
        ),
        Command::Bundle(BundleCommand::Sign(a)) => bundle::sign(
            bundle::Sign {
                bundle: a.bundle,
                key: a.key,
                log: a.log,
                json: a.json,
            },
            &g,
        ),
        Command::Import {
            bundle,
            trust,
            volumes,
            to,
            store,
            state_dir,
            json,
            force,
            policy,
            receipt,
            receipt_key,
            ..
        } => import::run(
            import::Import {
                bundle: reader::Input::new(&bundle, &volumes),
                trust,
                to,
                store,
                state_dir,
                json,
                force,
                policy,
                receipt,
                receipt_key,
            },
            &g,
        ),
        Command::Policy(PolicyCommand::Check(args)) => policy::check(args, &g),
        Command::Audit(command) => audit::run(command, &g),
        Command::Export(ExportCommand::Python {
            store,
            to,
            upload,
            username,
            password,
        }) => export::python(
            export::ExportPython {
                store,
                to,
                upload,
                username,
                password,
            },
            &g,
        ),
        Command::Export(ExportCommand::Conda { store, to }) => {
            export::conda(export::ExportConda { store, to }, &g)
        }
        Command::Export(ExportCommand::Hf { store, to }) => {
            export::hf(export::ExportHf { store, to }, &g)
        }
        Command::Report(a) => report::run(report::Report::from_args(a), &g),
        Command::Serve(args) => serve::run(args, &g),
        Command::Store(command) => store::run(command, &g),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "ferry", &mut std::io::stdout());
            Ok(())
        }
        Command::Manpages { dir } => manpages(&dir, &g),
    }
}

/// `ferry manpages DIR`: a page for ferry and for every command under it.
fn manpages(dir: &Path, g: &Globals) -> crate::error::Result<()> {
    use clap::CommandFactory as _;
    fn write(
        cmd: clap::Command,
        name: &str,
        dir: &Path,
        n: &mut usize,
    ) -> crate::error::Result<()> {
        let cmd = cmd.name(name.to_string());
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
        *n += 1;
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            write(sub.clone(), &format!("{name}-{}", sub.get_name()), dir, n)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut n = 0;
    write(Cli::command(), "ferry", dir, &mut n)?;
    if !g.quiet {
        println!("wrote {n} man pages into {}", dir.display());
    }
    Ok(())
}

/// How a spec is pulled.
pub struct PullOptions {
    pub registry: RegistryOptions,
    /// Downloads at once.
    pub jobs: usize,
    /// A dry run: resolve, record what would be fetched here, fetch and write nothing.
    pub plan: Option<Arc<crate::plan::Plan>>,
}

/// Pulls every entry of the spec into the store, on `rt`; images leave their layers and
/// tags to `defer` when given.
fn pull_entries(
    spec: &Spec,
    store: &Store,
    options: &PullOptions,
    reporter: &Arc<dyn Reporter>,
    rt: &tokio::runtime::Runtime,
    defer: Option<&crate::ecosystems::image::Deferred>,
) -> crate::error::Result<Vec<AnyArtifact>> {
    // A pull writes blobs before the entries that name them: no gc meanwhile (a dry
    // run writes nothing, not even the hold).
    let _hold = match options.plan {
        None => Some(crate::inventory::hold(store.root())?),
        Some(_) => None,
    };
    let cx = crate::ecosystems::PullContext {
        store,
        jobs: options.jobs,
        plan: options.plan.as_deref(),
        reporter,
        registry: &options.registry,
        defer,
    };
    rt.block_on(crate::ecosystems::pull_all(&spec.entries, &cx))
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
) -> crate::error::Result<()> {
    let spec_file = Spec::load(spec)?;
    let store = Store::at(&store.unwrap_or_else(default_store))?;
    let plan = Arc::new(crate::plan::Plan::default());
    let options = PullOptions {
        registry,
        jobs,
        plan: Some(plan.clone()),
    };
    pull_entries(&spec_file, &store, &options, reporter, &runtime()?, None)?;
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
) -> crate::error::Result<(Spec, Store, Vec<AnyArtifact>)> {
    let spec_file = Spec::load(spec)?;
    let store = Store::open_or_create(&store.unwrap_or_else(default_store))?;
    reporter.line(&format!("store {}", absolute(store.root()).display()));
    let artifacts = pull_entries(&spec_file, &store, &options, reporter, &runtime()?, None)?;
    Ok((spec_file, store, artifacts))
}

fn runtime() -> crate::error::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn load_trust(trust: &TrustArgs) -> crate::error::Result<Vec<PublicKey>> {
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

/// Appends to an audit log; a log that cannot be written is a warning, never the
/// reason a finished command reports failure (its record is then missing: the warning
/// says where).
fn audit(log: &Path, record: serde_json::Value, reporter: &dyn Reporter) {
    if let Err(e) = crate::audit::append(log, record) {
        reporter.line(&format!(
            "warning: {e}: {}",
            std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default()
        ));
    }
}

/// An error as an audit record says it: the message and its causes, credentials cut.
fn error_text(e: &crate::error::Error) -> String {
    let text: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    crate::names::redact_text(&text.join(": "))
}

fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}
