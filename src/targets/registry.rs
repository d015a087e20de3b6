//! Import into any OCI registry: blobs the registry lacks are streamed up, from staging
//! or, for those the staging only hashed, from a second pass over the bundle file;
//! manifests are pushed by digest as the exact bytes that were signed (so digests are
//! preserved), children before parents, and tags go last.

use std::collections::{HashMap, HashSet};

use futures_util::{StreamExt, TryStreamExt};

use oci_client::Reference;
use tokio_util::io::ReaderStream;

use std::io::{self, Read};

use crate::bundle::reader::{self, Input};
use crate::bundle::{Entry, EntrySink, VerifyError};
use crate::digest::Digest;
use crate::exit::{Classify, ExitStatus};
use crate::oci::{Desc, Placement};
use crate::reporter::{Reporter, Task};
use crate::sources::registry::{RegistryOptions, client_for, retrying, sign_in};
use crate::store::{self, Store, StoreError};
use crate::targets::Staging;

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
    /// The second pass over the bundle (streaming what was not staged) found it changed
    /// or damaged.
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

impl Classify for PushError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            PushError::BadTarget(_) => ExitStatus::Usage,
            PushError::Store(e) => e.exit_status(),
            PushError::Verify(e) => e.exit_status(),
            _ => ExitStatus::Error,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            PushError::Push { target, .. } => Some(format!(
                "check that the registry is reachable and accepts pushes ({}); nothing is tagged until every blob and manifest is in",
                crate::sources::auth::connection_hint(target)
            )),
            PushError::Verify(e) => e.hint(),
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
    /// (repository, digest, size) of each first use of a digest the staging holds.
    uploads: Vec<(usize, Digest, u64)>,
    /// The same for blobs the bundle carries that were checked but not staged: they
    /// are streamed from a second pass over the bundle.
    streamed: HashMap<Digest, (usize, u64)>,
    /// (repository, digest, size, repository it was uploaded to).
    mounts: Vec<(usize, Digest, u64, usize)>,
    /// (repository, manifest, wave): a manifest's wave is one past the highest of the
    /// manifests it lists or names as its subject that come before it (an index after
    /// its platform manifests); one wave is sent at once, the waves in order.
    manifests: Vec<(usize, Desc, usize)>,
    tags: Vec<(usize, String, Desc)>,
}

fn plan(
    target: &RegistryTarget,
    staging: &Staging<'_>,
    placements: &[Placement],
    incremental: bool,
) -> Result<Plan, PushError> {
    let mut plan = Plan::default();
    let mut seen: HashSet<(usize, Digest)> = HashSet::new();
    let mut first_repo: HashMap<Digest, usize> = HashMap::new();
    let layout = &staging.layout;
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
        // target's repository already (see `missing`): nothing to send. Those it
        // carries but did not stage come from the second pass.
        store::reachable_with(
            &[layout],
            &p.root,
            &mut HashSet::new(),
            &|d| incremental || staging.passed.contains(&d.digest),
            &mut |d, m| {
                // What a manifest lists, and the one it is about (a signature after
                // what it signs): those go first.
                let after = m.map(|m| {
                    let subject = m.subject.iter().map(|s| s.digest);
                    m.children.iter().map(|c| c.digest).chain(subject).collect()
                });
                reached.push((d, after))
            },
        )?;
        for (desc, children) in reached {
            let is_manifest = children.is_some();
            if !seen.insert((repo, desc.digest)) {
                continue;
            }
            let staged = layout.has_blob(&desc.digest, desc.size);
            let passed = !staged && staging.passed.contains(&desc.digest);
            if !is_manifest && !staged && !passed {
                continue;
            }
            if is_manifest {
                // Children come first in the walk (and subjects in earlier placements,
                // as a spec lists them), so their waves are known.
                let children: Vec<Digest> = children.unwrap_or_default();
                let wave = plan
                    .manifests
                    .iter()
                    .filter(|(r, d, _)| *r == repo && children.contains(&d.digest))
                    .map(|(.., w)| w + 1)
                    .max()
                    .unwrap_or(0);
                plan.manifests.push((repo, desc, wave));
            } else if let Some(&from) = first_repo.get(&desc.digest) {
                plan.mounts.push((repo, desc.digest, desc.size, from));
            } else {
                first_repo.insert(desc.digest, repo);
                if passed {
                    plan.streamed.insert(desc.digest, (repo, desc.size));
                } else {
                    plan.uploads.push((repo, desc.digest, desc.size));
                }
            }
        }
        if let Some(tag) = &p.tag {
            plan.tags.push((repo, tag.clone(), p.root.clone()));
        }
    }
    Ok(plan)
}

/// A pass over the bundle that hands each entry, checked again against the manifest the
/// first pass verified, to a sink. Given to `push` when the staging left blobs out
/// (`Staging::passed`): they are streamed from it.
pub type Pass<'a> = dyn FnMut(&mut dyn EntrySink) -> Result<(), VerifyError> + 'a;

