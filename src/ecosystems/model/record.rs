//! How a model (or dataset) repository pinned to one commit is carried: an OCI artifact
//! following the CNCF ModelPack media types. Each file is a layer annotated with its
//! path; the hub's identity of each file (git oid, LFS or not) and the repository, its
//! revision and commit are annotations too, so the manifest alone describes the snapshot.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::names::{CommitId, GitOid, HubRepoId, RelPath, RepoType, Revision, Sha256Hex};
use crate::oci::Desc;
use crate::store::{Store, StoreError};

pub const ARTIFACT_TYPE: &str = "application/vnd.cncf.model.manifest.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.cncf.model.config.v1+json";
pub const WEIGHT_TYPE: &str = "application/vnd.cncf.model.weight.v1.raw";
pub const WEIGHT_CONFIG_TYPE: &str = "application/vnd.cncf.model.weight.config.v1.raw";
pub const DOC_TYPE: &str = "application/vnd.cncf.model.doc.v1.raw";
pub const CODE_TYPE: &str = "application/vnd.cncf.model.code.v1.raw";
pub const DATASET_TYPE: &str = "application/vnd.cncf.model.dataset.v1.raw";
pub const FILEPATH: &str = "org.cncf.model.filepath";
const OID: &str = "dev.ferry.hf.oid";
const LFS: &str = "dev.ferry.hf.lfs";
const REPO: &str = "dev.ferry.hf.repo";
const TYPE: &str = "dev.ferry.hf.type";
const REVISION: &str = "dev.ferry.hf.revision";
const COMMIT: &str = "dev.ferry.hf.commit";
const ENDPOINT: &str = "dev.ferry.hf.endpoint";
pub const REPOSITORY_PREFIX: &str = "hf/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    /// The repository id on the hub: `org/name`.
    pub repo: HubRepoId,
    /// `model` or `dataset`.
    #[serde(rename = "type")]
    pub kind: RepoType,
    /// The revision asked for (a branch, tag or commit).
    pub revision: Revision,
    /// The 40-hex commit it resolved to.
    pub commit: CommitId,
    /// The hub, without credentials.
    pub endpoint: String,
    pub files: Vec<ModelFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelFile {
    pub path: RelPath,
    pub size: u64,
    pub sha256: Sha256Hex,
    /// The hub's git blob id (sha1) of the file, or of its LFS pointer.
    pub oid: GitOid,
    pub lfs: bool,
}

impl ModelFile {
    /// What the hub uses as ETag, and the cache names blobs by: the sha256 of an LFS
    /// file, the git blob id of any other.
    pub fn etag(&self) -> &str {
        if self.lfs { &self.sha256 } else { &self.oid }
    }
    pub fn digest(&self) -> Digest {
        self.sha256.digest()
    }
}

impl ModelInfo {
    /// `hf/models/org/name` (lower case, as OCI repositories must be).
    pub fn repository(&self) -> String {
        let clean: String = self
            .repo
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{REPOSITORY_PREFIX}{}s/{clean}", self.kind)
    }
}

/// The ModelPack layer type of a file, by its name.
pub fn layer_type(path: &str, kind: RepoType) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    if kind == RepoType::Dataset {
        return DATASET_TYPE;
    }
    match ext {
        "safetensors" | "bin" | "gguf" | "pt" | "pth" | "ckpt" | "onnx" | "h5" | "msgpack"
        | "tflite" | "ot" | "npz" => WEIGHT_TYPE,
        "md" | "txt" | "rst" | "pdf" => DOC_TYPE,
        "py" | "ipynb" | "sh" => CODE_TYPE,
        _ if name.starts_with("license") || name.starts_with("readme") => DOC_TYPE,
        _ => WEIGHT_CONFIG_TYPE,
    }
}

