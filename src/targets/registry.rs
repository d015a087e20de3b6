//! Import into any OCI registry: blobs the registry lacks are streamed up from staging,
//! manifests are pushed by digest as the exact bytes that were signed (so digests are
//! preserved), children before parents, and tags go last.

use std::collections::{HashMap, HashSet};

use futures_util::{StreamExt, TryStreamExt};

use oci_client::Reference;
use tokio_util::io::ReaderStream;

use crate::digest::Digest;
use crate::exit::{Classify, ExitStatus};
use crate::oci::{Desc, Placement};
use crate::reporter::Reporter;
use crate::sources::registry::{RegistryOptions, client_for, retrying};
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
            PushError::Push { target, .. } => Some(format!(
                "check that the registry is reachable and accepts pushes ({}); nothing is tagged until every blob and manifest is in",
                crate::sources::auth::connection_hint(target)
            )),
            _ => None,
        }
    }
}

impl RegistryTarget {
    pub fn parse(s: &str) -> Result<Self, PushError> {
        let bad = || PushError::BadTarget(s.to_string());
        // As in specs and as skopeo writes it.
        let s = s.strip_prefix("docker://").unwrap_or(s);
        let s = s.trim_end_matches('/');
        let (registry, prefix) = match s.split_once('/') {
            Some((r, p)) => (r, Some(p.to_string())),
            None => (s, None),
        };
        // HOST[:PORT], a name or an address (IPv6 in brackets): nothing that could
        // change the URL it is put into.
        let host_char = |c: char| c.is_ascii_alphanumeric() || ".-:[]_".contains(c);
        if registry.is_empty() || !registry.chars().all(host_char) {
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

/// Blobs pushed at once.
const PUSH_JOBS: usize = 4;

/// What one import sends, in order: blobs (each distinct digest uploaded once, then
/// mounted into the other repositories that need it), manifests children first, tags.
/// Blobs are kept as (repository's position in `repos`, digest, size): a bundle of
/// 10,000 blobs plans in under 1 MiB rather than a name and a descriptor each.
#[derive(Default)]
struct Plan {
    /// The target's repositories, each once.
    repos: Vec<String>,
    /// (repository, digest, size) of each first use of a digest.
    uploads: Vec<(usize, Digest, u64)>,
    /// (repository, digest, size, repository it was uploaded to).
    mounts: Vec<(usize, Digest, u64, usize)>,
    manifests: Vec<(usize, Desc)>,
    tags: Vec<(usize, String, Desc)>,
}

fn plan(
    target: &RegistryTarget,
    staging: &Store,
    placements: &[Placement],
    incremental: bool,
) -> Result<Plan, PushError> {
    let mut plan = Plan::default();
    let mut seen: HashSet<(usize, Digest)> = HashSet::new();
    let mut first_repo: HashMap<Digest, usize> = HashMap::new();
    for p in placements {
        let name = target.repository(&p.repository);
        let repo = match plan.repos.iter().position(|r| *r == name) {
            Some(i) => i,
            None => {
                plan.repos.push(name);
                plan.repos.len() - 1
            }
        };
        let mut reached = Vec::new();
        // An incremental bundle's blobs that staging lacks were checked to be in the
        // target's repository already (see `missing`): nothing to send.
        store::reachable_with(
            &[staging],
            &p.root,
            &mut HashSet::new(),
            &|_| incremental,
            &mut |d, m| reached.push((d, m.is_some())),
        )?;
        for (desc, is_manifest) in reached {
            if !seen.insert((repo, desc.digest)) {
                continue;
            }
            if !is_manifest && !staging.has_blob(&desc.digest, desc.size) {
                continue;
            }
            if is_manifest {
                plan.manifests.push((repo, desc));
            } else if let Some(&from) = first_repo.get(&desc.digest) {
                plan.mounts.push((repo, desc.digest, desc.size, from));
            } else {
                first_repo.insert(desc.digest, repo);
                plan.uploads.push((repo, desc.digest, desc.size));
            }
        }
        if let Some(tag) = &p.tag {
            plan.tags.push((repo, tag.clone(), p.root.clone()));
        }
    }
    Ok(plan)
}

/// Pushes the artifacts from the verified staging layout. Nothing is tagged until every
/// blob and manifest is in.
pub async fn push(
    target: &RegistryTarget,
    staging: &Store,
    placements: &[Placement],
    incremental: bool,
    options: &RegistryOptions,
    reporter: &dyn Reporter,
) -> Result<(), PushError> {
    let plan = plan(target, staging, placements, incremental)?;
    let pusher = Pusher {
        client: client_for(std::slice::from_ref(&target.registry), options),
        target,
        staging,
        reporter,
    };
    let auth = options.auth(&target.registry);
    pusher
        .client
        .store_auth_if_needed(&target.registry, &auth)
        .await;

    let repos = &plan.repos;
    // Overall: a blob counts once it is in the target (there already, mounted or sent).
    let total = plan.uploads.iter().map(|u| u.2).sum::<u64>()
        + plan.mounts.iter().map(|m| m.2).sum::<u64>();
    let overall = reporter.overall("push", Some(total));
    let overall = overall.as_ref();
    let pusher = &pusher;
    let uploads = plan.uploads.iter().map(|&(repo, digest, size)| async move {
        pusher.blob(&repos[repo], digest, size, None).await?;
        overall.advance(size);
        Ok::<(), PushError>(())
    });
    futures_util::stream::iter(uploads)
        .buffer_unordered(PUSH_JOBS)
        .try_collect::<Vec<()>>()
        .await?;
    let mounts = plan
        .mounts
        .iter()
        .map(|&(repo, digest, size, from)| async move {
            pusher
                .blob(&repos[repo], digest, size, Some(&repos[from]))
                .await?;
            overall.advance(size);
            Ok::<(), PushError>(())
        });
    futures_util::stream::iter(mounts)
        .buffer_unordered(PUSH_JOBS)
        .try_collect::<Vec<()>>()
        .await?;
    for (repo, desc) in &plan.manifests {
        let at_digest = pusher.reference(&repos[*repo], &desc.digest.to_string(), true);
        let url = pusher.manifest(&at_digest, desc).await?;
        if !url.ends_with(&desc.digest.to_string()) {
            return Err(PushError::DigestChanged {
                target: target.display(),
                expected: desc.digest,
                actual: url,
            });
        }
    }
    overall.finish();
    for (repo, tag, desc) in &plan.tags {
        let at_tag = pusher.reference(&repos[*repo], tag, false);
        pusher.manifest(&at_tag, desc).await?;
        reporter.line(&format!("pushed {at_tag} {}", desc.digest));
    }
    Ok(())
}

/// Which of `blobs` (repository on the target, blob) the registry does not hold, or
/// cannot say it holds (an error counts as missing).
pub async fn missing(
    target: &RegistryTarget,
    blobs: &[(String, Desc)],
    options: &RegistryOptions,
) -> Vec<(String, Desc)> {
    let client = client_for(std::slice::from_ref(&target.registry), options);
    let auth = options.auth(&target.registry);
    client.store_auth_if_needed(&target.registry, &auth).await;
    let mut out = Vec::new();
    for (repo, desc) in blobs {
        let at = Reference::with_digest(
            target.registry.clone(),
            target.repository(repo),
            desc.digest.to_string(),
        );
        if !matches!(
            client.blob_exists(&at, &desc.digest.to_string()).await,
            Ok(true)
        ) {
            out.push((repo.clone(), desc.clone()));
        }
    }
    out
}

/// Whether the registry still holds every artifact: each manifest under its digest and
/// its tag pointing at it. Any doubt (an error, a missing one) says no, so the import
/// runs and pushes what is missing.
pub async fn holds(
    target: &RegistryTarget,
    placements: &[Placement],
    options: &RegistryOptions,
) -> bool {
    let client = client_for(std::slice::from_ref(&target.registry), options);
    let auth = options.auth(&target.registry);
    for p in placements {
        let repo = target.repository(&p.repository);
        let digest = p.root.digest.to_string();
        let mut refs = vec![Reference::with_digest(
            target.registry.clone(),
            repo.clone(),
            digest.clone(),
        )];
        if let Some(tag) = &p.tag {
            refs.push(Reference::with_tag(
                target.registry.clone(),
                repo.clone(),
                tag.clone(),
            ));
        }
        for r in refs {
            match client.fetch_manifest_digest(&r, &auth).await {
                Ok(d) if d == digest => {}
                _ => return false,
            }
        }
    }
    true
}

struct Pusher<'a> {
    client: oci_client::Client,
    target: &'a RegistryTarget,
    staging: &'a Store,
    reporter: &'a dyn Reporter,
}

impl Pusher<'_> {
    fn reference(&self, repo: &str, tag_or_digest: &str, digest: bool) -> Reference {
        let (registry, repo) = (self.target.registry.clone(), repo.to_string());
        if digest {
            Reference::with_digest(registry, repo, tag_or_digest.to_string())
        } else {
            Reference::with_tag(registry, repo, tag_or_digest.to_string())
        }
    }

    fn error(&self, what: String, source: oci_client::errors::OciDistributionError) -> PushError {
        PushError::Push {
            what,
            target: self.target.display(),
            source,
        }
    }

    /// Makes sure `repo` has the blob: already there, mounted from `from`, or uploaded.
    async fn blob(
        &self,
        repo: &str,
        blob: Digest,
        size: u64,
        from: Option<&str>,
    ) -> Result<(), PushError> {
        let digest = blob.to_string();
        let what = || format!("blob {digest} to {repo}");
        let at_digest = self.reference(repo, &digest, true);
        if retrying(|| self.client.blob_exists(&at_digest, &digest))
            .await
            .map_err(|e| self.error(what(), e))?
        {
            return Ok(());
        }
        if let Some(from) = from {
            let source = self.reference(from, &digest, true);
            // A registry that cannot mount answers 202 and a fresh upload: fall back.
            if self
                .client
                .mount_blob(&at_digest, &source, &digest)
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        // A failed upload (refused, reset, cut short) starts again from the first byte
        // in a new upload session: a registry keeps nothing of a broken monolithic PUT.
        retrying(|| self.upload(&at_digest, blob, size))
            .await
            .map_err(|e| self.error(what(), e))
    }

    /// One upload of a blob from staging, in a session of its own.
    async fn upload(
        &self,
        at_digest: &Reference,
        blob: Digest,
        size: u64,
    ) -> Result<(), oci_client::errors::OciDistributionError> {
        let digest = blob.to_string();
        let file = tokio::fs::File::open(self.staging.blob_path(&blob)).await?;
        let task: std::sync::Arc<dyn crate::reporter::Task> =
            self.reporter.task(&digest[7..19], Some(size)).into();
        let progress = task.clone();
        let stream = ReaderStream::with_capacity(file, 1 << 20).map(move |chunk| {
            if let Ok(c) = &chunk {
                progress.advance(c.len() as u64);
            }
            chunk.map_err(Into::into)
        });
        let result = self
            .client
            .push_blob_stream(at_digest, stream, &digest, Some(size))
            .await;
        task.finish();
        result.map(|_| ())
    }

    async fn manifest(&self, at: &Reference, desc: &Desc) -> Result<String, PushError> {
        let bytes = self.staging.read_blob(&desc.digest)?;
        // Putting the same bytes under the same name again is harmless.
        retrying(|| {
            self.client
                .push_manifest_raw(at, bytes.clone(), header(&desc.media_type))
        })
        .await
        .map_err(|e| self.error(format!("manifest {at}"), e))
    }
}

fn header(media_type: &str) -> reqwest::header::HeaderValue {
    reqwest::header::HeaderValue::from_str(media_type).unwrap_or(
        reqwest::header::HeaderValue::from_static(crate::oci::OCI_MANIFEST),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_as_people_write_them_and_nothing_that_bends_the_url() {
        let t = |s: &str| RegistryTarget::parse(s).map(|t| t.display());
        assert_eq!(t("reg:5000").unwrap(), "reg:5000");
        assert_eq!(t("reg:5000/mirror/").unwrap(), "reg:5000/mirror");
        assert_eq!(t("docker://reg:5000/mirror").unwrap(), "reg:5000/mirror");
        assert_eq!(t("[::1]:5000/a").unwrap(), "[::1]:5000/a");
        for bad in [
            "",
            "docker://",
            "user@reg",
            "reg?x=1/a",
            "reg#frag",
            "reg:5000/UPPER",
            "http://reg:5000",
            "reg/../x",
            "re g",
        ] {
            assert!(RegistryTarget::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
