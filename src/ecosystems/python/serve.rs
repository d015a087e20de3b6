//! The Python simple repository API over the store's Python releases: PEP 691 JSON and
//! PEP 503 HTML by content negotiation, PEP 658/714 core metadata, and the files with
//! Content-Length and Range.

use std::collections::{BTreeMap, HashMap};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::ecosystems::python::index::{HTML_TYPE, JSON_TYPE};
use crate::ecosystems::python::record::{self, PythonFile, PythonRelease};
use crate::escape::{self, has_control, is_lower_hex, percent_decode};
use crate::respond::{FileRef, file_response, text};
use crate::store::Store;

#[derive(Default)]
pub struct PypiCatalog {
    /// Normalised project name -> its releases.
    projects: BTreeMap<String, Vec<PythonRelease>>,
    /// Wheel sha256 (hex) -> file.
    files: HashMap<String, PythonFile>,
}

impl PypiCatalog {
    /// Adds `entry` of the store's index when it is a Python release that can be
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
        let mut r: PythonRelease = match serde_json::from_slice(&config) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("warning: Python release {digest} is not served: {e}");
                return;
            }
        };
        if !valid_project(&r.project) || has_control(&r.version) {
            eprintln!(
                "warning: Python release {digest} is not served: invalid project {:?} or version {:?}",
                r.project, r.version
            );
            return;
        }
        r.files.retain(|f| {
            let ok = servable_file(f);
            if !ok {
                eprintln!(
                    "warning: {:?} of Python release {digest} is not served: invalid file name or digest",
                    f.filename
                );
            }
            ok
        });
        for f in &r.files {
            self.files.insert(f.sha256.to_string(), f.clone());
        }
        let list = self.projects.entry(r.project.to_string()).or_default();
        list.retain(|old| old.version != r.version);
        list.push(r);
    }
}

/// Whether a project name is a PEP 503-normalised name: `[a-z0-9]` runs joined by
/// single `-`.
fn valid_project(name: &str) -> bool {
    !name.is_empty()
        && normalize(name) == name
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether a file can be listed: a plain file name (no `/`, no control character, not
/// `.` or `..`) and hex digests for the file and its metadata. Any other character of
/// the name is escaped where it is written.
fn servable_file(f: &PythonFile) -> bool {
    !f.filename.is_empty()
        && f.filename != "."
        && f.filename != ".."
        && !f.filename.contains('/')
        && !has_control(&f.filename)
        && is_lower_hex(&f.sha256, 64)
        && is_lower_hex(&f.metadata_sha256, 64)
}

/// The project name as PEP 503 normalises it.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut last_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !last_sep {
                out.push('-');
            }
            last_sep = true;
        } else {
            out.push(c.to_ascii_lowercase());
            last_sep = false;
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Html,
    LegacyHtml,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Json => JSON_TYPE,
            Format::Html => HTML_TYPE,
            Format::LegacyHtml => "text/html",
        }
    }
}

/// PEP 691 negotiation: the acceptable type with the highest quality; text/html when the
/// client states no preference; None (406) when it accepts none of them.
fn negotiate(headers: &HeaderMap) -> Option<Format> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Format::LegacyHtml);
    };
    let mut best: Option<(f32, Format)> = None;
    for part in accept.split(',') {
        let mut pieces = part.split(';');
        let media = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = pieces
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let format = match media.as_str() {
            JSON_TYPE | "application/vnd.pypi.latest+json" => Format::Json,
            HTML_TYPE | "application/vnd.pypi.latest+html" => Format::Html,
            "text/html" | "*/*" | "text/*" => Format::LegacyHtml,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, format));
        }
    }
    best.map(|(_, f)| f)
}

fn page(format: Format, body: String) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    r
}

/// A redirect to a project page; `name` is a normalised project name of the catalog.
fn redirect_to_project(name: &str) -> Response {
    redirect(&format!("/simple/{}/", escape::path_segment(name)))
}

fn redirect(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(location) => {
            let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
            r.headers_mut().insert(header::LOCATION, location);
            r
        }
        Err(_) => text(StatusCode::NOT_FOUND, "no such project\n"),
    }
}

/// The URL of a file, its name percent-encoded (it is written into HTML escaped too).
fn file_url(f: &PythonFile) -> String {
    format!("/files/{}/{}", f.sha256, escape::path_segment(&f.filename))
}

