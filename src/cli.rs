//! The command line (clap only). Commands receive plain structs built in `main`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "ferry",
    version,
    about = "Carry container images across an air gap in signed, verified bundles"
)]
pub struct Cli {
    /// Print nothing but errors (no progress, no summaries).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Before the command, as earlier versions took it: `--plain-http` of the commands
    /// that reach registries.
    #[arg(long = "plain-http", value_name = "HOST", hide = true)]
    pub plain_http: Vec<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Fetch what a spec names into a store (resumable: fetches only what is missing).
    Pull {
        /// The spec file (ferry.toml).
        spec: PathBuf,
        #[command(flatten)]
        store: StoreArg,
        /// Blobs to download at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        upstream: UpstreamArgs,
    },
    /// Create, verify and inspect bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Verify a bundle, then put its contents into a registry or a store.
    #[command(group(clap::ArgGroup::new("target").required(true).multiple(false)))]
    Import {
        /// The bundle, or any volume of a split one (or its name without the suffix);
        /// `-` reads it from standard input (co-signatures beside it are then not found).
        bundle: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
        /// A folder holding volumes of a split bundle (one per mounted medium;
        /// repeatable). Volumes are also looked for beside BUNDLE.
        #[arg(long = "volumes", value_name = "DIR")]
        volumes: Vec<PathBuf>,
        /// A registry: HOST[:PORT][/PREFIX] (`docker://` before it is taken too).
        #[arg(long, value_name = "HOST[:PORT][/PREFIX]", group = "target")]
        to: Option<String>,
        /// A store directory (what `ferry serve` serves).
        #[arg(long, value_name = "DIR", group = "target")]
        store: Option<PathBuf>,
        /// Where import state for registry targets lives [default: $XDG_STATE_HOME/ferry].
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Import again even if this bundle was the last one imported here: whatever
        /// the target lost is written again. Older bundles are still refused.
        #[arg(long)]
        force: bool,
        /// The site's own Rego policy over the verified manifest: a denial is exit 4
        /// and the target unchanged.
        #[arg(long, value_name = "FILE.rego")]
        policy: Option<PathBuf>,
        /// Write a receipt of what the target holds afterwards (JSON): the base an
        /// incremental bundle is made against (`bundle create --since HAVE.json`).
        #[arg(long, value_name = "HAVE.json")]
        receipt: Option<PathBuf>,
        /// Sign the receipt with this (site) key: HAVE.json.minisig beside it.
        #[arg(long, value_name = "SITE.key", requires = "receipt")]
        receipt_key: Option<PathBuf>,
        #[command(flatten)]
        upstream: UpstreamArgs,
    },
    /// Check or list an audit log: what was created, signed and imported, hash-chained.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Evaluate Rego policies without writing or importing anything.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Write what a store holds into the forms other tools read.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Write a report an auditor reads (DIR/report.html, report.json, report.md) of a
    /// bundle, a store or an audit log. Exit 3, with the report written, when the bundle
    /// does not verify against the trust given or the audit chain is broken.
    Report(ReportArgs),
    /// Serve a store read-only to unmodified clients (OCI registry API, Python simple
    /// API, conda channels, Hugging Face API), over HTTP or TLS, to anyone or to the
    /// users of an htpasswd or token file.
    Serve(ServeArgs),
    /// What a store holds, and keeping it: list, remove entries, collect unreferenced
    /// blobs, check every blob and reference.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Print a shell completion script for ferry (`scripts/install.sh` installs them).
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write ferry's man pages (ferry.1, ferry-bundle-create.1, ...) into DIR.
    Manpages {
        /// The directory to write them into (made if missing).
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// List what the store holds, by ecosystem: each entry's reference, digest, size
    /// (every blob it reaches) and the bundle that placed it.
    Ls {
        #[command(flatten)]
        store: StoreDir,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take entries out of the store's index (REPO:TAG, REPO@sha256:DIGEST, or REPO for
    /// all of it); their blobs stay until `ferry store gc`. Recorded in the audit log.
    Rm {
        /// What to remove, as `ferry store ls` names it.
        reference: String,
        #[command(flatten)]
        store: StoreDir,
    },
    /// Remove every blob no entry reaches. Safe while `ferry serve` runs; refused while
    /// a pull or import writes to the store, and on a store `check` finds damaged.
    Gc {
        #[command(flatten)]
        store: StoreDir,
        /// List what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Hash every blob against its name and follow every entry's references: exit 3
    /// naming each problem.
    Check {
        #[command(flatten)]
        store: StoreDir,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The store a `ferry store` command works on.
#[derive(Args, Debug)]
pub struct StoreDir {
    /// The store directory.
    #[arg(long, value_name = "DIR", env = "FERRY_STORE")]
    pub store: PathBuf,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The store to serve (what `ferry import --store` wrote).
    #[arg(long, value_name = "DIR", env = "FERRY_STORE")]
    pub store: PathBuf,
    /// The address to listen on: HOST:PORT, localhost:PORT, or :PORT for every
    /// interface.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5000", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Close a connection that has not sent a complete request head (or finished its
    /// TLS handshake) within SECS of connecting or of its previous response (slow or
    /// idle clients cannot hold the server).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout: u64,
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first).
    #[arg(long, value_name = "CERT.pem", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM; not readable by others).
    #[arg(long, value_name = "KEY.pem", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Only the users of this htpasswd file may read (bcrypt entries, `htpasswd -B`).
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// Only holders of a token of this file may read: lines `NAME:TOKEN`, sent as
    /// `Authorization: Bearer TOKEN` or as the password of user NAME (not readable
    /// by others).
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Append a JSON line per request (time, client, user, method, path, status,
    /// bytes, duration) to FILE; `-` for standard output.
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
}

/// `--listen`: HOST:PORT as a socket address, `localhost:PORT` as 127.0.0.1, `:PORT` as
/// every IPv4 interface (as docker-registry reads `:5000`), or a name resolved once.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    use std::net::{Ipv4Addr, ToSocketAddrs as _};
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port number (0-65535)"))
    };
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(p) = text.strip_prefix(':') {
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port(p)?)));
    }
    let Some((host, p)) = text.rsplit_once(':') else {
        return Err(format!(
            "{text:?} has no port: give HOST:PORT, localhost:PORT or :PORT"
        ));
    };
    let p = port(p)?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, p)));
    }
    (host, p)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("cannot resolve {host:?} to an address to listen on"))
}

