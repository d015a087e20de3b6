//! Import into any OCI registry: blobs the registry lacks are streamed up from staging,
//! manifests are pushed by digest as the exact bytes that were signed (so digests are
//! preserved), children before parents, and tags go last.

use std::collections::HashSet;

use oci_client::Reference;
use tokio_util::io::ReaderStream;

use crate::artifact::Artifact;
use crate::digest::Digest;
use crate::exit::{Classify, ExitStatus};
use crate::reporter::Reporter;
use crate::sources::registry::{RegistryOptions, client_for};
use crate::store::{self, Store, StoreError};

/// `HOST[:PORT][/PREFIX]`.
#[derive(Debug, Clone)]
pub struct RegistryTarget {
    pub registry: String,
    pub prefix: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("`{0}` is not a registry target (expected HOST[:PORT][/PREFIX])")]
    BadTarget(String),
    #[error("cannot push {what} to {target}")]
    Push {
        what: String,
        target: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    #[error("{target} stored manifest {expected} under digest {actual}")]
    DigestChanged {
        target: String,
        expected: Digest,
        actual: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for PushError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            PushError::BadTarget(_) => ExitStatus::Usage,
            PushError::Store(e) => e.exit_status(),
            _ => ExitStatus::Error,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            PushError::Push { .. } => Some(
                "check that the registry is reachable and accepts pushes (credentials come from the Docker/containers auth files; --plain-http HOST for a registry without TLS); nothing is tagged until every blob and manifest is in".into(),
            ),
            _ => None,
        }
    }
}

impl RegistryTarget {
    pub fn parse(s: &str) -> Result<Self, PushError> {
        let bad = || PushError::BadTarget(s.to_string());
        let s = s.trim_end_matches('/');
        let (registry, prefix) = match s.split_once('/') {
            Some((r, p)) => (r, Some(p.to_string())),
            None => (s, None),
        };
        if registry.is_empty() || registry.contains(['@', ' ']) {
            return Err(bad());
        }
        if prefix
            .as_deref()
            .is_some_and(|p| !crate::oci::valid_repository(p))
        {
            return Err(bad());
        }
        Ok(RegistryTarget {
            registry: registry.to_string(),
            prefix,
        })
    }

    pub fn repository(&self, repo: &str) -> String {
        match &self.prefix {
            Some(p) => format!("{p}/{repo}"),
            None => repo.to_string(),
        }
    }

    pub fn display(&self) -> String {
        match &self.prefix {
            Some(p) => format!("{}/{}", self.registry, p),
            None => self.registry.clone(),
        }
    }
}

/// Pushes the artifacts from the verified staging layout.
pub async fn push(
    target: &RegistryTarget,
    staging: &Store,
    artifacts: &[Artifact],
    options: &RegistryOptions,
    reporter: &dyn Reporter,
) -> Result<(), PushError> {
    let client = client_for(std::slice::from_ref(&target.registry), options);
    let auth = crate::sources::auth::for_registry(&target.registry);
    let push_err = |what: String, source| PushError::Push {
        what,
        target: target.display(),
        source,
    };
    client.store_auth_if_needed(&target.registry, &auth).await;
    let mut present: HashSet<(String, Digest)> = HashSet::new();
    let mut tags: Vec<(Reference, Digest, String)> = Vec::new();
    for a in artifacts {
        let repo = target.repository(&a.repository);
        let nodes = store::reachable_in(&[staging], &a.root())?;
        for (desc, manifest) in &nodes {
            if !present.insert((repo.clone(), desc.digest)) {
                continue;
            }
            let at_digest = Reference::with_digest(
                target.registry.clone(),
                repo.clone(),
                desc.digest.to_string(),
            );
            if manifest.is_none() {
                if client
                    .blob_exists(&at_digest, &desc.digest.to_string())
                    .await
                    .map_err(|e| push_err(format!("blob {}", desc.digest), e))?
                {
                    continue;
                }
                let file = tokio::fs::File::open(staging.blob_path(&desc.digest))
                    .await
                    .map_err(|e| push_err(format!("blob {}", desc.digest), e.into()))?;
                let task = reporter.task(&desc.digest.to_string()[7..19], Some(desc.size));
                let stream =
                    futures_util::StreamExt::map(ReaderStream::with_capacity(file, 1 << 20), |r| {
                        r.map_err(Into::into)
                    });
                client
                    .push_blob_stream(
                        &at_digest,
                        stream,
                        &desc.digest.to_string(),
                        Some(desc.size),
                    )
                    .await
                    .map_err(|e| push_err(format!("blob {}", desc.digest), e))?;
                task.advance(desc.size);
                task.finish();
            } else {
                let bytes = staging.read_blob(&desc.digest)?;
                let url = client
                    .push_manifest_raw(&at_digest, bytes, header(&desc.media_type))
                    .await
                    .map_err(|e| push_err(format!("manifest {}", desc.digest), e))?;
                if !url.ends_with(&desc.digest.to_string()) {
                    return Err(PushError::DigestChanged {
                        target: target.display(),
                        expected: desc.digest,
                        actual: url,
                    });
                }
            }
        }
        if let Some(tag) = &a.tag {
            let at_tag = Reference::with_tag(target.registry.clone(), repo.clone(), tag.clone());
            tags.push((at_tag, a.digest, a.media_type.clone()));
        }
    }
    for (at_tag, digest, media_type) in tags {
        let bytes = staging.read_blob(&digest)?;
        client
            .push_manifest_raw(&at_tag, bytes, header(&media_type))
            .await
            .map_err(|e| push_err(format!("tag {at_tag}"), e))?;
        reporter.line(&format!("pushed {at_tag} {digest}"));
    }
    Ok(())
}

fn header(media_type: &str) -> reqwest::header::HeaderValue {
    reqwest::header::HeaderValue::from_str(media_type).unwrap_or(
        reqwest::header::HeaderValue::from_static(crate::oci::OCI_MANIFEST),
    )
}
