//! `ferry import`: verify, stage, then commit. The signature is checked before a byte is
//! staged; every entry is hashed into staging; only when all of it verified does the
//! target change (blobs renamed into the store or pushed to the registry, index entries
//! and tags last). A failed import leaves the target as it was.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::bundle::Verified;
use crate::bundle::reader::{self, Decision, Trust};
use crate::reporter::Reporter;
use crate::sources::registry::RegistryOptions;
use crate::store::Store;
use crate::targets::registry::RegistryTarget;
use crate::targets::{self, Staging};
use crate::trust::{Freshness, TargetState};

pub enum Target {
    Store(PathBuf),
    Registry(RegistryTarget),
}

pub struct ImportOptions<'a> {
    pub trust: Trust<'a>,
    pub target: Target,
    /// Where state for registry targets is kept (series, audit log, staging).
    pub state_dir: PathBuf,
    pub registry: RegistryOptions,
}

pub enum Outcome {
    Imported(Verified),
    AlreadyImported(Verified),
}

pub fn import(
    bundle: &Path,
    options: &ImportOptions<'_>,
    runtime: &tokio::runtime::Runtime,
    reporter: &dyn Reporter,
) -> anyhow::Result<Outcome> {
    match &options.target {
        Target::Store(dir) => import_to_store(bundle, dir, options, reporter),
        Target::Registry(target) => import_to_registry(bundle, target, options, runtime, reporter),
    }
}

fn import_to_store(
    bundle: &Path,
    dir: &Path,
    options: &ImportOptions<'_>,
    reporter: &dyn Reporter,
) -> anyhow::Result<Outcome> {
    // An absent store is created only at commit, so a refused bundle leaves nothing.
    let existing = if dir.join("oci-layout").exists() {
        Some(Store::open(dir)?)
    } else {
        None
    };
    if existing.is_none() && dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        Store::open(dir)?; // says why this directory is not a store
    }
    let state_dir = dir.join(".ferry");
    let staging_parent = match &existing {
        Some(s) => s.state_dir(),
        None => dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    };
    let _lock = match &existing {
        Some(s) => Some(lock(&s.state_dir())?),
        None => None,
    };
    let mut state = TargetState::load(&state_dir)?;
    let mut staging =
        Staging::new(&staging_parent, existing.as_ref()).context("cannot create a staging area")?;
    let mut already = false;
    let verified = reader::read(
        bundle,
        &options.trust,
        &mut |v| {
            Ok(match state.check(v)? {
                Freshness::AlreadyImported
                    if existing
                        .as_ref()
                        .is_some_and(|s| targets::store::holds(s, &v.manifest.artifacts)) =>
                {
                    already = true;
                    Decision::Stop
                }
                _ => Decision::Continue,
            })
        },
        &mut staging,
    )?;
    if already {
        return Ok(Outcome::AlreadyImported(verified));
    }
    let created;
    let target = match &existing {
        Some(s) => s,
        None => {
            created = Store::open_or_create(dir)?;
            &created
        }
    };
    targets::store::commit(target, &staging, &verified.manifest.artifacts)?;
    state.record(&verified, &format!("store:{}", dir.display()))?;
    for a in &verified.manifest.artifacts {
        reporter.line(&format!("imported {} {}", a.name(), a.digest));
    }
    Ok(Outcome::Imported(verified))
}

fn import_to_registry(
    bundle: &Path,
    target: &RegistryTarget,
    options: &ImportOptions<'_>,
    runtime: &tokio::runtime::Runtime,
    reporter: &dyn Reporter,
) -> anyhow::Result<Outcome> {
    let name: String = target
        .display()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let state_dir = options.state_dir.join("registries").join(name);
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let _lock = lock(&state_dir)?;
    let mut state = TargetState::load(&state_dir)?;
    let mut staging = Staging::new(&state_dir, None).context("cannot create a staging area")?;
    let mut already = false;
    let verified = reader::read(
        bundle,
        &options.trust,
        &mut |v| {
            Ok(match state.check(v)? {
                Freshness::AlreadyImported => {
                    already = true;
                    Decision::Stop
                }
                Freshness::New => Decision::Continue,
            })
        },
        &mut staging,
    )?;
    if already {
        return Ok(Outcome::AlreadyImported(verified));
    }
    runtime.block_on(targets::registry::push(
        target,
        &staging.layout,
        &verified.manifest.artifacts,
        &options.registry,
        reporter,
    ))?;
    state.record(&verified, &format!("registry:{}", target.display()))?;
    Ok(Outcome::Imported(verified))
}

/// One import at a time per target.
fn lock(dir: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("import.lock");
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}