impl Command {
    /// Whether the command holds network connections (a server, a pull, a push).
    pub fn talks_to_peers(&self) -> bool {
        matches!(
            self,
            Command::Serve(_)
                | Command::Pull { .. }
                | Command::Import { .. }
                | Command::Bundle(BundleCommand::Create { .. })
                | Command::Policy(PolicyCommand::Check(_))
                | Command::Export(ExportCommand::Python { .. })
        )
    }

    /// Whether `--json` was asked for: then an error is also printed on standard
    /// output, as `{"error", "causes", "hint", "exit"}`, for scripts.
    pub fn wants_json(&self) -> bool {
        match self {
            Command::Key(KeyCommand::Show(a)) => a.json,
            Command::Pull { plan, .. } | Command::Bundle(BundleCommand::Create { plan, .. }) => {
                plan.json
            }
            Command::Bundle(BundleCommand::Verify { json, .. })
            | Command::Bundle(BundleCommand::Inspect { json, .. })
            | Command::Import { json, .. } => *json,
            Command::Bundle(BundleCommand::Sign(a)) => a.json,
            Command::Policy(PolicyCommand::Check(a)) => a.json,
            Command::Audit(AuditCommand::Verify(a)) => a.log.json,
            Command::Audit(AuditCommand::Show(a)) => a.json,
            Command::Audit(AuditCommand::Checkpoint(a)) => a.log.json,
            Command::Store(
                StoreCommand::Ls { json, .. }
                | StoreCommand::Gc { json, .. }
                | StoreCommand::Check { json, .. },
            ) => *json,
            _ => false,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Make a key pair: NAME.key (secret, 0600) and NAME.pub.
    Generate {
        /// The key pair's name: NAME.key and NAME.pub are written (`team`, or
        /// `team.key`).
        name: PathBuf,
    },
    /// Print a key's id and public key line, to compare out of band.
    Show(KeyShowArgs),
}

#[derive(Args, Debug)]
pub struct KeyShowArgs {
    /// NAME.pub, or NAME.key (only its public half is shown).
    pub key: PathBuf,
    /// Print it as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// What a policy says of a spec (pulled into the store, as `bundle create` would)
    /// or of a bundle: every denial and warning. Exit 4 when it denies.
    Check(PolicyCheckArgs),
}

#[derive(Args, Debug)]
pub struct PolicyCheckArgs {
    /// A spec file (ferry.toml) or a bundle (OUT.ferry; `-` reads one from standard input).
    pub input: PathBuf,
    /// The Rego policy (`package ferry`, `deny`/`warn` sets).
    #[arg(long, value_name = "FILE.rego")]
    pub policy: PathBuf,
    /// The store a spec is pulled into [default: the user's cache].
    #[arg(long, value_name = "DIR", env = "FERRY_STORE")]
    pub store: Option<PathBuf>,
    /// Blobs to download at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Print the verdict as JSON (an error, too, as JSON on standard output).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
}

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Pull what the spec names and write a signed bundle.
    Create {
        /// The spec file (ferry.toml).
        spec: PathBuf,
        /// The bundle to write (a split one: its volumes OUT.ferry.001, ... and index).
        #[arg(
            short,
            long,
            value_name = "OUT.ferry",
            required_unless_present = "dry_run"
        )]
        output: Option<PathBuf>,
        /// The secret key to sign with.
        #[arg(long, value_name = "NAME.key", required_unless_present = "dry_run")]
        key: Option<PathBuf>,
        /// The store to pull into [default: $XDG_CACHE_HOME/ferry/store].
        #[arg(long, value_name = "DIR", env = "FERRY_STORE")]
        store: Option<PathBuf>,
        /// A Rego policy (`package ferry`, `deny`/`warn` sets) evaluated over the bundle
        /// manifest before anything is written: a denial is exit 4 and no bundle.
        #[arg(long, value_name = "FILE.rego")]
        policy: Option<PathBuf>,
        /// Make an incremental bundle: leave out every blob that BASE (an earlier bundle of
        /// the series, its ferry-manifest.json, or a receipt `ferry import --receipt`
        /// wrote) says the other side holds. Manifests and configs are always carried.
        #[arg(long, value_name = "BASE")]
        since: Option<PathBuf>,
        /// Write volumes OUT.ferry.001, .002, ... of at most SIZE each (4GiB, 25GB,
        /// 4.7GB) and their signed index OUT.ferry.volumes.json, in one pass.
        #[arg(long, value_name = "SIZE", value_parser = crate::bundle::volumes::parse_size)]
        split: Option<u64>,
        /// The sequence number [default: one past the last, at least the time in seconds].
        #[arg(long)]
        sequence: Option<u64>,
        /// zstd level for content that is not already compressed.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
        level: i32,
        /// Blobs to download at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// Replace OUT.ferry (and its volumes) if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        upstream: UpstreamArgs,
    },
    /// Check a bundle's signature and every digest; writes nothing.
    Verify {
        /// The bundle, or any volume of a split one (or its name without the suffix);
        /// `-` reads it from standard input (co-signatures beside it are then not found).
        bundle: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
        /// A folder holding volumes of a split bundle (one per mounted medium;
        /// repeatable). Volumes are also looked for beside BUNDLE.
        #[arg(long = "volumes", value_name = "DIR")]
        volumes: Vec<PathBuf>,
        /// Print the result as JSON (an error, too, as JSON on standard output).
        #[arg(long)]
        json: bool,
    },
    /// Show what a bundle holds (without verifying it).
    Inspect {
        /// The bundle (not verified: see `bundle verify`); `-` reads it from standard input.
        bundle: PathBuf,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Co-sign a bundle: write OUT.ferry.<KEYID>.minisig beside it (the bundle itself
    /// is not rewritten).
    Sign(SignArgs),
    /// Print the SBOM a bundle carries (CycloneDX 1.5 or SPDX 2.3 JSON); for a bundle
    /// that carries none, one derived from its manifest, marked as derived.
    Sbom(SbomArgs),
}

#[derive(Args, Debug)]
pub struct SbomArgs {
    /// The bundle whose SBOM to print.
    pub bundle: PathBuf,
    /// The SBOM format.
    #[arg(long, value_enum, default_value_t = SbomFormat::Cyclonedx)]
    pub format: SbomFormat,
    /// Write it to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub trust: OptionalTrustArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SbomFormat {
    /// CycloneDX 1.5 JSON.
    Cyclonedx,
    /// SPDX 2.3 JSON.
    Spdx,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// The bundle to co-sign.
    pub bundle: PathBuf,
    /// The approver's secret key.
    #[arg(long, value_name = "APPROVER.key")]
    pub key: PathBuf,
    /// The audit log this approval is appended to [default:
    /// $XDG_STATE_HOME/ferry/audit.jsonl].
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the hash chain of an audit log: exit 3 naming the first record that was
    /// edited, removed, moved or cut; with --trust, also that the log still holds what
    /// its signed checkpoint covers.
    Verify(AuditVerifyArgs),
    /// List an audit log's records (checked first).
    Show(AuditArgs),
    /// Sign a checkpoint of an audit log (LOG.checkpoint and LOG.checkpoint.minisig):
    /// its record count and the hash of its last record, so that deleting records up
    /// to it is detected. Keep a copy elsewhere.
    Checkpoint(AuditCheckpointArgs),
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The store whose log to read (`DIR/.ferry/audit.jsonl`).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "log",
        required_unless_present = "log"
    )]
    pub store: Option<PathBuf>,
    /// An audit log file (a registry target's is in its state directory).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Print it as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AuditVerifyArgs {
    #[command(flatten)]
    pub log: AuditArgs,
    /// A site key whose checkpoint is accepted (repeat for several); with it, a
    /// checkpoint must exist, verify and match the log.
    #[arg(long = "trust", value_name = "SITE.pub")]
    pub trust: Vec<PathBuf>,
    /// The checkpoint to check the log against, e.g. a copy kept elsewhere (its
    /// signature FILE.minisig beside it) [default: LOG.checkpoint].
    #[arg(long, value_name = "FILE", requires = "trust")]
    pub checkpoint: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AuditCheckpointArgs {
    #[command(flatten)]
    pub log: AuditArgs,
    /// The site's secret key that signs checkpoints.
    #[arg(long, value_name = "SITE.key")]
    pub key: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// The store's Python wheels: a static PEP 503 tree (--to) or an upload to a
    /// PyPI-compatible server (--upload).
    Python {
        /// The store whose wheels to export.
        #[arg(long, value_name = "DIR", env = "FERRY_STORE")]
        store: PathBuf,
        /// Write a static index: DIR/simple/ (pages) and DIR/files/ (wheels, metadata).
        #[arg(
            long,
            value_name = "DIR",
            conflicts_with = "upload",
            required_unless_present = "upload"
        )]
        to: Option<PathBuf>,
        /// Upload through the legacy upload API, as twine does.
        #[arg(long, value_name = "URL")]
        upload: Option<String>,
        /// The upload user name.
        #[arg(long, requires = "upload")]
        username: Option<String>,
        /// The upload password (better: set FERRY_UPLOAD_PASSWORD).
        #[arg(
            long,
            env = "FERRY_UPLOAD_PASSWORD",
            hide_env_values = true,
            requires = "upload"
        )]
        password: Option<String>,
    },
    /// The store's conda packages as channel directories (DIR/<channel>/<subdir>/).
    Conda {
        /// The store whose conda packages to export.
        #[arg(long, value_name = "DIR", env = "FERRY_STORE")]
        store: PathBuf,
        /// The directory to write the channels into.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
    /// The store's models and datasets as a Hugging Face hub cache, for HF_HUB_OFFLINE=1.
    Hf {
        /// The store whose models and datasets to export.
        #[arg(long, value_name = "DIR", env = "FERRY_STORE")]
        store: PathBuf,
        /// The cache directory (what HF_HUB_CACHE names; $HF_HOME/hub by default there).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct StoreArg {
    /// The store directory [default: $XDG_CACHE_HOME/ferry/store].
    #[arg(long, value_name = "DIR", env = "FERRY_STORE")]
    pub store: Option<PathBuf>,
}

/// How the commands that reach registries and other upstreams (indexes, channels, hubs)
/// connect and sign in.
#[derive(Args, Debug, Default, Clone)]
pub struct UpstreamArgs {
    /// Speak plain HTTP to this registry HOST[:PORT] (loopback registries always are,
    /// unless --ca-cert is given).
    #[arg(long = "plain-http", value_name = "HOST")]
    pub plain_http: Vec<String>,
    /// Trust this CA certificate (PEM; repeatable) besides the system's trust store, for
    /// registries, indexes, channels and hubs. With it, loopback registries are spoken
    /// to over HTTPS too: name a plain one with --plain-http.
    #[arg(long = "ca-cert", value_name = "CA.pem")]
    pub ca_cert: Vec<PathBuf>,
    /// Registry credentials from this auth file only (`auth.json` as podman, skopeo and
    /// Docker write it) [default: $REGISTRY_AUTH_FILE, then the containers and Docker
    /// auth files].
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Resolve the spec and print what would be fetched (and what the store already
    /// holds); fetch nothing but metadata, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: print the plan as JSON.
    #[arg(long, requires = "dry_run")]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TrustArgs {
    /// A public key whose signature is accepted (repeat for several).
    #[arg(
        long = "trust",
        value_name = "NAME.pub",
        required_unless_present = "trust_policy"
    )]
    pub keys: Vec<PathBuf>,
    /// How many distinct trusted keys must have signed.
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// A trust policy (TOML: keys with roles, what each series needs, revoked keys,
    /// a maximum age) instead of --trust and --threshold.
    #[arg(long, value_name = "TRUST.toml", conflicts_with_all = ["keys", "threshold"])]
    pub trust_policy: Option<PathBuf>,
}