/// Writes the config and manifest (the files must be in the store already).
pub fn write(store: &Store, info: &ModelInfo) -> Result<(Desc, Vec<u8>), StoreError> {
    let diff_ids: Vec<String> = info
        .files
        .iter()
        .map(|f| format!("sha256:{}", f.sha256))
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "descriptor": {"name": info.repo, "sourceURL": format!("{}/{}", info.endpoint.trim_end_matches('/'), info.repo), "revision": info.commit},
        "config": {},
        "modelfs": {"type": "layers", "diffIds": diff_ids},
    }))
    .expect("config serialises");
    let layers: Vec<serde_json::Value> = info
        .files
        .iter()
        .map(|f| {
            serde_json::json!({
                "mediaType": layer_type(&f.path, info.kind),
                "digest": format!("sha256:{}", f.sha256),
                "size": f.size,
                "annotations": {FILEPATH: f.path, OID: f.oid, LFS: f.lfs.to_string()},
            })
        })
        .collect();
    let annotations = serde_json::json!({
        REPO: info.repo, TYPE: info.kind, REVISION: info.revision, COMMIT: info.commit, ENDPOINT: info.endpoint,
        "org.opencontainers.image.revision": info.commit,
    });
    store.put_artifact(ARTIFACT_TYPE, CONFIG_TYPE, &config, layers, annotations)
}

/// Reads a model manifest back into what it describes, checking every name in it.
/// `None`: not a model manifest.
pub fn read(bytes: &[u8]) -> Option<Result<ModelInfo, String>> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if v.get("artifactType")?.as_str()? != ARTIFACT_TYPE {
        return None;
    }
    Some(read_annotations(&v))
}

fn read_annotations(v: &serde_json::Value) -> Result<ModelInfo, String> {
    let missing = |what: &str| format!("model manifest lacks {what}");
    let a = v.get("annotations").ok_or_else(|| missing("annotations"))?;
    let s = |key: &str| {
        a.get(key)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or_else(|| missing(key))
    };
    let bad = |e: crate::names::NameError| format!("model manifest: {e}");
    let mut files = Vec::new();
    for l in v
        .get("layers")
        .and_then(|l| l.as_array())
        .ok_or_else(|| missing("layers"))?
    {
        let la = l
            .get("annotations")
            .ok_or_else(|| missing("layer annotations"))?;
        let text = |key: &str| {
            la.get(key)
                .and_then(|x| x.as_str())
                .ok_or_else(|| missing(key))
        };
        let digest = l
            .get("digest")
            .and_then(|d| d.as_str())
            .and_then(|d| d.strip_prefix("sha256:"))
            .ok_or_else(|| missing("a layer sha256 digest"))?;
        files.push(ModelFile {
            path: RelPath::new(text(FILEPATH)?).map_err(bad)?,
            size: l
                .get("size")
                .and_then(|s| s.as_u64())
                .ok_or_else(|| missing("a layer size"))?,
            sha256: Sha256Hex::new(digest).map_err(bad)?,
            oid: GitOid::new(text(OID)?).map_err(bad)?,
            lfs: text(LFS)? == "true",
        });
    }
    Ok(ModelInfo {
        repo: HubRepoId::new(s(REPO)?).map_err(bad)?,
        kind: RepoType::parse(&s(TYPE)?).map_err(bad)?,
        revision: Revision::new(s(REVISION)?).map_err(bad)?,
        commit: CommitId::new(s(COMMIT)?).map_err(bad)?,
        endpoint: s(ENDPOINT)?,
        files,
    })
}

/// Every model and dataset snapshot the store holds.
pub fn snapshots(store: &Store) -> Result<Vec<ModelInfo>, StoreError> {
    let mut out: Vec<ModelInfo> = Vec::new();
    for (manifest, _) in store.artifacts(REPOSITORY_PREFIX, ARTIFACT_TYPE)? {
        let Some(info) = read(&manifest) else {
            continue;
        };
        let info = info.map_err(|reason| StoreError::BadRecord {
            digest: Digest::of(&manifest),
            reason,
        })?;
        if !out.contains(&info) {
            out.push(info);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_types() {
        let m = RepoType::Model;
        assert_eq!(layer_type("model.safetensors", m), WEIGHT_TYPE);
        assert_eq!(layer_type("sub/config.json", m), WEIGHT_CONFIG_TYPE);
        assert_eq!(layer_type("README.md", m), DOC_TYPE);
        assert_eq!(layer_type("LICENSE", m), DOC_TYPE);
        assert_eq!(layer_type("data.parquet", RepoType::Dataset), DATASET_TYPE);
    }
}
