//! Pulling an image into the store: resolve the top manifest, plan what
//! the store lacks, fetch those blobs concurrently (each hashed as it streams), then
//! write manifests and, last, the tag into `index.json`. A second run fetches nothing
//! the store already holds.
//!
//! Asked to ([`Deferred`], for `bundle create`), a pull fetches only the manifests and
//! configs at once and leaves the layers and the tags for later, so that the bundle can
//! be written while the layers arrive.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::Context as _;
use futures_util::{StreamExt, TryStreamExt};

use super::{ImageRecord, ImageSource, ImageSpec};
use crate::artifact::Artifact;
use crate::digest::Digest;
use crate::ecosystems::PullContext;
use crate::oci::{self, Desc, Manifest, Platform};
use crate::reporter::Reporter;
use crate::sources::layout::{LayoutSource, split_layout_ref};
use crate::sources::registry::RegistrySource;
use crate::sources::{ManifestRef, Source, SourceError};
use crate::store::{self, Arrivals, Store};

/// The manifests and blobs below one top manifest.
#[derive(Default)]
struct Tree {
    /// Child manifests, leaves first, with their bytes.
    manifests: Vec<(Digest, Vec<u8>)>,
    blobs: BTreeMap<Digest, Desc>,
    /// The configs among `blobs` (the first blob of each image manifest).
    configs: std::collections::HashSet<Digest>,
}

/// What image pulls leave for later when the context carries one: the blobs the store
/// lacks but configs, and the tags that wait for them. Manifests and configs are fetched
/// at once and written to the store, untagged (the bundle manifest is made from them; an
/// untagged manifest is what a pull killed halfway leaves too, and `store gc` collects
/// it), so the bundle can be signed before the layers come. Each layer is promised in
/// [`Deferred::arrivals`] in the order a bundle of the pulled artifacts holds it (that
/// of `store::reachable_in` over the artifacts); [`Deferred::run`] fetches them in that
/// order and then tags the images.
#[derive(Default)]
pub struct Deferred {
    arrivals: Arrivals,
    later: std::sync::Mutex<Later>,
    /// Told when a blob is promised or the promises end.
    more: tokio::sync::Notify,
}

#[derive(Default)]
struct Later {
    /// Each with where it comes in the bundle: (image entry, place in its walk).
    downloads: Vec<((usize, usize), Arc<Source>, Desc)>,
    /// Where each digest is in `downloads`.
    at: std::collections::HashMap<Digest, usize>,
    /// How many blobs each image entry has promised so far.
    walked: std::collections::HashMap<usize, usize>,
    tags: Vec<((usize, usize), Tag)>,
    /// Downloads not started yet, earliest place first (an entry whose place improved
    /// is pushed again; `started` skips the stale one).
    waiting: std::collections::BinaryHeap<std::cmp::Reverse<((usize, usize), usize)>>,
    started: std::collections::HashSet<usize>,
    /// No more promises: the pulls are done (`close`), or failed (`stop`).
    closed: bool,
}

/// An index entry to write once its tree is in the store, and the line that says so.
struct Tag {
    repository: String,
    tag: Option<String>,
    top: Desc,
    line: String,
}

impl Deferred {
    pub fn arrivals(&self) -> &Arrivals {
        &self.arrivals
    }

    fn later(&self) -> std::sync::MutexGuard<'_, Later> {
        self.later.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Promises a blob that image entry `n` reaches next in its walk. Entries are
    /// resolved at once, so a blob two of them share keeps the earlier place.
    fn download(&self, n: usize, source: &Arc<Source>, desc: Desc) {
        let mut later = self.later();
        let step = later.walked.entry(n).or_insert(0);
        let place = (n, *step);
        *step += 1;
        if self.arrivals.promise(desc.digest) {
            let i = later.downloads.len();
            later.at.insert(desc.digest, i);
            later.downloads.push((place, source.clone(), desc));
            later.waiting.push(std::cmp::Reverse((place, i)));
        } else if let Some(&i) = later.at.get(&desc.digest) {
            let known = &mut later.downloads[i];
            if place < known.0 {
                *known = (place, source.clone(), desc);
                if !later.started.contains(&i) {
                    later.waiting.push(std::cmp::Reverse((place, i)));
                }
            }
        }
        drop(later);
        self.more.notify_one();
    }

