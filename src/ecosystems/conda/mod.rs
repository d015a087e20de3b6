//! Conda packages: solve the specs into the full closure for each target platform with
//! the rattler crates (repodata through `rattler_repodata_gateway`, `rattler_solve` with
//! the target's virtual packages, not the host's), fetch every package checked against
//! repodata's sha256 (or md5) and size while it streams, and keep each package as an OCI
//! artifact with its repodata record.

pub mod export;
pub mod record;
mod serve;
mod spec;

use std::sync::Arc;

use crate::error::Context as _;
use futures_util::StreamExt;
use rattler_conda_types::{
    Channel, GenericVirtualPackage, MatchSpec, ParseStrictness, RepoDataRecord, Subdir,
};
use rattler_solve::{SolverImpl, SolverTask};

use crate::artifact::Artifact;
use crate::exit::{Classify, ExitStatus};
use crate::names::{ChannelName, CondaFileName, CondaToken, Subdir as SubdirName};
use crate::reporter::Reporter;
use crate::store::{self, Store, StoreError};
use record::CondaPackage;

/// Where named channels live, when the spec names one rather than giving a URL.
pub const DEFAULT_CHANNEL_ALIAS: &str = "https://conda.anaconda.org";

/// One `[[conda]]` entry, validated.
#[derive(Debug, Clone)]
pub struct CondaSpec {
    /// Channel URLs in priority order.
    pub channels: Vec<reqwest::Url>,
    pub specs: Vec<MatchSpec>,
    pub platforms: Vec<Subdir>,
    /// An explicit lock: then exactly its packages are carried, nothing is solved.
    pub lock: Option<Vec<Locked>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CondaError {
    #[error("cannot read the repodata of {channels}")]
    Repodata {
        channels: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the specs cannot be solved for {platform}:\n{explanation}")]
    Unsolvable {
        platform: String,
        explanation: String,
    },
    #[error("channel {channel} has no noarch/repodata.json; every conda channel must have one")]
    NoNoarch { channel: String },
    #[error(
        "{file} has neither a sha256 nor an md5 in repodata; ferry carries only what it can verify"
    )]
    NoHash { file: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for CondaError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            CondaError::Store(e) => e.exit_status(),
            _ => ExitStatus::Error,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            CondaError::Repodata { .. } | CondaError::NoNoarch { .. } => {
                Some("check the channel URL (a name means a channel under the public conda host) and that it is reachable".into())
            }
            CondaError::Unsolvable { .. } => Some("relax the specs, or add the channel that has the missing packages".into()),
            _ => None,
        }
    }
}

/// A channel as the spec gives it: a full URL, or a name under the public conda host.
pub fn channel_url(channel: &str) -> Result<reqwest::Url, String> {
    let text = if channel.contains("://") {
        channel.to_string()
    } else {
        format!("{DEFAULT_CHANNEL_ALIAS}/{channel}")
    };
    let url = reqwest::Url::parse(&format!("{}/", text.trim_end_matches('/')))
        .map_err(|e| format!("channel `{channel}`: {e}"))?;
    if !matches!(url.scheme(), "http" | "https" | "file") {
        return Err(format!("channel `{channel}` is not http, https or file"));
    }
    Ok(url)
}

/// The name a channel is served under: its last path segment.
pub fn channel_name(url: &reqwest::Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.rfind(|p| !p.is_empty()))
        .unwrap_or("channel")
        .to_string()
}

/// The virtual packages of a target platform (not of this machine).
fn virtual_packages(subdir: Subdir) -> Vec<GenericVirtualPackage> {
    let s = subdir.as_str();
    let vp = |name: &str, version: &str, build: &str| GenericVirtualPackage {
        name: name.parse().expect("valid name"),
        version: version.parse().expect("valid version"),
        build_string: build.parse().expect("valid build string"),
    };
    let arch = s.split_once('-').map(|(_, a)| a).unwrap_or("");
    let archspec = match arch {
        "64" => "x86_64",
        "aarch64" | "arm64" => "aarch64",
        other => other,
    };
    let mut out = Vec::new();
    if s.starts_with("linux") {
        out.extend([
            vp("__unix", "0", "0"),
            vp("__linux", "5.10", "0"),
            vp("__glibc", "2.28", "0"),
            vp("__archspec", "1", archspec),
        ]);
    } else if s.starts_with("osx") {
        out.extend([
            vp("__unix", "0", "0"),
            vp("__osx", "13.0", "0"),
            vp(
                "__archspec",
                "1",
                if arch == "arm64" { "arm64" } else { "x86_64" },
            ),
        ]);
    } else if s.starts_with("win") {
        out.extend([vp("__win", "0", "0"), vp("__archspec", "1", "x86_64")]);
    }
    out
}