/// The bundle file the first pass read, and where in it the blobs that begin a zstd
/// frame of their own are (`Staging::frames`): those are read again each on its own
/// (`reader::entry_at`), several at once, instead of by a pass over the whole bundle.
pub struct Reopen<'a> {
    pub input: &'a Input,
    pub frames: &'a HashMap<Digest, u64>,
}

/// Pushes the artifacts: blobs the staging left out streamed from `pass` as it reads
/// them, the staged ones from their files, then mounts, manifests and, once every
/// blob and manifest is in, tags.
#[allow(clippy::too_many_arguments)] // each is one thing a push needs
pub fn push(
    target: &RegistryTarget,
    staging: &Staging<'_>,
    placements: &[Placement],
    incremental: bool,
    options: &RegistryOptions,
    runtime: &tokio::runtime::Runtime,
    pass: &mut Pass<'_>,
    reopen: Option<Reopen<'_>>,
    early: Option<&mut Early<'_>>,
    reporter: &dyn Reporter,
) -> Result<(), PushError> {
    let mut plan = plan(target, staging, placements, incremental)?;
    if let Some(early) = early {
        let sent = early.settle(&plan)?;
        plan.streamed.retain(|d, _| !sent.contains(d));
    }
    let pusher = Pusher {
        client: client_for(std::slice::from_ref(&target.registry), options),
        target,
        staging: &staging.layout,
        reporter,
    };
    runtime.block_on(sign_in(&pusher.client, &target.registry, options));
    if !plan.streamed.is_empty() {
        pusher.stream(&plan, runtime, pass, reopen)?;
    }
    runtime.block_on(pusher.rest(&plan))
}

