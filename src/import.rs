//! `ferry import`: verify, stage, then commit. The signature is checked before a byte is
//! staged; every entry is hashed into staging; only when all of it verified does the
//! target change (blobs renamed into the store or pushed to the registry, index entries
//! and tags last). A failed import leaves the target as it was.
//!
//! Imports into one target run one at a time (a lock in its state directory), and the
//! state that guards against rollback is read only once that lock is held. A store that
//! does not exist yet is built whole in a hidden sibling directory and renamed into
//! place, under a lock on the parent directory: a refused import leaves nothing, and two
//! importers racing to create it see either no store or a complete one. Staging left by
//! a killed import is removed by the next import of the same target.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::Context as _;

use crate::bundle::reader::{self, Decision, Input, Trust};
use crate::bundle::{Verified, VerifyError};
use crate::ecosystems::AnyArtifact as Artifact;
use crate::policy::{Policy, Verdict};
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
    /// Import again even when this very bundle was the last one imported (missing
    /// content is written again); rollback protection still holds.
    pub force: bool,
    /// The site's own Rego policy, evaluated on the verified manifest before anything
    /// reaches the target.
    pub policy: Option<&'a Policy>,
    /// A receipt will be written: list what the target holds afterwards (for a store,
    /// a walk of every blob; not done otherwise).
    pub receipt: bool,
}

/// The site's policy over a verified manifest: a denial stops the import (exit 4)
/// before any entry is read.
fn gate(
    v: &Verified,
    options: &ImportOptions<'_>,
    reporter: &dyn Reporter,
) -> Result<Option<Verdict>, VerifyError> {
    let Some(policy) = options.policy else {
        return Ok(None);
    };
    let signers: Vec<serde_json::Value> = match &v.approval {
        Some(a) => a
            .signers
            .iter()
            .map(|s| serde_json::json!({"keyId": s.id.to_string(), "name": s.name, "role": s.role}))
            .collect(),
        None => v
            .signers
            .iter()
            .map(|k| serde_json::json!({"keyId": k.to_string()}))
            .collect(),
    };
    let verdict = policy.evaluate(&crate::policy::input(&v.manifest, signers.into()))?;
    verdict.show_warnings(reporter);
    verdict.enforce(&format!(
        "the import of series {} sequence {}",
        v.manifest.series, v.manifest.sequence
    ))?;
    Ok(Some(verdict))
}

/// What an import did: the verified bundle, whether this very bundle had been imported
/// already (nothing was written), and the site policy's verdict when one was given.
pub struct Outcome {
    pub verified: Verified,
    pub already: bool,
    pub verdict: Option<Verdict>,
    /// What the target holds afterwards, for a receipt: every blob of a store (only
    /// listed when `ImportOptions::receipt`); for a registry, every blob the bundle's
    /// artifacts reach (what it carried and what it left out and the registry was
    /// checked to hold).
    pub held: Vec<crate::digest::Digest>,
}

/// Every blob a store holds, when a receipt is to be written.
fn held_by_store(store: &Store, options: &ImportOptions<'_>) -> Vec<crate::digest::Digest> {
    if options.receipt {
        store_blobs(store)
    } else {
        Vec::new()
    }
}

/// Every blob a store holds.
fn store_blobs(store: &Store) -> Vec<crate::digest::Digest> {
    let Ok(dir) = std::fs::read_dir(store.root().join("blobs/sha256")) else {
        return Vec::new();
    };
    let mut out: Vec<_> = dir
        .filter_map(|e| {
            crate::digest::Digest::from_hex(&e.ok()?.file_name().to_string_lossy()).ok()
        })
        .collect();
    out.sort();
    out
}

/// The blobs a bundle carries.
fn carried(v: &Verified) -> Vec<crate::digest::Digest> {
    v.manifest
        .entries
        .iter()
        .filter_map(crate::bundle::Entry::blob_digest)
        .collect()
}

pub fn import(
    bundle: &Input,
    options: &ImportOptions<'_>,
    runtime: &tokio::runtime::Runtime,
    reporter: &dyn Reporter,
) -> crate::error::Result<Outcome> {
    match &options.target {
        Target::Store(dir) => import_to_store(bundle, dir, options, reporter),
        Target::Registry(target) => import_to_registry(bundle, target, options, runtime, reporter),
    }
}

/// Prefix of the staging directories inside a target's state directory.
const STAGING: &str = "staging-";