/// Solves and fetches entry `n` into the store.
pub async fn pull(
    spec: &CondaSpec,
    store: &Store,
    jobs: usize,
    plan: Option<&crate::plan::Plan>,
    reporter: &Arc<dyn Reporter>,
) -> crate::error::Result<Vec<Artifact<CondaPackage>>> {
    let http = crate::fetch::Http::new()?;
    let packages = match &spec.lock {
        Some(locked) => pull_locked(locked, &spec.platforms, store, &http, plan, reporter).await?,
        None => solve_and_fetch(spec, store, &http, jobs, plan, reporter).await?,
    };
    // The records of every package are made durable together, then tagged with one
    // change of the index: two syncs for the entry where three per package were.
    let mut batch = store.batch();
    let mut tags = Vec::new();
    let mut artifacts = Vec::new();
    for package in packages {
        let licenses = licences(store, &package).finish(&package.file_name, reporter.as_ref());
        let (desc, bytes) = record::write(&mut batch, &package)?;
        let repository = package.repository();
        let tag = package.tag();
        tags.push((repository.clone(), tag.clone(), desc.clone()));
        artifacts.push(Artifact {
            repository,
            tag: Some(tag),
            digest: desc.digest,
            media_type: desc.media_type,
            size: bytes.len() as u64,
            origin: package.url.clone(),
            artifact_type: desc.artifact_type,
            labels: Default::default(),
            licenses,
            record: package,
        });
    }
    batch.commit()?;
    let items: Vec<(&str, Option<&str>, crate::oci::Desc)> = tags
        .iter()
        .map(|(r, t, d)| (r.as_str(), Some(t.as_str()), d.clone()))
        .collect();
    if !items.is_empty() {
        store.update_entries(|e| store::upsert_entries(e, &items))?;
    }
    Ok(artifacts)
}

/// The most of `info/about.json` that is read.
const ABOUT_LIMIT: u64 = 64 << 10;

/// The licences of a package: its repodata record's `license`, and its
/// `info/about.json` `license` (read from the package in the store, bounded).
fn licences(store: &Store, package: &CondaPackage) -> crate::licence::Found {
    let mut found = crate::licence::Found::new();
    if let Some(l) = package.record.get("license").and_then(|v| v.as_str()) {
        found.add(l, "repodata");
    }
    let about = tokio::task::block_in_place(|| about_json(store, package));
    match about.as_ref().map(|a| a.get("license")) {
        Ok(Some(serde_json::Value::String(l))) => found.add(l, "about.json"),
        Ok(Some(serde_json::Value::Array(list))) => {
            for l in list.iter().filter_map(|v| v.as_str()) {
                found.add(l, "about.json");
            }
        }
        // No about.json, or one that says nothing of a licence: the repodata's is all.
        _ => {}
    }
    found
}

/// `info/about.json` of a package in the store: `Null` when there is none, or it is
/// larger than [`ABOUT_LIMIT`] or not JSON.
fn about_json(store: &Store, package: &CondaPackage) -> Result<serde_json::Value, String> {
    let file = store
        .open_blob(&package.digest())
        .map_err(|e| e.to_string())?;
    let wanted = std::path::Path::new("info/about.json");
    let bytes = if package.file_name.ends_with(".conda") {
        let mut info =
            rattler_package_streaming::seek::stream_conda_info(file).map_err(|e| e.to_string())?;
        entry_bytes(&mut info, wanted)?
    } else {
        entry_bytes(
            &mut rattler_package_streaming::read::stream_tar_bz2(file),
            wanted,
        )?
    };
    Ok(bytes
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null))
}

/// The bytes of the entry at `wanted`, when it is at most [`ABOUT_LIMIT`] long.
fn entry_bytes<R: std::io::Read>(
    archive: &mut tar::Archive<R>,
    wanted: &std::path::Path,
) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read as _;
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.path().map_err(|e| e.to_string())? != wanted {
            continue;
        }
        if entry.size() > ABOUT_LIMIT {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        entry
            .take(ABOUT_LIMIT)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        return Ok(Some(bytes));
    }
    Ok(None)
}

