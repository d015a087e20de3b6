//! The Hugging Face hub API that huggingface_hub uses when HF_ENDPOINT points here:
//! repo info by revision (with `sha` and `siblings`), the file tree, and `resolve` with
//! `X-Repo-Commit`, `ETag`/`X-Linked-Etag`, sizes and Range. Pinned branch and tag names
//! resolve to their commit; anything else is a 404 with the hub's `X-Error-Code`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::ecosystems::model::record::{self, ModelFile, ModelInfo};
use crate::escape::{has_control, is_lower_hex, percent_decode};
use crate::respond::{FileRef, file_response};
use crate::store::Store;

#[derive(Default)]
pub struct HfCatalog {
    /// (`model`|`dataset`, lower-case repo id) -> repository.
    repos: HashMap<(String, String), HfRepo>,
}

#[derive(Default)]
struct HfRepo {
    id: String,
    /// Revision names and commits -> commit.
    revisions: BTreeMap<String, String>,
    snapshots: HashMap<String, Vec<ModelFile>>,
}

impl HfCatalog {
    /// Adds `entry` of the store's index when it is a model or dataset snapshot that
    /// can be served.
    pub fn add(&mut self, store: &Store, entry: &crate::oci::Desc) {
        let Some(crate::respond::StoredRecord {
            digest, manifest, ..
        }) = crate::respond::artifact(
            store,
            entry,
            record::REPOSITORY_PREFIX,
            record::ARTIFACT_TYPE,
        )
        else {
            return;
        };
        let info = match record::read(&manifest).unwrap_or(Err("not a model manifest".into())) {
            Ok(info) => info,
            Err(why) => {
                eprintln!("warning: model {digest} is not served: {why}");
                return;
            }
        };
        if let Err(why) = servable(&info) {
            eprintln!(
                "warning: model {digest} ({}) is not served: {why}",
                info.repo.escape_debug()
            );
            return;
        }
        let repo = self
            .repos
            .entry((info.kind.to_string(), info.repo.to_ascii_lowercase()))
            .or_default();
        repo.id = info.repo.to_string();
        repo.revisions
            .insert(info.revision.to_string(), info.commit.to_string());
        repo.revisions
            .insert(info.commit.to_string(), info.commit.to_string());
        repo.snapshots.insert(info.commit.to_string(), info.files);
    }
}

/// Whether a snapshot can be served as it is: its commit and every file's oid and
/// sha256 are the hex the hub uses (they become `X-Repo-Commit` and `ETag` headers), and
/// no name holds a control character or a `..`.
fn servable(info: &ModelInfo) -> Result<(), String> {
    if !matches!(info.kind.as_str(), "model" | "dataset") {
        return Err(format!("unknown repository type {:?}", info.kind));
    }
    if info.repo.is_empty() || has_control(&info.repo) || info.repo.split('/').any(|c| c == "..") {
        return Err(format!("invalid repository id {:?}", info.repo));
    }
    if info.revision.is_empty() || has_control(&info.revision) {
        return Err(format!("invalid revision {:?}", info.revision));
    }
    if !is_lower_hex(&info.commit, 40) {
        return Err(format!("commit {:?} is not 40 hex digits", info.commit));
    }
    for f in &info.files {
        let bad_path = f.path.is_empty()
            || has_control(&f.path)
            || f.path.starts_with('/')
            || f.path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..");
        if bad_path {
            return Err(format!("invalid file path {:?}", f.path));
        }
        if !is_lower_hex(&f.oid, 40) {
            return Err(format!("{}: oid {:?} is not 40 hex digits", f.path, f.oid));
        }
        if !is_lower_hex(&f.sha256, 64) {
            return Err(format!(
                "{}: sha256 {:?} is not 64 hex digits",
                f.path, f.sha256
            ));
        }
    }
    Ok(())
}

/// Whether a path is one of the hub's.
pub fn is_hub_path(path: &str) -> bool {
    path.starts_with("/api/models/")
        || path.starts_with("/api/datasets/")
        || path.contains("/resolve/")
}

fn hub_error(
    status: StatusCode,
    code: &'static str,
    message: &str,
    commit: Option<&str>,
) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut r = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    r.headers_mut()
        .insert("X-Error-Code", HeaderValue::from_static(code));
    if let Ok(v) = HeaderValue::from_str(message) {
        r.headers_mut().insert("X-Error-Message", v);
    }
    if let Some(c) = commit.and_then(|c| HeaderValue::from_str(c).ok()) {
        r.headers_mut().insert("X-Repo-Commit", c);
    }
    r
}

/// A refusal, boxed: a `Response` is large.
type Refused = Box<Response>;

fn refused(status: StatusCode, code: &'static str, message: &str, commit: Option<&str>) -> Refused {
    Box::new(hub_error(status, code, message, commit))
}

impl HfCatalog {
    fn repo(&self, kind: &str, id: &str) -> Result<&HfRepo, Refused> {
        self.repos
            .get(&(kind.to_string(), id.to_ascii_lowercase()))
            .ok_or_else(|| {
                refused(
                    StatusCode::NOT_FOUND,
                    "RepoNotFound",
                    &format!("Repository Not Found for url: {id}"),
                    None,
                )
            })
    }
}

impl HfRepo {
    fn files(&self, commit: &str) -> &[ModelFile] {
        self.snapshots.get(commit).map_or(&[], Vec::as_slice)
    }

