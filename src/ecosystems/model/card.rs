//! The licence a model or dataset card declares: the `license:` (and `license_name:`)
//! keys of the YAML front matter of the repository's `README.md`, in the forms the hub
//! writes (`license: apache-2.0`, `license: [mit, apache-2.0]`, a `- item` list). A
//! small bounded reader of those keys alone, not a YAML parser.

use crate::licence::Found;

/// The most of a README that is read for its front matter.
pub const LIMIT: usize = 64 << 10;

/// The licences a card's front matter declares.
pub fn licences(card: &[u8]) -> Found {
    let mut found = Found::new();
    let text = String::from_utf8_lossy(&card[..card.len().min(LIMIT)]);
    let Some(front) = front_matter(&text) else {
        return found;
    };
    for value in values(&front, "license") {
        found.add(&value, "model card");
    }
    // `license: other` names its licence here; it is no SPDX id.
    for value in values(&front, "license_name") {
        found.add_text(&value, "model card license_name");
    }
    found
}

/// The lines between a leading `---` and the next `---` (or `...`).
fn front_matter(text: &str) -> Option<Vec<&str>> {
    let mut lines = text.trim_start_matches('\u{feff}').lines();
    if lines.next()?.trim_end() != "---" {
        return None;
    }
    let mut front = Vec::new();
    for line in lines {
        if matches!(line.trim_end(), "---" | "...") {
            return Some(front);
        }
        front.push(line);
    }
    // Never closed (or cut at the limit): not front matter.
    None
}

/// The values of top-level `key`: a scalar, a flow list or a block list.
fn values(front: &[&str], key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < front.len() {
        let line = front[i];
        i += 1;
        let Some(rest) = line.strip_prefix(key) else {
            continue;
        };
        let Some(rest) = rest.trim_start_matches([' ', '\t']).strip_prefix(':') else {
            continue;
        };
        let rest = strip_comment(rest).trim();
        if let Some(inner) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            out.extend(inner.split(',').map(unquote).filter(|v| !v.is_empty()));
        } else if !rest.is_empty() {
            out.push(unquote(rest));
        } else {
            while i < front.len() {
                let item = front[i].trim();
                if item.is_empty() || item.starts_with('#') {
                    i += 1;
                    continue;
                }
                let Some(v) = item.strip_prefix('-') else {
                    break;
                };
                let v = unquote(strip_comment(v));
                if !v.is_empty() {
                    out.push(v);
                }
                i += 1;
            }
        }
    }
    out
}

/// A value without a trailing ` # comment`; a quoted value ends at its closing quote.
fn strip_comment(s: &str) -> &str {
    let t = s.trim_start();
    if let Some(q) = t.chars().next().filter(|c| matches!(c, '"' | '\''))
        && let Some(end) = t[1..].find(q)
    {
        return &t[..end + 2];
    }
    match s.find(" #") {
        Some(at) => &s[..at],
        None => s,
    }
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q))
            && s.len() >= 2
        {
            return inner.to_string();
        }
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    fn got(card: &str) -> Vec<(String, Option<String>, String)> {
        super::licences(card.as_bytes())
            .finish("test", &crate::reporter::Quiet)
            .into_iter()
            .map(|l| (l.declared, l.spdx, l.source))
            .collect()
    }

    fn declared(card: &str) -> Vec<String> {
        got(card).into_iter().map(|l| l.0).collect()
    }

    #[test]
    fn hub_forms() {
        assert_eq!(
            got(
                "---\nlanguage: en\nlicense: apache-2.0\ntags:\n- bert\n---\n# Card\nlicense: mit\n"
            ),
            vec![(
                "apache-2.0".into(),
                Some("Apache-2.0".into()),
                "model card".into()
            )]
        );
        assert_eq!(
            declared("---\nlicense: [mit, 'apache-2.0']\n---\n"),
            ["mit", "apache-2.0"]
        );
        assert_eq!(
            declared("---\nlicense:\n  - mit # first\n  - \"cc-by-4.0\"\n\ndatasets:\n- x\n---\n"),
            ["mit", "cc-by-4.0"]
        );
        assert_eq!(
            got("---\nlicense: other\nlicense_name: tiny-licence\nlicense_link: LICENSE\n---\n"),
            vec![
                ("other".into(), None, "model card".into()),
                (
                    "tiny-licence".into(),
                    None,
                    "model card license_name".into()
                ),
            ]
        );
        assert_eq!(declared("---\nlicense: \"mit\"  # why not\n---\n"), ["mit"]);
    }

    #[test]
    fn what_is_not_front_matter_declares_nothing() {
        // No front matter; not closed; a nested key; a key that only starts alike.
        assert!(declared("# Card\nlicense: mit\n").is_empty());
        assert!(declared("---\nlicense: mit\n").is_empty());
        assert!(declared("---\nextra:\n  license: mit\nlicenses_x: y\n---\n").is_empty());
        // Front matter cut by the read limit is not believed.
        let long = format!(
            "---\n{}license: mit\n---\n",
            "a: b\n".repeat(super::LIMIT / 5)
        );
        assert!(declared(&long).is_empty());
    }
}