impl Pusher<'_> {
    /// Uploads the blobs of `plan.streamed`: those that begin a frame of their own
    /// (`reopen`) read again each on its own, `PUSH_JOBS` at once; the others as a pass
    /// over the bundle reaches them, up to `PUSH_JOBS` in flight. An upload that fails
    /// for a reason worth retrying is tried again (from its frame, or in another pass).
    fn stream(
        &self,
        plan: &Plan,
        runtime: &tokio::runtime::Runtime,
        pass: &mut Pass<'_>,
        reopen: Option<Reopen<'_>>,
    ) -> Result<(), PushError> {
        let mut wanted: HashMap<Digest, (Reference, u64)> = plan
            .streamed
            .iter()
            .map(|(&d, &(repo, size))| {
                let at = self.reference(&plan.repos[repo], &d.to_string(), true);
                (d, (at, size))
            })
            .collect();
        if let Some(reopen) = reopen {
            let mut apart: Vec<(Entry, Reference, u64)> = Vec::new();
            wanted.retain(|digest, (at, size)| match reopen.frames.get(digest) {
                Some(&offset) => {
                    apart.push((Entry::blob(*digest, *size), at.clone(), offset));
                    false
                }
                None => true,
            });
            // In the bundle's order: the file is read from front to back, as the pass did.
            apart.sort_by_key(|a| a.2);
            if !apart.is_empty() {
                self.stream_apart(&apart, reopen.input, runtime)?;
            }
            if wanted.is_empty() {
                return Ok(());
            }
        }
        let retry = crate::fetch::Retry::default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut streamer = Streamer {
                client: &self.client,
                runtime,
                wanted: &wanted,
                in_flight: std::collections::VecDeque::new(),
                done: Vec::new(),
            };
            let read = pass(&mut streamer);
            let mut done = streamer.wait_all();
            read?;
            let mut again = HashMap::new();
            let mut failure = None;
            for (digest, result) in done.drain(..) {
                match result {
                    Ok(()) => {}
                    Err(e)
                        if attempt < retry.attempts && crate::sources::registry::transient(&e) =>
                    {
                        if let Some(w) = wanted.remove(&digest) {
                            again.insert(digest, w);
                        }
                    }
                    Err(e) => {
                        let repo = wanted.get(&digest).map(|w| w.0.repository().to_string());
                        failure.get_or_insert((digest, repo, e));
                    }
                }
            }
            if let Some((digest, repo, e)) = failure {
                let repo = repo.unwrap_or_default();
                return Err(self.error(format!("blob {digest} to {repo}"), e));
            }
            if again.is_empty() {
                return Ok(());
            }
            std::thread::sleep(retry.delay(attempt, None));
            wanted = again;
        }
    }

    /// Uploads each of `blobs` (its entry, where to, the offset of its frame in the
    /// bundle file) from its own reading of `input`, `PUSH_JOBS` at once: the registry
    /// receives several bodies at a time, as a client with the files at hand sends them.
    fn stream_apart(
        &self,
        blobs: &[(Entry, Reference, u64)],
        input: &Input,
        runtime: &tokio::runtime::Runtime,
    ) -> Result<(), PushError> {
        let total = blobs.iter().map(|b| b.0.size).sum();
        let overall: std::sync::Arc<dyn Task> = self.reporter.overall("push", Some(total)).into();
        std::thread::scope(|scope| {
            runtime.block_on(async {
                let uploads = blobs.iter().map(|(entry, at, offset)| {
                    let overall = overall.clone();
                    async move {
                        let start = |send: Body| {
                            let overall = overall.clone();
                            let (done, fed) = tokio::sync::oneshot::channel();
                            scope.spawn(move || {
                                let fed = feed(input, *offset, entry, send, &*overall, || {});
                                let _ = done.send(fed);
                            });
                            fed
                        };
                        self.upload_fed(at, entry, start).await
                    }
                });
                futures_util::stream::iter(uploads)
                    .buffer_unordered(PUSH_JOBS)
                    .try_collect::<Vec<()>>()
                    .await
            })
        })?;
        overall.finish();
        Ok(())
    }

    /// One blob, already there or uploaded with the body `feed` starts filling (and
    /// whose outcome it says when it ends), again from the start while it fails for a
    /// reason worth retrying. The bytes failing their check is no such reason: that
    /// error is the import's.
    async fn upload_fed(
        &self,
        at: &Reference,
        entry: &Entry,
        feed: impl Fn(Body) -> tokio::sync::oneshot::Receiver<Result<(), VerifyError>>,
    ) -> Result<(), PushError> {
        let name = entry.sha256.to_string();
        let what = || format!("blob {name} to {}", at.repository());
        if retrying(|| self.client.blob_exists(at, &name))
            .await
            .map_err(|e| self.error(what(), e))?
        {
            return Ok(());
        }
        let retry = crate::fetch::Retry::default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (send, receive) = tokio::sync::mpsc::channel(APART_AHEAD);
            let fed = feed(send);
            let body = futures_util::stream::unfold(receive, |mut r| async move {
                r.recv().await.map(|chunk| (chunk.map_err(Into::into), r))
            });
            let pushed = self
                .client
                .push_blob_stream(at, body, &name, Some(entry.size))
                .await;
            // The feeder ends once its body is taken whole or dropped; it always says
            // how, unless its thread panicked.
            let fed = fed
                .await
                .unwrap_or_else(|_| panic!("the reading of {name} from the bundle stopped"));
            match (fed, pushed) {
                (Err(e), _) => return Err(e.into()),
                (Ok(()), Ok(_)) => return Ok(()),
                (Ok(()), Err(e))
                    if attempt < retry.attempts && crate::sources::registry::transient(&e) =>
                {
                    tokio::time::sleep(retry.delay(attempt, None)).await;
                }
                (Ok(()), Err(e)) => return Err(self.error(what(), e)),
            }
        }
    }

    /// Everything but the streamed blobs, in order: staged blobs, mounts, manifests,
    /// tags.
    async fn rest(&self, plan: &Plan) -> Result<(), PushError> {
        let repos = &plan.repos;
        // Overall: a blob counts once it is in the target (there already, mounted or
        // sent).
        let total = plan.uploads.iter().map(|u| u.2).sum::<u64>()
            + plan.mounts.iter().map(|m| m.2).sum::<u64>();
        let overall = self.reporter.overall("push", Some(total));
        let overall = overall.as_ref();
        let uploads = plan.uploads.iter().map(|&(repo, digest, size)| async move {
            self.blob(&repos[repo], digest, size, None).await?;
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
                self.blob(&repos[repo], digest, size, Some(&repos[from]))
                    .await?;
                overall.advance(size);
                Ok::<(), PushError>(())
            });
        futures_util::stream::iter(mounts)
            .buffer_unordered(PUSH_JOBS)
            .try_collect::<Vec<()>>()
            .await?;
        let waves = plan.manifests.iter().map(|m| m.2 + 1).max().unwrap_or(0);
        for wave in 0..waves {
            let manifests =
                plan.manifests
                    .iter()
                    .filter(|m| m.2 == wave)
                    .map(|(repo, desc, _)| async move {
                        let at_digest =
                            self.reference(&repos[*repo], &desc.digest.to_string(), true);
                        let url = self.manifest(&at_digest, desc).await?;
                        if !url.ends_with(&desc.digest.to_string()) {
                            return Err(PushError::DigestChanged {
                                target: self.target.display(),
                                expected: desc.digest,
                                actual: url,
                            });
                        }
                        Ok(())
                    });
            futures_util::stream::iter(manifests)
                .buffer_unordered(PUSH_JOBS)
                .try_collect::<Vec<()>>()
                .await?;
        }
        overall.finish();
        for (repo, tag, desc) in &plan.tags {
            let at_tag = self.reference(&repos[*repo], tag, false);
            self.manifest(&at_tag, desc).await?;
            self.reporter
                .line(&format!("pushed {at_tag} {}", desc.digest));
        }
        Ok(())
    }
}