fn import_to_store(
    bundle: &Input,
    dir: &Path,
    options: &ImportOptions<'_>,
    reporter: &dyn Reporter,
) -> crate::error::Result<Outcome> {
    loop {
        if dir.join("oci-layout").exists() {
            let store = Store::open(dir)?;
            return import_into_existing(bundle, &store, options, reporter);
        }
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            Store::open(dir)?; // says why this directory is not a store
        }
        // The new store is renamed into place: that needs the real directory (not a
        // link to it, which the rename would replace) and a name.
        let real;
        let dir = match std::fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() || dir.file_name().is_none() => {
                real = std::fs::canonicalize(dir)
                    .with_context(|| format!("{} is a link to nothing", dir.display()))?;
                real.as_path()
            }
            Ok(_) => dir,
            Err(_) if dir.file_name().is_none() => {
                crate::error::bail!("--store {} does not name a directory", dir.display())
            }
            Err(_) => dir,
        };
        let parent = match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => p.to_path_buf(),
            None => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let _parent_lock = lock_dir(&parent)?;
        if dir.join("oci-layout").exists() {
            continue; // another importer created it while we waited
        }
        return import_into_new(bundle, dir, &parent, options, reporter);
    }
}

fn import_into_existing(
    bundle: &Input,
    store: &Store,
    options: &ImportOptions<'_>,
    reporter: &dyn Reporter,
) -> crate::error::Result<Outcome> {
    let state_dir = store.state_dir();
    let _lock = lock(&state_dir)?;
    // Blobs land before the entries that name them: no gc in between.
    let _hold = crate::inventory::hold(store.root())?;
    reclaim(&state_dir, STAGING);
    let mut state = TargetState::load(&state_dir)?;
    let mut staging =
        Staging::new(&state_dir, STAGING, Some(store)).context("cannot create a staging area")?;
    let mut already = false;
    let mut verdict = None;
    let verified = reader::read(
        bundle,
        &options.trust,
        &mut |v| {
            verdict = gate(v, options, reporter)?;
            Ok(match state.check(v)? {
                Freshness::AlreadyImported
                    if !options.force && targets::store::holds(store, &v.manifest.placements()) =>
                {
                    already = true;
                    Decision::Stop
                }
                _ => Decision::Continue,
            })
        },
        &mut staging,
        reader::Progress {
            reporter,
            label: "import",
        },
    )?;
    if already {
        return Ok(Outcome {
            held: held_by_store(store, options),
            verified,
            already: true,
            verdict,
        });
    }
    // (Staging skips what the store holds: the walk reads manifests from both.)
    let missing = left_out(
        &verified.manifest,
        &[&staging.layout, store],
        &staging.passed,
    )?;
    refuse_missing(&verified.manifest, missing)?;
    check_artifacts(&verified.manifest, &[&staging.layout, store], &|_| false)?;
    targets::store::commit(
        store,
        &staging,
        &verified.manifest.placements(),
        &bundle_name(&verified),
    )?;
    state.record(&verified)?;
    report_imported(&verified, reporter);
    Ok(Outcome {
        held: held_by_store(store, options),
        verified,
        already: false,
        verdict,
    })
}

/// Builds the store in a hidden sibling of `dir` and renames it into place. The caller
/// holds the lock on `parent`.
fn import_into_new(
    bundle: &Input,
    dir: &Path,
    parent: &Path,
    options: &ImportOptions<'_>,
    reporter: &dyn Reporter,
) -> crate::error::Result<Outcome> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    let prefix = format!(".{name}.ferry-new-");
    reclaim(parent, &prefix);
    let mut staging =
        Staging::new(parent, &prefix, None).context("cannot create a staging area")?;
    let state = TargetState::load(&staging.layout.state_dir())?;
    let mut verdict = None;
    let verified = reader::read(
        bundle,
        &options.trust,
        &mut |v| {
            verdict = gate(v, options, reporter)?;
            state.check(v).map(|_| Decision::Continue)
        },
        &mut staging,
        reader::Progress {
            reporter,
            label: "import",
        },
    )?;
    refuse_missing(
        &verified.manifest,
        left_out(&verified.manifest, &[&staging.layout], &staging.passed)?,
    )?;
    check_artifacts(&verified.manifest, &[&staging.layout], &|_| false)?;
    let built = staging.layout.clone();
    targets::store::commit(
        &built,
        &staging,
        &verified.manifest.placements(),
        &bundle_name(&verified),
    )?;
    let mut state = TargetState::load(&built.state_dir())?;
    state.record(&verified)?;
    staging.publish(dir)?;
    report_imported(&verified, reporter);
    Ok(Outcome {
        held: held_by_store(&Store::open(dir)?, options),
        verified,
        already: false,
        verdict,
    })
}

