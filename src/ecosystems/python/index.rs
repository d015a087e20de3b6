//! A client for "simple" package indexes: PEP 691 JSON, or PEP 503 HTML, with PEP 658 /
//! 714 core metadata. Pages are fetched once per project and kept.

use std::collections::HashMap;
use std::sync::Mutex;

use pep440_rs::VersionSpecifiers;
use pep508_rs::PackageName;
use reqwest::Url;
use serde::Deserialize;

use super::tags::{Dist, parse_filename};
use crate::digest::Digest;

pub const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";
pub const HTML_TYPE: &str = "application/vnd.pypi.simple.v1+html";

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot reach the index at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the index has no project `{project}` ({url} answered 404)")]
    UnknownProject { project: String, url: String },
    #[error("the index answered {status} for {url}")]
    Status { url: String, status: u16 },
    #[error("the index page {url} is not valid: {reason}")]
    BadPage { url: String, reason: String },
}

/// One file a project page lists.
#[derive(Debug, Clone)]
pub struct IndexFile {
    pub filename: String,
    pub url: Url,
    pub dist: Dist,
    pub sha256: Option<Digest>,
    pub requires_python: Option<VersionSpecifiers>,
    pub yanked: bool,
    /// PEP 658 metadata: `None` if not offered, `Some(hash)` if offered (hash if given).
    pub metadata: Option<Option<Digest>>,
}

pub struct IndexClient {
    pub base: Url,
    http: reqwest::Client,
    fetcher: crate::fetch::Http,
    pages: Mutex<HashMap<PackageName, std::sync::Arc<Vec<IndexFile>>>>,
}

#[derive(Deserialize)]
struct JsonPage {
    files: Vec<JsonFile>,
}

#[derive(Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: HashMap<String, String>,
    #[serde(rename = "requires-python")]
    requires_python: Option<String>,
    #[serde(default)]
    yanked: serde_json::Value,
    #[serde(rename = "core-metadata")]
    core_metadata: Option<serde_json::Value>,
    #[serde(rename = "dist-info-metadata")]
    dist_info_metadata: Option<serde_json::Value>,
}