    /// No more blobs will be promised: `run` ends once the promised ones arrived.
    pub fn close(&self) {
        self.later().closed = true;
        self.more.notify_one();
    }

    /// The pulls or the write are over: `run` starts no more downloads and ends once
    /// those running did; a waiter for a blob not arrived is told it will not.
    pub fn stop(&self) {
        let mut later = self.later();
        later.closed = true;
        later.waiting.clear();
        drop(later);
        self.arrivals.fail();
        self.more.notify_one();
    }

    /// The promised download to start next (the earliest in the bundle), if any; and
    /// whether more may be promised.
    fn next(&self) -> (Option<(Arc<Source>, Desc)>, bool) {
        let mut later = self.later();
        while let Some(std::cmp::Reverse((_, i))) = later.waiting.pop() {
            if later.started.insert(i) {
                let (_, source, desc) = &later.downloads[i];
                return (Some((source.clone(), desc.clone())), !later.closed);
            }
        }
        (None, !later.closed)
    }

    /// Leaves a tag for later; image entry `n` gives it in its order.
    fn tag(&self, n: usize, tag: Tag) {
        let mut later = self.later();
        let place = (n, later.tags.len());
        later.tags.push((place, tag));
    }

    /// Fetches the promised blobs as they are promised, while the pulls still resolve
    /// the other images (`close` says when they are done), `jobs` at a time, the
    /// earliest in the bundle first, each marked arrived once it is in the store; then
    /// tags the images in the order they were pulled, up to the first whose tree is
    /// incomplete (after a failed download, what a pull without the overlap would have
    /// tagged). A failure stops the downloads and tells every waiter.
    pub async fn run(
        &self,
        store: &Store,
        jobs: usize,
        reporter: &Arc<dyn Reporter>,
    ) -> crate::error::Result<()> {
        let fetch = |source: Arc<Source>, desc: Desc| {
            let (reporter, digest) = (reporter.clone(), desc.digest);
            async move {
                let file = source.blob_task(desc, store.clone(), reporter).await?;
                self.arrivals.arrived(&digest, file);
                Ok::<(), SourceError>(())
            }
        };
        let mut running = futures_util::stream::FuturesUnordered::new();
        let fetched = loop {
            let mut open = true;
            while running.len() < jobs.max(1) {
                let (next, more) = self.next();
                open = more;
                match next {
                    Some((source, desc)) => running.push(fetch(source, desc)),
                    None => break,
                }
            }
            if running.is_empty() && !open {
                break Ok(());
            }
            tokio::select! {
                Some(done) = running.next(), if !running.is_empty() => {
                    if let Err(e) = done {
                        break Err(e);
                    }
                }
                () = self.more.notified() => {}
            }
        };
        drop(running);
        if fetched.is_err() {
            self.arrivals.fail();
        }
        let mut tags = std::mem::take(&mut self.later().tags);
        tags.sort_by_key(|(place, _)| *place);
        let tags: Vec<Tag> = tags.into_iter().map(|(_, t)| t).collect();
        // What a pull without the overlap would have tagged before it stopped: the
        // images before the first one left incomplete (and so no referrer of it).
        let complete: Vec<&Tag> = tags
            .iter()
            .take_while(|t| store.reachable(&t.top).is_ok())
            .collect();
        let tagged = if complete.is_empty() {
            Ok(())
        } else {
            store.update_entries(|entries| {
                for t in &complete {
                    store::upsert_entry(entries, &t.repository, t.tag.as_deref(), &t.top);
                }
            })
        };
        if tagged.is_ok() {
            for t in &complete {
                reporter.line(&t.line);
            }
        }
        fetched?;
        Ok(tagged?)
    }
}

