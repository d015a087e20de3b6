//! Where images come from: a registry (through oci-client) or an OCI layout on disk.
//! Every source hands back manifest bytes and writes blobs into the store through a
//! verifying writer; nothing unverified is ever renamed into place.

pub mod auth;
pub mod layout;
pub mod registry;

use crate::digest::Digest;
use crate::exit::{Classify, ExitStatus};
use crate::oci::Desc;
use crate::reporter::Task;
use crate::store::{Store, StoreError};

/// A manifest as one asks a source for it.
#[derive(Debug, Clone)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

impl std::fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestRef::Tag(t) => write!(f, "`{t}`"),
            ManifestRef::Digest(d) => write!(f, "{d}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot fetch {what} from {origin}")]
    Fetch {
        what: String,
        origin: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{origin} has no manifest {reference}")]
    NotFound { origin: String, reference: String },
    #[error("{what} from {origin}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        origin: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for SourceError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            SourceError::DigestMismatch { .. } => ExitStatus::Verification,
            SourceError::Store(e) => e.exit_status(),
            _ => ExitStatus::Error,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            SourceError::Fetch { origin, .. } => Some(format!(
                "check that {origin} is reachable and that you may pull from it ({})",
                auth::connection_hint(origin)
            )),
            SourceError::NotFound { .. } => Some(
                "check the reference in the spec (`skopeo list-tags` shows what exists)".into(),
            ),
            SourceError::Store(e) => e.hint(),
            _ => None,
        }
    }
}

pub enum Source {
    Registry(registry::RegistrySource),
    Layout(layout::LayoutSource),
}

impl Source {
    /// A short name for messages: `registry/repo` or `oci:DIR`.
    pub fn origin(&self) -> String {
        match self {
            Source::Registry(r) => r.origin(),
            Source::Layout(l) => l.origin(),
        }
    }

    /// The manifest's bytes, checked against the digest when asked by digest.
    pub async fn manifest(&self, reference: &ManifestRef) -> Result<Vec<u8>, SourceError> {
        let bytes = match self {
            Source::Registry(r) => r.manifest(reference).await?,
            Source::Layout(l) => l.manifest(reference)?,
        };
        if let ManifestRef::Digest(expected) = reference {
            let actual = Digest::of(&bytes);
            if actual != *expected {
                return Err(SourceError::DigestMismatch {
                    what: format!("manifest {expected}"),
                    origin: self.origin(),
                    expected: *expected,
                    actual,
                });
            }
        }
        Ok(bytes)
    }

    /// Fetches a blob into the store, verified; resumes a partial download. Returns
    /// its file, open as the writer that hashed it left it, where nobody else could
    /// have written into it since (`BlobWriter::commit_open`).
    pub async fn blob(
        &self,
        desc: &Desc,
        store: &Store,
        task: &dyn Task,
    ) -> Result<Option<std::fs::File>, SourceError> {
        match self {
            Source::Registry(r) => r.blob(desc, store, task).await,
            Source::Layout(l) => l.blob(desc, store, task),
        }
    }

    /// `blob` in a task of its own (`fetch::in_own_task`), with a progress task.
    pub async fn blob_task(
        self: std::sync::Arc<Self>,
        desc: Desc,
        store: Store,
        reporter: std::sync::Arc<dyn crate::reporter::Reporter>,
    ) -> Result<Option<std::fs::File>, SourceError> {
        crate::fetch::in_own_task(async move {
            let task = reporter.task(&desc.digest.to_string()[7..19], Some(desc.size));
            let result = self.blob(&desc, &store, task.as_ref()).await;
            task.finish();
            result
        })
        .await
    }

    /// Tags of the repository (for cosign-style `sha256-<hex>.sig` attachments).
    pub async fn tags(&self) -> Result<Vec<String>, SourceError> {
        match self {
            Source::Registry(r) => r.tags().await,
            Source::Layout(l) => Ok(l.tags()),
        }
    }

    /// Manifests whose `subject` is `digest`, through the OCI referrers API or, where a
    /// registry lacks it, the referrers tag schema.
    pub async fn referrers(&self, digest: &Digest) -> Result<Vec<Desc>, SourceError> {
        match self {
            Source::Registry(r) => r.referrers(digest).await,
            Source::Layout(l) => l.referrers(digest),
        }
    }
}