async fn solve_and_fetch(
    spec: &CondaSpec,
    store: &Store,
    http: &crate::fetch::Http,
    jobs: usize,
    plan: Option<&crate::plan::Plan>,
    reporter: &Arc<dyn Reporter>,
) -> crate::error::Result<Vec<CondaPackage>> {
    let names = spec
        .channels
        .iter()
        .map(|c| crate::names::redact_url(c.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let repodata_err = |source: Box<dyn std::error::Error + Send + Sync>| CondaError::Repodata {
        channels: names.clone(),
        source,
    };
    for c in &spec.channels {
        check_noarch(http, c).await?;
    }
    // A dry run writes nothing into the store, not even repodata caches.
    let scratch = match plan {
        Some(_) => Some(tempfile::tempdir().context("cannot create a temporary directory")?),
        None => None,
    };
    let cache = match &scratch {
        Some(dir) => dir.path().to_path_buf(),
        None => store.state_dir().join("conda-cache"),
    };
    let gateway = rattler_repodata_gateway::Gateway::builder()
        .with_client(http.middleware_client())
        .with_cache_dir(&cache)
        .finish();
    let channels: Vec<Channel> = spec
        .channels
        .iter()
        .map(|u| Channel::from_url(u.clone()))
        .collect();
    let mut chosen: Vec<RepoDataRecord> = Vec::new();
    for platform in &spec.platforms {
        let output = gateway
            .query(
                channels.clone(),
                [*platform, Subdir::NoArch],
                spec.specs.clone(),
            )
            .recursive(true)
            .execute()
            .await
            .map_err(|e| repodata_err(e.into()))?;
        let task = SolverTask {
            virtual_packages: virtual_packages(*platform),
            specs: spec.specs.clone(),
            ..SolverTask::from_iter(&output.repodata)
        };
        let solved = tokio::task::block_in_place(|| rattler_solve::resolvo::Solver.solve(task))
            .map_err(|e| match e {
                rattler_solve::SolveError::Unsolvable(lines) => CondaError::Unsolvable {
                    platform: platform.as_str().into(),
                    explanation: lines.join("\n"),
                },
                other => CondaError::Unsolvable {
                    platform: platform.as_str().into(),
                    explanation: other.to_string(),
                },
            })?;
        for r in solved.records {
            if !chosen.iter().any(|c| c.url == r.url) {
                chosen.push(r);
            }
        }
        reporter.line(&format!("solved [[conda]] for {}", platform.as_str()));
    }
    chosen.sort_by(|a, b| a.url.as_str().cmp(b.url.as_str()));
    if let Some(plan) = plan {
        for r in &chosen {
            let p = &r.package_record;
            let sha = p.sha256.map(|h| hex::encode(h.as_slice()));
            plan_item(
                plan,
                store,
                &r.identifier.to_file_name(),
                &r.url,
                sha.as_deref(),
                p.md5.map(|h| hex::encode(h.as_slice())).as_deref(),
                p.size,
            );
        }
        return Ok(Vec::new());
    }
    let packages: Vec<CondaPackage> = futures_util::stream::iter(chosen.iter().map(|r| {
        let (http, r, store, reporter) = (http.clone(), r.clone(), store.clone(), reporter.clone());
        crate::fetch::in_own_task(async move { fetch(&http, &r, &store, &reporter).await })
    }))
    .buffer_unordered(jobs.max(1))
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<crate::error::Result<_>>()?;
    Ok(packages)
}

/// Adds a package to a dry run's plan.
fn plan_item(
    plan: &crate::plan::Plan,
    store: &Store,
    file: &str,
    url: &reqwest::Url,
    sha256: Option<&str>,
    md5: Option<&str>,
    size: Option<u64>,
) {
    let digest = sha256.and_then(|h| crate::digest::Digest::from_hex(h).ok());
    plan.add(crate::plan::Item {
        ecosystem: "conda",
        name: file.to_string(),
        origin: crate::names::redact_url(url.as_str()),
        digest: digest
            .map(|d| d.to_string())
            .or_else(|| md5.map(|m| format!("md5:{m}"))),
        size,
        present: digest.is_some_and(|d| store.has_verified_blob(&d, size)),
    });
}

/// rattler would treat a channel without noarch as empty there; the spec says a channel
/// always has one, so an absent one is the sign of a wrong URL.
async fn check_noarch(http: &crate::fetch::Http, channel: &reqwest::Url) -> Result<(), CondaError> {
    let no = || CondaError::NoNoarch {
        channel: crate::names::redact_url(channel.as_str()),
    };
    if channel.scheme() == "file" {
        let path = channel.to_file_path().map_err(|_| no())?;
        return if path.join("noarch/repodata.json").is_file() {
            Ok(())
        } else {
            Err(no())
        };
    }
    let url = channel.join("noarch/repodata.json").expect("relative join");
    let unreachable = |e: reqwest::Error| CondaError::Repodata {
        channels: crate::names::redact_url(channel.as_str()),
        source: e.into(),
    };
    let response = http
        .page(|c| c.head(url.clone()))
        .await
        .map_err(unreachable)?;
    if response.status.is_success() {
        return Ok(());
    }
    let response = http
        .page(|c| c.get(url.clone()))
        .await
        .map_err(unreachable)?;
    if response.status.is_success() {
        Ok(())
    } else {
        Err(no())
    }
}

/// What a package file must be: repodata's (or a lock's) hashes and size.
struct Expected {
    sha256: Option<String>,
    md5: Option<String>,
    size: Option<u64>,
}

/// A verified package in the store.
struct Downloaded {
    digest: crate::digest::Digest,
    size: u64,
    md5: Option<String>,
}

/// Fetches a package file through the verified fetcher, checked against the expected
/// sha256 (or md5) and size; with `need_md5`, its md5 too (a record made from the
/// package carries one; a repodata record already has its own).
async fn download(
    http: &crate::fetch::Http,
    url: &reqwest::Url,
    file: &str,
    expected: &Expected,
    need_md5: bool,
    store: &Store,
    reporter: &Arc<dyn Reporter>,
) -> crate::error::Result<Downloaded> {
    if expected.sha256.is_none() && expected.md5.is_none() {
        return Err(CondaError::NoHash { file: file.into() }.into());
    }
    let mut want = crate::fetch::Want::new(url.clone(), file);
    want.sha256 = expected
        .sha256
        .as_deref()
        .map(crate::digest::Digest::from_hex)
        .transpose()?;
    // The md5 counts only when there is no sha256 (then the download cannot resume).
    want.md5 = expected.md5.clone().filter(|_| want.sha256.is_none());
    want.with_md5 = need_md5;
    want.size = expected.size;
    let got = crate::fetch::fetch(http, &want, store, reporter.as_ref()).await?;
    let md5 = match got.md5 {
        Some(m) => Some(m),
        None if need_md5 => Some(md5_of(&store.blob_path(&got.digest))?),
        None => None,
    };
    Ok(Downloaded {
        digest: got.digest,
        size: got.size,
        md5,
    })
}

fn md5_of(path: &std::path::Path) -> crate::error::Result<String> {
    let mut hasher = <md5::Md5 as md5::Digest>::new();
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(md5::Digest::finalize(hasher)))
}

/// The package under its own name (archive readers go by the extension): a link to its
/// blob in a temporary directory of the store.
fn named_package(
    store: &Store,
    got: &Downloaded,
    file: &str,
) -> crate::error::Result<(tempfile::TempDir, std::path::PathBuf)> {
    std::fs::create_dir_all(store.state_dir())
        .context("cannot create the store's state directory")?;
    let dir = tempfile::Builder::new()
        .prefix("conda-")
        .tempdir_in(store.state_dir())
        .context("cannot create a temporary directory in the store")?;
    let path = dir.path().join(file);
    let blob = store.blob_path(&got.digest);
    if std::fs::hard_link(&blob, &path).is_err() {
        std::fs::copy(&blob, &path)
            .with_context(|| format!("cannot copy {} to {}", blob.display(), path.display()))?;
    }
    Ok((dir, path))
}

/// Fetches a solved package into the store. Every name the channel gave is checked
/// before a byte is downloaded.
async fn fetch(
    http: &crate::fetch::Http,
    record: &RepoDataRecord,
    store: &Store,
    reporter: &Arc<dyn Reporter>,
) -> crate::error::Result<CondaPackage> {
    let file = record.identifier.to_file_name();
    let p = &record.package_record;
    let channel_url = record
        .channel
        .clone()
        .unwrap_or_else(|| channel_of(&record.url).to_string());
    let names = Names::check(&file, &channel_url, p).with_context(|| {
        format!(
            "channel {} lists a hostile package record",
            crate::names::redact_url(&channel_url)
        )
    })?;
    let expected = Expected {
        sha256: p.sha256.map(|h| hex::encode(h.as_slice())),
        md5: p.md5.map(|h| hex::encode(h.as_slice())),
        size: p.size,
    };
    let got = download(http, &record.url, &file, &expected, false, store, reporter).await?;
    package(names, &record.url, &channel_url, p, &got)
}

/// The names of a package record, checked: they become repository names, served paths
/// and exported file names.
struct Names {
    channel: ChannelName,
    subdir: SubdirName,
    file_name: CondaFileName,
    name: CondaToken,
    version: CondaToken,
    build: CondaToken,
}

impl Names {
    fn check(
        file: &str,
        channel_url: &str,
        record: &rattler_conda_types::PackageRecord,
    ) -> Result<Names, crate::names::NameError> {
        let channel = reqwest::Url::parse(channel_url)
            .map(|u| channel_name(&u))
            .unwrap_or_else(|_| {
                channel_url
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or("channel")
                    .to_string()
            });
        Ok(Names {
            channel: ChannelName::new(channel)?,
            subdir: SubdirName::new(record.subdir.clone())?,
            file_name: CondaFileName::new(file)?,
            name: CondaToken::new(record.name.as_normalized())?,
            version: CondaToken::new(record.version.to_string())?,
            build: CondaToken::new(record.build.to_string())?,
        })
    }
}

fn package(
    names: Names,
    url: &reqwest::Url,
    channel_url: &str,
    record: &rattler_conda_types::PackageRecord,
    got: &Downloaded,
) -> crate::error::Result<CondaPackage> {
    Ok(CondaPackage {
        channel: names.channel,
        channel_url: crate::names::redact_url(channel_url),
        subdir: names.subdir,
        file_name: names.file_name,
        name: names.name,
        version: names.version,
        build: names.build,
        sha256: got.digest.into(),
        size: got.size,
        url: crate::names::redact_url(url.as_str()),
        record: serde_json::to_value(record).context("cannot serialise the repodata record")?,
    })
}

/// The channel a package URL belongs to: everything before `<subdir>/<file>`.
fn channel_of(url: &reqwest::Url) -> reqwest::Url {
    url.join("..").unwrap_or_else(|_| url.clone())
}

/// One line of an `@EXPLICIT` lock: a package URL and its hash.
#[derive(Debug, Clone)]
pub struct Locked {
    url: reqwest::Url,
    sha256: Option<String>,
    md5: Option<String>,
}

/// Parses a conda explicit lock (`conda list --explicit --sha256`, or `--md5`).
pub fn parse_explicit(text: &str) -> Result<Vec<Locked>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line == "@EXPLICIT" {
            continue;
        }
        let (url, hash) = line
            .split_once('#')
            .ok_or_else(|| format!("line {}: `{line}` has no #sha256:... or #md5 hash", i + 1))?;
        let url = reqwest::Url::parse(url).map_err(|e| format!("line {}: {e}", i + 1))?;
        let (sha256, md5) = match hash.strip_prefix("sha256:") {
            Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                (Some(h.to_ascii_lowercase()), None)
            }
            None if hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
                (None, Some(hash.to_ascii_lowercase()))
            }
            _ => {
                return Err(format!(
                    "line {}: `#{hash}` is neither sha256:<64 hex> nor an md5",
                    i + 1
                ));
            }
        };
        out.push(Locked { url, sha256, md5 });
    }
    if out.is_empty() {
        return Err("the lock lists no package".into());
    }
    Ok(out)
}

