//! `requirements.txt` files, and hash-pinned requirements honoured exactly: no
//! resolution, and only files whose sha256 is one of the pinned hashes.

use std::collections::BTreeMap;

use pep508_rs::{PackageName, Requirement, VersionOrUrl};

use super::PythonError;
use super::index::IndexClient;
use super::resolve::{ResolveError, Selection};
use super::tags::{Dist, Target};
use crate::digest::Digest;

/// Requirements and their `--hash=sha256:` pins, from the text of a requirements file.
/// Hash pins per project.
pub type Pins = BTreeMap<PackageName, Vec<Digest>>;

pub fn parse(text: &str) -> Result<(Vec<Requirement>, Pins), String> {
    let mut requirements = Vec::new();
    let mut hashes = BTreeMap::new();
    let joined = text.replace("\\\r\n", " ").replace("\\\n", " ");
    for (i, raw) in joined.lines().enumerate() {
        let line = match raw.find(" #").or(if raw.trim_start().starts_with('#') {
            Some(0)
        } else {
            None
        }) {
            Some(pos) => &raw[..pos],
            None => raw,
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('-') {
            return Err(format!(
                "line {}: option `{line}` is not supported in a ferry requirements file (give index URLs in the spec)",
                i + 1
            ));
        }
        let mut requirement_text = Vec::new();
        let mut pins = Vec::new();
        for word in line.split_whitespace() {
            if let Some(h) = word.strip_prefix("--hash=") {
                let hex = h.strip_prefix("sha256:").ok_or_else(|| {
                    format!(
                        "line {}: only sha256 hashes are supported, not `{h}`",
                        i + 1
                    )
                })?;
                pins.push(Digest::from_hex(hex).map_err(|e| format!("line {}: {e}", i + 1))?);
            } else {
                requirement_text.push(word);
            }
        }
        let requirement =
            requirement(&requirement_text.join(" ")).map_err(|e| format!("line {}: {e}", i + 1))?;
        if !pins.is_empty() {
            hashes
                .entry(requirement.name.clone())
                .or_insert_with(Vec::new)
                .extend(pins);
        }
        requirements.push(requirement);
    }
    if !hashes.is_empty()
        && let Some(r) = requirements.iter().find(|r| !hashes.contains_key(&r.name))
    {
        return Err(format!(
            "`{r}` has no --hash while others do: pin every requirement with its hashes, as pip's --require-hashes mode does"
        ));
    }
    Ok((requirements, hashes))
}

pub enum PinError {
    Resolve(ResolveError),
    Python(PythonError),
}

impl From<super::index::IndexError> for PinError {
    fn from(e: super::index::IndexError) -> Self {
        PinError::Resolve(ResolveError::Index(e))
    }
}

impl From<ResolveError> for PinError {
    fn from(e: ResolveError) -> Self {
        PinError::Resolve(e)
    }
}

/// For every pinned requirement that applies to the target: the compatible files of the
/// pinned version whose sha256 is pinned. Yanked files are allowed: they are pinned.
pub async fn select_pinned(
    client: &IndexClient,
    target: &Target,
    requirements: &[Requirement],
    hashes: &BTreeMap<PackageName, Vec<Digest>>,
) -> Result<Selection, PinError> {
    let mut out = Selection::new();
    for r in requirements
        .iter()
        .filter(|r| r.evaluate_markers(&target.markers, &[]))
    {
        let version = match &r.version_or_url {
            Some(VersionOrUrl::VersionSpecifier(s))
                if s.len() == 1
                    && matches!(
                        s[0].operator(),
                        pep440_rs::Operator::Equal | pep440_rs::Operator::ExactEqual
                    ) =>
            {
                s[0].version().clone()
            }
            _ => return Err(PinError::Python(PythonError::NotPinned(r.to_string()))),
        };
        let pins = &hashes[&r.name];
        let page = client.project(&r.name).await?;
        let files: Vec<_> = page
            .iter()
            .filter(|f| matches!(&f.dist, Dist::Wheel(w) if w.version == version && w.compatible(target)))
            .filter(|f| f.sha256.is_some_and(|h| pins.contains(&h)))
            .cloned()
            .collect();
        if files.is_empty() {
            return Err(PinError::Python(PythonError::PinnedHashMissing {
                project: r.name.to_string(),
                version: version.to_string(),
                target: target.to_string(),
            }));
        }
        out.insert(r.name.clone(), (version, files));
    }
    Ok(out)
}

/// Parses one PEP 508 requirement. A name or an extra that ends in `-`, `.` or `_` is
/// refused here: pep508_rs 0.9.2 panics on it when another character follows instead of
/// returning its error (found by the `spec` fuzz target: `python-`ateutil` for a name,
/// `fancy[spee_]` for an extra).
pub fn requirement(text: &str) -> Result<Requirement, String> {
    let text_start = text.trim_start();
    let (name, rest) = text_start.split_at(name_len(text_start));
    if name.ends_with(['-', '.', '_']) {
        return Err(format!(
            "`{name}` is not a package name: a name ends in a letter or digit"
        ));
    }
    if let Some(extras) = rest.trim_start().strip_prefix('[') {
        let extras = extras.split(']').next().unwrap_or(extras);
        for extra in extras.split(',') {
            let extra = extra.trim();
            let (part, _) = extra.split_at(name_len(extra));
            if part.ends_with(['-', '.', '_']) {
                return Err(format!(
                    "`{part}` is not an extra's name: a name ends in a letter or digit"
                ));
            }
        }
    }
    text.parse::<Requirement>().map_err(|e| e.to_string())
}

/// How many bytes of `s` a PEP 508 name could take: letters, digits, `-`, `.`, `_`.
fn name_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        .unwrap_or(s.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_hash_pins() {
        let hex = "a".repeat(64);
        let (reqs, hashes) = super::parse(&format!(
            "# pinned\nsix==1.16.0 \\\n    --hash=sha256:{hex}\n"
        ))
        .unwrap();
        assert_eq!(reqs.len(), 1);
        assert_eq!(hashes.values().next().unwrap().len(), 1);
        assert!(super::parse(&format!("six==1.16.0 --hash=sha256:{hex}\nattrs\n")).is_err());
        assert!(super::parse("-r other.txt").is_err());
        let (reqs, hashes) =
            super::parse("python-dateutil>=2.8  # why\nfancy[speed]; python_version >= '3.8'\n")
                .unwrap();
        assert_eq!(reqs.len(), 2);
        assert!(hashes.is_empty());
    }

    /// Found by the `spec` fuzz target: pep508_rs panicked on these.
    #[test]
    fn a_name_ending_in_punctuation_is_an_error_not_a_panic() {
        use super::{parse, requirement};
        for text in [
            "python-`ateutil>=2.8",
            "six.!",
            "six_ ==1",
            "a-",
            "fancy[spee_]; python_version >= '3.8'",
            "fancy[a, b-]",
            "fancy [ok,spee.x_ ]",
        ] {
            assert!(requirement(text).is_err(), "{text}");
        }
        assert!(requirement("python-dateutil>=2.8").is_ok());
        assert!(requirement("fancy[speed, extra-two]; python_version >= '3.8'").is_ok());
        assert!(requirement("fancy [speed]").is_ok());
        assert!(requirement("  six ==1.16; python_version >= '3.8'").is_ok());
        assert!(parse("six-`x\n").is_err());
    }
}