    fn commit(&self, revision: &str) -> Result<&str, Refused> {
        self.revisions
            .get(revision)
            .map(String::as_str)
            .ok_or_else(|| {
                refused(
                    StatusCode::NOT_FOUND,
                    "RevisionNotFound",
                    &format!("Invalid rev id: {revision}"),
                    None,
                )
            })
    }
}

pub async fn route(
    store: &Store,
    catalog: &HfCatalog,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response {
    let api = path
        .strip_prefix("/api/models/")
        .map(|r| ("model", r))
        .or_else(|| path.strip_prefix("/api/datasets/").map(|r| ("dataset", r)));
    let answer = match api {
        Some((kind, rest)) => api_route(catalog, kind, rest),
        None => {
            let (kind, rest) = match path.strip_prefix("/datasets/") {
                Some(r) => ("dataset", r),
                None => ("model", path.trim_start_matches('/')),
            };
            resolve(store, catalog, kind, rest, method, headers).await
        }
    };
    answer.unwrap_or_else(|e| *e)
}

fn api_route(catalog: &HfCatalog, kind: &str, rest: &str) -> Result<Response, Refused> {
    if let Some((id, rev)) = rest.split_once("/revision/") {
        return info(catalog, kind, id, &percent_decode(rev));
    }
    if let Some((id, rest)) = rest.split_once("/tree/") {
        let (rev, sub) = rest.split_once('/').unwrap_or((rest, ""));
        return tree(
            catalog,
            kind,
            id,
            &percent_decode(rev),
            &percent_decode(sub),
        );
    }
    info(catalog, kind, rest.trim_end_matches('/'), "main")
}

fn info(catalog: &HfCatalog, kind: &str, id: &str, revision: &str) -> Result<Response, Refused> {
    let repo = catalog.repo(kind, id)?;
    let commit = repo.commit(revision)?;
    let files = repo.files(commit);
    let siblings: Vec<_> = files
        .iter()
        .map(|f| serde_json::json!({"rfilename": f.path}))
        .collect();
    let mut body = serde_json::json!({
        "_id": commit,
        "id": repo.id,
        "author": repo.id.split_once('/').map(|(a, _)| a),
        "sha": commit,
        "lastModified": "1970-01-01T00:00:00.000Z",
        "private": false,
        "gated": false,
        "disabled": false,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
    });
    if kind == "model" {
        body["modelId"] = repo.id.clone().into();
    }
    Ok(json(body))
}

fn tree(
    catalog: &HfCatalog,
    kind: &str,
    id: &str,
    revision: &str,
    sub: &str,
) -> Result<Response, Refused> {
    let repo = catalog.repo(kind, id)?;
    let commit = repo.commit(revision)?;
    let prefix = if sub.is_empty() {
        String::new()
    } else {
        format!("{}/", sub.trim_end_matches('/'))
    };
    let mut dirs = BTreeSet::new();
    let mut entries = Vec::new();
    for f in repo
        .files(commit)
        .iter()
        .filter(|f| f.path.starts_with(&prefix))
    {
        let mut parent = f.path.as_str();
        while let Some((dir, _)) = parent.rsplit_once('/') {
            if dir.len() >= prefix.len() {
                dirs.insert(dir.to_string());
            }
            parent = dir;
        }
        let mut e =
            serde_json::json!({"type": "file", "oid": f.oid, "size": f.size, "path": f.path});
        if f.lfs {
            e["lfs"] = serde_json::json!({"oid": f.sha256, "size": f.size, "pointerSize": lfs_pointer_size(f.size)});
        }
        entries.push(e);
    }
    let mut all: Vec<_> = dirs.into_iter().map(|d| serde_json::json!({"type": "directory", "oid": "0".repeat(40), "size": 0, "path": d})).collect();
    all.extend(entries);
    Ok(json(serde_json::Value::Array(all)))
}

async fn resolve(
    store: &Store,
    catalog: &HfCatalog,
    kind: &str,
    rest: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, Refused> {
    let Some((id, after)) = rest.split_once("/resolve/") else {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "EntryNotFound",
            "not found",
            None,
        ));
    };
    let (rev, file) = after.split_once('/').unwrap_or((after, ""));
    let repo = catalog.repo(kind, id)?;
    let commit = repo.commit(&percent_decode(rev))?;
    let file = percent_decode(file);
    let Some(f) = repo.files(commit).iter().find(|f| f.path == file.as_str()) else {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "EntryNotFound",
            &format!("{file} does not exist at {commit}"),
            Some(commit),
        ));
    };
    let digest = f.digest();
    let etag = format!("\"{}\"", f.etag());
    let mut response = file_response(
        store,
        FileRef {
            digest: &digest,
            size: f.size,
            content_type: "application/octet-stream",
            etag: Some(etag.clone()),
        },
        method,
        headers,
    )
    .await;
    // The catalog holds only hex commits and etags (`servable`); a value that is not a
    // valid header is left out rather than trusted.
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(commit) {
        h.insert("X-Repo-Commit", v);
    }
    if f.lfs {
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert("X-Linked-Etag", v);
        }
        h.insert("X-Linked-Size", HeaderValue::from(f.size));
    }
    h.remove("Docker-Content-Digest");
    Ok(response)
}

fn json(value: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        value.to_string(),
    )
        .into_response()
}

/// The length of the git-lfs pointer file of a file of `size` bytes:
/// `version https://git-lfs.github.com/spec/v1\noid sha256:<64 hex>\nsize <size>\n`.
fn lfs_pointer_size(size: u64) -> u64 {
    125 + size.to_string().len() as u64
}