/// Fetches exactly the locked packages of the wanted subdirs (noarch always), each
/// checked against its locked hash; its repodata record comes from its own index.json.
async fn pull_locked(
    locked: &[Locked],
    platforms: &[Subdir],
    store: &Store,
    http: &crate::fetch::Http,
    plan: Option<&crate::plan::Plan>,
    reporter: &Arc<dyn Reporter>,
) -> crate::error::Result<Vec<CondaPackage>> {
    let mut out = Vec::new();
    for entry in locked {
        let segments: Vec<&str> = entry
            .url
            .path_segments()
            .map(|s| s.collect())
            .unwrap_or_default();
        let [.., subdir, file] = segments[..] else {
            continue;
        };
        let wanted = subdir == "noarch"
            || platforms.is_empty()
            || platforms.iter().any(|p| p.as_str() == subdir);
        if !wanted {
            continue;
        }
        CondaFileName::new(file).with_context(|| {
            format!(
                "the lock names a hostile package URL {}",
                crate::names::redact_url(entry.url.as_str())
            )
        })?;
        let expected = Expected {
            sha256: entry.sha256.clone(),
            md5: entry.md5.clone(),
            size: None,
        };
        if let Some(plan) = plan {
            plan_item(
                plan,
                store,
                file,
                &entry.url,
                expected.sha256.as_deref(),
                expected.md5.as_deref(),
                None,
            );
            continue;
        }
        let got = download(http, &entry.url, file, &expected, true, store, reporter).await?;
        let (_dir, named) = named_package(store, &got, file)?;
        let index: rattler_conda_types::package::IndexJson = tokio::task::block_in_place(|| {
            rattler_package_streaming::seek::read_package_file(&named)
        })
        .with_context(|| format!("cannot read info/index.json of {file}"))?;
        let record = rattler_conda_types::PackageRecord::from_index_json(
            index,
            Some(got.size),
            rattler_digest::parse_digest_from_hex::<rattler_digest::Sha256>(&got.digest.hex()),
            got.md5
                .as_deref()
                .and_then(rattler_digest::parse_digest_from_hex::<rattler_digest::Md5>),
        )
        .with_context(|| format!("cannot make a repodata record of {file}"))?;
        let channel_url = channel_of(&entry.url).to_string();
        let names = Names::check(file, &channel_url, &record).with_context(|| {
            format!(
                "{} holds a hostile package record",
                crate::names::redact_url(entry.url.as_str())
            )
        })?;
        out.push(package(names, &entry.url, &channel_url, &record, &got)?);
    }
    Ok(out)
}

