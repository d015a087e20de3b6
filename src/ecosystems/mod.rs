//! The ecosystems ferry carries, and the one seam through which the rest of ferry
//! reaches them.
//!
//! An ecosystem is a folder here with a type that implements [`Ecosystem`]. It provides:
//! - its **spec section** (`[[python]]`): a raw TOML table in, a checked entry out
//!   (`parse`), every name in it checked;
//! - how an entry is **resolved and fetched** into the store (`pull`), through the one
//!   verified fetcher (`crate::fetch`) or the OCI sources, adding to the dry-run plan
//!   instead of fetching when one is given;
//! - its **record**: what the signed bundle manifest says of each of its artifacts beyond
//!   the shared fields (`Record`), and how `import` and `bundle verify` check what the
//!   store holds against it (`check`);
//! - what **`bundle inspect`** shows of a record (`describe`);
//! - its **serve routes** (`catalog`, `claims`, `route`);
//! - its **export**, in its folder's `export.rs`, reached from `ferry export`.
//!
//! Ecosystems depend on `store`, `oci`, `fetch`, `digest`, `names`, `plan`, `reporter`,
//! `respond` and `sources`, never on each other, on bundles, imports or commands.
//!
//! **Adding one**: a folder with its `Ecosystem` type, then here one variant in each of
//! [`Entry`], [`Record`] and [`Kind`] (and its field in the wire form); the compiler names
//! every `match` below that needs an arm. Nothing outside this folder changes, but for
//! an export subcommand if it has one.

pub mod conda;
pub mod image;
pub mod model;
pub mod python;
mod wire;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use axum::response::Response;
use futures_util::StreamExt;

use crate::artifact::{Artifact, Head, ReadBlob};
use crate::plan::Plan;
use crate::reporter::Reporter;
use crate::respond::Request;
use crate::sources::registry::RegistryOptions;
use crate::store::Store;

pub use wire::Kind;

/// What every ecosystem's pull gets besides its entry.
pub struct PullContext<'a> {
    pub store: &'a Store,
    /// Downloads at once.
    pub jobs: usize,
    /// A dry run: resolve, record what would be fetched here, fetch and write nothing.
    pub plan: Option<&'a Plan>,
    pub reporter: &'a Arc<dyn Reporter>,
    pub registry: &'a RegistryOptions,
    /// Images leave their layers and tags to this, when given (see [`image::Deferred`]).
    pub defer: Option<&'a image::Deferred>,
}

/// One ecosystem: see the module documentation for what each part is for.
pub trait Ecosystem {
    /// The spec's array of tables: `python` for `[[python]]`.
    const SECTION: &'static str;
    /// The keys an entry of the section takes (besides `labels`), for hints.
    const KEYS: &'static [&'static str];
    /// One checked spec entry.
    type Spec: std::fmt::Debug + Clone + Send + Sync;
    /// What the bundle manifest records of one artifact beyond the shared fields.
    type Record: std::fmt::Debug + Clone + PartialEq + Eq + Send + Sync;
    /// What `serve` indexes of the store for this ecosystem's routes.
    type Catalog: Default + Send + Sync;

    /// Checks one spec entry; relative paths in it are taken from `base`.
    fn parse(entry: toml::Table, base: &Path) -> Result<Self::Spec, String>;

    /// Resolves and fetches entry `n` (1-based) into the store; returns what it carries.
    fn pull(
        spec: &Self::Spec,
        n: usize,
        cx: &PullContext<'_>,
    ) -> impl Future<Output = crate::error::Result<Vec<Artifact<Self::Record>>>>;

    /// Checks what the store holds of an artifact (its config, its annotations, parsed
    /// with every name checked) against the signed record. Every ecosystem sees every
    /// artifact, with `record` set when the artifact is its own: serve and export find
    /// records by artifact type, so a record dressed as another kind is checked as what
    /// it claims to be.
    fn check(a: &Head, record: Option<&Self::Record>, read: &ReadBlob) -> Result<(), String>;

    /// The lines `bundle inspect` prints below an artifact of this ecosystem.
    fn describe(a: &Head, record: &Self::Record) -> Vec<String>;

    /// An empty catalog for serving a store whose index changed last at `modified`.
    fn new_catalog(_modified: SystemTime) -> Self::Catalog {
        Self::Catalog::default()
    }

    /// Adds one entry of the store's index to the catalog: every ecosystem sees every
    /// entry, in index order, and takes what is its own. A record that cannot be served
    /// safely is left out with a warning.
    fn catalog(catalog: &mut Self::Catalog, store: &Store, entry: &crate::oci::Desc);

    /// Whether a request path is this ecosystem's to answer.
    fn claims(path: &str) -> bool;

    /// Answers a GET or HEAD the ecosystem claims.
    fn route(
        store: &Store,
        catalog: &Self::Catalog,
        request: &Request<'_>,
    ) -> impl Future<Output = Response> + Send;

    /// Answers a request that would write: the server is read-only.
    fn read_only(_path: &str) -> Response {
        crate::respond::read_only()
    }
}