/// Pulls one image, and the referrers attached to it when the spec asks for them.
pub async fn pull_image(
    image: &ImageSpec,
    n: usize,
    cx: &PullContext<'_>,
) -> crate::error::Result<Vec<Artifact<ImageRecord>>> {
    let (store, reporter) = (cx.store, cx.reporter);
    let (source, repository, reference) = match &image.source {
        ImageSource::Registry(r) => {
            let src = RegistrySource::new(r, cx.registry)?;
            let base = src.reference().clone();
            let reference = match base.digest() {
                Some(d) => ManifestRef::Digest(d.parse().map_err(|e| {
                    crate::error::Error::msg(format!("{r}: the digest is not sha256: {e}"))
                })?),
                None => ManifestRef::Tag(base.tag().unwrap_or("latest").to_string()),
            };
            let repo = image
                .repository
                .clone()
                .unwrap_or_else(|| base.repository().to_string());
            (Arc::new(Source::Registry(src)), repo, reference)
        }
        ImageSource::Layout { dir, reference } => {
            let (repo, tag) = split_layout_ref(dir, reference);
            let reference = match tag.parse::<Digest>() {
                Ok(d) => ManifestRef::Digest(d),
                Err(_) => ManifestRef::Tag(tag),
            };
            let src = LayoutSource::open(dir, Some(repo.clone()))?;
            (
                Arc::new(Source::Layout(src)),
                image.repository.clone().unwrap_or(repo),
                reference,
            )
        }
    };
    let tag = match &reference {
        ManifestRef::Tag(t) => Some(t.clone()),
        ManifestRef::Digest(_) => None,
    };
    let origin = image.source.to_string();

    let top_bytes = source.manifest(&reference).await?;
    let top = Manifest::parse(&top_bytes, None)?;
    let (top_bytes, source_digest) = if top.is_index() && !image.platforms.is_empty() {
        filter_platforms(&top_bytes, &top, &image.platforms)
            .with_context(|| format!("cannot select platforms of {origin}"))?
    } else {
        (top_bytes, None)
    };
    let top = Manifest::parse(&top_bytes, None)?;
    let platforms = fetch_tree(&source, &top, &top_bytes, n, cx, reporter).await?;
    if cx.plan.is_some() {
        return Ok(Vec::new());
    }
    tag_entry(
        n,
        cx,
        Tag {
            repository: repository.clone(),
            tag: tag.clone(),
            top: top_desc(&top, &top_bytes),
            line: format!(
                "pulled {}{} {}",
                repository,
                tag.as_ref().map(|t| format!(":{t}")).unwrap_or_default(),
                top.digest
            ),
        },
    )?;

    let licenses = licences(store, &top_bytes)?.finish(&origin, reporter.as_ref());
    let mut artifacts = vec![Artifact {
        repository: repository.clone(),
        tag,
        digest: top.digest,
        media_type: top.media_type.clone(),
        size: top_bytes.len() as u64,
        origin: origin.clone(),
        artifact_type: top.artifact_type.clone(),
        labels: Default::default(),
        licenses,
        record: ImageRecord {
            platforms,
            subject: None,
            source_digest,
        },
    }];
    if image.referrers {
        let subjects: Vec<Digest> = std::iter::once(top.digest).chain(source_digest).collect();
        artifacts.extend(
            pull_referrers(&source, &subjects, &repository, &origin, n, cx, reporter).await?,
        );
    }
    Ok(artifacts)
}

/// Writes an index entry now, or leaves it to the context's [`Deferred`].
fn tag_entry(n: usize, cx: &PullContext<'_>, t: Tag) -> crate::error::Result<()> {
    if let Some(defer) = cx.defer {
        defer.tag(n, t);
        return Ok(());
    }
    cx.store.update_entries(|entries| {
        store::upsert_entry(entries, &t.repository, t.tag.as_deref(), &t.top)
    })?;
    cx.reporter.line(&t.line);
    Ok(())
}

fn top_desc(top: &Manifest, bytes: &[u8]) -> Desc {
    Desc {
        media_type: top.media_type.clone(),
        digest: top.digest,
        size: bytes.len() as u64,
        platform: None,
        artifact_type: top.artifact_type.clone(),
        annotations: Default::default(),
    }
}