/// Trust for commands that also work unverified (and then say so): `--trust` or
/// `--trust-policy`, as verify and import take them, but optional.
#[derive(Args, Debug)]
pub struct OptionalTrustArgs {
    /// A public key whose signature is accepted (repeat for several); without --trust
    /// or --trust-policy nothing is verified.
    #[arg(long = "trust", value_name = "NAME.pub")]
    pub keys: Vec<PathBuf>,
    /// How many distinct trusted keys must have signed.
    #[arg(long, default_value_t = 1, requires = "keys")]
    pub threshold: usize,
    /// A trust policy (TOML) instead of --trust and --threshold.
    #[arg(long, value_name = "TRUST.toml", conflicts_with_all = ["keys", "threshold"])]
    pub trust_policy: Option<PathBuf>,
}

impl OptionalTrustArgs {
    /// The trust asked for, if any.
    pub fn given(self) -> Option<TrustArgs> {
        (!self.keys.is_empty() || self.trust_policy.is_some()).then_some(TrustArgs {
            keys: self.keys,
            threshold: self.threshold,
            trust_policy: self.trust_policy,
        })
    }
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["bundle", "store", "log"])))]
pub struct ReportArgs {
    /// A bundle (OUT.ferry): what it carries, its signatures, policy and SBOM.
    pub bundle: Option<PathBuf>,
    /// A store: what it holds now and its audit log (`DIR/.ferry/audit.jsonl`).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// An audit log: its history and hash chain.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// The directory to write report.html, report.json and report.md into.
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// With a bundle: verify it against this public key (repeat for several); without
    /// --trust or --trust-policy, signatures are listed but not checked.
    #[arg(long = "trust", value_name = "NAME.pub", requires = "bundle")]
    pub keys: Vec<PathBuf>,
    /// How many distinct trusted keys must have signed.
    #[arg(long, requires = "keys")]
    pub threshold: Option<usize>,
    /// With a bundle: verify it against a trust policy.
    #[arg(long, value_name = "TRUST.toml", requires = "bundle", conflicts_with_all = ["keys", "threshold"])]
    pub trust_policy: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_taken_before_the_command_and_on_the_commands_that_reach_registries() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["ferry"], args].concat());
        let before = parse(&["--plain-http", "h:1", "pull", "s.toml"]).unwrap();
        assert_eq!(before.plain_http, ["h:1"]);
        let Command::Pull { upstream, .. } = parse(&["pull", "s.toml", "--plain-http", "h:2"])
            .unwrap()
            .command
        else {
            panic!("not pull")
        };
        assert_eq!(upstream.plain_http, ["h:2"]);
        for args in [
            &[
                "import",
                "b",
                "--trust",
                "k",
                "--to",
                "r",
                "--plain-http",
                "h",
            ][..],
            &[
                "bundle",
                "create",
                "s",
                "-o",
                "o",
                "--key",
                "k",
                "--ca-cert",
                "c",
            ][..],
            &["policy", "check", "s", "--policy", "p", "--authfile", "a"][..],
        ] {
            parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        // Where they mean nothing they are not taken.
        for args in [
            &["key", "generate", "k", "--plain-http", "h"][..],
            &["serve", "--store", "s", "--ca-cert", "c"][..],
            &["bundle", "verify", "b", "--trust", "k", "--authfile", "a"][..],
        ] {
            assert!(parse(args).is_err(), "{args:?} parsed");
        }
    }

    /// `--help` describes every option and argument of every command.
    #[test]
    fn every_option_has_a_description() {
        use clap::CommandFactory as _;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "ferry", &mut missing);
        assert!(missing.is_empty(), "no description: {missing:#?}");
    }

    #[test]
    fn listen_addresses_as_docker_and_people_write_them() {
        let ok = |s: &str| parse_listen(s).unwrap().to_string();
        assert_eq!(ok("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(ok(":5000"), "0.0.0.0:5000");
        assert_eq!(ok("localhost:5000"), "127.0.0.1:5000");
        assert_eq!(ok("LOCALHOST:1"), "127.0.0.1:1");
        assert_eq!(ok("[::1]:5000"), "[::1]:5000");
        assert_eq!(ok("0.0.0.0:0"), "0.0.0.0:0");
        for bad in [
            "",
            "5000",
            ":",
            ":99999",
            "localhost:",
            "host:port",
            "127.0.0.1",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad:?} parsed");
        }
    }
}