/// Uploads begun at most while the first pass still reads (`Early`); the other layers
/// are checked by that pass and sent after it. Each may hold, until the verdict, a
/// connection, its last chunk (`APART_CHUNK`), one chunk waiting for the upload
/// (`EARLY_AHEAD`) and one the upload is writing: under 1 MiB each, 18 MiB at most.
const EARLY_MAX: usize = 24;
/// The smallest layer uploaded early: what begins a frame of its own
/// (`bundle::writer`'s `OWN_FRAME`).
const EARLY_MIN: u64 = 256 << 10;
const EARLY_AHEAD: usize = 1;
/// How long no early reading may move before the uploads still unchecked are given up.
const EARLY_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// Uploads of layers begun while the first pass still reads the bundle: as soon as that
/// pass reaches a layer that begins a frame of its own, the layer is read again from
/// its frame, checked and sent, `PUSH_JOBS` at once, into an upload that stays
/// incomplete: its last chunk is held back until the whole bundle has been verified
/// (`settle`). A bundle that fails its check ends every such upload in an error, so the
/// registry commits none of them: nothing becomes visible in it before the whole bundle
/// is checked. The first pass leaves such a layer to this check (it only reads past
/// it, `EntrySink::checks_itself`), so each of its bytes is hashed once, by the reading
/// whose bytes are sent; `settle` waits for every one of those checks (or makes it)
/// before any upload completes.
pub struct Early<'a> {
    target: &'a RegistryTarget,
    /// The bundle's placements, once its manifest is verified.
    placements: &'a std::cell::OnceCell<Vec<Placement>>,
    client: oci_client::Client,
    options: RegistryOptions,
    /// Whether `sign_in` ran: at the first upload, after the bundle's signature and
    /// policy passed (a forged bundle makes no request).
    signed_in: bool,
    input: Input,
    handle: tokio::runtime::Handle,
    reporter: &'a dyn Reporter,
    /// The layers the staged documents reach and the repository `plan` will send each
    /// to, from the documents staged so far (a bundle writes them first), with how many
    /// were staged then.
    repos: Option<(usize, HashMap<Digest, String>)>,
    gate: Gate,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    started: Vec<EarlyJob>,
    progress: Option<std::sync::Arc<dyn Task>>,
    /// Bytes read by the early readings so far (`EARLY_STALL`).
    fed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// A reading's progress, counted in `Early::fed` too.