/// One checked spec entry, of whichever ecosystem.
#[derive(Debug, Clone)]
pub enum Entry {
    Python(python::PythonSpec),
    Conda(conda::CondaSpec),
    Model(model::ModelSpec),
    Image(image::ImageSpec),
}

/// A spec entry and the labels every artifact it brings carries.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub entry: Entry,
    pub labels: crate::artifact::Labels,
}

/// What the bundle manifest records of an artifact beyond the shared fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Image(image::ImageRecord),
    Python(python::record::PythonRelease),
    Conda(conda::record::CondaPackage),
    Model(model::record::ModelInfo),
}

/// An artifact of any ecosystem: what bundles, stores and targets hold.
pub type AnyArtifact = Artifact<Record>;

/// The spec sections, in the order their entries are pulled.
pub const SECTIONS: &[&str] = &[
    python::Python::SECTION,
    conda::Conda::SECTION,
    model::Model::SECTION,
    image::Image::SECTION,
];

/// The keys an entry of `section` takes (besides `labels`).
pub fn keys(section: &str) -> &'static [&'static str] {
    match section {
        python::Python::SECTION => python::Python::KEYS,
        conda::Conda::SECTION => conda::Conda::KEYS,
        model::Model::SECTION => model::Model::KEYS,
        image::Image::SECTION => image::Image::KEYS,
        _ => &[],
    }
}

/// Parses one entry of section `section`; `None` when no ecosystem has that section.
pub fn parse_entry(
    section: &str,
    entry: toml::Table,
    base: &Path,
) -> Option<Result<Entry, String>> {
    fn parse<E: Ecosystem>(
        entry: toml::Table,
        base: &Path,
        wrap: fn(E::Spec) -> Entry,
    ) -> Result<Entry, String> {
        E::parse(entry, base).map(wrap)
    }
    Some(match section {
        python::Python::SECTION => parse::<python::Python>(entry, base, Entry::Python),
        conda::Conda::SECTION => parse::<conda::Conda>(entry, base, Entry::Conda),
        model::Model::SECTION => parse::<model::Model>(entry, base, Entry::Model),
        image::Image::SECTION => parse::<image::Image>(entry, base, Entry::Image),
        _ => return None,
    })
}

impl Entry {
    pub fn section(&self) -> &'static str {
        match self {
            Entry::Python(_) => python::Python::SECTION,
            Entry::Conda(_) => conda::Conda::SECTION,
            Entry::Model(_) => model::Model::SECTION,
            Entry::Image(_) => image::Image::SECTION,
        }
    }

    /// Pulls this entry, the `n`th of its section.
    pub async fn pull(
        &self,
        n: usize,
        cx: &PullContext<'_>,
    ) -> crate::error::Result<Vec<AnyArtifact>> {
        fn wrap<R>(got: Vec<Artifact<R>>, f: fn(R) -> Record) -> Vec<AnyArtifact> {
            got.into_iter().map(|a| a.map(f)).collect()
        }
        Ok(match self {
            Entry::Python(s) => wrap(python::Python::pull(s, n, cx).await?, Record::Python),
            Entry::Conda(s) => wrap(conda::Conda::pull(s, n, cx).await?, Record::Conda),
            Entry::Model(s) => wrap(model::Model::pull(s, n, cx).await?, Record::Model),
            Entry::Image(s) => wrap(image::Image::pull(s, n, cx).await?, Record::Image),
        })
    }
}

