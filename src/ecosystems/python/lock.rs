//! `pylock.toml` (PEP 751): a lock honoured exactly. No resolution: for each target,
//! the locked packages whose marker applies, and of each the listed wheels the target
//! can install, fetched from their URLs and checked against the locked sha256.

use std::collections::HashMap;

use pep440_rs::Version;
use pep508_rs::{PackageName, Requirement};
use serde::Deserialize;

use super::index::IndexFile;
use super::tags::{Dist, Target, parse_filename};
use crate::digest::Digest;

#[derive(Debug, Clone)]
pub struct Locked {
    pub name: PackageName,
    pub version: Option<Version>,
    /// The package's environment marker, as a requirement on itself.
    marker: Option<Requirement>,
    pub index: Option<String>,
    pub wheels: Vec<IndexFile>,
}

#[derive(Deserialize)]
struct PyLock {
    #[serde(rename = "lock-version")]
    lock_version: String,
    #[serde(default)]
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: Option<String>,
    marker: Option<String>,
    index: Option<String>,
    #[serde(default)]
    wheels: Vec<Wheel>,
}

#[derive(Deserialize)]
struct Wheel {
    name: Option<String>,
    url: Option<String>,
    path: Option<String>,
    #[serde(default)]
    hashes: HashMap<String, String>,
}

/// Parses a lock; every wheel must have a URL and a sha256.
pub fn parse(text: &str) -> Result<Vec<Locked>, String> {
    let lock: PyLock = toml::from_str(text).map_err(|e| e.to_string())?;
    if !lock.lock_version.starts_with("1.") {
        return Err(format!(
            "lock-version {} is not one ferry reads (1.x)",
            lock.lock_version
        ));
    }
    let mut out = Vec::new();
    for p in lock.packages {
        let name = PackageName::new(p.name.clone()).map_err(|e| e.to_string())?;
        let marker = match &p.marker {
            Some(m) => Some(
                format!("{name} ; {m}")
                    .parse::<Requirement>()
                    .map_err(|e| format!("{}: marker: {e}", p.name))?,
            ),
            None => None,
        };
        let mut wheels = Vec::new();
        for w in &p.wheels {
            let Some(url) = &w.url else {
                return Err(format!(
                    "{}: wheel {} has no `url` (local `path` wheels are not supported)",
                    p.name,
                    w.name.as_deref().or(w.path.as_deref()).unwrap_or("?")
                ));
            };
            let url = reqwest::Url::parse(url)
                .map_err(|e| format!("{}: wheel URL {url}: {e}", p.name))?;
            let filename = w
                .name
                .clone()
                .or_else(|| {
                    url.path_segments()
                        .and_then(|mut s| s.next_back())
                        .map(str::to_string)
                })
                .ok_or_else(|| format!("{}: a wheel has no file name", p.name))?;
            let dist = parse_filename(&filename)
                .filter(|d| matches!(d, Dist::Wheel(_)))
                .ok_or_else(|| format!("{}: `{filename}` is not a wheel", p.name))?;
            let sha256 = w
                .hashes
                .get("sha256")
                .and_then(|h| Digest::from_hex(&h.to_ascii_lowercase()).ok())
                .ok_or_else(|| format!("{}: wheel {filename} has no sha256 hash", p.name))?;
            wheels.push(IndexFile {
                filename,
                url,
                dist,
                sha256: Some(sha256),
                requires_python: None,
                yanked: false,
                metadata: None,
            });
        }
        let version = p
            .version
            .as_deref()
            .map(|v| {
                v.parse::<Version>()
                    .map_err(|e| format!("{}: version {v}: {e}", p.name))
            })
            .transpose()?;
        out.push(Locked {
            name,
            version,
            marker,
            index: p.index,
            wheels,
        });
    }
    Ok(out)
}

impl Locked {
    /// Whether the package is installed on the target at all.
    pub fn applies(&self, target: &Target) -> bool {
        self.marker
            .as_ref()
            .is_none_or(|m| m.evaluate_markers(&target.markers, &[]))
    }

    /// The locked wheels the target can install.
    pub fn wheels_for(&self, target: &Target) -> Vec<IndexFile> {
        self.wheels
            .iter()
            .filter(|w| matches!(&w.dist, Dist::Wheel(n) if n.compatible(target)))
            .cloned()
            .collect()
    }

    pub fn version_of(&self, files: &[IndexFile]) -> Option<Version> {
        self.version
            .clone()
            .or_else(|| files.first().map(|f| f.dist.version().clone()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_a_lock() {
        let hex = "b".repeat(64);
        let text = format!(
            r#"lock-version = "1.0"
created-by = "test"
[[packages]]
name = "six"
version = "1.16.0"
[[packages.wheels]]
url = "http://127.0.0.1:1/files/six-1.16.0-py2.py3-none-any.whl"
hashes = {{ sha256 = "{hex}" }}
[[packages]]
name = "windep"
version = "1.0"
marker = "sys_platform == 'win32'"
"#
        );
        let locked = super::parse(&text).unwrap();
        let linux = super::Target::new("3.11", "manylinux_2_28_x86_64").unwrap();
        assert!(locked[0].applies(&linux));
        assert_eq!(locked[0].wheels_for(&linux).len(), 1);
        assert!(!locked[1].applies(&linux));
        assert!(
            super::parse(&text.replace(&format!("hashes = {{ sha256 = \"{hex}\" }}"), "")).is_err()
        );
    }
}
