//! `ferry serve`: one store, read-only, to unmodified clients: the OCI distribution
//! pull API under `/v2/` (`oci`) and the Python simple API under `/simple/` (`pypi`).
//! What is served is what the store's `index.json` reaches; the catalogs are rebuilt
//! when `index.json` changes. Store content is not trusted: a record that cannot be
//! served safely is left out of the catalog with a warning, never a panic.

mod conda;

mod hf;
mod listener;
mod oci;
mod pypi;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::digest::Digest;
use crate::store::{Store, StoreError};

/// What the store holds, indexed for serving.
#[derive(Default)]
struct Catalog {
    stamp: Option<(SystemTime, u64)>,
    oci: oci::OciCatalog,
    pypi: pypi::PypiCatalog,
    hf: hf::HfCatalog,
    conda: conda::CondaCatalog,
}

struct App {
    store: Store,
    catalog: RwLock<Arc<Catalog>>,
    /// Held while a catalog is rebuilt, so concurrent requests rebuild it once.
    rebuild: Mutex<()>,
}

/// How `ferry serve` runs.
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// How long a connection may take to send a complete request head, from its accept
    /// or from its previous response.
    pub idle_timeout: Duration,
    pub quiet: bool,
}

pub async fn serve(store: Store, options: ServeOptions) -> anyhow::Result<()> {
    let app = Arc::new(App {
        store,
        catalog: RwLock::new(Arc::new(Catalog::default())),
        rebuild: Mutex::new(()),
    });
    app.catalog()?;
    let listen = options.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let cap = listener::connection_cap();
    if !options.quiet {
        eprintln!(
            "listening on http://{} (at most {cap} connections, idle timeout {}s)",
            listener.local_addr()?,
            options.idle_timeout.as_secs_f64()
        );
    }
    let router = Router::new().fallback(handle).with_state(app);
    listener::run(listener, router, options.idle_timeout, cap, shutdown()).await;
    Ok(())
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

impl App {
    /// The catalog of the store as `index.json` is now; rebuilding it reads every
    /// manifest, so it runs off the async workers.
    async fn current_catalog(self: &Arc<App>) -> anyhow::Result<Arc<Catalog>> {
        let app = self.clone();
        tokio::task::spawn_blocking(move || app.catalog())
            .await
            .map_err(|e| anyhow::anyhow!("catalog rebuild failed: {e}"))?
    }

    fn catalog(&self) -> anyhow::Result<Arc<Catalog>> {
        let stamp = || -> anyhow::Result<_> {
            let meta = std::fs::metadata(self.store.root().join("index.json"))?;
            Ok((Some((meta.modified()?, meta.len())), meta.modified()?))
        };
        let unchanged = |stamp| {
            let current = self.catalog.read().unwrap_or_else(|e| e.into_inner());
            (current.stamp == stamp).then(|| current.clone())
        };
        if let Some(current) = unchanged(stamp()?.0) {
            return Ok(current);
        }
        let _rebuilding = self.rebuild.lock().unwrap_or_else(|e| e.into_inner());
        let (stamp, modified) = stamp()?;
        if let Some(current) = unchanged(stamp) {
            return Ok(current);
        }
        let catalog = Arc::new(Catalog {
            stamp,
            oci: oci::OciCatalog::build(&self.store)?,
            pypi: pypi::PypiCatalog::build(&self.store)?,
            hf: hf::HfCatalog::build(&self.store)?,
            conda: conda::CondaCatalog::build(&self.store, modified)?,
        });
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = catalog.clone();
        Ok(catalog)
    }
}

async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path();
    let is_oci = path == "/v2" || path.starts_with("/v2/");
    let mut response = if method != Method::GET && method != Method::HEAD {
        let mut r = if is_oci {
            oci::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "this registry is read-only",
            )
        } else {
            text(StatusCode::METHOD_NOT_ALLOWED, "this server is read-only\n")
        };
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        r
    } else {
        match app.current_catalog().await {
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot read the store: {e}\n"),
            ),
            Ok(catalog) if is_oci => {
                oci::route(
                    &app.store,
                    &catalog.oci,
                    &method,
                    path,
                    uri.query(),
                    &headers,
                )
                .await
            }
            Ok(catalog) if path.starts_with("/conda/") => {
                conda::route(&app.store, &catalog.conda, &method, path, &headers).await
            }
            Ok(catalog) if hf::is_hub_path(path) => {
                hf::route(&app.store, &catalog.hf, &method, path, &headers).await
            }
            Ok(catalog) => pypi::route(&app.store, &catalog.pypi, &method, path, &headers).await,
        }
    };
    if is_oci {
        response.headers_mut().insert(
            "Docker-Distribution-API-Version",
            HeaderValue::from_static("registry/2.0"),
        );
    }
    response
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// A file of the store to serve: its digest, size and how to label it.
struct FileRef<'a> {
    digest: &'a Digest,
    size: u64,
    content_type: &'a str,
    /// The ETag to send (quoted); default: the digest.
    etag: Option<String>,
}