struct Fed {
    task: std::sync::Arc<dyn Task>,
    fed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Task for Fed {
    fn advance(&self, bytes: u64) {
        self.fed
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        self.task.advance(bytes);
    }
    fn resume_at(&self, bytes: u64) {
        self.task.resume_at(bytes);
    }
    fn finish(&self) {}
}

/// One layer uploaded early: said `checked` once read whole and matched; the upload
/// ends with whether its reading failed and whether the blob is in the target.
struct EarlyJob {
    entry: Entry,
    at: u64,
    repo: String,
    checked: tokio::sync::oneshot::Receiver<()>,
    upload: tokio::task::JoinHandle<(Option<VerifyError>, bool)>,
    ended: Option<(Option<VerifyError>, bool)>,
}

/// The verdict the early uploads wait for: the blobs that may complete (`gated_body`).
struct Gate(tokio::sync::watch::Sender<Option<std::sync::Arc<HashSet<Digest>>>>);

impl Default for Gate {
    fn default() -> Self {
        Gate(tokio::sync::watch::Sender::new(None))
    }
}

impl Gate {
    /// Lets `release` through, the others not; the first verdict stands.
    fn decide(&self, release: HashSet<Digest>) {
        self.0.send_if_modified(|decided| {
            let first = decided.is_none();
            decided.get_or_insert_with(|| std::sync::Arc::new(release));
            first
        });
    }
}

/// The body of an upload begun before the bundle was verified: the chunks `feed` sends,
/// but the one that completes the blob's `size` bytes only once `gate` lets `digest`
/// through. When it does not, the body ends in an error there instead, and the registry
/// never completes the upload (it lacks the last bytes, and would find the digest
/// wrong). The wait is the upload task's, not the reading thread's.
fn gated_body(
    receive: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, io::Error>>,
    size: u64,
    digest: Digest,
    gate: tokio::sync::watch::Receiver<Option<std::sync::Arc<HashSet<Digest>>>>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, io::Error>> {
    type Verdict = tokio::sync::watch::Receiver<Option<std::sync::Arc<HashSet<Digest>>>>;
    let through = move |mut gate: Verdict| async move {
        let through = match gate.wait_for(Option::is_some).await {
            Ok(decided) => decided.as_ref().is_some_and(|r| r.contains(&digest)),
            Err(_) => false,
        };
        (through, gate)
    };
    futures_util::stream::unfold(
        (receive, 0u64, gate, false),
        move |(mut receive, sent, gate, ended)| async move {
            if ended {
                return None;
            }
            let chunk = match receive.recv().await {
                Some(Ok(chunk)) => Some(chunk),
                Some(Err(e)) => return Some((Err(e), (receive, sent, gate, true))),
                // Ended after its last chunk went through, or short (the upload then
                // fails: its length was given). An empty blob's end asks the gate too.
                None if size > 0 => return None,
                None => None,
            };
            let sent = sent + chunk.as_ref().map_or(0, |c| c.len() as u64);
            let (through, gate) = if sent >= size {
                through(gate).await
            } else {
                (true, gate)
            };
            match (through, chunk) {
                (false, _) => {
                    let stopped = io::Error::other("the import stopped before it sent this blob");
                    Some((Err(stopped), (receive, sent, gate, true)))
                }
                (true, Some(chunk)) => Some((Ok(chunk), (receive, sent, gate, false))),
                (true, None) => None,
            }
        },
    )
}

impl<'a> Early<'a> {
    pub fn new(
        target: &'a RegistryTarget,
        placements: &'a std::cell::OnceCell<Vec<Placement>>,
        input: &Input,
        options: &RegistryOptions,
        runtime: &tokio::runtime::Runtime,
        reporter: &'a dyn Reporter,
    ) -> Self {
        Early {
            target,
            placements,
            client: client_for(std::slice::from_ref(&target.registry), options),
            options: options.clone(),
            signed_in: false,
            input: input.clone(),
            handle: runtime.handle().clone(),
            reporter,
            repos: None,
            gate: Default::default(),
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(PUSH_JOBS)),
            started: Vec::new(),
            progress: None,
            fed: Default::default(),
        }
    }

    /// The first pass reached `entry`, which begins the frame at `at`: upload it now if
    /// it is a layer whose repository is known (and not too many wait already). True
    /// when it is: its check is this upload's.
    fn offer(&mut self, entry: &Entry, at: u64, staging: &Staging<'_>) -> bool {
        let Some(digest) = entry.blob_digest() else {
            return false;
        };
        // A small blob (even an empty one, whose body would complete with no chunk to
        // hold back) is no layer worth it: the first pass checks it.
        if self.started.len() >= EARLY_MAX || entry.size < EARLY_MIN {
            return false;
        }
        let Some(placements) = self.placements.get() else {
            return false;
        };
        // Made again when more documents were staged since (a large SBOM begins a frame
        // of its own before the images' documents come).
        let staged = staging.staged.len();
        if self.repos.as_ref().is_none_or(|(at, _)| *at != staged) {
            self.repos = Some((staged, layer_repos(self.target, staging, placements)));
        }
        let Some(repo) = self.repos.as_ref().and_then(|(_, r)| r.get(&digest)) else {
            return false;
        };
        let repo = repo.clone();
        if !self.signed_in {
            self.signed_in = true;
            let registry = &self.target.registry;
            self.handle
                .block_on(sign_in(&self.client, registry, &self.options));
        }
        let progress = Fed {
            task: self
                .progress
                .get_or_insert_with(|| self.reporter.overall("push", None).into())
                .clone(),
            fed: self.fed.clone(),
        };
        let at_digest = Reference::with_digest(
            self.target.registry.clone(),
            repo.clone(),
            digest.to_string(),
        );
        let (client, input, job_entry) = (self.client.clone(), self.input.clone(), *entry);
        let (gate, permits) = (self.gate.0.subscribe(), self.permits.clone());
        let (checked, on_checked) = tokio::sync::oneshot::channel();
        let upload = self.handle.spawn(async move {
            let permit = permits.acquire_owned().await.ok();
            let name = digest.to_string();
            let there = client.blob_exists(&at_digest, &name).await;
            let (send, receive) = tokio::sync::mpsc::channel(EARLY_AHEAD);
            let feeder = tokio::task::spawn_blocking(move || {
                let checked = move || {
                    let _ = checked.send(());
                    drop(permit); // read whole: the next upload may start
                };
                feed(&input, at, &job_entry, send, &progress, checked)
            });
            // Already there, or the registry cannot say: only checked (an upload the
            // registry needs after all comes from the second pass).
            let landed = if matches!(there, Ok(false)) {
                let body = gated_body(receive, job_entry.size, digest, gate)
                    .map(|chunk| chunk.map_err(Into::into));
                client
                    .push_blob_stream(&at_digest, body, &name, Some(job_entry.size))
                    .await
                    .is_ok()
            } else {
                drop(receive);
                matches!(there, Ok(true))
            };
            match feeder.await {
                Ok(Ok(())) => (None, landed),
                Ok(Err(e)) => (Some(e), false),
                Err(_) => (None, false), // never checked: `settle` checks it
            }
        });
        self.started.push(EarlyJob {
            entry: *entry,
            at,
            repo: repo.clone(),
            checked: on_checked,
            upload,
            ended: None,
        });
        true
    }

    /// The first pass and the records checked and `plan` made: waits until every
    /// layer left to an early upload was checked whole (checking itself any whose
    /// reading stopped), then lets the uploads of blobs `plan` streams to the same
    /// repository complete and ends the others in an error. Returns the blobs that
    /// are in the target now; the rest go the usual way. A layer that does not match
    /// fails the import, and no early upload completes.
    fn settle(&mut self, plan: &Plan) -> Result<HashSet<Digest>, VerifyError> {
        for i in 0..self.started.len() {
            // A registry that holds waiting uploads open but reads no body past some
            // number of them would leave a check waiting for ever: when no early reading
            // moved for `EARLY_STALL`, the uploads not known checked are given up (each
            // reading then goes on unsent to its end) and go the usual way.
            let checked = loop {
                let before = self.fed.load(std::sync::atomic::Ordering::Relaxed);
                let checked = &mut self.started[i].checked;
                // The timer is made inside the runtime (`timeout` needs its clock).
                let waited = self
                    .handle
                    .block_on(async { tokio::time::timeout(EARLY_STALL, checked).await });
                match waited {
                    Ok(checked) => break checked.is_ok(),
                    Err(_) if self.fed.load(std::sync::atomic::Ordering::Relaxed) == before => {
                        for job in &self.started[i..] {
                            job.upload.abort();
                        }
                    }
                    Err(_) => {}
                }
            };
            let job = &mut self.started[i];
            if checked {
                continue;
            }
            let ended = self
                .handle
                .block_on(&mut job.upload)
                .unwrap_or((None, false));
            if let (Some(e), _) = ended {
                return Err(e);
            }
            job.ended = Some((None, false));
            let mut reading = reader::entry_at(&self.input, job.at, &job.entry)?;
            io::copy(&mut reading, &mut io::sink()).map_err(|e| reading.error(e))?;
        }
        let release: HashSet<Digest> = self
            .started
            .iter()
            .filter(|job| {
                plan.streamed
                    .get(&job.entry.sha256)
                    .is_some_and(|(r, _)| plan.repos[*r] == job.repo)
            })
            .map(|job| job.entry.sha256)
            .collect();
        self.gate.decide(release.clone());
        let mut done = HashSet::new();
        for mut job in self.started.drain(..) {
            let ended = match job.ended.take() {
                Some(ended) => ended,
                None => self.handle.block_on(job.upload).unwrap_or((None, false)),
            };
            if ended.1 && release.contains(&job.entry.sha256) {
                done.insert(job.entry.sha256);
            }
        }
        if let Some(p) = self.progress.take() {
            p.finish();
        }
        Ok(done)
    }
}

impl Drop for Early<'_> {
    /// Not settled (the bundle failed its check, or the import stopped): no early upload
    /// completes.
    fn drop(&mut self) {
        self.gate.decide(HashSet::new());
    }
}

