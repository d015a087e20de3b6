//! Model weights and datasets from a Hugging Face hub: pin a revision to its commit,
//! fetch the files (LFS files checked against their sha256 oid, others against their
//! git blob id, all while they stream), and keep the snapshot as a ModelPack artifact.

mod card;
pub mod export;
pub mod hub;
pub mod record;
mod serve;
mod spec;

use std::sync::Arc;

use std::collections::HashMap;

use futures_util::{StreamExt, TryStreamExt};

use crate::artifact::Artifact;
use crate::digest::Digest;
use crate::exit::{Classify, ExitStatus};
use crate::names::{CommitId, GitOid, NameError, RelPath, RepoType};
use crate::reporter::Reporter;
use crate::store::{self, Store, StoreError};
use hub::{Hub, HubError, TreeEntry};
use record::{ModelFile, ModelInfo};

/// The public hub, used when neither the spec nor HF_ENDPOINT names one.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// One `[[model]]` entry, validated.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub repo: crate::names::HubRepoId,
    pub revision: crate::names::Revision,
    pub endpoint: Option<String>,
    /// fnmatch patterns, as huggingface_hub's allow_patterns; empty: every file.
    pub files: Vec<glob::Pattern>,
    pub dataset: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot fetch `{repo}` from the hub")]
    Hub {
        repo: String,
        #[source]
        source: HubError,
    },
    #[error(
        "`{path}` of {repo}@{commit} does not match its {what}: expected {expected}, got {actual}"
    )]
    Mismatch {
        repo: String,
        commit: String,
        path: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("no file of {repo}@{commit} matches the `files` patterns")]
    NoFiles { repo: String, commit: String },
    #[error("the hub answered for `{repo}` with a name ferry refuses")]
    Hostile {
        repo: String,
        #[source]
        source: NameError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for ModelError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            ModelError::Mismatch { .. } | ModelError::Hostile { .. } => ExitStatus::Verification,
            ModelError::Store(e) => e.exit_status(),
            ModelError::NoFiles { .. } => ExitStatus::Usage,
            _ => ExitStatus::Error,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            ModelError::Hub { source: HubError::Unauthorized { .. } | HubError::RepoNotFound { .. }, .. } => Some(
                "check the repo id; for private or gated repositories set HF_TOKEN to a token that may read it".into(),
            ),
            ModelError::Hub { source: HubError::Unreachable { .. }, .. } => {
                Some("check `endpoint` in the spec or HF_ENDPOINT, and that the hub is reachable".into())
            }
            ModelError::Mismatch { .. } => Some("the hub or something between it and ferry served altered bytes; nothing was stored".into()),
            _ => None,
        }
    }
}

