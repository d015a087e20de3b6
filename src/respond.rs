//! HTTP responses the servers of every ecosystem share: plain text, store files with
//! HEAD and byte ranges, and the store's records read for a catalog.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::digest::Digest;
use crate::store::Store;

/// A GET or HEAD request, as the routes of every ecosystem see it.
pub struct Request<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// 405 for a request that would write: every server of ferry is read-only.
pub fn read_only() -> Response {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "this server is read-only\n");
    allow_get_head(&mut r);
    r
}

/// `Allow: GET, HEAD` on a 405.
pub fn allow_get_head(r: &mut Response) {
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
}

pub fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// A file of the store to serve: its digest, size and how to label it.
pub struct FileRef<'a> {
    pub digest: &'a Digest,
    pub size: u64,
    pub content_type: &'a str,
    /// The ETag to send (quoted); default: the digest.
    pub etag: Option<String>,
}

/// Serves a blob or manifest file, with HEAD and single byte ranges.
pub async fn file_response(
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
pub fn digest_value(digest: &Digest) -> HeaderValue {
    HeaderValue::from_str(&digest.to_string()).unwrap_or(HeaderValue::from_static("invalid"))
}

/// A clean 500 for a record of the store that cannot be served, with a warning.
pub fn unservable(digest: &Digest, why: &str) -> Response {
    eprintln!("warning: {digest} in the store cannot be served: {why}");
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "this record of the store cannot be served\n",
    )
}

/// One artifact of the store, read for a catalog.
pub struct StoredRecord {
    pub digest: Digest,
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
}

/// `entry` of `index.json` when it is an artifact of `artifact_type` under `prefix`: its
/// digest, manifest bytes and config bytes. Each is read and checked on its own; one that
/// cannot be read (a missing blob, a manifest that does not parse) is left out with a
/// warning, so one bad record does not take the rest of the store down.
pub fn artifact(
    store: &Store,
    entry: &crate::oci::Desc,
    prefix: &str,
    artifact_type: &str,
) -> Option<StoredRecord> {
    let ours = entry
        .annotations
        .get(crate::oci::REPOSITORY)
        .is_some_and(|r| r.starts_with(prefix));
    if !ours || entry.artifact_type.as_deref() != Some(artifact_type) {
        return None;
    }
    let read = || -> crate::error::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let bytes = store.read_blob(&entry.digest)?;
        let manifest = crate::oci::Manifest::parse(&bytes, Some(&entry.media_type))?;
        let Some(config) = manifest.children.first() else {
            return Ok(None);
        };
        Ok(Some((bytes, store.read_blob(&config.digest)?)))
    };
    match read() {
        Ok(Some((manifest, config))) => Some(StoredRecord {
            digest: entry.digest,
            manifest,
            config,
        }),
        Ok(None) => None,
        Err(e) => {
            eprintln!(
                "warning: {} ({artifact_type}) is not served: {e:#}",
                entry.digest
            );
            None
        }
    }
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