/// For each layer the staged documents reach, the repository `plan` sends it to (the
/// first placement that reaches it); placements whose documents are not all staged yet
/// give what they reach so far. Layers only: no manifest, no config (the first blob an
/// image manifest lists) and nothing typed as JSON, the documents an import reads back.
fn layer_repos(
    target: &RegistryTarget,
    staging: &Staging<'_>,
    placements: &[Placement],
) -> HashMap<Digest, String> {
    let mut repos: HashMap<Digest, String> = HashMap::new();
    let mut documents: HashSet<Digest> = HashSet::new();
    for p in placements {
        let name = target.repository(&p.repository);
        let _ = store::reachable_with(
            &[&staging.layout],
            &p.root,
            &mut HashSet::new(),
            &|_| true,
            &mut |d, m| match m {
                Some(m) => documents.extend(m.children.first().map(|c| c.digest)),
                None if d.media_type.ends_with("json") => {
                    documents.insert(d.digest);
                }
                None => {
                    repos.entry(d.digest).or_insert_with(|| name.clone());
                }
            },
        );
    }
    repos.retain(|d, _| !documents.contains(d));
    repos
}

/// The first pass's sink when uploads may begin early: stages as `Staging` does, and
/// offers `early` each layer as its frame begins; a layer it takes is its to check, and
/// is not staged.
pub struct EarlySink<'s, 'a, 'b> {
    staging: &'s mut Staging<'a>,
    early: Option<&'s mut Early<'b>>,
    /// The entry whose check `early` took, until it is staged.
    taken: Option<Digest>,
}

impl<'s, 'a, 'b> EarlySink<'s, 'a, 'b> {
    pub fn new(staging: &'s mut Staging<'a>, early: Option<&'s mut Early<'b>>) -> Self {
        EarlySink {
            staging,
            early,
            taken: None,
        }
    }
}

