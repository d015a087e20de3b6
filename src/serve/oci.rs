//! The OCI distribution pull API over the store: tags, manifests by tag and digest,
//! blobs with HEAD and Range, and the referrers API.

use std::collections::{BTreeMap, HashMap};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{FileRef, file_response};
use crate::digest::Digest;
use crate::oci::{self, Desc};
use crate::store::Store;

#[derive(Default)]
pub(super) struct OciCatalog {
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
    pub(super) fn build(store: &Store) -> anyhow::Result<OciCatalog> {
        let mut catalog = OciCatalog::default();
        for entry in store.entries()? {
            let Some(repo_name) = entry.annotations.get(oci::REPOSITORY).cloned() else {
                continue;
            };
            let repo = catalog.repos.entry(repo_name.clone()).or_default();
            if let Some(tag) = entry
                .annotations
                .get(oci::REF_NAME)
                .and_then(|r| r.strip_prefix(&format!("{repo_name}:")))
            {
                repo.tags.insert(tag.to_string(), entry.clone());
            }
            match store.reachable(&entry) {
                Ok(nodes) => {
                    for (desc, manifest) in nodes {
                        if let Some(subject) = manifest.as_ref().and_then(|m| m.subject.as_ref()) {
                            let mut d = desc.clone();
                            d.artifact_type =
                                manifest.as_ref().and_then(|m| m.artifact_type.clone());
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
                Err(e) => eprintln!(
                    "warning: {} in {repo_name} is incomplete and not served: {e}",
                    entry.digest
                ),
            }
        }
        Ok(catalog)
    }
}

pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) async fn route(
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
            Ok(d) => repo
                .content
                .get(&d)
                .filter(|d| oci::is_manifest_type(&d.media_type)),
            Err(_) => repo
                .tags
                .get(reference)
                .and_then(|t| repo.content.get(&t.digest)),
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
        let desc = digest
            .parse::<Digest>()
            .ok()
            .and_then(|d| repo.content.get(&d));
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