/// Where the import state (series, import log, audit log, staging) of a registry
/// target lives.
pub fn registry_state_dir(state_dir: &Path, target: &RegistryTarget) -> PathBuf {
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
    state_dir.join("registries").join(name)
}

fn import_to_registry(
    bundle: &Input,
    target: &RegistryTarget,
    options: &ImportOptions<'_>,
    runtime: &tokio::runtime::Runtime,
    reporter: &dyn Reporter,
) -> crate::error::Result<Outcome> {
    let state_dir = registry_state_dir(&options.state_dir, target);
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let _lock = lock(&state_dir)?;
    reclaim(&state_dir, STAGING);
    let mut state = TargetState::load(&state_dir)?;
    let mut staging =
        Staging::new(&state_dir, STAGING, None).context("cannot create a staging area")?;
    // This staging is only read back to push, and the next import removes whatever a
    // killed one left (`reclaim` above) rather than reuse it: syncing each blob to disk
    // would buy nothing. The registry makes the pushed bytes durable.
    staging.durable = false;
    // A bundle that can be read again keeps only its documents in staging: the other
    // blobs are checked here, then streamed from a second pass that checks them again
    // (300 MB of layers written to staging and read back cost more than reading the
    // bundle twice). Standard input, a pipe or a device is read once, staged whole.
    let pinned = bundle.pin();
    let bundle = pinned.as_ref().unwrap_or(bundle);
    staging.json_only = pinned.is_some();
    let mut already = false;
    let mut verdict = None;
    // Layers that begin a frame of their own are uploaded as the first pass reaches
    // them, each completed only once the whole bundle is verified (`Early`).
    let placements = std::cell::OnceCell::new();
    let mut early = pinned.as_ref().map(|input| {
        targets::registry::Early::new(
            target,
            &placements,
            input,
            &options.registry,
            runtime,
            reporter,
        )
    });
    let mut sink = targets::registry::EarlySink::new(&mut staging, early.as_mut());
    let verified = reader::read(
        bundle,
        &options.trust,
        &mut |v| {
            verdict = gate(v, options, reporter)?;
            Ok(match state.check(v)? {
                // The local record alone is not trusted: the registry must still hold
                // every artifact under its digest and tag, or it is pushed again.
                Freshness::AlreadyImported
                    if !options.force
                        && runtime.block_on(targets::registry::holds(
                            target,
                            &v.manifest.placements(),
                            &options.registry,
                        )) =>
                {
                    already = true;
                    Decision::Stop
                }
                _ => {
                    let _ = placements.set(v.manifest.placements());
                    Decision::Continue
                }
            })
        },
        &mut sink,
        reader::Progress {
            reporter,
            label: "import",
        },
    )?;
    if already {
        return Ok(Outcome {
            held: carried(&verified),
            verified,
            already: true,
            verdict,
        });
    }
    let left_out = left_out(&verified.manifest, &[&staging.layout], &staging.passed)?;
    let incremental = !left_out.is_empty();
    if incremental {
        let missing = runtime.block_on(targets::registry::missing(
            target,
            &left_out,
            &options.registry,
        ));
        refuse_missing(&verified.manifest, missing)?;
    }
    check_artifacts(&verified.manifest, &[&staging.layout], &|d| {
        incremental || staging.passed.contains(&d.digest)
    })?;
    // The second pass must read the bundle the first one verified: the same signed
    // manifest (and so the same entries, each hashed again as it streams).
    let mut pass = |sink: &mut dyn crate::bundle::EntrySink| {
        let again = reader::read(
            bundle,
            &options.trust,
            &mut |v| {
                if v.manifest_digest != verified.manifest_digest {
                    return Err(VerifyError::Changed {
                        path: bundle.path.clone(),
                    });
                }
                Ok(Decision::Continue)
            },
            sink,
            reader::Progress {
                reporter,
                label: "push",
            },
        );
        again.map(|_| ())
    };
    targets::registry::push(
        target,
        &staging,
        &verified.manifest.placements(),
        incremental,
        &options.registry,
        runtime,
        &mut pass,
        pinned.as_ref().map(|input| targets::registry::Reopen {
            input,
            frames: &staging.frames,
        }),
        early.as_mut(),
        reporter,
    )?;
    state.record(&verified)?;
    let mut held = carried(&verified);
    held.extend(left_out.iter().map(|(_, d)| d.digest));
    held.sort();
    held.dedup();
    Ok(Outcome {
        held,
        verified,
        already: false,
        verdict,
    })
}

