//! How an artifact is written in the signed bundle manifest: the shared fields, `kind`,
//! and the record of its ecosystem in that ecosystem's field. This is the bundle
//! format (bundles written before the ecosystem seam read the same); reading it checks
//! that the kind and the fields agree, so a manifest cannot carry, say, a python
//! artifact with a conda record.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::image::ImageRecord;
use super::{AnyArtifact, Record};
use crate::artifact::{Artifact, Labels, Licence};
use crate::digest::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A container image (manifest or index) named in the spec.
    Image,
    /// A signature, attestation or SBOM attached to an image.
    Referrer,
    /// A Python release: one project version and its wheels.
    Python,
    /// A model or dataset repository pinned to one commit.
    Model,
    /// A conda package with its repodata record.
    Conda,
}

impl Kind {
    pub fn of(record: &Record) -> Kind {
        match record {
            Record::Image(r) if r.subject.is_some() => Kind::Referrer,
            Record::Image(_) => Kind::Image,
            Record::Python(_) => Kind::Python,
            Record::Model(_) => Kind::Model,
            Record::Conda(_) => Kind::Conda,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Referrer => "referrer",
            Kind::Python => "python",
            Kind::Model => "model",
            Kind::Conda => "conda",
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    kind: Kind,
    repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
    digest: Digest,
    media_type: String,
    size: u64,
    origin: String,
    /// Platforms of an index, or the one platform of a manifest, when known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    platforms: Vec<String>,
    /// For a referrer: the image it is attached to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Digest>,
    /// When only some platforms of an index were kept: the digest of the source index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    labels: Labels,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    licenses: Vec<Licence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    python: Option<super::python::record::PythonRelease>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<super::model::record::ModelInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conda: Option<super::conda::record::CondaPackage>,
}

impl Wire {
    fn from_artifact(a: &AnyArtifact) -> Wire {
        let mut w = Wire {
            kind: Kind::of(&a.record),
            repository: a.repository.clone(),
            tag: a.tag.clone(),
            digest: a.digest,
            media_type: a.media_type.clone(),
            size: a.size,
            origin: a.origin.clone(),
            platforms: Vec::new(),
            subject: None,
            source_digest: None,
            artifact_type: a.artifact_type.clone(),
            labels: a.labels.clone(),
            licenses: a.licenses.clone(),
            python: None,
            model: None,
            conda: None,
        };
        match &a.record {
            Record::Image(r) => {
                w.platforms = r.platforms.clone();
                w.subject = r.subject;
                w.source_digest = r.source_digest;
            }
            Record::Python(r) => w.python = Some(r.clone()),
            Record::Model(r) => w.model = Some(r.clone()),
            Record::Conda(r) => w.conda = Some(r.clone()),
        }
        w
    }

    fn into_artifact(self) -> Result<AnyArtifact, String> {
        let name = match &self.tag {
            Some(t) => format!("{}:{t}", self.repository),
            None => format!("{}@{}", self.repository, self.digest),
        };
        for (k, v) in &self.labels {
            crate::names::check_label(k, v).map_err(|e| format!("artifact {name}: {e}"))?;
        }
        for l in &self.licenses {
            crate::names::check_licence(l).map_err(|e| format!("artifact {name}: {e}"))?;
        }
        let stray = |field: &str| {
            format!(
                "artifact {name}: a `{}` artifact cannot have `{field}`",
                self.kind.as_str()
            )
        };
        let image_fields =
            !self.platforms.is_empty() || self.subject.is_some() || self.source_digest.is_some();
        let record = match self.kind {
            Kind::Image | Kind::Referrer => {
                for (field, set) in [
                    ("python", self.python.is_some()),
                    ("model", self.model.is_some()),
                    ("conda", self.conda.is_some()),
                ] {
                    if set {
                        return Err(stray(field));
                    }
                }
                match (self.kind, self.subject) {
                    (Kind::Referrer, None) => {
                        return Err(format!("artifact {name}: a referrer needs its `subject`"));
                    }
                    (Kind::Image, Some(_)) => return Err(stray("subject")),
                    _ => {}
                }
                Record::Image(ImageRecord {
                    platforms: self.platforms,
                    subject: self.subject,
                    source_digest: self.source_digest,
                })
            }
            kind => {
                if image_fields {
                    return Err(stray("platforms, subject or sourceDigest"));
                }
                let (python, model, conda) = (self.python, self.model, self.conda);
                match (kind, python, model, conda) {
                    (Kind::Python, Some(r), None, None) => Record::Python(r),
                    (Kind::Model, None, Some(r), None) => Record::Model(r),
                    (Kind::Conda, None, None, Some(r)) => Record::Conda(r),
                    _ => {
                        return Err(format!(
                            "artifact {name}: a `{}` artifact needs its `{}` record and no other",
                            kind.as_str(),
                            kind.as_str()
                        ));
                    }
                }
            }
        };
        Ok(Artifact {
            repository: self.repository,
            tag: self.tag,
            digest: self.digest,
            media_type: self.media_type,
            size: self.size,
            origin: self.origin,
            artifact_type: self.artifact_type,
            labels: self.labels,
            licenses: self.licenses,
            record,
        })
    }
}

impl Serialize for Artifact<Record> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Wire::from_artifact(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Artifact<Record> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Wire::deserialize(deserializer)?
            .into_artifact()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(extra: serde_json::Value) -> Result<AnyArtifact, serde_json::Error> {
        let mut v = serde_json::json!({
            "repository": "e2e/app", "tag": "1.0",
            "digest": format!("sha256:{}", "a".repeat(64)),
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 10, "origin": "oci:x:app:1.0"
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        serde_json::from_value(v)
    }

    #[test]
    fn kinds_and_fields_agree() {
        let image =
            artifact(serde_json::json!({"kind": "image", "platforms": ["linux/amd64"]})).unwrap();
        assert_eq!(Kind::of(&image.record), Kind::Image);
        let again: AnyArtifact =
            serde_json::from_value(serde_json::to_value(&image).unwrap()).unwrap();
        assert_eq!(again, image);
        let subject = format!("sha256:{}", "b".repeat(64));
        let referrer = artifact(serde_json::json!({"kind": "referrer", "subject": subject}));
        assert_eq!(Kind::of(&referrer.unwrap().record), Kind::Referrer);
        // A referrer without its subject, an image with one, a python artifact without
        // its release or with an image's platforms: all refused.
        assert!(artifact(serde_json::json!({"kind": "referrer"})).is_err());
        assert!(artifact(serde_json::json!({"kind": "image", "subject": subject})).is_err());
        assert!(artifact(serde_json::json!({"kind": "python"})).is_err());
        assert!(
            artifact(serde_json::json!({"kind": "model", "platforms": ["linux/amd64"]})).is_err()
        );
        assert!(artifact(serde_json::json!({"kind": "npm"})).is_err());
    }
}
