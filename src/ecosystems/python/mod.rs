//! Python wheels: resolve the closure for the target, fetch every wheel (hashed against
//! the index while it streams) and its core metadata, and keep each release in the store
//! as an OCI artifact (see `release`).

pub mod export;
pub mod index;
pub mod lock;
pub mod metadata;
pub mod record;
pub mod requirements;
pub mod resolve;
mod serve;
mod spec;
pub mod tags;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::Context as _;
use futures_util::{StreamExt, TryStreamExt};
use pep508_rs::{PackageName, Requirement};

use crate::artifact::Artifact;
use crate::digest::Digest;
use crate::exit::{Classify, ExitStatus};
use crate::names::{ProjectName, Token, WheelFileName, redact_url};
use crate::reporter::Reporter;
use crate::store::{self, Store};
use index::{IndexClient, IndexFile};
use record::{PythonFile, PythonRelease};
use resolve::{ResolveError, Resolver};
use tags::Target;

/// One `[[python]]` entry of a spec, validated.
#[derive(Debug, Clone)]
pub struct PythonSpec {
    /// From the spec; `None`: PIP_INDEX_URL, then pip's configuration.
    pub index_url: Option<String>,
    pub requirements: Vec<Requirement>,
    /// Hash pins from a requirements file (`--hash`): then no resolution happens and
    /// exactly the pinned files are carried.
    pub hashes: BTreeMap<PackageName, Vec<Digest>>,
    pub python_version: String,
    pub platforms: Vec<String>,
    /// A `pylock.toml`: then exactly its wheels are carried.
    pub lock: Option<Vec<lock::Locked>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    #[error("[[python]] entry #{entry}: {message}")]
    Invalid { entry: usize, message: String },
    #[error("no Python package index is configured for [[python]] entry #{entry}")]
    NoIndex { entry: usize },
    #[error("cannot resolve the Python requirements of [[python]] entry #{entry}")]
    Resolve {
        entry: usize,
        #[source]
        source: ResolveError,
    },
    #[error("the index gives no sha256 for {file}; ferry carries only files it can verify")]
    NoHash { file: String },
    #[error(
        "`{project}` is pinned with hashes, but no file of {project} {version} for {target} has one of them"
    )]
    PinnedHashMissing {
        project: String,
        version: String,
        target: String,
    },
    #[error("the lock lists no wheel of `{project}` that {target} can install")]
    LockedWithoutWheel { project: String, target: String },
    #[error("`{0}` must be pinned as `name==version` when the requirements carry hashes")]
    NotPinned(String),
}

impl Classify for PythonError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            PythonError::PinnedHashMissing { .. } => ExitStatus::Verification,
            PythonError::NoIndex { .. }
            | PythonError::NotPinned(_)
            | PythonError::Invalid { .. } => ExitStatus::Usage,
            PythonError::Resolve {
                source: ResolveError::Url(_),
                ..
            } => ExitStatus::Usage,
            _ => ExitStatus::Error,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            PythonError::NoIndex { .. } => Some(
                "set `index-url` in the [[python]] entry, or PIP_INDEX_URL, or pip's own `index-url` (`pip config set global.index-url URL`)".into(),
            ),
            PythonError::Resolve { source: ResolveError::OnlySdist { .. }, .. } => {
                Some("build a wheel for it and publish it to the index, or pin a version that has wheels for the target".into())
            }
            PythonError::Resolve { source: ResolveError::Index(_), .. } => {
                Some("check the index URL and that the index is reachable; project names are looked up PEP 503-normalised".into())
            }
            _ => None,
        }
    }
}

/// Project -> version -> (version, files by name): what every target together needs.
type Chosen =
    BTreeMap<PackageName, BTreeMap<String, (pep440_rs::Version, BTreeMap<String, IndexFile>)>>;

/// The index URL for an entry: the spec's, else PIP_INDEX_URL, else pip's configuration.
pub fn index_url(spec: &PythonSpec) -> Option<String> {
    spec.index_url
        .clone()
        .or_else(|| {
            std::env::var("PIP_INDEX_URL")
                .ok()
                .filter(|u| !u.trim().is_empty())
        })
        .or_else(pip_config_index_url)
}

/// `index-url` from pip's configuration files, in pip's order (later files win).
fn pip_config_index_url() -> Option<String> {
    let files: Vec<std::path::PathBuf> = match std::env::var_os("PIP_CONFIG_FILE") {
        Some(f) if f == "/dev/null" => return None,
        Some(f) => vec![f.into()],
        None => {
            let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
            let xdg = std::env::var_os("XDG_CONFIG_HOME")
                .map(std::path::PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".config")));
            let mut f = vec!["/etc/xdg/pip/pip.conf".into(), "/etc/pip.conf".into()];
            f.extend(home.as_ref().map(|h| h.join(".pip/pip.conf")));
            f.extend(xdg.map(|x| x.join("pip/pip.conf")));
            f
        }
    };
    let mut found = None;
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.trim().to_ascii_lowercase();
            } else if let Some((k, v)) = line.split_once('=') {
                let key = k.trim().to_ascii_lowercase().replace('_', "-");
                if key == "index-url"
                    && matches!(section.as_str(), "global" | "install" | "download")
                {
                    found = Some(v.trim().to_string());
                }
            }
        }
    }
    found
}