/// `bundle verify`: the signature and every entry, as an import checks them, and the
/// records that an import reads back (kept from the bundle's small blobs in a temporary
/// directory). Nothing else is written.
pub fn verify(
    bundle: &Input,
    trust: &Trust<'_>,
    reporter: &dyn Reporter,
) -> crate::error::Result<Verified> {
    let mut staging = Staging::new(&std::env::temp_dir(), "ferry-verify-", None)
        .context("cannot create a temporary directory")?;
    staging.max_size = 16 << 20;
    staging.json_only = true;
    staging.durable = false;
    let verified = reader::read(
        bundle,
        trust,
        &mut |_| Ok(Decision::Continue),
        &mut staging,
        reader::Progress {
            reporter,
            label: "verify",
        },
    )?;
    let listed: std::collections::HashMap<crate::digest::Digest, u64> = verified
        .manifest
        .entries
        .iter()
        .map(|e| (e.sha256, e.size))
        .collect();
    let mut seen = std::collections::HashSet::new();
    for p in verified.manifest.placements() {
        let incremental = verified.manifest.base.is_some();
        complete_in_bundle(&p.root, &staging.layout, &listed, &mut seen, incremental, 0).map_err(
            |reason| VerifyError::Incomplete {
                artifact: format!("{}@{}", p.repository, p.root.digest),
                reason,
            },
        )?;
    }
    for a in &verified.manifest.artifacts {
        check_record(a, &[&staging.layout]).map_err(|reason| VerifyError::BadRecord {
            artifact: a.name(),
            reason,
        })?;
    }
    check_sbom(&verified.manifest, &[&staging.layout])?;
    Ok(verified)
}

/// The SBOM artifact, if the bundle carries one, is exactly the two documents the signed
/// manifest names (the bundle reader already checked their bytes).
fn check_sbom(
    manifest: &crate::bundle::BundleManifest,
    stores: &[&Store],
) -> Result<(), VerifyError> {
    let Some(sbom) = &manifest.sbom else {
        return Ok(());
    };
    let refuse = |reason: String| VerifyError::BadRecord {
        artifact: format!(
            "{}:{}",
            crate::sbom::REPOSITORY,
            crate::sbom::tag(&manifest.series, manifest.sequence)
        ),
        reason,
    };
    let bytes = stores
        .iter()
        .find(|s| s.has_blob(&sbom.digest, sbom.size))
        .ok_or_else(|| refuse(format!("its manifest {} is missing", sbom.digest)))?
        .read_blob(&sbom.digest)
        .map_err(|e| refuse(e.to_string()))?;
    crate::sbom::check_oci_manifest(&bytes, sbom).map_err(refuse)
}

/// Whether everything `desc` reaches is carried, with the size its parent gives:
/// manifests are read from the kept small blobs, other blobs looked up in the signed
/// entries.
fn complete_in_bundle(
    desc: &crate::oci::Desc,
    small: &Store,
    listed: &std::collections::HashMap<crate::digest::Digest, u64>,
    seen: &mut std::collections::HashSet<(crate::digest::Digest, u64)>,
    incremental: bool,
    depth: usize,
) -> Result<(), String> {
    if depth > crate::store::MAX_DEPTH {
        return Err(format!(
            "{} is nested more than {} levels deep",
            desc.digest,
            crate::store::MAX_DEPTH
        ));
    }
    match listed.get(&desc.digest) {
        Some(&size) if size == desc.size => {}
        Some(&size) => {
            return Err(format!(
                "{} is {size} bytes, its parent says {}",
                desc.digest, desc.size
            ));
        }
        // Left out of an incremental bundle: the target must hold it (import checks).
        None if incremental && !crate::oci::is_manifest_type(&desc.media_type) => return Ok(()),
        None => return Err(format!("{} is not in the bundle", desc.digest)),
    }
    // Each blob once (with the size it was checked at): shared children cost nothing.
    if !seen.insert((desc.digest, desc.size)) || !crate::oci::is_manifest_type(&desc.media_type) {
        return Ok(());
    }
    let bytes = small.read_blob(&desc.digest).map_err(|e| e.to_string())?;
    let manifest =
        crate::oci::Manifest::parse(&bytes, Some(&desc.media_type)).map_err(|e| e.to_string())?;
    for child in &manifest.children {
        complete_in_bundle(child, small, listed, seen, incremental, depth + 1)?;
    }
    Ok(())
}

