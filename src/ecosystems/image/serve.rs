//! The OCI distribution pull API over the store: tags, manifests by tag and digest,
//! blobs with HEAD and Range, and the referrers API.
//!
//! Tags come from `index.json`, and only for entries whose whole graph is in the store,
//! so a tag never points at content a client cannot fetch. By digest, anything the store
//! holds is served: a tag that moved (an import, a pull) takes its old manifest and
//! blobs out of `index.json`, not out of the store, and clients that fetched the old
//! index a moment ago, or pinned its digest, still get it and its children.

use std::collections::{BTreeMap, HashMap};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::digest::Digest;
use crate::oci::{self, Desc};
use crate::respond::{FileRef, file_response};
use crate::store::Store;

#[derive(Default)]
pub struct OciCatalog {
    repos: BTreeMap<String, Repo>,
}

#[derive(Default)]
struct Repo {
    tags: BTreeMap<String, Desc>,
    /// Every manifest and blob the repository's entries reach, with its media type.
    content: HashMap<Digest, Desc>,
    /// Manifests by the subject they refer to.
    referrers: HashMap<Digest, Vec<Desc>>,
}

impl OciCatalog {
    /// Adds `entry` of the store's index when it names a repository and its whole graph
    /// is in the store.
    pub fn add(&mut self, store: &Store, entry: &Desc) {
        let Some(repo_name) = entry.annotations.get(oci::REPOSITORY).cloned() else {
            return;
        };
        let nodes = match store.reachable(entry) {
            Ok(nodes) => nodes,
            Err(e) => {
                eprintln!(
                    "warning: {} in {repo_name} is incomplete and not served: {e}",
                    entry.digest
                );
                return;
            }
        };
        let repo = self.repos.entry(repo_name.clone()).or_default();
        if let Some(tag) = entry
            .annotations
            .get(oci::REF_NAME)
            .and_then(|r| r.strip_prefix(&format!("{repo_name}:")))
        {
            repo.tags.insert(tag.to_string(), entry.clone());
        }
        for (desc, manifest) in nodes {
            if let Some(subject) = manifest.as_ref().and_then(|m| m.subject.as_ref()) {
                let mut d = desc.clone();
                d.artifact_type = manifest.as_ref().and_then(|m| m.artifact_type.clone());
                let list = repo.referrers.entry(subject.digest).or_default();
                if !list.iter().any(|x| x.digest == d.digest) {
                    list.push(d);
                }
            }
            let mut desc = desc;
            if let Some(m) = &manifest {
                desc.media_type = m.media_type.clone();
            }
            repo.content.insert(desc.digest, desc);
        }
    }
}

pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub async fn route(
    store: &Store,
    catalog: &OciCatalog,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    let Some(rest) = path.strip_prefix("/v2/") else {
        return if path == "/v2" {
            json(StatusCode::OK, "{}".into())
        } else {
            error(StatusCode::NOT_FOUND, "NOT_FOUND", "not found")
        };
    };
    if rest.is_empty() {
        return json(StatusCode::OK, "{}".into());
    }
    if rest == "_catalog" {
        let repos: Vec<&String> = catalog.repos.keys().collect();
        return json(
            StatusCode::OK,
            serde_json::json!({ "repositories": repos }).to_string(),
        );
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        let Some(repo) = catalog.repos.get(name) else {
            return name_unknown(name);
        };
        let tags: Vec<&String> = repo.tags.keys().collect();
        return json(
            StatusCode::OK,
            serde_json::json!({ "name": name, "tags": tags }).to_string(),
        );
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        let Some(repo) = catalog.repos.get(name) else {
            return name_unknown(name);
        };
        let desc = match reference.parse::<Digest>() {
            Ok(d) => match repo.content.get(&d) {
                Some(desc) => Some(desc.clone()).filter(|d| oci::is_manifest_type(&d.media_type)),
                None => stored_manifest(store, &d).await,
            },
            Err(_) => repo
                .tags
                .get(reference)
                .and_then(|t| repo.content.get(&t.digest))
                .cloned(),
        };
        let Some(desc) = desc else {
            return error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                &format!("manifest unknown: {reference}"),
            );
        };
        return file_response(
            store,
            FileRef {
                digest: &desc.digest,
                size: desc.size,
                content_type: &desc.media_type,
                etag: None,
            },
            method,
            headers,
        )
        .await;
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        let Some(repo) = catalog.repos.get(name) else {
            return name_unknown(name);
        };
        let desc = match digest.parse::<Digest>() {
            Ok(d) => match repo.content.get(&d) {
                Some(desc) => Some(desc.clone()),
                None => stored_blob(store, &d).await,
            },
            Err(_) => None,
        };
        let Some(desc) = desc else {
            return error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                &format!("blob unknown: {digest}"),
            );
        };
        return file_response(
            store,
            FileRef {
                digest: &desc.digest,
                size: desc.size,
                content_type: "application/octet-stream",
                etag: None,
            },
            method,
            headers,
        )
        .await;
    }
    if let Some((name, digest)) = rest.rsplit_once("/referrers/") {
        let Some(repo) = catalog.repos.get(name) else {
            return name_unknown(name);
        };
        let Ok(subject) = digest.parse::<Digest>() else {
            return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "invalid digest");
        };
        let wanted = query
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("artifactType=")))
            .map(|t| {
                t.replace("%2F", "/")
                    .replace("%2f", "/")
                    .replace("%2B", "+")
                    .replace("%2b", "+")
            });
        let list: Vec<serde_json::Value> = repo
            .referrers
            .get(&subject)
            .into_iter()
            .flatten()
            .filter(|d| {
                wanted
                    .as_ref()
                    .is_none_or(|w| d.artifact_type.as_deref() == Some(w.as_str()))
            })
            .map(Desc::to_json)
            .collect();
        let body =
            serde_json::json!({"schemaVersion": 2, "mediaType": oci::OCI_INDEX, "manifests": list})
                .to_string();
        let mut r = (
            StatusCode::OK,
            [(header::CONTENT_TYPE, oci::OCI_INDEX)],
            body,
        )
            .into_response();
        if wanted.is_some() {
            r.headers_mut().insert(
                "OCI-Filters-Applied",
                HeaderValue::from_static("artifactType"),
            );
        }
        return r;
    }
    error(StatusCode::NOT_FOUND, "NOT_FOUND", "not found")
}

/// The largest manifest read from the store by digest alone (what the distribution
/// spec asks registries to accept).
const MAX_MANIFEST: u64 = 4 << 20;

/// A manifest the store holds but `index.json` no longer reaches: its descriptor, with
/// the media type the manifest itself declares. None unless the blob is there, checks
/// against its digest and parses as an image index or manifest.
async fn stored_manifest(store: &Store, digest: &Digest) -> Option<Desc> {
    let store = store.clone();
    let digest = *digest;
    tokio::task::spawn_blocking(move || {
        let meta = std::fs::metadata(store.blob_path(&digest)).ok()?;
        if !meta.is_file() || meta.len() > MAX_MANIFEST {
            return None;
        }
        let bytes = store.read_blob(&digest).ok()?;
        let manifest = oci::Manifest::parse(&bytes, None).ok()?;
        Some(Desc {
            media_type: manifest.media_type,
            digest,
            size: bytes.len() as u64,
            platform: None,
            artifact_type: manifest.artifact_type,
            annotations: Default::default(),
        })
    })
    .await
    .ok()
    .flatten()
}

/// A blob the store holds but `index.json` no longer reaches. Blobs are renamed into
/// the store only after their digest checked, so its presence is enough.
async fn stored_blob(store: &Store, digest: &Digest) -> Option<Desc> {
    let meta = tokio::fs::metadata(store.blob_path(digest)).await.ok()?;
    meta.is_file().then(|| Desc {
        media_type: "application/octet-stream".into(),
        digest: *digest,
        size: meta.len(),
        platform: None,
        artifact_type: None,
        annotations: Default::default(),
    })
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn name_unknown(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        &format!("repository {name} is not known"),
    )
}