/// Pins, fetches and stores one `[[model]]` entry.
pub async fn pull(
    spec: &ModelSpec,
    store: &Store,
    jobs: usize,
    plan: Option<&crate::plan::Plan>,
    reporter: &Arc<dyn Reporter>,
) -> crate::error::Result<Vec<Artifact<ModelInfo>>> {
    let endpoint = spec
        .endpoint
        .clone()
        .or_else(|| {
            std::env::var("HF_ENDPOINT")
                .ok()
                .filter(|e| !e.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let hub = Hub::new(&endpoint, spec.dataset).map_err(crate::error::Error::msg)?;
    let endpoint = crate::names::redact_url(&endpoint);
    let repo = spec.repo.as_str();
    let hub_err = |source| ModelError::Hub {
        repo: repo.to_string(),
        source,
    };
    let hostile = |source: NameError| ModelError::Hostile {
        repo: repo.to_string(),
        source,
    };
    let commit = hub.commit(repo, &spec.revision).await.map_err(hub_err)?;
    let commit = CommitId::new(commit.to_ascii_lowercase()).map_err(hostile)?;
    let mut entries = hub.tree(repo, &commit).await.map_err(hub_err)?;
    // Every path and oid the hub lists is checked before anything is fetched.
    for e in &entries {
        RelPath::new(e.path.as_str()).map_err(hostile)?;
        GitOid::new(e.oid.to_ascii_lowercase()).map_err(hostile)?;
    }
    if !spec.files.is_empty() {
        entries.retain(|e| spec.files.iter().any(|p| p.matches(&e.path)));
    }
    if entries.is_empty() {
        return Err(ModelError::NoFiles {
            repo: repo.into(),
            commit: commit.to_string(),
        }
        .into());
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    // Files this store already holds from earlier snapshots, by git id: not fetched again.
    let fetching = Fetching {
        hub: &hub,
        http: hub.fetcher(),
        repo,
        commit: &commit,
        known: record::snapshots(store)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|s| s.files)
            .map(|f| (f.oid.to_string(), f.digest()))
            .collect(),
        store,
        reporter,
    };
    if let Some(plan) = plan {
        for e in &entries {
            let lfs = e
                .lfs
                .as_ref()
                .and_then(|l| Digest::from_hex(&l.oid.to_ascii_lowercase()).ok());
            let known = fetching.known.get(&e.oid.to_ascii_lowercase()).copied();
            let size = e.lfs.as_ref().map_or(e.size, |l| l.size);
            plan.add(crate::plan::Item {
                ecosystem: "model",
                name: e.path.clone(),
                origin: crate::names::redact_url(hub.file_url(repo, &commit, &e.path).as_str()),
                digest: Some(match lfs {
                    Some(d) => d.to_string(),
                    None => format!("git:{}", e.oid.to_ascii_lowercase()),
                }),
                size: Some(size),
                present: lfs
                    .or(known)
                    .is_some_and(|d| store.has_verified_blob(&d, Some(size))),
            });
        }
        return Ok(Vec::new());
    }
    let files: Vec<ModelFile> =
        futures_util::stream::iter(entries.iter().map(|e| fetching.file(e)))
            .buffered(jobs.max(1))
            .try_collect()
            .await?;
    let info = ModelInfo {
        repo: spec.repo.clone(),
        kind: if spec.dataset {
            RepoType::Dataset
        } else {
            RepoType::Model
        },
        revision: spec.revision.clone(),
        commit: commit.clone(),
        endpoint: endpoint.clone(),
        files,
    };
    let licenses = card_licences(store, &info)?.finish(repo, reporter.as_ref());
    let (desc, bytes) = record::write(store, &info)?;
    let repository = info.repository();
    let mut tags = vec![commit.to_string()];
    let revision_tag = tag_for(&spec.revision);
    if revision_tag != commit.as_str() {
        tags.push(revision_tag);
    }
    store.update_entries(|e| {
        for t in &tags {
            store::upsert_entry(e, &repository, Some(t), &desc);
        }
    })?;
    reporter.line(&format!(
        "pulled {} {} at {} ({} file(s))",
        info.kind,
        repo,
        commit,
        info.files.len()
    ));
    Ok(tags
        .into_iter()
        .map(|tag| Artifact {
            repository: repository.clone(),
            tag: Some(tag),
            digest: desc.digest,
            media_type: desc.media_type.clone(),
            size: bytes.len() as u64,
            origin: format!(
                "{}/{}@{}",
                endpoint.trim_end_matches('/'),
                repo,
                spec.revision
            ),
            artifact_type: desc.artifact_type.clone(),
            labels: Default::default(),
            licenses: licenses.clone(),
            record: info.clone(),
        })
        .collect())
}

/// The licences the snapshot's `README.md` (its card) declares, when it carries one:
/// read from the store, at most `card::LIMIT` bytes of it.
fn card_licences(store: &Store, info: &ModelInfo) -> Result<crate::licence::Found, StoreError> {
    use std::io::Read as _;
    let Some(readme) = info.files.iter().find(|f| f.path.as_str() == "README.md") else {
        return Ok(crate::licence::Found::new());
    };
    let path = store.blob_path(&readme.digest());
    let mut bytes = Vec::new();
    store
        .open_blob(&readme.digest())?
        .take(card::LIMIT as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::from_io("cannot read", &path, e))?;
    Ok(card::licences(&bytes))
}

/// A revision as an OCI tag: `refs/pr/1` becomes `refs-pr-1`.
pub fn tag_for(revision: &str) -> String {
    let t: String = revision
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    t.chars().take(128).collect()
}

/// What fetching the files of one snapshot needs.
struct Fetching<'a> {
    hub: &'a Hub,
    http: crate::fetch::Http,
    repo: &'a str,
    commit: &'a str,
    /// Git ids of files the store already holds (from earlier snapshots) -> sha256.
    known: HashMap<String, Digest>,
    store: &'a Store,
    reporter: &'a Arc<dyn Reporter>,
}

impl Fetching<'_> {
    /// Fetches one file into the store through the verified fetcher: an LFS file
    /// against its sha256 oid, any other against its git blob id (and not at all when
    /// the store holds a file with that git id).
    async fn file(&self, entry: &TreeEntry) -> crate::error::Result<ModelFile> {
        let path = checked_path(entry)?;
        let oid = GitOid::new(entry.oid.to_ascii_lowercase())?;
        let url = self.hub.file_url(self.repo, self.commit, &entry.path);
        let mut want = crate::fetch::Want::new(url, entry.path.clone());
        want.headers = self.hub.auth_headers();
        match &entry.lfs {
            Some(lfs) => {
                let sha = Digest::from_hex(&lfs.oid.to_ascii_lowercase()).map_err(|_| {
                    ModelError::Mismatch {
                        repo: self.repo.into(),
                        commit: self.commit.into(),
                        path: entry.path.clone(),
                        what: "LFS oid",
                        expected: lfs.oid.clone(),
                        actual: "an oid that is not a sha256".into(),
                    }
                })?;
                want.sha256 = Some(sha);
                want.size = Some(lfs.size);
            }
            None => {
                want.git_oid = Some(oid.to_string());
                want.sha256 = self.known.get(oid.as_str()).copied();
                want.size = Some(entry.size);
            }
        }
        let got =
            crate::fetch::fetch(&self.http, &want, self.store, self.reporter.as_ref()).await?;
        Ok(ModelFile {
            path,
            size: got.size,
            sha256: got.digest.into(),
            oid,
            lfs: entry.lfs.is_some(),
        })
    }
}

fn checked_path(entry: &TreeEntry) -> Result<RelPath, NameError> {
    RelPath::new(entry.path.as_str())
}

/// Models and datasets from a Hugging Face hub: `[[model]]`.
pub struct Model;

impl crate::ecosystems::Ecosystem for Model {
    const SECTION: &'static str = "model";
    const KEYS: &'static [&'static str] = &["repo", "revision", "endpoint", "files", "type"];
    type Spec = ModelSpec;
    type Record = ModelInfo;
    type Catalog = serve::HfCatalog;

    fn parse(entry: toml::Table, _base: &std::path::Path) -> Result<ModelSpec, String> {
        spec::parse(entry)
    }

    async fn pull(
        spec: &ModelSpec,
        _n: usize,
        cx: &crate::ecosystems::PullContext<'_>,
    ) -> crate::error::Result<Vec<Artifact<ModelInfo>>> {
        use crate::error::Context as _;
        pull(spec, cx.store, cx.jobs, cx.plan, cx.reporter)
            .await
            .with_context(|| format!("cannot pull {}", spec.repo))
    }

    /// Annotations are read off every manifest: the hub routes and the cache export
    /// find models by them.
    fn check(
        a: &crate::artifact::Head,
        own: Option<&ModelInfo>,
        read: &crate::artifact::ReadBlob,
    ) -> Result<(), String> {
        let Some(stored) = record::read(&read(&a.digest)?) else {
            return Ok(());
        };
        let stored = stored?;
        if own.is_some_and(|r| *r != stored) {
            return Err("its stored model annotations differ from the signed record".into());
        }
        Ok(())
    }

    fn describe(_: &crate::artifact::Head, m: &ModelInfo) -> Vec<String> {
        std::iter::once(format!("{} {} at commit {}", m.kind, m.repo, m.commit))
            .chain(
                m.files
                    .iter()
                    .map(|f| format!("{}  sha256:{}", f.path, f.sha256)),
            )
            .collect()
    }

    fn catalog(catalog: &mut serve::HfCatalog, store: &Store, entry: &crate::oci::Desc) {
        catalog.add(store, entry);
    }

    fn claims(path: &str) -> bool {
        serve::is_hub_path(path)
    }

    async fn route(
        store: &Store,
        catalog: &serve::HfCatalog,
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