pub async fn route(
    store: &Store,
    catalog: &PypiCatalog,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response {
    if let Some(rest) = path.strip_prefix("/files/") {
        let Some((sha, name)) = rest.split_once('/') else {
            return text(StatusCode::NOT_FOUND, "not found\n");
        };
        let name = percent_decode(name);
        let Some(f) = catalog.files.get(sha) else {
            return text(StatusCode::NOT_FOUND, "no such file\n");
        };
        let (digest, size) = if f.filename == name.as_str() {
            (f.digest(), f.size)
        } else if name.strip_suffix(".metadata") == Some(f.filename.as_str()) {
            (f.metadata_digest(), f.metadata_size)
        } else {
            return text(StatusCode::NOT_FOUND, "no such file\n");
        };
        return file_response(
            store,
            FileRef {
                digest: &digest,
                size,
                content_type: "application/octet-stream",
                etag: None,
            },
            method,
            headers,
        )
        .await;
    }
    let Some(rest) = path.strip_prefix("/simple") else {
        return text(
            StatusCode::NOT_FOUND,
            "not found: this server answers /v2/ (OCI) and /simple/ (Python)\n",
        );
    };
    let Some(format) = negotiate(headers) else {
        return text(
            StatusCode::NOT_ACCEPTABLE,
            "acceptable: application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html, text/html\n",
        );
    };
    match rest.trim_start_matches('/') {
        "" if !rest.is_empty() => project_list(catalog, format),
        "" => redirect("/simple/"),
        name => {
            let bare = percent_decode(name.trim_end_matches('/'));
            let normalized = normalize(&bare);
            if bare != normalized || !name.ends_with('/') {
                return if catalog.projects.contains_key(&normalized) {
                    redirect_to_project(&normalized)
                } else {
                    text(StatusCode::NOT_FOUND, "no such project\n")
                };
            }
            match catalog.projects.get(&normalized) {
                Some(releases) => project_page(&normalized, releases, format),
                None => text(StatusCode::NOT_FOUND, "no such project\n"),
            }
        }
    }
}

fn project_list(catalog: &PypiCatalog, format: Format) -> Response {
    if format == Format::Json {
        let projects: Vec<_> = catalog
            .projects
            .keys()
            .map(|n| serde_json::json!({"name": n}))
            .collect();
        return page(
            format,
            serde_json::json!({"meta": {"api-version": "1.1"}, "projects": projects}).to_string(),
        );
    }
    let mut body = String::from(
        "<!DOCTYPE html>\n<html>\n<head><meta name=\"pypi:repository-version\" content=\"1.1\"><title>Simple index</title></head>\n<body>\n",
    );
    for name in catalog.projects.keys() {
        body.push_str(&format!(
            "<a href=\"/simple/{}/\">{}</a><br/>\n",
            escape::html(&escape::path_segment(name)),
            escape::html(name)
        ));
    }
    body.push_str("</body>\n</html>\n");
    page(format, body)
}

fn project_page(name: &str, releases: &[PythonRelease], format: Format) -> Response {
    let files: Vec<&PythonFile> = releases.iter().flat_map(|r| r.files.iter()).collect();
    if format == Format::Json {
        let files: Vec<_> = files
            .iter()
            .map(|f| {
                let meta = serde_json::json!({"sha256": f.metadata_sha256});
                let mut v = serde_json::json!({
                    "filename": f.filename,
                    "url": file_url(f),
                    "hashes": {"sha256": f.sha256},
                    "size": f.size,
                    "yanked": false,
                    "core-metadata": meta,
                    "dist-info-metadata": meta,
                });
                if let Some(r) = &f.requires_python {
                    v["requires-python"] = r.clone().into();
                }
                v
            })
            .collect();
        let mut versions: Vec<&str> = releases.iter().map(|r| r.version.as_str()).collect();
        versions.sort();
        let body = serde_json::json!({"meta": {"api-version": "1.1"}, "name": name, "files": files, "versions": versions});
        return page(format, body.to_string());
    }
    let name = escape::html(name);
    let mut body = format!(
        "<!DOCTYPE html>\n<html>\n<head><meta name=\"pypi:repository-version\" content=\"1.1\"><title>Links for {name}</title></head>\n<body>\n<h1>Links for {name}</h1>\n"
    );
    for f in files {
        let requires = f
            .requires_python
            .as_deref()
            .map(|r| format!(" data-requires-python=\"{}\"", escape::html(r)))
            .unwrap_or_default();
        body.push_str(&format!(
            "<a href=\"{}#sha256={}\"{requires} data-core-metadata=\"sha256={m}\" data-dist-info-metadata=\"sha256={m}\">{}</a><br/>\n",
            escape::html(&file_url(f)),
            escape::html(&f.sha256),
            escape::html(&f.filename),
            m = escape::html(&f.metadata_sha256),
        ));
    }
    body.push_str("</body>\n</html>\n");
    page(format, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        let mut h = HeaderMap::new();
        assert!(negotiate(&h) == Some(Format::LegacyHtml));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"));
        assert!(negotiate(&h) == Some(Format::Json));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        assert!(negotiate(&h) == Some(Format::LegacyHtml));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(negotiate(&h).is_none());
        assert_eq!(normalize("Python_Dateutil"), "python-dateutil");
        assert_eq!(normalize("a.-_b"), "a-b");
    }
}
