//! Conda channels under `/conda/<channel>/<subdir>/`: `repodata.json` (and `.zst`) built
//! from the packages the store holds, with ETag and Last-Modified, `noarch` always
//! present, real 404s for what is absent, and the package files with Range.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::digest::Digest;
use crate::ecosystems::conda::record::{self, CondaPackage};
use crate::respond::{FileRef, file_response, text};
use crate::store::Store;

#[derive(Default)]
pub struct CondaCatalog {
    /// channel -> subdir -> packages.
    channels: BTreeMap<String, BTreeMap<String, Vec<CondaPackage>>>,
    last_modified: String,
}

impl CondaCatalog {
    /// An empty catalog of a store whose index changed last at `modified`.
    pub fn new(modified: SystemTime) -> CondaCatalog {
        CondaCatalog {
            last_modified: http_date(modified),
            ..Default::default()
        }
    }

    /// Adds `entry` of the store's index when it is a conda package that can be
    /// served.
    pub fn add(&mut self, store: &Store, entry: &crate::oci::Desc) {
        let Some(crate::respond::StoredRecord { digest, config, .. }) = crate::respond::artifact(
            store,
            entry,
            record::REPOSITORY_PREFIX,
            record::ARTIFACT_TYPE,
        ) else {
            return;
        };
        let p: CondaPackage = match record::read(&config) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("warning: conda package {digest} is not served: {e}");
                return;
            }
        };
        let subdirs = self.channels.entry(p.channel.to_string()).or_default();
        subdirs.entry("noarch".into()).or_default();
        subdirs.entry(p.subdir.to_string()).or_default().push(p);
    }
}

fn http_date(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&format).unwrap_or_default()
}

pub async fn route(
    store: &Store,
    catalog: &CondaCatalog,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response {
    let rest = path.trim_start_matches("/conda/");
    let parts: Vec<&str> = rest.split('/').collect();
    let [channel, subdir, file] = parts[..] else {
        return text(
            StatusCode::NOT_FOUND,
            "not found: /conda/<channel>/<subdir>/<file>\n",
        );
    };
    let Some(subdirs) = catalog.channels.get(channel) else {
        return text(StatusCode::NOT_FOUND, "no such channel\n");
    };
    if subdir.parse::<rattler_conda_types::Subdir>().is_err() {
        return text(StatusCode::NOT_FOUND, "no such subdir\n");
    }
    let empty = Vec::new();
    let packages = subdirs.get(subdir).unwrap_or(&empty);
    match file {
        "repodata.json" | "repodata.json.zst" => {
            let refs: Vec<&CondaPackage> = packages.iter().collect();
            let mut body =
                serde_json::to_vec(&record::repodata(subdir, &refs)).expect("repodata serialises");
            let etag = format!("\"{}\"", Digest::of(&body).hex());
            if headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                == Some(etag.as_str())
            {
                return StatusCode::NOT_MODIFIED.into_response();
            }
            let content_type = if file.ends_with(".zst") {
                body = zstd::encode_all(&body[..], 3).expect("in-memory zstd");
                "application/zstd"
            } else {
                "application/json"
            };
            let len = body.len();
            let mut r = (StatusCode::OK, body).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            if let Ok(v) = HeaderValue::from_str(&etag) {
                h.insert(header::ETAG, v);
            }
            if let Ok(v) = HeaderValue::from_str(&catalog.last_modified) {
                h.insert(header::LAST_MODIFIED, v);
            }
            if method == Method::HEAD {
                *r.body_mut() = axum::body::Body::empty();
            }
            r
        }
        name => match packages
            .iter()
            .find(|p| p.file_name == name)
            .map(|p| (p, p.digest()))
        {
            Some((p, digest)) => {
                file_response(
                    store,
                    FileRef {
                        digest: &digest,
                        size: p.size,
                        content_type: "application/octet-stream",
                        etag: None,
                    },
                    method,
                    headers,
                )
                .await
            }
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
    }
}
