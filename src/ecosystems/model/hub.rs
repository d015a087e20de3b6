//! A client for the Hugging Face hub's HTTP API, as huggingface_hub uses it: resolve a
//! revision to a commit, list the tree (following pagination), download files through
//! `/resolve/<commit>/<path>` (following redirects to a CDN). `HF_TOKEN` is sent as a
//! bearer token and never printed; reqwest drops it on redirects to another host.

use reqwest::{StatusCode, Url, header};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("cannot reach the hub at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{kind} repository `{repo}` does not exist on {endpoint} (or is private or gated)")]
    RepoNotFound {
        kind: String,
        repo: String,
        endpoint: String,
    },
    #[error("`{repo}` has no revision `{revision}`")]
    RevisionNotFound { repo: String, revision: String },
    #[error("the hub refused access to `{repo}` ({status})")]
    Unauthorized { repo: String, status: u16 },
    #[error("the hub answered {status} for {url}")]
    Status { url: String, status: u16 },
    #[error("the hub's answer for {url} is not valid: {reason}")]
    BadAnswer { url: String, reason: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct TreeEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub oid: String,
    pub size: u64,
    pub path: String,
    pub lfs: Option<Lfs>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Lfs {
    pub oid: String,
    pub size: u64,
}

pub struct Hub {
    pub endpoint: Url,
    http: reqwest::Client,
    token: Option<String>,
    /// `models` or `datasets`.
    api_kind: &'static str,
}

impl Hub {
    pub fn new(endpoint: &str, dataset: bool) -> Result<Hub, String> {
        let endpoint =
            Url::parse(&format!("{}/", endpoint.trim_end_matches('/'))).map_err(|e| {
                format!(
                    "endpoint `{}` is not a URL: {e}",
                    crate::names::redact_url(endpoint)
                )
            })?;
        let http = crate::fetch::client_builder()
            .build()
            .map_err(|e| e.to_string())?;
        let token = std::env::var("HF_TOKEN")
            .or_else(|_| std::env::var("HUGGING_FACE_HUB_TOKEN"))
            .ok()
            .filter(|t| !t.trim().is_empty());
        Ok(Hub {
            endpoint,
            http,
            token,
            api_kind: if dataset { "datasets" } else { "models" },
        })
    }

    fn get(&self, url: Url) -> reqwest::RequestBuilder {
        let request = self.http.get(url);
        match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
    }

    /// The verified fetcher, sharing this hub client's connections and timeouts.
    pub fn fetcher(&self) -> crate::fetch::Http {
        crate::fetch::Http::with_client(self.http.clone())
    }

    /// What every download from this hub sends (the token, when there is one; reqwest
    /// drops it on a redirect to another host, such as a CDN).
    pub fn auth_headers(&self) -> reqwest::header::HeaderMap {
        let mut h = reqwest::header::HeaderMap::new();
        if let Some(t) = &self.token
            && let Ok(v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
        {
            let mut v = v;
            v.set_sensitive(true);
            h.insert(reqwest::header::AUTHORIZATION, v);
        }
        h
    }

    /// `/<repo>/resolve/<commit>/<path>`, each path segment percent-encoded.
    pub fn file_url(&self, repo: &str, commit: &str, path: &str) -> Url {
        let prefix = if self.api_kind == "datasets" {
            "datasets/"
        } else {
            ""
        };
        let encoded: Vec<String> = path.split('/').map(encode).collect();
        self.url(&format!(
            "{prefix}{repo}/resolve/{commit}/{}",
            encoded.join("/")
        ))
    }

    fn url(&self, path: &str) -> Url {
        self.endpoint.join(path).expect("a relative path joins")
    }

    fn kind(&self) -> String {
        self.api_kind.trim_end_matches('s').to_string()
    }

    /// The error for a refused request, from the hub's `X-Error-Code`.
    fn refused(&self, response: &crate::fetch::Page, repo: &str, revision: &str) -> HubError {
        let code = response
            .headers
            .get("x-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let status = response.status;
        match (code, status) {
            ("RevisionNotFound", _) => HubError::RevisionNotFound {
                repo: repo.into(),
                revision: revision.into(),
            },
            ("RepoNotFound", _) | (_, StatusCode::NOT_FOUND) => HubError::RepoNotFound {
                kind: self.kind(),
                repo: repo.into(),
                endpoint: crate::names::redact_url(self.endpoint.as_str()),
            },
            (_, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => HubError::Unauthorized {
                repo: repo.into(),
                status: status.as_u16(),
            },
            _ => HubError::Status {
                url: crate::names::redact_url(response.url.as_str()),
                status: status.as_u16(),
            },
        }
    }

    /// The commit a revision (branch, tag or commit) resolves to.
    pub async fn commit(&self, repo: &str, revision: &str) -> Result<String, HubError> {
        let url = self.url(&format!(
            "api/{}/{repo}/revision/{}",
            self.api_kind,
            encode(revision)
        ));
        let response = self.send(&url, repo, revision).await?;
        let bad = |reason: String| HubError::BadAnswer {
            url: crate::names::redact_url(url.as_str()),
            reason,
        };
        commit_of(&response.body).map_err(bad)
    }

    /// Every file of the commit, following `Link: <...>; rel="next"` pages.
    pub async fn tree(&self, repo: &str, commit: &str) -> Result<Vec<TreeEntry>, HubError> {
        let mut next = Some(self.url(&format!(
            "api/{}/{repo}/tree/{commit}?recursive=true&expand=false",
            self.api_kind
        )));
        let mut files = Vec::new();
        while let Some(url) = next.take() {
            let response = self.send(&url, repo, commit).await?;
            next = next_page(&url, response.headers.get_all(header::LINK));
            let bad = |reason: String| HubError::BadAnswer {
                url: crate::names::redact_url(url.as_str()),
                reason,
            };
            files.extend(tree_files(&response.body).map_err(bad)?);
        }
        Ok(files)
    }

    /// GETs a whole API answer (tried again on connection errors, 429 and 5xx); a
    /// refusal becomes the hub's error for `repo` at `revision`.
    async fn send(
        &self,
        url: &Url,
        repo: &str,
        revision: &str,
    ) -> Result<crate::fetch::Page, HubError> {
        let response = self
            .fetcher()
            .page(|_| self.get(url.clone()))
            .await
            .map_err(|source| HubError::Unreachable {
                url: crate::names::redact_url(url.as_str()),
                source: source.without_url(),
            })?;
        if !response.status.is_success() {
            return Err(self.refused(&response, repo, revision));
        }
        Ok(response)
    }
}

/// The commit id in the hub's answer to `api/<kind>/<repo>/revision/<revision>`.
pub fn commit_of(body: &[u8]) -> Result<String, String> {
    let info: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let sha = info
        .get("sha")
        .and_then(|s| s.as_str())
        .ok_or_else(|| "no `sha`".to_string())?;
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`sha` {sha} is not a commit id"));
    }
    Ok(sha.to_ascii_lowercase())
}

/// The files of one page of the hub's answer to `api/<kind>/<repo>/tree/<commit>`.
pub fn tree_files(body: &[u8]) -> Result<Vec<TreeEntry>, String> {
    let page: Vec<TreeEntry> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(page.into_iter().filter(|e| e.kind == "file").collect())
}

/// The page after `url`, from its `Link: <...>; rel="next"` headers.
pub fn next_page(url: &Url, links: header::GetAll<'_, header::HeaderValue>) -> Option<Url> {
    links
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find(|part| part.contains("rel=\"next\""))
        .and_then(|part| {
            part.split_once('<')
                .and_then(|(_, r)| r.split_once('>'))
                .map(|(u, _)| u.to_string())
        })
        .and_then(|u| url.join(&u).ok())
}

/// Percent-encodes a path segment or revision (`refs/pr/1` becomes `refs%2Fpr%2F1`).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let sha = "0123456789ABCDEF0123456789abcdef01234567";
        let info = format!(r#"{{"id": "org/m", "sha": "{sha}"}}"#);
        assert_eq!(
            commit_of(info.as_bytes()).unwrap(),
            sha.to_ascii_lowercase()
        );
        assert!(commit_of(br#"{"sha": "main"}"#).is_err());
        assert!(commit_of(br#"{"sha": 1}"#).is_err());
        assert!(commit_of(b"[]").is_err());

        let tree = br#"[{"type": "directory", "oid": "a", "size": 0, "path": "d"},
            {"type": "file", "oid": "b", "size": 3, "path": "d/x.json",
             "lfs": {"oid": "c", "size": 3, "pointerSize": 120}}]"#;
        let files = tree_files(tree).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, "d/x.json");
        assert!(tree_files(br#"[{"type": "file"}]"#).is_err());

        let url = Url::parse("https://hub.example/api/models/org/m/tree/c").unwrap();
        let mut headers = header::HeaderMap::new();
        for v in [
            r#"<https://hub.example/x>; rel="prev""#,
            r#"</api/models/org/m/tree/c?cursor=2>; rel="next""#,
        ] {
            headers.append(header::LINK, v.parse().unwrap());
        }
        assert_eq!(
            next_page(&url, headers.get_all(header::LINK))
                .unwrap()
                .as_str(),
            "https://hub.example/api/models/org/m/tree/c?cursor=2"
        );
        assert!(next_page(&url, header::HeaderMap::new().get_all(header::LINK)).is_none());
    }
}
