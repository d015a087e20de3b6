//! The `[[python]]` section of a spec.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::PythonSpec;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPython {
    index_url: Option<String>,
    #[serde(default)]
    requirements: Vec<String>,
    requirements_file: Option<PathBuf>,
    python_version: Option<String>,
    #[serde(default)]
    platforms: Vec<String>,
}

pub fn parse(entry: toml::Table, base: &Path) -> Result<PythonSpec, String> {
    let raw: RawPython = entry.try_into().map_err(|e| e.to_string())?;
    let python_version = raw
        .python_version
        .ok_or("`python-version` is required (the target's, such as \"3.11\")")?;
    if raw.platforms.is_empty() {
        return Err("`platforms` is required: the target's wheel platform tags, such as [\"manylinux_2_28_x86_64\"]".into());
    }
    for p in &raw.platforms {
        super::tags::Target::new(&python_version, p)?;
    }
    let mut requirements = Vec::new();
    for r in &raw.requirements {
        requirements.push(
            super::requirements::requirement(r).map_err(|e| format!("requirement `{r}`: {e}"))?,
        );
    }
    let mut hashes = Default::default();
    if let Some(file) = &raw.requirements_file {
        let path = if file.is_absolute() {
            file.clone()
        } else {
            base.join(file)
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "pylock.toml" || (name.starts_with("pylock.") && name.ends_with(".toml")) {
            if !requirements.is_empty() {
                return Err("a pylock.toml cannot be combined with `requirements`".into());
            }
            let locked =
                super::lock::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(PythonSpec {
                index_url: raw.index_url,
                requirements,
                hashes: Default::default(),
                python_version,
                platforms: raw.platforms,
                lock: Some(locked),
            });
        }
        let (more, pins) =
            super::requirements::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if !pins.is_empty() && !requirements.is_empty() {
            return Err(
                "hash-pinned requirements files cannot be combined with `requirements`".into(),
            );
        }
        requirements.extend(more);
        hashes = pins;
    }
    if requirements.is_empty() {
        return Err("no requirements: give `requirements` or `requirements-file`".into());
    }
    if let Some(url) = &raw.index_url {
        super::index::IndexClient::new(url)?;
    }
    Ok(PythonSpec {
        index_url: raw.index_url,
        requirements,
        hashes,
        python_version,
        platforms: raw.platforms,
        lock: None,
    })
}
