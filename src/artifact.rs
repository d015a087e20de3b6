//! What a bundle carries, one record per artifact: the fields every ecosystem shares
//! (identity, where it came from, where it goes) and the ecosystem's own record `R`.
//! The registry in `ecosystems` fixes `R` to its `Record` and owns the wire form that
//! the signed bundle manifest and the store's records hold.

use crate::digest::Digest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact<R> {
    /// The repository path on the target, without any registry host: `e2e/multi`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Where it was pulled from: the spec's reference, index, channel or hub.
    pub origin: String,
    pub artifact_type: Option<String>,
    /// The spec entry's `labels` (e.g. `classification = "internal"`), for policies.
    pub labels: Labels,
    /// The licences the upstream declares for it, as found and, where they parse, as
    /// SPDX expressions.
    pub licenses: Vec<Licence>,
    /// What the ecosystem says of it: platforms, a release's files, a package record.
    pub record: R,
}

/// Labels from the spec: checked keys and values (see `names::check_label`).
pub type Labels = std::collections::BTreeMap<String, String>;

/// One licence declaration of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Licence {
    /// As the upstream wrote it (trimmed): `MIT`, `Apache-2.0 OR MIT`, `BSD License`.
    pub declared: String,
    /// The declaration as a valid SPDX expression, when it is or maps to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spdx: Option<String>,
    /// Where it was found: `License-Expression`, `classifier`, `about.json`, ...
    pub source: String,
}

impl<R> Artifact<R> {
    /// The descriptor of the artifact's top manifest.
    pub fn root(&self) -> crate::oci::Desc {
        crate::oci::Desc {
            media_type: self.media_type.clone(),
            digest: self.digest,
            size: self.size,
            platform: None,
            artifact_type: self.artifact_type.clone(),
            annotations: Default::default(),
        }
    }

    /// `repository:tag` or `repository@digest`.
    pub fn name(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}:{}", self.repository, t),
            None => format!("{}@{}", self.repository, self.digest),
        }
    }

    /// The same artifact with its record wrapped (`Record::Python`, ...).
    pub fn map<S>(self, f: impl FnOnce(R) -> S) -> Artifact<S> {
        Artifact {
            repository: self.repository,
            tag: self.tag,
            digest: self.digest,
            media_type: self.media_type,
            size: self.size,
            origin: self.origin,
            artifact_type: self.artifact_type,
            labels: self.labels,
            licenses: self.licenses,
            record: f(self.record),
        }
    }

    /// The shared fields alone, for an ecosystem's functions that take its record apart.
    pub fn head(&self) -> Head {
        Artifact {
            repository: self.repository.clone(),
            tag: self.tag.clone(),
            digest: self.digest,
            media_type: self.media_type.clone(),
            size: self.size,
            origin: self.origin.clone(),
            artifact_type: self.artifact_type.clone(),
            labels: self.labels.clone(),
            licenses: self.licenses.clone(),
            record: (),
        }
    }
}

/// An artifact's shared fields without its record.
pub type Head = Artifact<()>;

/// Reads a blob for a record check: from staging, then the target.
pub type ReadBlob<'a> = dyn Fn(&Digest) -> Result<Vec<u8>, String> + 'a;

/// The bytes of an artifact's config, its manifest's first child.
pub fn config_of<R>(a: &Artifact<R>, manifest: &[u8], read: &ReadBlob) -> Result<Vec<u8>, String> {
    let m =
        crate::oci::Manifest::parse(manifest, Some(&a.media_type)).map_err(|e| e.to_string())?;
    let c = m.children.first().ok_or("the manifest has no config")?;
    read(&c.digest)
}

/// The record check of an ecosystem that keeps its record in the artifact's config
/// (python releases, conda packages): for an artifact of `artifact_type`, the stored
/// config, parsed by `parse` with every name checked, must equal the signed record.
pub fn check_config<R: PartialEq>(
    a: &Head,
    own: Option<&R>,
    read: &ReadBlob,
    artifact_type: &str,
    parse: fn(&[u8]) -> Result<R, String>,
    what: &str,
) -> Result<(), String> {
    if a.artifact_type.as_deref() != Some(artifact_type) {
        return Ok(());
    }
    let manifest = read(&a.digest)?;
    let stored = parse(&config_of(a, &manifest, read)?)?;
    if own.is_some_and(|r| *r != stored) {
        return Err(format!("its stored {what} differs from the signed record"));
    }
    Ok(())
}
