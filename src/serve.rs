//! `ferry serve`: the OCI distribution pull API over one store, read-only, for
//! unmodified clients (podman, skopeo, docker). Tags and repositories come from the
//! store's `index.json`; what a repository may serve is what its entries reach.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::digest::Digest;
use crate::oci::{self, Desc};
use crate::store::Store;

/// What the store holds, indexed for serving; rebuilt when `index.json` changes.
#[derive(Default)]
struct Catalog {
    stamp: Option<(SystemTime, u64)>,
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

struct App {
    store: Store,
    catalog: RwLock<Arc<Catalog>>,
}

pub async fn serve(store: Store, listen: SocketAddr, quiet: bool) -> anyhow::Result<()> {
    let app = Arc::new(App {
        store,
        catalog: RwLock::new(Arc::new(Catalog::default())),
    });
    app.catalog()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    if !quiet {
        eprintln!("listening on http://{}", listener.local_addr()?);
    }
    let router = Router::new().fallback(handle).with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

impl App {
    fn catalog(&self) -> anyhow::Result<Arc<Catalog>> {
        let meta = std::fs::metadata(self.store.root().join("index.json"))?;
        let stamp = Some((meta.modified()?, meta.len()));
        {
            let current = self.catalog.read().expect("catalog lock");
            if current.stamp == stamp {
                return Ok(current.clone());
            }
        }
        let mut catalog = Catalog {
            stamp,
            repos: BTreeMap::new(),
        };
        for entry in self.store.entries()? {
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
            match self.store.reachable(&entry) {
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
        let catalog = Arc::new(catalog);
        *self.catalog.write().expect("catalog lock") = catalog.clone();
        Ok(catalog)
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut response = route(&app, &method, uri.path(), uri.query(), &headers).await;
    response.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

async fn route(
    app: &App,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "this registry is read-only",
        );
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return if path == "/v2" {
            json(StatusCode::OK, "{}".into())
        } else {
            error(StatusCode::NOT_FOUND, "NOT_FOUND", "not found")
        };
    };
    let catalog = match app.catalog() {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                &format!("cannot read the store: {e}"),
            );
        }
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
        return blob_response(app, desc, method, headers, &desc.media_type).await;
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
        return blob_response(app, desc, method, headers, "application/octet-stream").await;
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

/// Serves a blob or manifest file, with HEAD and single byte ranges.
async fn blob_response(
    app: &App,
    desc: &Desc,
    method: &Method,
    headers: &HeaderMap,
    content_type: &str,
) -> Response {
    let size = desc.size;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(r) => match parse_range(r, size) {
            Some(r) => Some(r),
            None => {
                let mut resp = error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "RANGE_INVALID",
                    "unsatisfiable range",
                );
                resp.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
                );
                return resp;
            }
        },
    };
    let (status, start, len) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{}\"", desc.digest))
        .header("Docker-Content-Digest", desc.digest.to_string());
    if range.is_some() {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", start, start + len - 1, size),
        );
    }
    if method == Method::HEAD {
        return builder.body(Body::empty()).expect("valid response");
    }
    let mut file = match tokio::fs::File::open(app.store.blob_path(&desc.digest)).await {
        Ok(f) => f,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                &format!("cannot open blob: {e}"),
            );
        }
    };
    if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "cannot seek blob",
        );
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 * 1024);
    builder
        .body(Body::from_stream(stream))
        .expect("valid response")
}

/// `bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX`, within `size`.
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (size.saturating_sub(n), size - 1)
        }
        (s, "") => (s.parse().ok()?, size - 1),
        (s, e) => (s.parse().ok()?, e.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=0-1000", 100), Some((0, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
    }
}
