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
    let mut current: Option<(String, String)> = None;
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = current.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some(done) = current.take() {
            fields.push(done);
        }
        if let Some((k, v)) = line.split_once(':') {
            current = Some((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    fields.extend(current);
    for (key, value) in fields {
        match key.as_str() {
            "requires-dist" => meta.requires_dist.push(
                value
                    .parse()
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
}