/// Parses `specs` as conda match specs.
pub fn parse_specs(specs: &[String]) -> Result<Vec<MatchSpec>, String> {
    specs
        .iter()
        .map(|s| {
            MatchSpec::from_str(s, ParseStrictness::Lenient).map_err(|e| format!("spec `{s}`: {e}"))
        })
        .collect()
}

/// Parses platform names such as `linux-64`.
pub fn parse_platforms(platforms: &[String]) -> Result<Vec<Subdir>, String> {
    platforms
        .iter()
        .map(|p| {
            p.parse::<Subdir>()
                .map_err(|_| format!("platform `{p}` is not a conda subdir such as linux-64"))
        })
        .collect()
}

/// conda packages: `[[conda]]`.
pub struct Conda;

impl crate::ecosystems::Ecosystem for Conda {
    const SECTION: &'static str = "conda";
    const KEYS: &'static [&'static str] =
        &["channel", "channels", "specs", "platforms", "lock-file"];
    type Spec = CondaSpec;
    type Record = CondaPackage;
    type Catalog = serve::CondaCatalog;

    fn parse(entry: toml::Table, base: &std::path::Path) -> Result<CondaSpec, String> {
        spec::parse(entry, base)
    }

    async fn pull(
        spec: &CondaSpec,
        n: usize,
        cx: &crate::ecosystems::PullContext<'_>,
    ) -> crate::error::Result<Vec<Artifact<CondaPackage>>> {
        pull(spec, cx.store, cx.jobs, cx.plan, cx.reporter)
            .await
            .with_context(|| format!("cannot pull [[conda]] #{n}"))
    }

    fn check(
        a: &crate::artifact::Head,
        own: Option<&CondaPackage>,
        read: &crate::artifact::ReadBlob,
    ) -> Result<(), String> {
        crate::artifact::check_config(
            a,
            own,
            read,
            record::ARTIFACT_TYPE,
            record::read,
            "package config",
        )
    }

    fn describe(_: &crate::artifact::Head, p: &CondaPackage) -> Vec<String> {
        vec![format!(
            "{}/{}/{}  sha256:{}",
            p.channel.as_str(),
            p.subdir.as_str(),
            p.file_name.as_str(),
            p.sha256
        )]
    }

    fn new_catalog(modified: std::time::SystemTime) -> serve::CondaCatalog {
        serve::CondaCatalog::new(modified)
    }

    fn catalog(catalog: &mut serve::CondaCatalog, store: &Store, entry: &crate::oci::Desc) {
        catalog.add(store, entry);
    }

    fn claims(path: &str) -> bool {
        path.starts_with("/conda/")
    }

    async fn route(
        store: &Store,
        catalog: &serve::CondaCatalog,
        request: &crate::respond::Request<'_>,
    ) -> axum::response::Response {
        serve::route(
            store,
            catalog,
            request.method,
            request.path,
            request.headers,
        )
        .await
    }
}
