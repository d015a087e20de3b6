//! Resolving requirements to the full closure for one target with PubGrub. A project
//! with extras is modelled as its own package (`name[extra]`) pinned to the project's
//! version, as uv and Poetry do. Version sets are unions of the versions the index
//! lists, so no PEP 440 range arithmetic is needed; ranges come from the index itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use pep440_rs::{Version, VersionSpecifiers};
use pep508_rs::{ExtraName, PackageName, Requirement, VersionOrUrl};
use pubgrub::{
    DefaultStringReporter, Dependencies, DependencyProvider, PackageResolutionStatistics,
    PubGrubError, Ranges, Reporter,
};

use super::index::{IndexClient, IndexError, IndexFile};
use super::metadata;
use super::tags::{Dist, Target};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pkg {
    Root,
    Project(PackageName),
    Extra(PackageName, ExtraName),
}

impl fmt::Display for Pkg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pkg::Root => f.write_str("the requirements"),
            Pkg::Project(n) => write!(f, "{n}"),
            Pkg::Extra(n, e) => write!(f, "{n}[{e}]"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(
        "`{project}` {version} is only available as a source distribution; ferry carries wheels only"
    )]
    OnlySdist { project: String, version: String },
    #[error("cannot read the metadata of {file}: {reason}")]
    Metadata { file: String, reason: String },
    #[error("no version of `{project}` matches `{requirement}` (the index has: {available})")]
    NoMatchingVersion {
        project: String,
        requirement: String,
        available: String,
    },
    #[error("requirement `{0}` names a URL; ferry resolves requirements from the index only")]
    Url(String),
    #[error("the requirements cannot be satisfied for {target}{}:\n{explanation}", list_causes(.causes))]
    NoSolution {
        target: String,
        /// Why versions the solver wanted were unusable (Requires-Python, no wheel for
        /// the target), in plain words, before the solver's own derivation.
        causes: Vec<String>,
        explanation: String,
    },
    #[error("cannot fetch {file}")]
    Fetch {
        file: String,
        #[source]
        source: reqwest::Error,
    },
}

fn list_causes(causes: &[String]) -> String {
    if causes.is_empty() {
        String::new()
    } else {
        format!(": {}", causes.join("; "))
    }
}

/// What resolution picked: per project, the version and the wheels for the target.
pub type Selection = BTreeMap<PackageName, (Version, Vec<IndexFile>)>;

pub struct Resolver<'a> {
    pub client: &'a IndexClient,
    pub target: &'a Target,
    pub requirements: &'a [Requirement],
    pub runtime: tokio::runtime::Handle,
    /// Metadata bytes fetched while resolving, by file name, for reuse when storing.
    pub metadata_cache: std::sync::Mutex<HashMap<String, Vec<u8>>>,
    /// Projects pinned with `==` (their yanked files may be used).
    pinned: HashSet<(PackageName, Version)>,
    /// Why a project had no usable version in a range the solver asked for, by project.
    unusable: std::sync::Mutex<BTreeMap<PackageName, String>>,
}

impl<'a> Resolver<'a> {
    pub fn new(
        client: &'a IndexClient,
        target: &'a Target,
        requirements: &'a [Requirement],
    ) -> Self {
        let pinned = requirements
            .iter()
            .filter_map(|r| match &r.version_or_url {
                Some(VersionOrUrl::VersionSpecifier(s)) => s
                    .iter()
                    .find(|s| {
                        matches!(
                            s.operator(),
                            pep440_rs::Operator::Equal | pep440_rs::Operator::ExactEqual
                        )
                    })
                    .map(|s| (r.name.clone(), s.version().clone())),
                _ => None,
            })
            .collect();
        Resolver {
            client,
            target,
            requirements,
            runtime: tokio::runtime::Handle::current(),
            metadata_cache: Default::default(),
            pinned,
            unusable: Default::default(),
        }
    }

