//! The spec file (`ferry.toml`): what to carry. Parsed strictly; every mistake is exit 2.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::exit::{Classify, ExitStatus};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read spec {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spec {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("spec {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Classify for SpecError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            SpecError::Read { .. } => ExitStatus::Error,
            _ => ExitStatus::Usage,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            SpecError::Parse { .. } | SpecError::Invalid { .. } => Some(
                "see the spec file format in the README (keys: name, [[image]] ref, platforms)"
                    .into(),
            ),
            SpecError::Read { .. } => None,
        }
    }
}

/// A validated spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The bundle series; sequence numbers count per series.
    pub name: String,
    pub images: Vec<ImageSpec>,
    pub python: Vec<crate::python::PythonSpec>,
    pub models: Vec<crate::models::ModelSpec>,
    pub conda: Vec<crate::conda::CondaSpec>,
}

#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub source: ImageSource,
    /// Empty: every platform of an index.
    pub platforms: Vec<Platform>,
    /// The repository path the image is carried as (default: the source's path).
    pub repository: Option<String>,
    /// Bring signatures, attestations and SBOMs attached to the image.
    pub referrers: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// `registry/path:tag` or `registry/path@sha256:...`, as Docker names them.
    Registry(String),
    /// `oci:DIR:REF`: an OCI image layout on disk, `REF` its `ref.name` annotation.
    Layout { dir: PathBuf, reference: String },
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSource::Registry(r) => f.write_str(r),
            ImageSource::Layout { dir, reference } => {
                write!(f, "oci:{}:{}", dir.display(), reference)
            }
        }
    }
}