impl EntrySink for EarlySink<'_, '_, '_> {
    fn starts_frame(&mut self, entry: &Entry, at: u64) {
        self.staging.starts_frame(entry, at);
        self.taken = None;
        if let Some(early) = &mut self.early
            && early.offer(entry, at, self.staging)
        {
            self.taken = Some(entry.sha256);
        }
    }

    fn checks_itself(&mut self, entry: &Entry) -> bool {
        self.taken == Some(entry.sha256)
    }

    fn stage(&mut self, entry: &Entry, content: &mut dyn Read) -> io::Result<()> {
        if self.taken.take() == Some(entry.sha256) {
            // Read past (unhashed) by the reader; sent from its frame by `early`.
            self.staging.passed.insert(entry.sha256);
            return Ok(());
        }
        self.staging.stage(entry, content)
    }
}

/// Bytes handed to an upload at a time.
const STREAM_CHUNK: usize = 1 << 20;
/// Chunks that may wait for an upload to take them.
const STREAM_AHEAD: usize = 4;
/// The same for each of the `PUSH_JOBS` uploads fed at once (`stream_apart`), of
/// `APART_CHUNK` bytes: with the chunk each feeder holds back and the one it reads, 1 MiB
/// an upload. Measured against 1 MiB chunks (the bench's import, 3 runs each,
/// alternating): the same time, peak RSS 45 -> 30 MiB.
const APART_AHEAD: usize = 2;
const APART_CHUNK: usize = 256 << 10;

type Upload = tokio::task::JoinHandle<Result<(), oci_client::errors::OciDistributionError>>;
/// The sending end of an upload's body.
pub(crate) type Body = tokio::sync::mpsc::Sender<Result<bytes::Bytes, io::Error>>;

/// Reads the entry that begins the frame at `offset` of the bundle file and sends it
/// into an upload's body, each chunk only once the next one is read: the last leaves
/// only when the whole entry matched its digest, so the registry never receives all of
/// an entry that does not (the body ends in an error instead). `checked` is told once
/// the entry was read whole and matched, before its last chunk is sent. The entry is
/// read and checked to its end even when the upload stops taking the body (it failed):
/// `Ok` means it matched, whatever became of the upload.
pub(crate) fn feed(
    input: &Input,
    offset: u64,
    entry: &Entry,
    send: Body,
    progress: &dyn Task,
    checked: impl FnOnce(),
) -> Result<(), VerifyError> {
    let abort = |send: &Body, e: &io::Error| {
        let _ = send.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
    };
    let mut reader = match reader::entry_at(input, offset, entry) {
        Ok(r) => r,
        Err(e) => {
            abort(&send, &io::Error::other(e.to_string()));
            return Err(e);
        }
    };
    let mut held: Option<bytes::Bytes> = None;
    let mut taken = true;
    let mut pass_on = |chunk: bytes::Bytes| {
        let len = chunk.len() as u64;
        // An upload that stopped taking the body (it failed) says why when it is
        // waited for; the entry is still read to its end and checked whole.
        if taken && send.blocking_send(Ok(chunk)).is_err() {
            taken = false;
        }
        progress.advance(len);
    };
    loop {
        let mut chunk = vec![0u8; APART_CHUNK];
        let mut filled = 0;
        while filled < chunk.len() {
            match reader.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    abort(&send, &e);
                    return Err(reader.error(e));
                }
            }
        }
        if filled == 0 {
            break;
        }
        chunk.truncate(filled);
        if let Some(h) = held.replace(chunk.into()) {
            pass_on(h);
        }
    }
    drop(reader); // its decoder's window
    checked();
    if let Some(h) = held {
        pass_on(h);
    }
    Ok(())
}

/// Streams the entries it is handed that `wanted` names into uploads, each one a
/// monolithic PUT whose body is the entry as the reader checks it: an entry that does
/// not match its digest ends the body with an error, so that the registry never
/// completes that upload (it checks the digest too).
struct Streamer<'a> {
    client: &'a oci_client::Client,
    runtime: &'a tokio::runtime::Runtime,
    wanted: &'a HashMap<Digest, (Reference, u64)>,
    in_flight: std::collections::VecDeque<(Digest, Upload)>,
    done: Vec<(Digest, Result<(), oci_client::errors::OciDistributionError>)>,
}

impl Streamer<'_> {
    fn settle(&mut self, digest: Digest, upload: Upload) {
        let result = self.runtime.block_on(upload).unwrap_or_else(|e| {
            Err(oci_client::errors::OciDistributionError::GenericError(
                Some(e.to_string()),
            ))
        });
        self.done.push((digest, result));
    }

    /// Waits for every upload still running; what each came to.
    fn wait_all(mut self) -> Vec<(Digest, Result<(), oci_client::errors::OciDistributionError>)> {
        while let Some((digest, upload)) = self.in_flight.pop_front() {
            self.settle(digest, upload);
        }
        self.done
    }
}