    /// Resolves the closure. Blocks the calling thread (run it inside `block_in_place`).
    pub fn resolve(&self) -> Result<Selection, ResolveError> {
        for r in self.requirements {
            if matches!(r.version_or_url, Some(VersionOrUrl::Url(_))) {
                return Err(ResolveError::Url(r.to_string()));
            }
        }
        let picked = match pubgrub::resolve(self, Pkg::Root, Version::new([0])) {
            Ok(p) => p,
            Err(PubGrubError::NoSolution(tree)) => {
                let causes = self
                    .unusable
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .cloned()
                    .collect();
                return Err(ResolveError::NoSolution {
                    target: self.target.to_string(),
                    causes,
                    explanation: DefaultStringReporter::report(&tree),
                });
            }
            Err(PubGrubError::ErrorRetrievingDependencies { source, .. }) => return Err(source),
            Err(PubGrubError::ErrorChoosingVersion { source, .. }) => return Err(source),
            Err(PubGrubError::ErrorInShouldCancel(e)) => return Err(e),
        };
        let mut out = Selection::new();
        for (pkg, version) in picked.iter() {
            if let Pkg::Project(name) = pkg {
                let files = self.wheels(name, version)?;
                out.insert(name.clone(), (version.clone(), files));
            }
        }
        Ok(out)
    }

    fn page(&self, name: &PackageName) -> Result<Arc<Vec<IndexFile>>, ResolveError> {
        Ok(self.runtime.block_on(self.client.project(name))?)
    }

    /// The wheels of `name` `version` that the target can install.
    fn wheels(
        &self,
        name: &PackageName,
        version: &Version,
    ) -> Result<Vec<IndexFile>, ResolveError> {
        let page = self.page(name)?;
        let python_ok = |f: &IndexFile| {
            f.requires_python
                .as_ref()
                .is_none_or(|r| r.contains(&self.target.python))
        };
        let compatible: Vec<IndexFile> = page
            .iter()
            .filter(|f| matches!(&f.dist, Dist::Wheel(w) if &w.version == version && w.compatible(self.target)))
            .filter(|f| python_ok(f))
            .cloned()
            .collect();
        let usable: Vec<IndexFile> = compatible.iter().filter(|f| !f.yanked).cloned().collect();
        if !usable.is_empty() || !self.pinned.contains(&(name.clone(), version.clone())) {
            return Ok(usable);
        }
        Ok(compatible)
    }

    fn range(
        &self,
        name: &PackageName,
        specifiers: Option<&VersionSpecifiers>,
    ) -> Result<Ranges<Version>, ResolveError> {
        let Some(specifiers) = specifiers else {
            return Ok(Ranges::full());
        };
        let page = self.page(name)?;
        let mut range = Ranges::empty();
        let mut seen = HashSet::new();
        for f in page.iter() {
            let v = f.dist.version();
            if seen.insert(v.clone()) && specifiers.contains(v) {
                range = range.union(&Ranges::singleton(v.clone()));
            }
        }
        Ok(range)
    }

    fn requires(
        &self,
        name: &PackageName,
        version: &Version,
    ) -> Result<Vec<Requirement>, ResolveError> {
        let files = self.wheels(name, version)?;
        let Some(file) = files.first() else {
            return Ok(Vec::new());
        };
        let bytes = self.runtime.block_on(fetch_metadata(self.client, file))?;
        let parsed = metadata::parse(&String::from_utf8_lossy(&bytes)).map_err(|reason| {
            ResolveError::Metadata {
                file: file.filename.clone(),
                reason,
            }
        })?;
        self.metadata_cache
            .lock()
            .expect("cache")
            .insert(file.filename.clone(), bytes);
        Ok(parsed.requires_dist)
    }

    fn add(
        &self,
        deps: &mut HashMap<Pkg, Ranges<Version>>,
        req: &Requirement,
        own: &Pkg,
    ) -> Result<(), ResolveError> {
        let specifiers = match &req.version_or_url {
            Some(VersionOrUrl::VersionSpecifier(s)) => Some(s),
            Some(VersionOrUrl::Url(_)) => return Err(ResolveError::Url(req.to_string())),
            None => None,
        };
        let range = self.range(&req.name, specifiers)?;
        let mut packages = vec![Pkg::Project(req.name.clone())];
        packages.extend(
            req.extras
                .iter()
                .map(|e| Pkg::Extra(req.name.clone(), e.clone())),
        );
        for p in packages {
            if &p == own {
                continue;
            }
            let merged = match deps.remove(&p) {
                Some(r) => r.intersection(&range),
                None => range.clone(),
            };
            deps.insert(p, merged);
        }
        Ok(())
    }
}

