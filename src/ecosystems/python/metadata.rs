//! Core metadata (`METADATA`, PEP 566/643): the requirements and Python versions of a
//! distribution, read from a PEP 658 `.metadata` file or from inside the wheel.

use std::io::Read;
use std::path::Path;

use pep440_rs::VersionSpecifiers;
use pep508_rs::Requirement;

#[derive(Debug, Clone, Default)]
pub struct CoreMetadata {
    pub requires_dist: Vec<Requirement>,
    pub requires_python: Option<VersionSpecifiers>,
}

/// Parses the header part of a METADATA file. Unparseable requirements are errors: a
/// dependency ferry cannot read is one it would silently leave behind.
pub fn parse(text: &str) -> Result<CoreMetadata, String> {
    let mut meta = CoreMetadata::default();
    for (key, value, _) in headers(text) {
        match key.as_str() {
            // Through ferry's own parser: pep508_rs panics on some names an upstream
            // may serve (see `requirements::requirement`).
            "requires-dist" => meta.requires_dist.push(
                super::requirements::requirement(&value)
                    .map_err(|e| format!("Requires-Dist `{value}`: {e}"))?,
            ),
            "requires-python" => {
                meta.requires_python = Some(
                    value
                        .parse()
                        .map_err(|e| format!("Requires-Python `{value}`: {e}"))?,
                )
            }
            _ => {}
        }
    }
    Ok(meta)
}

/// The licences core metadata declares: `License-Expression` (PEP 639) when there is
/// one, else `License` (free text: tried as an SPDX expression only when it is a short
/// single line), and every `License ::` classifier.
pub fn licences(text: &str) -> crate::licence::Found {
    let fields = headers(text);
    let mut found = crate::licence::Found::new();
    let expression = fields.iter().find(|(k, _, _)| k == "license-expression");
    match expression {
        Some((_, value, _)) => found.add(value, "License-Expression"),
        None => {
            for (_, value, folded) in fields.iter().filter(|(k, _, _)| k == "license") {
                // setuptools wrote `UNKNOWN` when a project said nothing.
                if value.eq_ignore_ascii_case("unknown") {
                    continue;
                }
                if *folded {
                    found.add_text(value, "License");
                } else {
                    found.add(value, "License");
                }
            }
        }
    }
    for (_, value, _) in fields.iter().filter(|(k, _, _)| k == "classifier") {
        if value.starts_with("License ::") {
            found.add_classifier(value);
        }
    }
    found
}

/// The headers of a METADATA file, up to the first empty line (the description): key
/// in lower case, value with continuation lines unfolded, whether it was folded.
fn headers(text: &str) -> Vec<(String, String, bool)> {
    let mut current: Option<(String, String, bool)> = None;
    let mut fields = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v, folded)) = current.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
                *folded = true;
            }
            continue;
        }
        if let Some(done) = current.take() {
            fields.push(done);
        }
        if let Some((k, v)) = line.split_once(':') {
            current = Some((k.trim().to_ascii_lowercase(), v.trim().to_string(), false));
        }
    }
    fields.extend(current);
    fields
}

/// The `*.dist-info/METADATA` of a wheel file.
pub fn from_wheel(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| format!("not a zip file: {e}"))?;
    let names: Vec<String> = (0..archive.len())
        .filter_map(|i| {
            archive
                .name_for_index(i)
                .and_then(|n| n.ok())
                .map(|n| n.to_string())
        })
        .collect();
    let name = names
        .iter()
        .find(|n| {
            n.strip_suffix("/METADATA")
                .is_some_and(|dir| dir.ends_with(".dist-info") && !dir.contains('/'))
        })
        .ok_or("the wheel has no .dist-info/METADATA")?;
    let mut entry = archive.by_name(name).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    entry
        .by_ref()
        .take(16 << 20)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_headers_only() {
        let m = super::parse(
            "Metadata-Version: 2.1\nName: fancy\nVersion: 1.0\nRequires-Dist: extradep>=1.0; extra == \"speed\"\nRequires-Dist: six\nRequires-Python: >=3.8\n\nRequires-Dist: not-a-header\n",
        )
        .unwrap();
        assert_eq!(m.requires_dist.len(), 2);
        assert_eq!(m.requires_python.unwrap().to_string(), ">=3.8");
    }

    /// What made pep508_rs panic in the `spec` fuzz target, served by an upstream in a
    /// METADATA file: an error naming the header, not a crash.
    #[test]
    fn a_requirement_pep508_rs_would_panic_on_is_an_error() {
        for bad in ["fancy[spee_]", "python-`ateutil>=2.8"] {
            let e = super::parse(&format!("Name: x\nRequires-Dist: {bad}\n")).unwrap_err();
            assert!(e.contains("Requires-Dist"), "{e}");
        }
    }

    fn licences(text: &str) -> Vec<(String, Option<String>, String)> {
        super::licences(text)
            .finish("test", &crate::reporter::Quiet)
            .into_iter()
            .map(|l| (l.declared, l.spdx, l.source))
            .collect()
    }

    #[test]
    fn licence_expression_wins_over_license() {
        let got = licences(
            "Metadata-Version: 2.4\nName: a\nLicense-Expression: mit OR Apache-2.0\nLicense: BSD\nClassifier: License :: OSI Approved :: MIT License\nClassifier: Topic :: Utilities\n\nLicense: body\n",
        );
        assert_eq!(
            got,
            vec![
                (
                    "mit OR Apache-2.0".into(),
                    Some("MIT OR Apache-2.0".into()),
                    "License-Expression".into()
                ),
                (
                    "License :: OSI Approved :: MIT License".into(),
                    Some("MIT".into()),
                    "classifier".into()
                ),
            ]
        );
    }

    #[test]
    fn license_free_text() {
        let got = licences("Name: a\nLicense: Apache 2.0\n");
        assert_eq!(
            got,
            vec![(
                "Apache 2.0".into(),
                Some("Apache-2.0".into()),
                "License".into()
            )]
        );
        // A folded licence text is recorded unfolded, never as an expression.
        let got = licences("Name: a\nLicense: MIT\n        Copyright (c) somebody\n");
        assert_eq!(
            got,
            vec![("MIT Copyright (c) somebody".into(), None, "License".into())]
        );
        let got = licences("Name: a\nLicense: MIT\n        OR Apache-2.0\n");
        assert_eq!(got[0].1, None);
        assert!(licences("Name: a\nLicense: UNKNOWN\n").is_empty());
    }
}