impl EntrySink for Streamer<'_> {
    fn stage(&mut self, entry: &Entry, content: &mut dyn Read) -> io::Result<()> {
        let Some((at, size)) = entry.blob_digest().and_then(|d| self.wanted.get(&d)) else {
            return Ok(()); // the reader checks what is left unread
        };
        let digest = entry.sha256;
        let (send, receive) =
            tokio::sync::mpsc::channel::<Result<bytes::Bytes, io::Error>>(STREAM_AHEAD);
        let client = self.client.clone();
        let (at, size, name) = (at.clone(), *size, digest.to_string());
        let upload = self.runtime.spawn(async move {
            // Already there (an earlier import, or a retried pass): nothing to send.
            if client.blob_exists(&at, &name).await? {
                return Ok(());
            }
            let body = futures_util::stream::unfold(receive, |mut r| async move {
                r.recv().await.map(|chunk| (chunk.map_err(Into::into), r))
            });
            client
                .push_blob_stream(&at, body, &name, Some(size))
                .await
                .map(|_| ())
        });
        let mut taken = true;
        loop {
            let mut chunk = vec![0u8; STREAM_CHUNK];
            let n = match content.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The body ends in an error: the upload is not completed.
                    let _ = send.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
                    drop(send);
                    self.in_flight.push_back((digest, upload));
                    return Err(e);
                }
            };
            chunk.truncate(n);
            // An upload that stopped taking bytes (the blob was there, or it failed)
            // says why when it is waited for; the rest is only checked.
            if taken && send.blocking_send(Ok(chunk.into())).is_err() {
                taken = false;
            }
        }
        drop(send);
        self.in_flight.push_back((digest, upload));
        while self.in_flight.len() > PUSH_JOBS {
            let (d, u) = self.in_flight.pop_front().expect("not empty");
            self.settle(d, u);
        }
        Ok(())
    }
}

/// Which of `blobs` (repository on the target, blob) the registry does not hold, or
/// cannot say it holds (an error counts as missing).
pub async fn missing(
    target: &RegistryTarget,
    blobs: &[(String, Desc)],
    options: &RegistryOptions,
) -> Vec<(String, Desc)> {
    let client = client_for(std::slice::from_ref(&target.registry), options);
    sign_in(&client, &target.registry, options).await;
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
        // Asked first: a registry that cannot mount opens an upload session instead,
        // which oci-client does not close.
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

    /// An early upload's body gives every chunk but the last until the verdict; the
    /// last goes only if the verdict lets the blob through, else the body ends in an
    /// error (so the registry never completes it). Another blob's release, or a verdict
    /// never given (the import dropped its gate), is no release.
    #[test]
    fn an_early_body_keeps_its_last_chunk_until_the_whole_bundle_verified() {
        use futures_util::FutureExt as _;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let digest = Digest::of(b"layer");
        let other = Digest::of(b"another layer");
        let body = |gate: &Gate| {
            let (send, receive) = tokio::sync::mpsc::channel(4);
            for chunk in [&b"abc"[..], b"def", b"gh"] {
                send.try_send(Ok(bytes::Bytes::from_static(chunk))).unwrap();
            }
            Box::pin(gated_body(receive, 8, digest, gate.0.subscribe()))
        };
        runtime.block_on(async {
            for verdict in [Some(vec![digest]), Some(vec![other]), Some(vec![]), None] {
                let gate = Gate::default();
                let mut body = body(&gate);
                assert_eq!(&body.next().await.unwrap().unwrap()[..], b"abc");
                assert_eq!(&body.next().await.unwrap().unwrap()[..], b"def");
                assert!(
                    body.next().now_or_never().is_none(),
                    "the last chunk left before the verdict"
                );
                let through = verdict.as_ref().is_some_and(|v| v.contains(&digest));
                match verdict {
                    Some(release) => gate.decide(release.into_iter().collect()),
                    None => drop(gate),
                }
                let last = body.next().await.unwrap();
                assert_eq!(last.is_ok(), through, "{last:?}");
                if through {
                    assert_eq!(&last.unwrap()[..], b"gh");
                }
            }
        });
        // An empty blob's body asks the gate too before it ends: through, it ends
        // cleanly; refused, in an error.
        runtime.block_on(async {
            for through in [true, false] {
                let gate = Gate::default();
                let (send, receive) = tokio::sync::mpsc::channel(1);
                drop(send);
                let mut body = Box::pin(gated_body(receive, 0, digest, gate.0.subscribe()));
                assert!(
                    body.next().now_or_never().is_none(),
                    "ended before the verdict"
                );
                gate.decide(if through {
                    [digest].into()
                } else {
                    HashSet::new()
                });
                match body.next().await {
                    None => assert!(through),
                    Some(end) => {
                        assert!(!through && end.is_err());
                        assert!(body.next().await.is_none());
                    }
                }
            }
        });
        // The first verdict stands.
        let gate = Gate::default();
        gate.decide(HashSet::new());
        gate.decide([digest].into_iter().collect());
        let mut body = body(&gate);
        runtime.block_on(async {
            body.next().await.unwrap().unwrap();
            body.next().await.unwrap().unwrap();
            assert!(body.next().await.unwrap().is_err());
        });
    }

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