impl Resolver<'_> {
    /// A requirement of the spec that no listed version matches is a plain error, not a
    /// conflict for the solver to explain.
    fn check_matches(
        &self,
        deps: &HashMap<Pkg, Ranges<Version>>,
        r: &Requirement,
    ) -> Result<(), ResolveError> {
        if deps.get(&Pkg::Project(r.name.clone())) != Some(&Ranges::empty()) {
            return Ok(());
        }
        let mut listed: Vec<Version> = self
            .page(&r.name)?
            .iter()
            .map(|f| f.dist.version().clone())
            .collect();
        listed.sort();
        listed.dedup();
        let available = listed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        Err(ResolveError::NoMatchingVersion {
            project: r.name.to_string(),
            requirement: r.to_string(),
            available: if available.is_empty() {
                "nothing".into()
            } else {
                available
            },
        })
    }
}

impl Resolver<'_> {
    /// Records why none of `versions` of `name` can be installed on the target, in the
    /// words a person checks: the newest version's Requires-Python, or that no wheel of
    /// it is built for the target's platform.
    fn note_unusable(&self, name: &PackageName, versions: &[Version], page: &[IndexFile]) {
        let Some(newest) = versions.last() else {
            return;
        };
        let built_for_target = |v: &Version| {
            page.iter()
                .filter(|f| matches!(&f.dist, Dist::Wheel(w) if &w.version == v && w.compatible(self.target)))
                .collect::<Vec<_>>()
        };
        let wheels = built_for_target(newest);
        let python = &self.target.python;
        let why = if let Some(requires) = wheels
            .iter()
            .find_map(|f| f.requires_python.as_ref().filter(|r| !r.contains(python)))
        {
            let shown = if versions.len() > 1 {
                format!("`{name}` {newest} (and every other version allowed)")
            } else {
                format!("`{name}` {newest}")
            };
            format!(
                "{shown} requires Python {requires} (Requires-Python), the target is Python {python}"
            )
        } else if wheels.is_empty() {
            format!(
                "`{name}` {newest} has no wheel for {} (its wheels are for other platforms or Pythons)",
                self.target
            )
        } else {
            format!("`{name}` {newest} has only yanked wheels")
        };
        self.unusable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), why);
    }
}

impl DependencyProvider for Resolver<'_> {
    type P = Pkg;
    type V = Version;
    type VS = Ranges<Version>;
    type Priority = (u32, u32);
    type M = String;
    type Err = ResolveError;

    fn prioritize(
        &self,
        package: &Pkg,
        range: &Ranges<Version>,
        stats: &PackageResolutionStatistics,
    ) -> Self::Priority {
        let pinned = u32::from(range.as_singleton().is_some() || matches!(package, Pkg::Root));
        (pinned, stats.conflict_count())
    }

    fn choose_version(
        &self,
        package: &Pkg,
        range: &Ranges<Version>,
    ) -> Result<Option<Version>, ResolveError> {
        let name = match package {
            Pkg::Root => return Ok(Some(Version::new([0]))),
            Pkg::Project(n) | Pkg::Extra(n, _) => n,
        };
        let page = self.page(name)?;
        let mut versions: Vec<Version> = page
            .iter()
            .map(|f| f.dist.version().clone())
            .filter(|v| range.contains(v))
            .collect();
        versions.sort();
        versions.dedup();
        let mut usable = Vec::new();
        for v in versions.iter().rev() {
            if !self.wheels(name, v)?.is_empty() {
                usable.push(v.clone());
            }
        }
        // Pre-releases only when nothing else fits (PEP 440).
        let choice = usable
            .iter()
            .find(|v| !v.any_prerelease())
            .or(usable.first())
            .cloned();
        if choice.is_none() {
            self.note_unusable(name, &versions, &page);
            let has_wheels = |v: &Version| {
                page.iter()
                    .any(|f| matches!(&f.dist, Dist::Wheel(w) if &w.version == v))
            };
            if let Some(v) = versions.iter().rev().find(|v| !has_wheels(v))
                && versions.iter().all(|v| !has_wheels(v))
            {
                return Err(ResolveError::OnlySdist {
                    project: name.to_string(),
                    version: v.to_string(),
                });
            }
        }
        Ok(choice)
    }

    fn get_dependencies(
        &self,
        package: &Pkg,
        version: &Version,
    ) -> Result<Dependencies<Pkg, Ranges<Version>, String>, ResolveError> {
        let mut deps = HashMap::new();
        let env = &self.target.markers;
        match package {
            Pkg::Root => {
                for r in self
                    .requirements
                    .iter()
                    .filter(|r| r.evaluate_markers(env, &[]))
                {
                    self.add(&mut deps, r, package)?;
                    self.check_matches(&deps, r)?;
                }
            }
            Pkg::Project(name) => {
                if self.wheels(name, version)?.is_empty() {
                    return Ok(Dependencies::Unavailable(format!(
                        "no wheel of {name} {version} for {}",
                        self.target
                    )));
                }
                for r in self
                    .requires(name, version)?
                    .iter()
                    .filter(|r| r.evaluate_markers(env, &[]))
                {
                    self.add(&mut deps, r, package)?;
                }
            }
            Pkg::Extra(name, extra) => {
                deps.insert(
                    Pkg::Project(name.clone()),
                    Ranges::singleton(version.clone()),
                );
                let extras = [extra.clone()];
                for r in self
                    .requires(name, version)?
                    .iter()
                    .filter(|r| r.evaluate_markers(env, &extras))
                {
                    self.add(&mut deps, r, package)?;
                }
            }
        }
        Ok(Dependencies::Available(deps.into_iter().collect()))
    }
}