impl IndexClient {
    pub fn new(index_url: &str) -> Result<IndexClient, String> {
        let mut url = index_url.to_string();
        if !url.ends_with('/') {
            url.push('/');
        }
        let shown = crate::names::redact_url(index_url);
        let base =
            Url::parse(&url).map_err(|e| format!("index URL `{shown}` is not a URL: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!("index URL `{shown}` is not http or https"));
        }
        let http = crate::fetch::client_builder()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(IndexClient {
            base,
            fetcher: crate::fetch::Http::with_client(http.clone()),
            http,
            pages: Mutex::new(HashMap::new()),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The verified fetcher, sharing this client's connections and timeouts.
    pub fn fetcher(&self) -> &crate::fetch::Http {
        &self.fetcher
    }

    /// The files of a project, as its page lists them.
    pub async fn project(
        &self,
        name: &PackageName,
    ) -> Result<std::sync::Arc<Vec<IndexFile>>, IndexError> {
        if let Some(page) = self.pages.lock().expect("page cache").get(name) {
            return Ok(page.clone());
        }
        let url = self
            .base
            .join(&format!("{name}/"))
            .expect("a normalized name is a valid path");
        let unreachable = |source: reqwest::Error| IndexError::Unreachable {
            url: crate::names::redact_url(url.as_str()),
            source: source.without_url(),
        };
        let accept = format!("{JSON_TYPE}, {HTML_TYPE};q=0.2, text/html;q=0.01");
        let response = self
            .fetcher
            .page(|c| {
                c.get(url.clone())
                    .header(reqwest::header::ACCEPT, accept.clone())
            })
            .await
            .map_err(unreachable)?;
        let status = response.status.as_u16();
        if status == 404 {
            return Err(IndexError::UnknownProject {
                project: name.to_string(),
                url: crate::names::redact_url(url.as_str()),
            });
        }
        if status != 200 {
            return Err(IndexError::Status {
                url: crate::names::redact_url(url.as_str()),
                status,
            });
        }
        let page_url = response.url.clone();
        let content_type = response
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = String::from_utf8_lossy(&response.body);
        let bad = |reason: String| IndexError::BadPage {
            url: crate::names::redact_url(url.as_str()),
            reason,
        };
        let files = parse_page(&page_url, &content_type, &body).map_err(bad)?;
        let files = std::sync::Arc::new(files);
        self.pages
            .lock()
            .expect("page cache")
            .insert(name.clone(), files.clone());
        Ok(files)
    }
}

/// The files a project page at `page` lists: PEP 691 JSON when `content_type` says so,
/// PEP 503 HTML otherwise. Files whose names or URLs do not parse are left out.
pub fn parse_page(page: &Url, content_type: &str, body: &str) -> Result<Vec<IndexFile>, String> {
    if content_type.starts_with(JSON_TYPE) {
        let json: JsonPage = serde_json::from_str(body).map_err(|e| e.to_string())?;
        Ok(json
            .files
            .into_iter()
            .filter_map(|f| from_json(page, f))
            .collect())
    } else {
        Ok(parse_html(page, body))
    }
}

fn digest_from(hex: Option<&str>) -> Option<Digest> {
    hex.and_then(|h| Digest::from_hex(&h.to_ascii_lowercase()).ok())
}

fn metadata_flag(value: Option<&serde_json::Value>) -> Option<Option<Digest>> {
    match value? {
        serde_json::Value::Bool(true) => Some(None),
        serde_json::Value::Object(hashes) => {
            Some(digest_from(hashes.get("sha256").and_then(|v| v.as_str())))
        }
        _ => None,
    }
}

fn from_json(page: &Url, f: JsonFile) -> Option<IndexFile> {
    let url = page.join(&f.url).ok()?;
    Some(IndexFile {
        dist: parse_filename(&f.filename)?,
        url: strip_fragment(url),
        sha256: digest_from(f.hashes.get("sha256").map(String::as_str)),
        requires_python: f.requires_python.as_deref().and_then(|r| r.parse().ok()),
        yanked: !matches!(
            f.yanked,
            serde_json::Value::Null | serde_json::Value::Bool(false)
        ),
        metadata: metadata_flag(f.core_metadata.as_ref())
            .or_else(|| metadata_flag(f.dist_info_metadata.as_ref())),
        filename: f.filename,
    })
}

fn strip_fragment(mut url: Url) -> Url {
    url.set_fragment(None);
    url
}

/// Reads the `<a>` elements of a PEP 503 page.
fn parse_html(page: &Url, body: &str) -> Vec<IndexFile> {
    // Tags are found in a lowercase copy made once (same byte offsets as `body`):
    // lowercasing the rest of the page again for every link took time quadratic in it.
    let lower = body.to_ascii_lowercase();
    let mut files = Vec::new();
    let mut at = 0;
    while let Some(start) = lower[at..].find("<a ") {
        let open = at + start + 3;
        let Some(end) = body[open..].find('>') else {
            break;
        };
        let attrs = parse_attrs(&body[open..open + end]);
        let inner = open + end + 1;
        let Some(close) = lower[inner..].find("</a>") else {
            break;
        };
        let text = unescape(body[inner..inner + close].trim());
        at = inner + close + 4;
        let Some(href) = attrs.get("href") else {
            continue;
        };
        let Ok(url) = page.join(href) else { continue };
        let filename = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or(text);
        let filename = crate::escape::percent_decode(&filename);
        let Some(dist) = parse_filename(&filename) else {
            continue;
        };
        let fragment_hash = url
            .fragment()
            .and_then(|f| f.strip_prefix("sha256="))
            .map(str::to_string);
        let metadata_attr = attrs
            .get("data-core-metadata")
            .or_else(|| attrs.get("data-dist-info-metadata"));
        files.push(IndexFile {
            filename,
            dist,
            sha256: digest_from(fragment_hash.as_deref()),
            requires_python: attrs
                .get("data-requires-python")
                .and_then(|r| r.parse().ok()),
            yanked: attrs.contains_key("data-yanked"),
            metadata: metadata_attr
                .map(|v| digest_from(v.strip_prefix("sha256=")))
                .filter(|_| metadata_attr.is_some_and(|v| v != "false")),
            url: strip_fragment(url),
        });
    }
    files
}

fn parse_attrs(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let value = if let Some(r) = rest.strip_prefix('=') {
            let r = r.trim_start();
            let (v, after) = match r.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let end = r[1..].find(q).map_or(r.len(), |e| e + 1);
                    (&r[1..end], r.get(end + 1..).unwrap_or(""))
                }
                _ => {
                    let end = r.find(char::is_whitespace).unwrap_or(r.len());
                    (&r[..end], &r[end..])
                }
            };
            rest = after.trim_start();
            unescape(v)
        } else {
            String::new()
        };
        if !name.is_empty() && name != "/" {
            out.insert(name, value);
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_pages() {
        let page = Url::parse("http://127.0.0.1:1/simple/six/").unwrap();
        let hex = "a".repeat(64);
        let body = format!(
            r#"<html><body><a href="../../files/six-1.16.0-py2.py3-none-any.whl#sha256={hex}" data-requires-python="&gt;=2.7" data-core-metadata="sha256={hex}">six-1.16.0-py2.py3-none-any.whl</a><br/>
            <A HREF='/files/six-1.17.0.tar.gz' data-yanked>six-1.17.0.tar.gz</A></body></html>"#
        );
        let files = parse_html(&page, &body);
        assert_eq!(files.len(), 2);
        assert_eq!(
            files[0].url.as_str(),
            "http://127.0.0.1:1/files/six-1.16.0-py2.py3-none-any.whl"
        );
        assert_eq!(files[0].sha256.unwrap().hex(), hex);
        assert_eq!(
            files[0].requires_python.as_ref().unwrap().to_string(),
            ">=2.7"
        );
        assert!(files[0].metadata.is_some());
        assert!(files[1].yanked && files[1].sha256.is_none());
    }

    /// Found with the `simple_index` fuzz target's harness: each link lowercased the
    /// rest of the page again, so a page of 20,000 links (3 MB, as large projects'
    /// pages are) took many seconds. It now takes one pass.
    #[test]
    fn a_large_page_is_read_in_linear_time() {
        let page = Url::parse("http://127.0.0.1:1/simple/six/").unwrap();
        let hex = "a".repeat(64);
        let body: String = (0..20_000)
            .map(|i| {
                format!(
                    "<A href=\"six-1.{i}.0-py2.py3-none-any.whl#sha256={hex}\">six-1.{i}.0-py2.py3-none-any.whl</a><br/>\n"
                )
            })
            .collect();
        let started = std::time::Instant::now();
        let files = parse_page(&page, HTML_TYPE, &body).unwrap();
        let took = started.elapsed();
        assert_eq!(files.len(), 20_000);
        assert_eq!(files[19_999].filename, "six-1.19999.0-py2.py3-none-any.whl");
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    }
}
