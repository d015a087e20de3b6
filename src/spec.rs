//! The spec file (`ferry.toml`): what to carry. Parsed strictly; every mistake is exit 2
//! and names the file and the line. The top level holds `name` and one array of tables
//! per ecosystem (`[[image]]`, `[[python]]`, ...); each entry is checked by its
//! ecosystem (see `ecosystems`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::artifact::Labels;
use crate::ecosystems::{self, Labelled};
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
    #[error("spec {}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        /// 1-based, when the mistake is in one place.
        line: Option<usize>,
        /// The section of the entry the mistake is in (`image`, ...), if any.
        section: Option<&'static str>,
        message: String,
    },
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
            SpecError::Invalid {
                section: Some(section),
                ..
            } => Some(format!(
                "an entry of [[{section}]] takes the keys {}, and `labels`; see the spec file format in the README",
                ecosystems::keys(section)
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            SpecError::Parse { .. } | SpecError::Invalid { .. } => Some(format!(
                "see the spec file format in the README (keys: name, then entries of {})",
                sections()
            )),
            SpecError::Read { .. } => None,
        }
    }
}

fn sections() -> String {
    ecosystems::SECTIONS
        .iter()
        .map(|s| format!("[[{s}]]"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A validated spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The bundle series; sequence numbers count per series.
    pub name: String,
    /// Every entry, grouped by ecosystem in the order of `ecosystems::SECTIONS`, in file
    /// order within each.
    pub entries: Vec<Labelled>,
}

/// A top-level value: `name`, or the entries of one section, each with its span.
enum TopValue {
    Name(String),
    Entries(Vec<toml::Spanned<toml::Table>>),
    Other(&'static str),
}

impl TopValue {
    fn what(&self) -> &'static str {
        match self {
            TopValue::Name(_) => "a string",
            TopValue::Entries(_) => "an array",
            TopValue::Other(what) => what,
        }
    }
}

impl<'de> Deserialize<'de> for TopValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of tables")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TopValue, E> {
                Ok(TopValue::Name(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TopValue, A::Error> {
                let mut out = Vec::new();
                while let Some(t) = seq.next_element::<toml::Spanned<toml::Table>>()? {
                    out.push(t);
                }
                Ok(TopValue::Entries(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopValue, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(TopValue::Other("a table"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<TopValue, E> {
                Ok(TopValue::Other("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<TopValue, E> {
                Ok(TopValue::Other("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<TopValue, E> {
                Ok(TopValue::Other("a number"))
            }
        }
        d.deserialize_any(V)
    }
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

    /// Parses spec text; relative paths in entries are taken from `base`.
    pub fn parse(path: &Path, base: &Path, text: &str) -> Result<Spec, SpecError> {
        let top: toml::Spanned<std::collections::BTreeMap<String, toml::Spanned<TopValue>>> =
            toml::from_str(text).map_err(|source| SpecError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        let line_of = |span: std::ops::Range<usize>| {
            Some(text[..span.start.min(text.len())].matches('\n').count() + 1)
        };
        let invalid = |line: Option<usize>, message: String| SpecError::Invalid {
            path: path.to_path_buf(),
            line,
            section: None,
            message,
        };
        let invalid_in =
            |section: &'static str, line: Option<usize>, message: String| SpecError::Invalid {
                path: path.to_path_buf(),
                line,
                section: Some(section),
                message,
            };
        let mut top = top.into_inner();
        let name = match top.remove("name") {
            Some(v) => {
                let line = line_of(v.span());
                match v.into_inner() {
                    TopValue::Name(n) if crate::names::valid_series_name(&n) => n,
                    TopValue::Name(n) => {
                        return Err(invalid(
                            line,
                            format!("name `{n}` must be 1-128 letters, digits, `.`, `_` or `-`"),
                        ));
                    }
                    other => {
                        return Err(invalid(
                            line,
                            format!("`name` must be a string, not {}", other.what()),
                        ));
                    }
                }
            }
            None => {
                return Err(invalid(
                    None,
                    "`name` is required: the bundle series".into(),
                ));
            }
        };
        let mut entries = Vec::new();
        for section in ecosystems::SECTIONS {
            let Some(v) = top.remove(*section) else {
                continue;
            };
            let line = line_of(v.span());
            let tables = match v.into_inner() {
                TopValue::Entries(tables) => tables,
                other => {
                    return Err(invalid(
                        line,
                        format!(
                            "`{section}` must be written as [[{section}]] entries, not {}",
                            other.what()
                        ),
                    ));
                }
            };
            for (i, table) in tables.into_iter().enumerate() {
                let line = line_of(table.span());
                let at =
                    |e: String| invalid_in(section, line, format!("[[{section}]] #{}: {e}", i + 1));
                let mut table = table.into_inner();
                let labels = match table.remove("labels") {
                    Some(v) => parse_labels(v).map_err(at)?,
                    None => Labels::new(),
                };
                let entry = ecosystems::parse_entry(section, table, base)
                    .expect("a section of the registry")
                    .map_err(at)?;
                entries.push(Labelled { entry, labels });
            }
        }
        if let Some((key, v)) = top.into_iter().next() {
            return Err(invalid(
                line_of(v.span()),
                format!(
                    "unknown key `{key}`: a spec holds `name` and entries of {}",
                    sections()
                ),
            ));
        }
        if entries.is_empty() {
            return Err(invalid(
                None,
                format!("nothing to carry: add an entry of {}", sections()),
            ));
        }
        Ok(Spec { name, entries })
    }
}

/// `labels = { classification = "internal", owner = "ml" }`: strings, checked keys.
fn parse_labels(value: toml::Value) -> Result<Labels, String> {
    let toml::Value::Table(table) = value else {
        return Err(
            "`labels` must be a table of strings, such as { classification = \"internal\" }".into(),
        );
    };
    let mut labels = Labels::new();
    for (k, v) in table {
        let toml::Value::String(v) = v else {
            return Err(format!("label `{k}` must be a string"));
        };
        crate::names::check_label(&k, &v)?;
        labels.insert(k, v);
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecosystems::Entry;
    use crate::ecosystems::image::ImageSource;

    fn parse(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(Path::new("ferry.toml"), Path::new("/base"), text)
    }

    fn line(e: SpecError) -> Option<usize> {
        match e {
            SpecError::Invalid { line, .. } => line,
            other => panic!("not an invalid spec: {other}"),
        }
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
        let images: Vec<_> = spec
            .entries
            .iter()
            .map(|e| match &e.entry {
                Entry::Image(i) => i,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].platforms[1].variant.as_deref(), Some("v8"));
        assert_eq!(
            images[1].source,
            ImageSource::Layout {
                dir: "/base/layout".into(),
                reference: "app/web:1.0".into()
            }
        );
    }

    /// The keys a hint lists are those each entry's parser takes: an unknown key's error
    /// lists the same ones.
    #[test]
    fn hints_list_the_keys_of_the_table_the_mistake_is_in() {
        for section in ecosystems::SECTIONS {
            let e = parse(&format!("name = \"a\"\n[[{section}]]\nnot-a-key = 1\n")).unwrap_err();
            let message = e.to_string();
            for key in ecosystems::keys(section) {
                assert!(
                    message.contains(&format!("`{key}`")),
                    "{section}: {key} not in {message}"
                );
            }
            let listed = message.matches('`').count() / 2;
            // The unknown key itself, then every key the parser takes.
            assert_eq!(
                listed,
                1 + ecosystems::keys(section).len(),
                "{section}: {message}"
            );
            let hint = crate::exit::Classify::hint(&e).unwrap();
            assert!(hint.contains(&format!("[[{section}]]")), "{hint}");
            for key in ecosystems::keys(section) {
                assert!(
                    hint.contains(&format!("`{key}`")),
                    "{section}: {key} not in {hint}"
                );
            }
        }
        let top = parse("name = \"a\"\n").unwrap_err();
        let hint = crate::exit::Classify::hint(&top).unwrap();
        for section in ecosystems::SECTIONS {
            assert!(hint.contains(&format!("[[{section}]]")), "{hint}");
        }
    }

    #[test]
    fn rejects_mistakes() {
        assert!(matches!(
            parse("name = \"a\"\n[[image]]\nref = \"x\"\nplatfroms = []"),
            Err(SpecError::Invalid { .. })
        ));
        assert!(matches!(
            parse("name = \"a\"\n[[image]\nref = \"x\""),
            Err(SpecError::Parse { .. })
        ));
        assert!(matches!(
            parse("name = \"a b\"\n[[image]]\nref = \"x\""),
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
        assert!(
            matches!(&ok.entries[..], [Labelled { entry: Entry::Python(p), .. }] if p.requirements.len() == 1)
        );
        let labelled = parse(
            "name = \"a\"\n[[image]]\nref = \"docker.io/a/b:1\"\nlabels = { classification = \"internal\" }\n",
        )
        .unwrap();
        assert_eq!(labelled.entries[0].labels["classification"], "internal");
        for bad in [
            "{ Bad = \"x\" }",
            "{ a = 1 }",
            "\"x\"",
            "{ a = \"x\\u0007\" }",
        ] {
            let text =
                format!("name = \"a\"\n[[image]]\nref = \"docker.io/a/b:1\"\nlabels = {bad}\n");
            assert!(
                matches!(parse(&text), Err(SpecError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn errors_name_the_line() {
        let text = "name = \"a\"\n\n[[image]]\nref = \"docker.io/library/alpine:3.20\"\n\n[[image]]\nref = \"x\"\nplatforms = [\"linux\"]\n";
        let e = parse(text).unwrap_err();
        assert!(e.to_string().starts_with("spec ferry.toml:"), "{e}");
        assert_eq!(line(e), Some(6));
        let e =
            parse("name = \"a\"\nimages = 3\n[[image]]\nref = \"docker.io/a/b:1\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown key `images`"), "{e}");
        assert_eq!(line(e), Some(2));
        let e = parse("name = \"a\"\n[image]\nref = \"docker.io/a/b:1\"\n").unwrap_err();
        assert!(e.to_string().contains("[[image]] entries"), "{e}");
    }
}