/// The PEP 658 metadata of a wheel, or its METADATA read from the downloaded wheel. A
/// metadata hash the index gives is checked.
pub async fn fetch_metadata(
    client: &IndexClient,
    file: &IndexFile,
) -> Result<Vec<u8>, ResolveError> {
    let meta_err = |reason: String| ResolveError::Metadata {
        file: file.filename.clone(),
        reason,
    };
    if let Some(expected) = &file.metadata {
        let url = format!("{}.metadata", file.url);
        let fetch = |source| ResolveError::Fetch {
            file: format!("{}.metadata", file.filename),
            source,
        };
        let response = client
            .fetcher()
            .page(|c| c.get(&url))
            .await
            .map_err(fetch)?;
        if response.status.is_success() {
            let bytes = response.body;
            if let Some(expected) = expected {
                let actual = crate::digest::Digest::of(&bytes);
                if actual != *expected {
                    return Err(meta_err(format!(
                        "the index lists {expected} for its metadata, the file is {actual}"
                    )));
                }
            }
            return Ok(bytes);
        }
    }
    // No PEP 658: read METADATA out of the wheel itself, streamed to a temporary file.
    let tmp = tempfile::NamedTempFile::new().map_err(|e| meta_err(e.to_string()))?;
    let (digest, _) = download(client, file, tmp.path()).await?;
    if let Some(expected) = &file.sha256
        && digest != *expected
    {
        return Err(meta_err(format!(
            "the wheel does not match the index's sha256 ({expected}, got {digest})"
        )));
    }
    metadata::from_wheel(tmp.path()).map_err(meta_err)
}

/// Streams a file of the index to `path`, hashing it; returns digest and size. A
/// download that fails on the way (refused with 429 or 5xx, reset, cut short) starts
/// again from zero, with backoff.
pub async fn download(
    client: &IndexClient,
    file: &IndexFile,
    path: &std::path::Path,
) -> Result<(crate::digest::Digest, u64), ResolveError> {
    let retry = crate::fetch::Retry::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match download_once(client, file, path).await {
            Err(ResolveError::Fetch { source, .. })
                if attempt < retry.attempts && crate::fetch::transient(&source) =>
            {
                tokio::time::sleep(retry.delay(attempt, None)).await;
            }
            other => return other,
        }
    }
}

async fn download_once(
    client: &IndexClient,
    file: &IndexFile,
    path: &std::path::Path,
) -> Result<(crate::digest::Digest, u64), ResolveError> {
    use futures_util::StreamExt;
    use std::io::Write;
    let fetch = |source| ResolveError::Fetch {
        file: file.filename.clone(),
        source,
    };
    let io = |e: std::io::Error| ResolveError::Metadata {
        file: file.filename.clone(),
        reason: e.to_string(),
    };
    let response = client
        .http()
        .get(file.url.clone())
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(fetch)?;
    let mut out = crate::digest::HashingWriter::resume(
        std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?),
        Default::default(),
    );
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk.map_err(fetch)?).map_err(io)?;
    }
    let (mut w, digest, size) = out.finish();
    w.flush().map_err(io)?;
    Ok((digest, size))
}