/// `os/arch[/variant]`, as platforms are written on the command line of every OCI tool.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Option<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            return None;
        }
        Some(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// Whether an index entry's platform is what this one asks for. A request without a
    /// variant matches every variant.
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == arch
            && (self.variant.is_none() || self.variant.as_deref() == variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    #[serde(default)]
    image: Vec<RawImage>,
    #[serde(default)]
    python: Vec<RawPython>,
    #[serde(default)]
    conda: Vec<RawConda>,
    #[serde(default)]
    model: Vec<RawModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    platforms: Vec<String>,
    repository: Option<String>,
    #[serde(default = "yes")]
    referrers: bool,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    repo: String,
    #[serde(default = "main")]
    revision: String,
    endpoint: Option<String>,
    #[serde(default)]
    files: Vec<String>,
    #[serde(rename = "type", default = "model")]
    kind: String,
}

fn main() -> String {
    "main".into()
}

fn model() -> String {
    "model".into()
}

fn parse_model(raw: RawModel) -> Result<crate::models::ModelSpec, String> {
    let repo = crate::names::HubRepoId::new(raw.repo.as_str()).map_err(|e| {
        format!(
            "repo `{}` is not a hub repository id such as org/name ({})",
            raw.repo, e.reason
        )
    })?;
    let revision = crate::names::Revision::new(raw.revision.as_str()).map_err(|e| {
        format!(
            "revision `{}` is not a branch, tag or commit ({})",
            raw.revision, e.reason
        )
    })?;
    let dataset = match raw.kind.as_str() {
        "model" => false,
        "dataset" => true,
        other => return Err(format!("type `{other}` is not `model` or `dataset`")),
    };
    let files = raw
        .files
        .iter()
        .map(|f| glob::Pattern::new(f).map_err(|e| format!("files pattern `{f}`: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(e) = &raw.endpoint {
        crate::models::hub::Hub::new(e, dataset)?;
    }
    Ok(crate::models::ModelSpec {
        repo,
        revision,
        endpoint: raw.endpoint,
        files,
        dataset,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConda {
    channel: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    specs: Vec<String>,
    #[serde(default)]
    platforms: Vec<String>,
    #[serde(rename = "lock-file")]
    lock_file: Option<PathBuf>,
}

fn parse_conda(raw: RawConda, base: &Path) -> Result<crate::conda::CondaSpec, String> {
    if let Some(file) = &raw.lock_file {
        if !raw.specs.is_empty() {
            return Err("`lock-file` is honoured exactly: leave `specs` out".into());
        }
        let path = if file.is_absolute() {
            file.clone()
        } else {
            base.join(file)
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let lock =
            crate::conda::parse_explicit(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let platforms = crate::conda::parse_platforms(&raw.platforms)?;
        return Ok(crate::conda::CondaSpec {
            channels: Vec::new(),
            specs: Vec::new(),
            platforms,
            lock: Some(lock),
        });
    }
    let names: Vec<String> = raw.channel.into_iter().chain(raw.channels).collect();
    if names.is_empty() {
        return Err("`channel` (or `channels`, in priority order) is required".into());
    }
    if raw.specs.is_empty() {
        return Err("`specs` is required, such as [\"python 3.11.*\"]".into());
    }
    if raw.platforms.is_empty() {
        return Err("`platforms` is required: the target's subdirs, such as [\"linux-64\"] (noarch always comes along)".into());
    }
    let channels = names
        .iter()
        .map(|c| crate::conda::channel_url(c))
        .collect::<Result<Vec<_>, _>>()?;
    let specs = crate::conda::parse_specs(&raw.specs)?;
    let platforms = crate::conda::parse_platforms(&raw.platforms)?;
    Ok(crate::conda::CondaSpec {
        channels,
        specs,
        platforms,
        lock: None,
    })
}

fn yes() -> bool {
    true
}

impl Spec {
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Spec::parse(path, base, &text)
    }

    /// Parses spec text; relative `oci:` paths are taken from `base`.
    pub fn parse(path: &Path, base: &Path, text: &str) -> Result<Spec, SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|source| SpecError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| SpecError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let conda = raw
            .conda
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                parse_conda(c, base).map_err(|e| invalid(format!("[[conda]] #{}: {e}", i + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !valid_series_name(&raw.name) {
            return Err(invalid(format!(
                "name `{}` must be 1-128 letters, digits, `.`, `_` or `-`",
                raw.name
            )));
        }
        if raw.image.is_empty() && raw.python.is_empty() && raw.model.is_empty() && conda.is_empty()
        {
            return Err(invalid(
                "nothing to carry: add an [[image]], [[python]] or [[model]] entry".into(),
            ));
        }
        let models = raw
            .model
            .into_iter()
            .enumerate()
            .map(|(i, m)| parse_model(m).map_err(|e| invalid(format!("[[model]] #{}: {e}", i + 1))))
            .collect::<Result<Vec<_>, _>>()?;
        let python = raw
            .python
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                parse_python(p, base).map_err(|m| invalid(format!("[[python]] #{}: {m}", i + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut images = Vec::new();
        for (i, img) in raw.image.into_iter().enumerate() {
            let n = i + 1;
            let source = parse_source(&img.reference, base).ok_or_else(|| {
                invalid(format!(
                    "image #{n}: `{}` is not an image reference",
                    img.reference
                ))
            })?;
            let platforms = img
                .platforms
                .iter()
                .map(|p| {
                    Platform::parse(p).ok_or_else(|| {
                        invalid(format!(
                            "image #{n}: platform `{p}` is not os/arch[/variant]"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(repo) = &img.repository
                && !crate::oci::valid_repository(repo)
            {
                return Err(invalid(format!(
                    "image #{n}: repository `{repo}` is not a valid repository path"
                )));
            }
            images.push(ImageSpec {
                source,
                platforms,
                repository: img.repository,
                referrers: img.referrers,
            });
        }
        Ok(Spec {
            name: raw.name,
            images,
            python,
            models,
            conda,
        })
    }
}

fn parse_python(raw: RawPython, base: &Path) -> Result<crate::python::PythonSpec, String> {
    let python_version = raw
        .python_version
        .ok_or("`python-version` is required (the target's, such as \"3.11\")")?;
    if raw.platforms.is_empty() {
        return Err("`platforms` is required: the target's wheel platform tags, such as [\"manylinux_2_28_x86_64\"]".into());
    }
    for p in &raw.platforms {
        crate::python::tags::Target::new(&python_version, p)?;
    }
    let mut requirements = Vec::new();
    for r in &raw.requirements {
        requirements.push(
            r.parse::<pep508_rs::Requirement>()
                .map_err(|e| format!("requirement `{r}`: {e}"))?,
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
            let locked = crate::python::lock::parse(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(crate::python::PythonSpec {
                index_url: raw.index_url,
                requirements,
                hashes: Default::default(),
                python_version,
                platforms: raw.platforms,
                lock: Some(locked),
            });
        }
        let (more, pins) = crate::python::requirements::parse(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
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
        crate::python::index::IndexClient::new(url)?;
    }
    Ok(crate::python::PythonSpec {
        index_url: raw.index_url,
        requirements,
        hashes,
        python_version,
        platforms: raw.platforms,
        lock: None,
    })
}

pub fn valid_series_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn parse_source(reference: &str, base: &Path) -> Option<ImageSource> {
    if let Some(rest) = reference.strip_prefix("oci:") {
        let (dir, r) = rest.split_once(':')?;
        if dir.is_empty() || r.is_empty() {
            return None;
        }
        let dir = Path::new(dir);
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            base.join(dir)
        };
        return Some(ImageSource::Layout {
            dir,
            reference: r.to_string(),
        });
    }
    let reference = reference.strip_prefix("docker://").unwrap_or(reference);
    oci_client::Reference::try_from(reference).ok()?;
    Some(ImageSource::Registry(reference.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(Path::new("ferry.toml"), Path::new("/base"), text)
    }

    #[test]
    fn parses_images() {
        let spec = parse(
            r#"name = "ml"
[[image]]
ref = "docker.io/library/alpine:3.20"
platforms = ["linux/amd64", "linux/arm64/v8"]
[[image]]
ref = "oci:layout:app/web:1.0"
"#,
        )
        .unwrap();
        assert_eq!(spec.images.len(), 2);
        assert_eq!(spec.images[0].platforms[1].variant.as_deref(), Some("v8"));
        assert_eq!(
            spec.images[1].source,
            ImageSource::Layout {
                dir: "/base/layout".into(),
                reference: "app/web:1.0".into()
            }
        );
    }

    #[test]
    fn rejects_mistakes() {
        assert!(matches!(
            parse("name = \"a\"\n[[image]]\nref = \"x\"\nplatfroms = []"),
            Err(SpecError::Parse { .. })
        ));
        assert!(matches!(
            parse("name = \"a b\"\n[[image]]\nref = \"x\""),
            Err(SpecError::Invalid { .. })
        ));
        assert!(matches!(
            parse("name = \"a\"\n[[image]]\nref = \"x\"\nplatforms = [\"linux\"]"),
            Err(SpecError::Invalid { .. })
        ));
        assert!(matches!(
            parse("name = \"a\""),
            Err(SpecError::Invalid { .. })
        ));
        assert!(matches!(
            parse("name = \"a\"\n[[python]]\nrequirements = []"),
            Err(SpecError::Invalid { .. })
        ));
        assert!(matches!(
            parse("name = \"a\"\n[[conda]]\nspecs = []"),
            Err(SpecError::Invalid { .. })
        ));
        let ok = parse(
            "name = \"a\"\n[[python]]\nrequirements = [\"six==1.16.0\"]\npython-version = \"3.11\"\nplatforms = [\"manylinux_2_28_x86_64\"]",
        )
        .unwrap();
        assert_eq!(ok.python[0].requirements.len(), 1);
    }
}