/// What the bundle reader cannot see: every artifact complete across staging and the
/// target, and the records that exports and `serve` read back (configs, annotations)
/// naming nothing hostile and saying what the signed manifest says.
fn check_artifacts(
    manifest: &crate::bundle::BundleManifest,
    stores: &[&Store],
    elsewhere: &dyn Fn(&crate::oci::Desc) -> bool,
) -> Result<(), VerifyError> {
    check_sbom(manifest, stores)?;
    let mut seen = std::collections::HashSet::new();
    for p in manifest.placements() {
        crate::store::reachable_with(stores, &p.root, &mut seen, elsewhere, &mut |_, _| {})
            .map_err(|e| VerifyError::Incomplete {
                artifact: format!("{}@{}", p.repository, p.root.digest),
                reason: e.to_string(),
            })?;
    }
    for a in &manifest.artifacts {
        check_record(a, stores).map_err(|reason| VerifyError::BadRecord {
            artifact: a.name(),
            reason,
        })?;
    }
    Ok(())
}

/// The blobs an incremental bundle leaves out that none of `stores` holds: each blob
/// (not a manifest) that its artifacts reach, with the repository that needs it. Every
/// manifest must be in `stores`. Empty for a bundle that is not incremental.
fn left_out(
    manifest: &crate::bundle::BundleManifest,
    stores: &[&Store],
    passed: &std::collections::HashSet<crate::digest::Digest>,
) -> Result<Vec<(String, crate::oci::Desc)>, VerifyError> {
    let mut out = Vec::new();
    if manifest.base.is_none() {
        return Ok(out);
    }
    let mut listed = std::collections::HashSet::new();
    for p in manifest.placements() {
        let mut each = |d: crate::oci::Desc, m: Option<crate::oci::Manifest>| {
            if m.is_none()
                && !passed.contains(&d.digest)
                && !stores.iter().any(|s| s.has_blob(&d.digest, d.size))
                && listed.insert((p.repository.clone(), d.digest))
            {
                out.push((p.repository.clone(), d));
            }
        };
        crate::store::reachable_with(
            stores,
            &p.root,
            &mut std::collections::HashSet::new(),
            &|_| true,
            &mut each,
        )
        .map_err(|e| VerifyError::Incomplete {
            artifact: format!("{}@{}", p.repository, p.root.digest),
            reason: e.to_string(),
        })?;
    }
    Ok(out)
}

/// Refuses an incremental bundle whose left-out blobs the target lacks, naming them.
fn refuse_missing(
    manifest: &crate::bundle::BundleManifest,
    missing: impl IntoIterator<Item = (String, crate::oci::Desc)>,
) -> Result<(), VerifyError> {
    let mut digests: Vec<crate::digest::Digest> =
        missing.into_iter().map(|(_, d)| d.digest).collect();
    digests.sort();
    digests.dedup();
    if digests.is_empty() {
        return Ok(());
    }
    let base = manifest
        .base
        .as_ref()
        .map(|b| format!("{} {} of sequence {}", b.kind, b.digest, b.sequence))
        .unwrap_or_default();
    Err(VerifyError::NotInTarget {
        series: manifest.series.clone(),
        sequence: manifest.sequence,
        base,
        missing: digests,
    })
}

/// Checks an artifact's stored records against its signed one (see
/// `ecosystems::check`); `stores` are searched in order (staging, then the target).
fn check_record(a: &Artifact, stores: &[&Store]) -> Result<(), String> {
    let read = |digest: &crate::digest::Digest| -> Result<Vec<u8>, String> {
        let store = stores
            .iter()
            .find(|s| s.blob_path(digest).is_file())
            .ok_or_else(|| format!("blob {digest} is missing"))?;
        store.read_blob(digest).map_err(|e| e.to_string())
    };
    crate::ecosystems::check(a, &read)
}

fn report_imported(verified: &Verified, reporter: &dyn Reporter) {
    for a in &verified.manifest.artifacts {
        reporter.line(&format!("imported {} {}", a.name(), a.digest));
    }
}

pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Removes what killed imports left in `dir` (entries whose names start with
/// `prefix`). The caller holds the lock that every import of this target takes, so no
/// live import owns them.
fn reclaim(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(prefix) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// How `store ls` names the bundle that placed an entry: `SERIES-SEQUENCE`.
fn bundle_name(verified: &Verified) -> String {
    format!(
        "{}-{}",
        verified.manifest.series, verified.manifest.sequence
    )
}

/// One import at a time per target.
fn lock(dir: &Path) -> crate::error::Result<File> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("import.lock");
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}

/// A lock on a directory itself (nothing is written into it).
fn lock_dir(dir: &Path) -> crate::error::Result<File> {
    let file = File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", dir.display()))?;
    Ok(file)
}