/// Resolves and fetches entry `n` (1-based) into the store.
pub async fn pull(
    spec: &PythonSpec,
    n: usize,
    store: &Store,
    jobs: usize,
    plan: Option<&crate::plan::Plan>,
    reporter: &Arc<dyn Reporter>,
) -> crate::error::Result<Vec<Artifact<PythonRelease>>> {
    // A lock names its wheels' URLs; otherwise an index is needed.
    let url = match (&spec.lock, index_url(spec)) {
        (_, Some(url)) => url,
        (Some(lock), None) => lock
            .iter()
            .find_map(|l| l.index.clone())
            .unwrap_or_else(|| "pylock.toml".into()),
        (None, None) => return Err(PythonError::NoIndex { entry: n }.into()),
    };
    let client = IndexClient::new(if url.contains("://") {
        &url
    } else {
        "http://127.0.0.1/"
    })
    .map_err(|message| PythonError::Invalid { entry: n, message })?;
    let resolve_err = |source| PythonError::Resolve { entry: n, source };

    // Project -> version -> files, the union over every target.
    let mut chosen = Chosen::new();
    let mut metadata_cache = std::collections::HashMap::new();
    for platform in &spec.platforms {
        // Checked when the spec was read.
        let target = Target::new(&spec.python_version, platform)
            .map_err(|message| PythonError::Invalid { entry: n, message })?;
        let selection = if let Some(lock) = &spec.lock {
            let mut selection = resolve::Selection::new();
            for locked in lock.iter().filter(|l| l.applies(&target)) {
                let files = locked.wheels_for(&target);
                let version = locked
                    .version_of(&files)
                    .filter(|_| !files.is_empty())
                    .ok_or_else(|| PythonError::LockedWithoutWheel {
                        project: locked.name.to_string(),
                        target: target.to_string(),
                    })?;
                selection.insert(locked.name.clone(), (version, files));
            }
            selection
        } else if spec.hashes.is_empty() {
            let resolver = Resolver::new(&client, &target, &spec.requirements);
            let selection =
                tokio::task::block_in_place(|| resolver.resolve()).map_err(resolve_err)?;
            metadata_cache.extend(resolver.metadata_cache.into_inner().expect("cache"));
            selection
        } else {
            requirements::select_pinned(&client, &target, &spec.requirements, &spec.hashes)
                .await
                .map_err(|e| match e {
                    requirements::PinError::Resolve(r) => crate::error::Error::from(resolve_err(r)),
                    requirements::PinError::Python(p) => p.into(),
                })?
        };
        for (name, (version, files)) in selection {
            let entry = chosen
                .entry(name)
                .or_default()
                .entry(version.to_string())
                .or_insert_with(|| (version.clone(), BTreeMap::new()));
            for f in files {
                entry.1.insert(f.filename.clone(), f);
            }
        }
        reporter.line(&format!("resolved [[python]] #{n} for {target}"));
    }

    // Fetch the wheels the store lacks, then every file's metadata.
    let files: Vec<IndexFile> = chosen
        .values()
        .flat_map(|v| v.values())
        .flat_map(|(_, f)| f.values().cloned())
        .collect();
    for f in &files {
        WheelFileName::new(f.filename.as_str())
            .with_context(|| format!("the index {} lists a hostile file", redact_url(&url)))?;
        if f.sha256.is_none() {
            return Err(PythonError::NoHash {
                file: f.filename.clone(),
            }
            .into());
        }
    }
    for (name, versions) in &chosen {
        ProjectName::new(name.to_string())?;
        for version in versions.keys() {
            Token::new(version.as_str())?;
        }
    }
    // What is written and printed names the index without its credentials.
    let public_url = redact_url(&url);
    if let Some(plan) = plan {
        for f in &files {
            let sha = f.sha256.expect("checked above");
            plan.add(crate::plan::Item {
                ecosystem: "python",
                name: f.filename.clone(),
                origin: redact_url(f.url.as_str()),
                digest: Some(sha.to_string()),
                size: None,
                present: store.has_verified_blob(&sha, None),
            });
        }
        return Ok(Vec::new());
    }
    futures_util::stream::iter(
        files
            .iter()
            .map(|f| fetch_wheel(&client, f, store, reporter)),
    )
    .buffer_unordered(jobs.max(1))
    .try_collect::<Vec<()>>()
    .await?;

    let mut artifacts = Vec::new();
    for (name, versions) in &chosen {
        for (version, (_, files)) in versions {
            let mut release = PythonRelease {
                project: ProjectName::new(name.to_string())?,
                version: Token::new(version.as_str())?,
                index: public_url.clone(),
                files: Vec::new(),
            };
            let mut licences = crate::licence::Found::new();
            for f in files.values() {
                let bytes = match metadata_cache.get(&f.filename) {
                    Some(b) => b.clone(),
                    None => {
                        let path = store.blob_path(&f.sha256.expect("checked above"));
                        match f.metadata {
                            Some(_) => resolve::fetch_metadata(&client, f)
                                .await
                                .map_err(resolve_err)?,
                            None => metadata::from_wheel(&path).map_err(|reason| {
                                resolve_err(ResolveError::Metadata {
                                    file: f.filename.clone(),
                                    reason,
                                })
                            })?,
                        }
                    }
                };
                let digest = Digest::of(&bytes);
                store.put_blob(&bytes, &digest, &format!("metadata of {}", f.filename))?;
                licences.extend(metadata::licences(&String::from_utf8_lossy(&bytes)));
                let sha = f.sha256.expect("checked above");
                release.files.push(PythonFile {
                    filename: WheelFileName::new(f.filename.as_str())?,
                    sha256: sha.into(),
                    size: std::fs::metadata(store.blob_path(&sha))
                        .map(|m| m.len())
                        .unwrap_or(0),
                    requires_python: f.requires_python.as_ref().map(|r| r.to_string()),
                    metadata_sha256: digest.into(),
                    metadata_size: bytes.len() as u64,
                });
            }
            let (desc, bytes) = record::write(store, &release)?;
            let repository = record::repository(&release.project);
            let tag = record::version_tag(&release.version);
            store.update_entries(|e| store::upsert_entry(e, &repository, Some(&tag), &desc))?;
            reporter.line(&format!(
                "pulled {} {} ({} file(s))",
                release.project,
                release.version,
                release.files.len()
            ));
            artifacts.push(Artifact {
                repository,
                tag: Some(tag),
                digest: desc.digest,
                media_type: desc.media_type,
                size: bytes.len() as u64,
                origin: public_url.clone(),
                artifact_type: desc.artifact_type,
                labels: Default::default(),
                licenses: licences.finish(
                    &format!("{} {}", release.project, release.version),
                    reporter.as_ref(),
                ),
                record: release,
            });
        }
    }
    Ok(artifacts)
}