/// Serves a blob or manifest file, with HEAD and single byte ranges.
async fn file_response(
    store: &Store,
    file: FileRef<'_>,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let size = file.size;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(r) => match parse_range(r, size) {
            Some(r) => Some(r),
            None => {
                let mut resp = text(StatusCode::RANGE_NOT_SATISFIABLE, "unsatisfiable range\n");
                if let Ok(v) = HeaderValue::try_from(format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return resp;
            }
        },
    };
    let (status, start, len) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    let etag = file
        .etag
        .clone()
        .unwrap_or_else(|| format!("\"{}\"", file.digest));
    let (Ok(content_type), Ok(etag)) = (
        HeaderValue::from_str(file.content_type),
        HeaderValue::from_str(&etag),
    ) else {
        return unservable(
            file.digest,
            "its media type or ETag is not a valid header value",
        );
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, etag);
    h.insert("Docker-Content-Digest", digest_value(file.digest));
    if range.is_some() {
        let value = format!("bytes {}-{}/{}", start, start + len - 1, size);
        // Digits, `-` and `/` only: always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    if method == Method::HEAD {
        return response;
    }
    let mut f = match tokio::fs::File::open(store.blob_path(file.digest)).await {
        Ok(f) => f,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot open blob: {e}\n"),
            );
        }
    };
    if start > 0 && f.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot seek blob\n");
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 * 1024);
    *response.body_mut() = Body::from_stream(stream);
    response
}

/// A digest as a header value (`sha256:` and hex: always valid).
fn digest_value(digest: &Digest) -> HeaderValue {
    HeaderValue::from_str(&digest.to_string()).unwrap_or(HeaderValue::from_static("invalid"))
}

/// A clean 500 for a record of the store that cannot be served, with a warning.
fn unservable(digest: &Digest, why: &str) -> Response {
    eprintln!("warning: {digest} in the store cannot be served: {why}");
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "this record of the store cannot be served\n",
    )
}

/// One artifact of the store, read for a catalog.
struct Record {
    digest: Digest,
    manifest: Vec<u8>,
    config: Vec<u8>,
}

/// What `index.json` lists of `artifact_type` under `prefix`: each entry's digest,
/// manifest bytes and config bytes. Each is read and checked on its own; one that
/// cannot be read (a missing blob, a manifest that does not parse) is left out with a
/// warning, so one bad record does not take the rest of the store down.
fn artifacts(store: &Store, prefix: &str, artifact_type: &str) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::new();
    for entry in store.entries()? {
        let ours = entry
            .annotations
            .get(crate::oci::REPOSITORY)
            .is_some_and(|r| r.starts_with(prefix));
        if !ours || entry.artifact_type.as_deref() != Some(artifact_type) {
            continue;
        }
        let read = || -> anyhow::Result<Option<(Vec<u8>, Vec<u8>)>> {
            let bytes = store.read_blob(&entry.digest)?;
            let manifest = crate::oci::Manifest::parse(&bytes, Some(&entry.media_type))?;
            let Some(config) = manifest.children.first() else {
                return Ok(None);
            };
            Ok(Some((bytes, store.read_blob(&config.digest)?)))
        };
        match read() {
            Ok(Some((manifest, config))) => out.push(Record {
                digest: entry.digest,
                manifest,
                config,
            }),
            Ok(None) => {}
            Err(e) => eprintln!(
                "warning: {} ({artifact_type}) is not served: {e:#}",
                entry.digest
            ),
        }
    }
    Ok(out)
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