/// Pulls every entry in order and labels what each brings; an artifact two entries
/// both carry is listed once, with the labels of both (the first entry's value wins).
/// With a [`image::Deferred`], consecutive image entries are resolved up to `jobs` at
/// once (each only fetches manifests and configs then; the order of what they bring,
/// and of the layers they promise, is still the spec's).
pub async fn pull_all(
    entries: &[Labelled],
    cx: &PullContext<'_>,
) -> crate::error::Result<Vec<AnyArtifact>> {
    let mut counts = std::collections::HashMap::new();
    let numbered: Vec<(&Labelled, usize)> = entries
        .iter()
        .map(|l| {
            let n = counts.entry(l.entry.section()).or_insert(0);
            *n += 1;
            (l, *n)
        })
        .collect();
    let together = |l: &Labelled| cx.defer.is_some() && matches!(l.entry, Entry::Image(_));
    let mut artifacts: Vec<AnyArtifact> = Vec::new();
    let mut rest = &numbered[..];
    while let Some((first, _)) = rest.first() {
        let run = match together(first) {
            true => rest.iter().take_while(|(l, _)| together(l)).count(),
            false => 1,
        };
        let (now, later) = rest.split_at(run);
        rest = later;
        let pulled: Vec<_> = futures_util::stream::iter(now)
            .map(|(l, n)| l.entry.pull(*n, cx))
            .buffered(cx.jobs.max(1))
            .collect()
            .await;
        for ((Labelled { labels, .. }, _), got) in now.iter().zip(pulled) {
            for mut a in got? {
                let known = artifacts.iter_mut().find(|b| {
                    b.digest == a.digest && b.repository == a.repository && b.tag == a.tag
                });
                match known {
                    Some(b) => {
                        for (k, v) in labels {
                            b.labels.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                    None => {
                        a.labels = labels.clone();
                        artifacts.push(a);
                    }
                }
            }
        }
    }
    Ok(artifacts)
}

/// Checks what the store holds of `a` against its signed record, by every ecosystem.
pub fn check(a: &AnyArtifact, read: &ReadBlob) -> Result<(), String> {
    let head = a.head();
    let r = &a.record;
    image::Image::check(
        &head,
        match r {
            Record::Image(x) => Some(x),
            _ => None,
        },
        read,
    )?;
    python::Python::check(
        &head,
        match r {
            Record::Python(x) => Some(x),
            _ => None,
        },
        read,
    )?;
    conda::Conda::check(
        &head,
        match r {
            Record::Conda(x) => Some(x),
            _ => None,
        },
        read,
    )?;
    model::Model::check(
        &head,
        match r {
            Record::Model(x) => Some(x),
            _ => None,
        },
        read,
    )?;
    Ok(())
}

/// The lines `bundle inspect` prints below `a`: its ecosystem's, then one per licence
/// declaration (`licence Apache 2.0 = Apache-2.0 (License)`).
pub fn describe(a: &AnyArtifact) -> Vec<String> {
    let head = a.head();
    let mut lines = match &a.record {
        Record::Image(r) => image::Image::describe(&head, r),
        Record::Python(r) => python::Python::describe(&head, r),
        Record::Conda(r) => conda::Conda::describe(&head, r),
        Record::Model(r) => model::Model::describe(&head, r),
    };
    lines.extend(a.licenses.iter().map(|l| match &l.spdx {
        Some(spdx) if *spdx != l.declared => {
            format!("licence {} = {spdx} ({})", l.declared, l.source)
        }
        Some(_) => format!("licence {} ({})", l.declared, l.source),
        None => format!("licence {} (not SPDX; {})", l.declared, l.source),
    }));
    lines
}

/// What `serve` indexes of a store, one catalog per ecosystem.
#[derive(Default)]
pub struct Catalogs {
    image: <image::Image as Ecosystem>::Catalog,
    python: <python::Python as Ecosystem>::Catalog,
    conda: <conda::Conda as Ecosystem>::Catalog,
    model: <model::Model as Ecosystem>::Catalog,
}

impl Catalogs {
    /// Indexes the store in one pass over its index, `progress` counting its entries.
    pub fn build(
        store: &Store,
        modified: SystemTime,
        reporter: &dyn crate::reporter::Reporter,
    ) -> crate::error::Result<Catalogs> {
        let entries = store.entries()?;
        let mut c = Catalogs {
            image: image::Image::new_catalog(modified),
            python: python::Python::new_catalog(modified),
            conda: conda::Conda::new_catalog(modified),
            model: model::Model::new_catalog(modified),
        };
        let progress = reporter.counted("catalog", entries.len() as u64, "index entries");
        for entry in &entries {
            image::Image::catalog(&mut c.image, store, entry);
            python::Python::catalog(&mut c.python, store, entry);
            conda::Conda::catalog(&mut c.conda, store, entry);
            model::Model::catalog(&mut c.model, store, entry);
            progress.advance(1);
        }
        progress.finish();
        Ok(c)
    }
}

/// Answers a GET or HEAD by the ecosystem that claims its path; `None`: nobody does.
pub async fn route(store: &Store, catalogs: &Catalogs, request: &Request<'_>) -> Option<Response> {
    let path = request.path;
    Some(if image::Image::claims(path) {
        image::Image::route(store, &catalogs.image, request).await
    } else if conda::Conda::claims(path) {
        conda::Conda::route(store, &catalogs.conda, request).await
    } else if model::Model::claims(path) {
        model::Model::route(store, &catalogs.model, request).await
    } else if python::Python::claims(path) {
        python::Python::route(store, &catalogs.python, request).await
    } else {
        return None;
    })
}

/// Answers a request that would write, in the form of the ecosystem that claims it.
pub fn read_only(path: &str) -> Response {
    if image::Image::claims(path) {
        image::Image::read_only(path)
    } else if conda::Conda::claims(path) {
        conda::Conda::read_only(path)
    } else if model::Model::claims(path) {
        model::Model::read_only(path)
    } else {
        python::Python::read_only(path)
    }
}
