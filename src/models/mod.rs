//! Model weights and datasets from a Hugging Face hub: pin a revision to its commit,
//! fetch the files (LFS files checked against their sha256 oid, others against their
//! git blob id, all while they stream), and keep the snapshot as a ModelPack artifact.

pub mod artifact;
pub mod hub;

use std::io::Write;
use std::sync::Arc;

use futures_util::StreamExt;
use sha1::Digest as _;

use crate::artifact::{Artifact, Kind};
use crate::digest::Digest;
use crate::exit::{Classify, ExitStatus};
use crate::names::{CommitId, GitOid, NameError, RelPath, RepoType};
use crate::reporter::Reporter;
use crate::store::{self, Store, StoreError};
use artifact::{ModelFile, ModelInfo};
use hub::{Hub, HubError, TreeEntry};

/// The public hub, used when neither the spec nor HF_ENDPOINT names one.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Files kept in memory while their git blob id is checked; the hub stores anything
/// larger in LFS.
const MAX_GIT_FILE: u64 = 64 << 20;

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
    #[error(
        "`{path}` is {size} bytes but not in LFS; ferry keeps such files in memory up to {MAX_GIT_FILE} bytes"
    )]
    TooLarge { path: String, size: u64 },
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
            ModelError::Hub { source: HubError::Interrupted { .. }, .. } => {
                Some("run the same command again: finished files are kept and large files resume where they stopped".into())
            }
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
    reporter: &Arc<dyn Reporter>,
) -> anyhow::Result<Vec<Artifact>> {
    let endpoint = spec
        .endpoint
        .clone()
        .or_else(|| {
            std::env::var("HF_ENDPOINT")
                .ok()
                .filter(|e| !e.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let hub = Hub::new(&endpoint, spec.dataset).map_err(anyhow::Error::msg)?;
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
    let mut files = Vec::new();
    for entry in &entries {
        files.push(fetch(&hub, repo, &commit, entry, store, reporter).await?);
    }
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
    let (desc, bytes) = artifact::write(store, &info)?;
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
            kind: Kind::Model,
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
            platforms: Vec::new(),
            subject: None,
            source_digest: None,
            artifact_type: desc.artifact_type.clone(),
            python: None,
            model: Some(info.clone()),
            conda: None,
        })
        .collect())
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

/// Fetches one file into the store, verified.
async fn fetch(
    hub: &Hub,
    repo: &str,
    commit: &str,
    entry: &TreeEntry,
    store: &Store,
    reporter: &Arc<dyn Reporter>,
) -> anyhow::Result<ModelFile> {
    let hub_err = |source| ModelError::Hub {
        repo: repo.to_string(),
        source,
    };
    let mismatch = |what, expected: String, actual: String| ModelError::Mismatch {
        repo: repo.into(),
        commit: commit.into(),
        path: entry.path.clone(),
        what,
        expected,
        actual,
    };
    if let Some(lfs) = &entry.lfs {
        let expected = Digest::from_hex(&lfs.oid.to_ascii_lowercase()).map_err(|_| {
            mismatch(
                "LFS oid",
                lfs.oid.clone(),
                "an oid that is not a sha256".into(),
            )
        })?;
        if !store.has_blob(&expected, lfs.size) {
            let resumed = store.has_partial(&expected);
            match fetch_lfs(
                hub, repo, commit, entry, &expected, lfs.size, store, reporter, true,
            )
            .await
            {
                Err(e)
                    if resumed
                        && e.downcast_ref::<ModelError>()
                            .is_some_and(|m| matches!(m, ModelError::Mismatch { .. })) =>
                {
                    fetch_lfs(
                        hub, repo, commit, entry, &expected, lfs.size, store, reporter, false,
                    )
                    .await?
                }
                other => other?,
            }
        }
        return Ok(ModelFile {
            path: checked_path(entry)?,
            size: lfs.size,
            sha256: expected.into(),
            oid: GitOid::new(entry.oid.to_ascii_lowercase())?,
            lfs: true,
        });
    }
    if entry.size > MAX_GIT_FILE {
        return Err(ModelError::TooLarge {
            path: entry.path.clone(),
            size: entry.size,
        }
        .into());
    }
    let response = hub
        .download(repo, commit, &entry.path, 0)
        .await
        .map_err(hub_err)?;
    let mut bytes = Vec::with_capacity(entry.size as usize);
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| {
            hub_err(HubError::Interrupted {
                path: entry.path.clone(),
                source,
            })
        })?;
        if (bytes.len() + chunk.len()) as u64 > entry.size {
            return Err(mismatch("size", entry.size.to_string(), "more bytes".into()).into());
        }
        bytes.extend_from_slice(&chunk);
    }
    let mut sha = sha1::Sha1::new();
    sha.update(format!("blob {}\0", bytes.len()).as_bytes());
    sha.update(&bytes);
    let oid = hex::encode(sha.finalize());
    if oid != entry.oid.to_ascii_lowercase() {
        return Err(mismatch("git blob id", entry.oid.clone(), oid).into());
    }
    let digest = Digest::of(&bytes);
    store.put_blob(&bytes, &digest, &entry.path)?;
    Ok(ModelFile {
        path: checked_path(entry)?,
        size: bytes.len() as u64,
        sha256: digest.into(),
        oid: GitOid::new(oid)?,
        lfs: false,
    })
}

fn checked_path(entry: &TreeEntry) -> Result<RelPath, NameError> {
    RelPath::new(entry.path.as_str())
}

#[allow(clippy::too_many_arguments)]
async fn fetch_lfs(
    hub: &Hub,
    repo: &str,
    commit: &str,
    entry: &TreeEntry,
    expected: &Digest,
    size: u64,
    store: &Store,
    reporter: &Arc<dyn Reporter>,
    resume: bool,
) -> anyhow::Result<()> {
    let hub_err = |source| ModelError::Hub {
        repo: repo.to_string(),
        source,
    };
    let mut writer = store.blob_writer(expected, resume)?;
    if writer.len() >= size {
        writer = store.blob_writer(expected, false)?;
    }
    let offset = writer.len();
    let response = hub
        .download(repo, commit, &entry.path, offset)
        .await
        .map_err(hub_err)?;
    if offset > 0 && response.status() != reqwest::StatusCode::PARTIAL_CONTENT {
        writer = store.blob_writer(expected, false)?;
    }
    let task = reporter.task(&entry.path, Some(size));
    task.advance(writer.len());
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| {
            hub_err(HubError::Interrupted {
                path: entry.path.clone(),
                source,
            })
        })?;
        if writer.len() + chunk.len() as u64 > size {
            return Err(ModelError::Mismatch {
                repo: repo.into(),
                commit: commit.into(),
                path: entry.path.clone(),
                what: "size",
                expected: size.to_string(),
                actual: "more bytes".into(),
            }
            .into());
        }
        writer.write_all(&chunk)?;
        task.advance(chunk.len() as u64);
    }
    task.finish();
    let len = writer.len();
    match tokio::task::block_in_place(|| writer.commit(store, expected, size, &entry.path)) {
        Ok(()) => Ok(()),
        Err(StoreError::DigestMismatch {
            actual,
            actual_size,
            ..
        }) => Err(ModelError::Mismatch {
            repo: repo.into(),
            commit: commit.into(),
            path: entry.path.clone(),
            what: "LFS sha256",
            expected: format!("{expected} ({size} bytes)"),
            actual: format!("{actual} ({actual_size} bytes, {len} received)"),
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}