/// Fetches a wheel into the store through the verified fetcher (skipped when the store
/// holds it, checked against the index's sha256, resumed and retried).
async fn fetch_wheel(
    client: &IndexClient,
    file: &IndexFile,
    store: &Store,
    reporter: &Arc<dyn Reporter>,
) -> crate::error::Result<()> {
    let mut want = crate::fetch::Want::new(file.url.clone(), file.filename.clone());
    want.sha256 = Some(file.sha256.expect("checked by the caller"));
    crate::fetch::fetch(client.fetcher(), &want, store, reporter.as_ref()).await?;
    Ok(())
}

/// Python wheels: `[[python]]`.
pub struct Python;

impl crate::ecosystems::Ecosystem for Python {
    const SECTION: &'static str = "python";
    const KEYS: &'static [&'static str] = &[
        "index-url",
        "requirements",
        "requirements-file",
        "python-version",
        "platforms",
    ];
    type Spec = PythonSpec;
    type Record = PythonRelease;
    type Catalog = serve::PypiCatalog;

    fn parse(entry: toml::Table, base: &std::path::Path) -> Result<PythonSpec, String> {
        spec::parse(entry, base)
    }

    async fn pull(
        spec: &PythonSpec,
        n: usize,
        cx: &crate::ecosystems::PullContext<'_>,
    ) -> crate::error::Result<Vec<Artifact<PythonRelease>>> {
        pull(spec, n, cx.store, cx.jobs, cx.plan, cx.reporter).await
    }

    fn check(
        a: &crate::artifact::Head,
        own: Option<&PythonRelease>,
        read: &crate::artifact::ReadBlob,
    ) -> Result<(), String> {
        crate::artifact::check_config(
            a,
            own,
            read,
            record::ARTIFACT_TYPE,
            record::read,
            "release config",
        )
    }

    fn describe(_: &crate::artifact::Head, release: &PythonRelease) -> Vec<String> {
        release
            .files
            .iter()
            .map(|f| format!("{}  sha256:{}", f.filename, f.sha256))
            .collect()
    }

    fn catalog(catalog: &mut serve::PypiCatalog, store: &Store, entry: &crate::oci::Desc) {
        catalog.add(store, entry);
    }

    fn claims(path: &str) -> bool {
        path == "/simple" || path.starts_with("/simple/") || path.starts_with("/files/")
    }

    async fn route(
        store: &Store,
        catalog: &serve::PypiCatalog,
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