/// Keeps the index entries of the wanted platforms. All kept: the index as it is.
fn filter_platforms(
    bytes: &[u8],
    index: &Manifest,
    wanted: &[Platform],
) -> crate::error::Result<(Vec<u8>, Option<Digest>)> {
    let matches = |d: &Desc, w: &Platform| {
        d.platform
            .as_ref()
            .is_some_and(|p| w.matches(&p.os, &p.architecture, p.variant.as_deref()))
    };
    for w in wanted {
        if !index.children.iter().any(|d| matches(d, w)) {
            let have: Vec<String> = index
                .children
                .iter()
                .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                .collect();
            crate::error::bail!(
                "platform {w} is not in the index (it has: {})",
                have.join(", ")
            );
        }
    }
    let keep: Vec<bool> = index
        .children
        .iter()
        .map(|d| wanted.iter().any(|w| matches(d, w)))
        .collect();
    if keep.iter().all(|k| *k) {
        return Ok((bytes.to_vec(), None));
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
    let list = value["manifests"]
        .as_array_mut()
        .context("index without manifests")?;
    let mut i = 0;
    list.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    Ok((serde_json::to_vec(&value)?, Some(index.digest)))
}

/// Fetches every manifest and blob below `top` that the store lacks, then writes the
/// manifests (leaves first) and `top`. With a [`Deferred`], only the configs are fetched
/// before the manifests are written; the other blobs are promised to it. Returns the
/// platforms it covers.
async fn fetch_tree(
    source: &Arc<Source>,
    top: &Manifest,
    top_bytes: &[u8],
    n: usize,
    cx: &PullContext<'_>,
    reporter: &Arc<dyn Reporter>,
) -> crate::error::Result<Vec<String>> {
    let store = cx.store;
    let mut tree = Tree::default();
    let mut platforms = Vec::new();
    let mut pending: Vec<Manifest> = vec![top.clone()];
    while let Some(m) = pending.pop() {
        if m.is_index() {
            for child in &m.children {
                if let Some(p) = &child.platform {
                    platforms.push(p.to_string());
                }
                if !oci::is_manifest_type(&child.media_type) {
                    tree.blobs.insert(child.digest, child.clone());
                    continue;
                }
                let bytes = if store.has_blob(&child.digest, child.size) {
                    store.read_blob(&child.digest)?
                } else {
                    source.manifest(&ManifestRef::Digest(child.digest)).await?
                };
                let parsed = Manifest::parse(&bytes, Some(&child.media_type))?;
                tree.manifests.push((child.digest, bytes));
                pending.push(parsed);
            }
        } else {
            if let Some(config) = m.children.first() {
                tree.configs.insert(config.digest);
            }
            for blob in &m.children {
                tree.blobs.insert(blob.digest, blob.clone());
            }
        }
    }
    if let Some(plan) = &cx.plan {
        for d in tree.blobs.values() {
            plan.add(crate::plan::Item {
                ecosystem: "image",
                name: d.digest.to_string()[7..19].to_string(),
                origin: source.origin(),
                digest: Some(d.digest.to_string()),
                size: Some(d.size),
                present: store.has_blob(&d.digest, d.size),
            });
        }
        platforms.sort();
        platforms.dedup();
        return Ok(platforms);
    }
    let missing: Vec<Desc> = tree
        .blobs
        .values()
        .filter(|d| !store.has_blob(&d.digest, d.size))
        .filter(|d| cx.defer.is_none() || tree.configs.contains(&d.digest))
        .cloned()
        .collect();
    futures_util::stream::iter(missing.into_iter().map(|desc| {
        let (source, reporter) = (source.clone(), reporter.clone());
        async move {
            source
                .blob_task(desc, store.clone(), reporter)
                .await
                .map(drop)
        }
    }))
    .buffer_unordered(cx.jobs.max(1))
    .try_collect::<Vec<()>>()
    .await?;
    for (digest, bytes) in tree.manifests.iter().rev() {
        store.put_blob(bytes, digest, &format!("manifest {digest}"))?;
    }
    store.put_blob(top_bytes, &top.digest, &format!("manifest {}", top.digest))?;
    if let Some(defer) = cx.defer {
        // Promised in the order of `reachable_in`, which is the order bundles hold them.
        store::reachable_with(
            &[store],
            &top_desc(top, top_bytes),
            &mut Default::default(),
            &|_| true,
            &mut |desc, manifest| {
                if manifest.is_none() && !store.has_blob(&desc.digest, desc.size) {
                    defer.download(n, source, desc);
                }
            },
        )?;
    }
    platforms.sort();
    platforms.dedup();
    Ok(platforms)
}

/// Where an image declares its licences: an annotation of its manifests and index, and
/// these labels of each platform's config (the OCI one first, then older ones).
const LICENCE_ANNOTATION: &str = "org.opencontainers.image.licenses";
const LICENCE_LABELS: &[&str] = &[LICENCE_ANNOTATION, "org.label-schema.license", "license"];
/// Configs larger than this are not read for their labels.
const CONFIG_LIMIT: u64 = 4 << 20;

/// The licences the image at `top` (now in the store) declares.
fn licences(store: &Store, top: &[u8]) -> crate::error::Result<crate::licence::Found> {
    let mut found = crate::licence::Found::new();
    let mut pending = vec![top.to_vec()];
    while let Some(bytes) = pending.pop() {
        let value: serde_json::Value = serde_json::from_slice(&bytes)?;
        if let Some(l) = value["annotations"][LICENCE_ANNOTATION].as_str() {
            found.add(l, &format!("annotation {LICENCE_ANNOTATION}"));
        }
        let m = Manifest::parse(&bytes, None)?;
        if m.is_index() {
            for child in m
                .children
                .iter()
                .filter(|c| oci::is_manifest_type(&c.media_type))
            {
                if store.has_blob(&child.digest, child.size) {
                    pending.push(store.read_blob(&child.digest)?);
                }
            }
            continue;
        }
        let Some(config) = m.children.first() else {
            continue;
        };
        if config.size > CONFIG_LIMIT || !store.has_blob(&config.digest, config.size) {
            continue;
        }
        let config: serde_json::Value =
            serde_json::from_slice(&store.read_blob(&config.digest)?).unwrap_or_default();
        for label in LICENCE_LABELS {
            if let Some(l) = config["config"]["Labels"][label].as_str() {
                found.add(l, &format!("label {label}"));
            }
        }
    }
    Ok(found)
}

/// Brings what is attached to the subjects: cosign-style `sha256-<hex>.sig/.att/.sbom`
/// tags, the referrers tag-schema index `sha256-<hex>`, and OCI referrers.
async fn pull_referrers(
    source: &Arc<Source>,
    subjects: &[Digest],
    repository: &str,
    origin: &str,
    n: usize,
    cx: &PullContext<'_>,
    reporter: &Arc<dyn Reporter>,
) -> crate::error::Result<Vec<Artifact<ImageRecord>>> {
    let tags = match source.tags().await {
        Ok(t) => t,
        Err(e @ SourceError::Fetch { .. }) => {
            reporter.line(&format!("warning: cannot list tags of {origin}, so cosign-style signatures are not looked for: {e}"));
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    let mut found: Vec<(Digest, Option<String>, ManifestRef)> = Vec::new();
    for subject in subjects {
        let prefix = subject.tag_form();
        for tag in tags.iter().filter(|t| t.starts_with(&prefix)) {
            found.push((*subject, Some(tag.clone()), ManifestRef::Tag(tag.clone())));
        }
        for desc in source.referrers(subject).await? {
            found.push((*subject, None, ManifestRef::Digest(desc.digest)));
        }
    }
    let mut artifacts: Vec<Artifact<ImageRecord>> = Vec::new();
    for (subject, tag, reference) in found {
        let bytes = source.manifest(&reference).await?;
        let m = Manifest::parse(&bytes, None)?;
        if artifacts
            .iter()
            .any(|a| a.digest == m.digest && a.tag == tag)
        {
            continue;
        }
        fetch_tree(source, &m, &bytes, n, cx, reporter).await?;
        if cx.plan.is_some() {
            continue;
        }
        tag_entry(
            n,
            cx,
            Tag {
                repository: repository.to_string(),
                tag: tag.clone(),
                top: top_desc(&m, &bytes),
                line: format!(
                    "pulled {} attached to {}",
                    tag.as_deref().unwrap_or(&m.digest.to_string()),
                    subject
                ),
            },
        )?;
        artifacts.push(Artifact {
            repository: repository.to_string(),
            tag,
            digest: m.digest,
            media_type: m.media_type.clone(),
            size: bytes.len() as u64,
            origin: format!("{origin} ({reference})"),
            artifact_type: m.artifact_type.clone(),
            labels: Default::default(),
            licenses: Vec::new(),
            record: ImageRecord {
                platforms: Vec::new(),
                subject: Some(subject),
                source_digest: None,
            },
        });
    }
    Ok(artifacts)
}
