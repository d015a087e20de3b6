//! The one `docker-registry` (CNCF distribution) of the test process.
//!
//! A static never drops, so the registry is started under a small shell watchdog that
//! kills it, and removes the shared scratch root, once the test process is gone.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::context::free_port;
use super::http;

pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub host: String,
}

/// What a registry holds under a prefix: repository → tag → manifest digest.
pub type RegistrySnapshot = BTreeMap<String, BTreeMap<String, String>>;

const WATCHDOG: &str = r#"
docker-registry serve "$1" >"$2" 2>&1 &
child=$!
echo "$child" >"$3"
while kill -0 "$4" 2>/dev/null; do sleep 1; done
kill "$child" 2>/dev/null
wait "$child" 2>/dev/null
rm -rf "$5"
"#;

impl Registry {
    /// Starts the registry with its storage under `root`; `root` is removed when the
    /// test process exits.
    pub fn start(root: &Path) -> Registry {
        Registry::start_with(root, "")
    }

    /// Starts a registry that requires HTTP basic authentication against `htpasswd`.
    pub fn start_with_auth(root: &Path, htpasswd: &Path) -> Registry {
        let auth = format!(
            "auth:\n  htpasswd:\n    realm: ferry-e2e\n    path: {}\n",
            htpasswd.display()
        );
        Registry::start_with(root, &auth)
    }

    /// Starts a registry that serves TLS with `cert`/`key` (signed by the suite's CA, see
    /// `pki`) and requires basic authentication against `htpasswd`.
    pub fn start_with_tls_and_auth(root: &Path, htpasswd: &Path) -> Registry {
        let pki = super::pki::pki();
        let config = format!(
            "  tls:\n    certificate: {}\n    key: {}\n\
             auth:\n  htpasswd:\n    realm: ferry-e2e\n    path: {}\n",
            pki.cert.display(),
            pki.key.display(),
            htpasswd.display()
        );
        Registry::start_with(root, &config)
    }

    fn start_with(root: &Path, extra_config: &str) -> Registry {
        let tls = extra_config.starts_with("  tls:");
        let storage = root.join("registry");
        std::fs::create_dir_all(&storage).expect("create registry storage");
        let mut failures = Vec::new();
        for attempt in 0..5 {
            let port = free_port();
            let host = format!("127.0.0.1:{port}");
            let config = root.join(format!("registry-{attempt}.yml"));
            let log = root.join(format!("registry-{attempt}.log"));
            let pidfile = root.join(format!("registry-{attempt}.pid"));
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\n\
                     log:\n  level: error\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {host}\n{extra_config}",
                    storage.display()
                ),
            )
            .expect("write registry config");
            let mut watchdog = Command::new("sh")
                .arg("-c")
                .arg(WATCHDOG)
                .arg("registry-watchdog")
                .arg(&config)
                .arg(&log)
                .arg(&pidfile)
                .arg(std::process::id().to_string())
                .arg(root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start docker-registry (run scripts/setup.sh)");
            let registry = Registry { host };
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let ready = if tls {
                    registry.is_ready_over_tls()
                } else {
                    registry.is_ready()
                };
                if ready {
                    // The watchdog keeps running: it stops the registry when we exit.
                    drop(watchdog);
                    return registry;
                }
                let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                let exited = watchdog.try_wait().ok().flatten().is_some();
                if exited
                    || log_text.contains("address already in use")
                    || Instant::now() > deadline
                {
                    if let Ok(pid) = std::fs::read_to_string(&pidfile) {
                        let _ = Command::new("kill").arg(pid.trim()).status();
                    }
                    let _ = watchdog.kill();
                    let _ = watchdog.wait();
                    failures.push(format!("{}: {log_text}", registry.host));
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("docker-registry did not start:\n{}", failures.join("\n"));
    }

    /// Whether a registry answers `GET /v2/` over TLS with a certificate of the suite's CA.
    fn is_ready_over_tls(&self) -> bool {
        let out = super::context::run_program(
            "curl",
            [
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                super::context::p(&super::pki::pki().ca),
                &format!("https://{}/v2/", self.host),
            ],
        );
        matches!(out.stdout.trim(), "200" | "401")
    }

    /// Whether a distribution registry (not some other server) answers `GET /v2/`.
    fn is_ready(&self) -> bool {
        match http::request(&self.host, "GET", "/v2/", &[], b"") {
            Ok(r) => {
                matches!(r.status, 200 | 401)
                    && r.header("docker-distribution-api-version").is_some()
            }
            Err(_) => false,
        }
    }

    /// Every repository (from `/v2/_catalog`, all pages) whose name starts with `prefix/`.
    pub fn repositories(&self, prefix: &str) -> Vec<String> {
        let mut repos = Vec::new();
        let mut next = Some("/v2/_catalog?n=1000".to_string());
        while let Some(path) = next.take() {
            let r = http::get(&self.host, &path);
            assert_eq!(r.status, 200, "catalog: {}", r.text());
            let json: serde_json::Value = r.json();
            if let Some(list) = json["repositories"].as_array() {
                repos.extend(list.iter().filter_map(|v| v.as_str().map(String::from)));
            }
            // `Link: </v2/_catalog?last=x&n=1000>; rel="next"`
            next = r
                .header("link")
                .and_then(|l| l.strip_prefix('<'))
                .and_then(|l| l.split_once('>'))
                .map(|(target, _)| target.to_string());
        }
        let wanted = format!("{prefix}/");
        repos.retain(|r| r.starts_with(&wanted));
        repos.sort();
        repos
    }

    /// The tags of a repository (empty when it has none or does not exist).
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let r = http::get(&self.host, &format!("/v2/{repo}/tags/list"));
        if r.status == 404 {
            return Vec::new();
        }
        assert_eq!(r.status, 200, "tags of {repo}: {}", r.text());
        let json: serde_json::Value = r.json();
        let mut tags: Vec<String> = json["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// The digest a manifest reference (tag or digest) resolves to, if it exists.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Option<String> {
        let r = http::request(
            &self.host,
            "HEAD",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", http::MANIFEST_ACCEPT)],
            b"",
        )
        .expect("HEAD manifest");
        (r.status == 200).then(|| {
            r.header("docker-content-digest")
                .unwrap_or_default()
                .to_string()
        })
    }

    /// Repositories, tags and the digests they point at, under `prefix/`.
    pub fn snapshot(&self, prefix: &str) -> RegistrySnapshot {
        self.repositories(prefix)
            .into_iter()
            .map(|repo| {
                let tags = self
                    .tags(&repo)
                    .into_iter()
                    .map(|t| {
                        let d = self.manifest_digest(&repo, &t).unwrap_or_default();
                        (t, d)
                    })
                    .collect();
                (repo, tags)
            })
            .collect()
    }
}
