//! Licence declarations as upstreams write them, made safe to record and, where they
//! are or plainly name one, normalised to an SPDX expression.
//!
//! What an upstream declares is recorded verbatim (trimmed), but only when it passes
//! `names::check_licence`: these strings come from hostile upstreams and end up in the
//! signed manifest, policies and HTML reports, so a declaration with control characters
//! or of more than [`MAX_LEN`] characters is dropped with a warning, never truncated into
//! something the upstream did not say, and never a reason to fail a pull.
//!
//! `spdx` is set only when the declaration is an SPDX expression (identifiers matched
//! case-insensitively, as the SPDX specification says they are; deprecated bare GNU ids
//! such as `GPL-2.0` written as the `-only` id the list says they mean), or is one of a
//! few unambiguous spellings (`Apache 2.0`, `MIT License`, `BSD 3-Clause`). Nothing is
//! guessed: `BSD License`, `GPL` or `LGPLv2` (2.0 or 2.1?) stay verbatim with no `spdx`.
//! The `spdx` crate's imprecise-name mode is not used for that reason: it maps `bsd` to
//! BSD-2-Clause, `gpl` to GPL-2.0-only, and matches names by prefix.

use crate::artifact::Licence;
use crate::reporter::Reporter;

/// The longest declaration recorded, in characters (as `names::check_licence` allows).
pub const MAX_LEN: usize = 1024;
/// The longest free text tried as an SPDX expression.
const MAX_EXPRESSION: usize = 256;

/// The licences found for one artifact, deduplicated, with what had to be dropped.
#[derive(Debug, Default)]
pub struct Found {
    licences: Vec<Licence>,
    dropped: Vec<String>,
}

impl Found {
    pub fn new() -> Found {
        Found::default()
    }

    /// Adds a declaration found at `source`, normalised when it is an SPDX expression.
    pub fn add(&mut self, declared: &str, source: &str) {
        let spdx = spdx_of(declared.trim());
        self.push(declared, spdx, source);
    }

    /// Adds free text that is no candidate expression (a licence text over several lines).
    pub fn add_text(&mut self, declared: &str, source: &str) {
        self.push(declared, None, source);
    }

    /// Adds a Python trove classifier (`License :: OSI Approved :: MIT License`).
    pub fn add_classifier(&mut self, classifier: &str) {
        let spdx = classifier_spdx(classifier).map(String::from);
        self.push(classifier, spdx, "classifier");
    }

    /// Adds what another `Found` holds (another wheel of the same release).
    pub fn extend(&mut self, other: Found) {
        for l in other.licences {
            self.keep(l);
        }
        for d in other.dropped {
            if !self.dropped.contains(&d) {
                self.dropped.push(d);
            }
        }
    }

    fn push(&mut self, declared: &str, spdx: Option<String>, source: &str) {
        match record(declared, spdx, source) {
            Ok(None) => {}
            Ok(Some(l)) => self.keep(l),
            Err(reason) => {
                if !self.dropped.contains(&reason) {
                    self.dropped.push(reason);
                }
            }
        }
    }

    /// Keeps a declaration unless the same text is already kept (from any source: the
    /// first one found is named).
    fn keep(&mut self, l: Licence) {
        if !self
            .licences
            .iter()
            .any(|k| k.declared == l.declared && k.spdx == l.spdx)
        {
            self.licences.push(l);
        }
    }

    /// The licences, after a warning through `reporter` for each declaration of `what`
    /// that was dropped.
    pub fn finish(self, what: &str, reporter: &dyn Reporter) -> Vec<Licence> {
        for reason in &self.dropped {
            reporter.line(&format!(
                "warning: {what}: a licence declaration is not recorded: {reason}"
            ));
        }
        self.licences
    }

    #[cfg(test)]
    fn parts(self) -> (Vec<Licence>, Vec<String>) {
        (self.licences, self.dropped)
    }
}

/// A declaration as it is recorded: `Ok(None)` when there is nothing to record (empty),
/// an error (saying why, without quoting the hostile text in full) when it cannot be.
pub fn record(
    declared: &str,
    spdx: Option<String>,
    source: &str,
) -> Result<Option<Licence>, String> {
    let declared = declared.trim();
    if declared.is_empty() {
        return Ok(None);
    }
    let chars = declared.chars().count();
    if chars > MAX_LEN {
        return Err(format!(
            "its {source} is {chars} characters long (at most {MAX_LEN} are kept)"
        ));
    }
    if declared.chars().any(crate::names::is_deceptive) {
        return Err(format!(
            "its {source} {:?} holds control or invisible characters",
            preview(declared)
        ));
    }
    let l = Licence {
        declared: declared.to_string(),
        spdx,
        source: source.to_string(),
    };
    crate::names::check_licence(&l)?;
    Ok(Some(l))
}

/// The first characters of `s`, for a message about it.
fn preview(s: &str) -> String {
    let mut p: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        p.push_str("...");
    }
    p
}

/// The canonical SPDX expression `text` is, or plainly names; `None` otherwise.
pub fn spdx_of(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_EXPRESSION || text.contains('\n') {
        return None;
    }
    let folded = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    if let Some((_, id)) = SPELLINGS.iter().find(|(s, _)| *s == folded) {
        return Some((*id).to_string());
    }
    let canonical = canonical_expression(text)?;
    let mode = spdx::ParseMode {
        allow_deprecated: true,
        ..spdx::ParseMode::STRICT
    };
    spdx::Expression::parse_mode(&canonical, mode).ok()?;
    Some(canonical)
}

/// Rewrites an expression with every identifier and operator in its canonical case;
/// `None` when a term is not an SPDX identifier, exception or `LicenseRef-`.
fn canonical_expression(text: &str) -> Option<String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+' | ':' | '(' | ')');
    if !text.chars().all(|c| c == ' ' || ok(c)) {
        return None;
    }
    let spaced = text.replace('(', " ( ").replace(')', " ) ");
    let mut out: Vec<String> = Vec::new();
    let mut after_with = false;
    for word in spaced.split_whitespace() {
        let upper = word.to_ascii_uppercase();
        let term = match upper.as_str() {
            "(" | ")" => word.to_string(),
            "AND" | "OR" | "WITH" => upper.clone(),
            _ if after_with => exception(word)?.to_string(),
            _ => licence_term(word)?,
        };
        after_with = upper == "WITH";
        out.push(term);
    }
    let joined = out.join(" ");
    Some(joined.replace("( ", "(").replace(" )", ")"))
}

/// One licence term: an identifier (a trailing `+` kept, or as `-or-later` for the GNU
/// family), or a `LicenseRef-`/`DocumentRef-` reference, kept as written.
fn licence_term(word: &str) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    if lower.starts_with("licenseref-") || lower.starts_with("documentref-") {
        return Some(word.to_string());
    }
    let (base, plus) = match word.strip_suffix('+') {
        Some(b) => (b, true),
        None => (word, false),
    };
    let id = spdx::identifiers::LICENSES
        .iter()
        .find(|l| l.name.eq_ignore_ascii_case(base))?;
    let name = id.name;
    let gnu = spdx::license_id(name).is_some_and(|l| l.is_gnu());
    if !gnu {
        return Some(if plus {
            format!("{name}+")
        } else {
            name.into()
        });
    }
    let stem = name
        .strip_suffix("-only")
        .or_else(|| name.strip_suffix("-or-later"))
        .unwrap_or(name);
    let wanted = if plus || name.ends_with("-or-later") {
        format!("{stem}-or-later")
    } else {
        format!("{stem}-only")
    };
    // A GNU id without an -only form (GFDL variants with qualifiers): as written.
    Some(match spdx::license_id(&wanted) {
        Some(_) => wanted,
        None if plus => format!("{name}+"),
        None => name.to_string(),
    })
}

fn exception(word: &str) -> Option<&'static str> {
    spdx::identifiers::EXCEPTIONS
        .iter()
        .find(|e| e.name.eq_ignore_ascii_case(word))
        .map(|e| e.name)
}

/// Spellings of licences that name exactly one SPDX licence (lower case, single
/// spaces). Anything that leaves a version or a clause count open is not here.
const SPELLINGS: &[(&str, &str)] = &[
    ("apache 2", "Apache-2.0"),
    ("apache 2.0", "Apache-2.0"),
    ("apache-2", "Apache-2.0"),
    ("apache2", "Apache-2.0"),
    ("apache2.0", "Apache-2.0"),
    ("apache license 2.0", "Apache-2.0"),
    ("apache license v2.0", "Apache-2.0"),
    ("apache license version 2.0", "Apache-2.0"),
    ("apache license, version 2.0", "Apache-2.0"),
    ("apache software license 2.0", "Apache-2.0"),
    ("asl 2.0", "Apache-2.0"),
    ("mit license", "MIT"),
    ("the mit license", "MIT"),
    ("mit-0 license", "MIT-0"),
    ("bsd 3-clause", "BSD-3-Clause"),
    ("bsd 3-clause license", "BSD-3-Clause"),
    ("bsd-3", "BSD-3-Clause"),
    ("3-clause bsd", "BSD-3-Clause"),
    ("3-clause bsd license", "BSD-3-Clause"),
    ("new bsd", "BSD-3-Clause"),
    ("new bsd license", "BSD-3-Clause"),
    ("bsd 2-clause", "BSD-2-Clause"),
    ("bsd 2-clause license", "BSD-2-Clause"),
    ("bsd-2", "BSD-2-Clause"),
    ("2-clause bsd", "BSD-2-Clause"),
    ("simplified bsd", "BSD-2-Clause"),
    ("simplified bsd license", "BSD-2-Clause"),
    ("isc license", "ISC"),
    ("mpl 2.0", "MPL-2.0"),
    ("mpl2", "MPL-2.0"),
    ("mozilla public license 2.0", "MPL-2.0"),
    ("psf", "PSF-2.0"),
    ("psf license", "PSF-2.0"),
    ("python software foundation license", "PSF-2.0"),
    ("gplv2", "GPL-2.0-only"),
    ("gplv2+", "GPL-2.0-or-later"),
    ("gplv3", "GPL-3.0-only"),
    ("gplv3+", "GPL-3.0-or-later"),
    ("lgplv2.1", "LGPL-2.1-only"),
    ("lgplv2.1+", "LGPL-2.1-or-later"),
    ("lgplv3", "LGPL-3.0-only"),
    ("lgplv3+", "LGPL-3.0-or-later"),
    ("agplv3", "AGPL-3.0-only"),
    ("agplv3+", "AGPL-3.0-or-later"),
    ("cc0", "CC0-1.0"),
    ("cc0 1.0", "CC0-1.0"),
    ("boost software license 1.0", "BSL-1.0"),
    ("the unlicense", "Unlicense"),
];

/// The SPDX id a `License ::` trove classifier names; `None` for one that names a
/// family without a version (`BSD License`, `GNU General Public License (GPL)`) or no
/// licence at all (`Public Domain`, `Other/Proprietary License`).
pub fn classifier_spdx(classifier: &str) -> Option<&'static str> {
    let rest = classifier.trim().strip_prefix("License ::")?.trim();
    let name = rest.strip_prefix("OSI Approved ::").unwrap_or(rest).trim();
    CLASSIFIERS
        .iter()
        .find(|(c, _)| *c == name)
        .map(|(_, id)| *id)
        .filter(|id| !id.is_empty())
}

/// `License ::` classifiers (with `OSI Approved ::` taken off) and the id each names
/// (empty: a family or a name without a version, known so that it is never guessed).
const CLASSIFIERS: &[(&str, &str)] = &[
    ("Academic Free License (AFL)", ""),
    ("Aladdin Free Public License (AFPL)", "Aladdin"),
    ("Apache Software License", "Apache-2.0"),
    ("Attribution Assurance License", "AAL"),
    ("Blue Oak Model License (BlueOak-1.0.0)", "BlueOak-1.0.0"),
    ("Boost Software License 1.0 (BSL-1.0)", "BSL-1.0"),
    (
        "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication",
        "CC0-1.0",
    ),
    (
        "CeCILL-B Free Software License Agreement (CECILL-B)",
        "CECILL-B",
    ),
    (
        "CeCILL-C Free Software License Agreement (CECILL-C)",
        "CECILL-C",
    ),
    (
        "CEA CNRS Inria Logiciel Libre License, version 2.1 (CeCILL-2.1)",
        "CECILL-2.1",
    ),
    (
        "Common Development and Distribution License 1.0 (CDDL-1.0)",
        "CDDL-1.0",
    ),
    ("Eclipse Public License 1.0 (EPL-1.0)", "EPL-1.0"),
    ("Eclipse Public License 2.0 (EPL-2.0)", "EPL-2.0"),
    ("European Union Public Licence 1.0 (EUPL 1.0)", "EUPL-1.0"),
    ("European Union Public Licence 1.1 (EUPL 1.1)", "EUPL-1.1"),
    ("European Union Public Licence 1.2 (EUPL 1.2)", "EUPL-1.2"),
    ("GNU Affero General Public License v3", "AGPL-3.0-only"),
    (
        "GNU Affero General Public License v3 or later (AGPLv3+)",
        "AGPL-3.0-or-later",
    ),
    ("GNU General Public License v2 (GPLv2)", "GPL-2.0-only"),
    (
        "GNU General Public License v2 or later (GPLv2+)",
        "GPL-2.0-or-later",
    ),
    ("GNU General Public License v3 (GPLv3)", "GPL-3.0-only"),
    (
        "GNU General Public License v3 or later (GPLv3+)",
        "GPL-3.0-or-later",
    ),
    (
        "GNU Lesser General Public License v2 or later (LGPLv2+)",
        "LGPL-2.0-or-later",
    ),
    (
        "GNU Lesser General Public License v3 (LGPLv3)",
        "LGPL-3.0-only",
    ),
    (
        "GNU Lesser General Public License v3 or later (LGPLv3+)",
        "LGPL-3.0-or-later",
    ),
    ("Historical Permission Notice and Disclaimer (HPND)", "HPND"),
    ("Intel Open Source License", "Intel"),
    ("ISC License (ISCL)", "ISC"),
    ("MirOS License (MirOS)", "MirOS"),
    ("MIT License", "MIT"),
    ("MIT No Attribution License (MIT-0)", "MIT-0"),
    ("Microsoft Public License", "MS-PL"),
    ("Microsoft Reciprocal License", "MS-RL"),
    ("Motosoto License", "Motosoto"),
    ("Mozilla Public License 1.0 (MPL)", "MPL-1.0"),
    ("Mozilla Public License 1.1 (MPL 1.1)", "MPL-1.1"),
    ("Mozilla Public License 2.0 (MPL 2.0)", "MPL-2.0"),
    (
        "Mulan Permissive Software License v2 (MulanPSL-2.0)",
        "MulanPSL-2.0",
    ),
    ("Nokia Open Source License (NOKOS)", "Nokia"),
    ("Open Software License 3.0 (OSL-3.0)", "OSL-3.0"),
    ("PostgreSQL License", "PostgreSQL"),
    ("Python License (CNRI Python License)", "CNRI-Python"),
    ("Python Software Foundation License", "PSF-2.0"),
    ("Qt Public License (QPL)", "QPL-1.0"),
    ("Ricoh Source Code Public License", "RSCPL"),
    ("SIL Open Font License 1.1 (OFL-1.1)", "OFL-1.1"),
    ("Sleepycat License", "Sleepycat"),
    ("Sun Industry Standards Source License (SISSL)", "SISSL"),
    ("The Unlicense (Unlicense)", "Unlicense"),
    ("Universal Permissive License (UPL)", "UPL-1.0"),
    ("University of Illinois/NCSA Open Source License", "NCSA"),
    ("Vovida Software License 1.0", "VSL-1.0"),
    ("W3C License", "W3C"),
    ("Zero-Clause BSD (0BSD)", "0BSD"),
    ("zlib/libpng License", "Zlib"),
    ("Zope Public License", ""),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn found(f: impl FnOnce(&mut Found)) -> (Vec<Licence>, Vec<String>) {
        let mut x = Found::new();
        f(&mut x);
        x.parts()
    }

    #[test]
    fn spdx_expressions_are_canonicalised() {
        for (text, want) in [
            ("MIT", Some("MIT")),
            ("mit", Some("MIT")),
            ("apache-2.0", Some("Apache-2.0")),
            ("Apache 2.0", Some("Apache-2.0")),
            ("Apache License, Version 2.0", Some("Apache-2.0")),
            ("MIT OR Apache-2.0", Some("MIT OR Apache-2.0")),
            ("mit or apache-2.0", Some("MIT OR Apache-2.0")),
            (
                "(MIT AND BSD-3-Clause) OR Apache-2.0",
                Some("(MIT AND BSD-3-Clause) OR Apache-2.0"),
            ),
            ("( mit  and bsd-3-clause )", Some("(MIT AND BSD-3-Clause)")),
            ("GPL-2.0", Some("GPL-2.0-only")),
            ("gpl-3.0+", Some("GPL-3.0-or-later")),
            (
                "GPL-2.0-or-later WITH Classpath-exception-2.0",
                Some("GPL-2.0-or-later WITH Classpath-exception-2.0"),
            ),
            ("Apache-2.0+", Some("Apache-2.0+")),
            ("LicenseRef-Proprietary", Some("LicenseRef-Proprietary")),
            ("cc-by-nc-4.0", Some("CC-BY-NC-4.0")),
            ("BSD 3-Clause", Some("BSD-3-Clause")),
            // Not guessed.
            ("BSD", None),
            ("BSD License", None),
            ("GPL", None),
            ("LGPLv2", None),
            ("other", None),
            ("Public Domain", None),
            ("MIT/X11", None),
            ("MIT OR", None),
            ("MIT Apache-2.0", None),
            ("MIT WITH MIT", None),
            ("mitigation", None),
            ("", None),
        ] {
            assert_eq!(spdx_of(text).as_deref(), want, "{text:?}");
        }
    }

    #[test]
    fn every_mapping_is_a_valid_expression() {
        for (_, id) in SPELLINGS.iter().chain(CLASSIFIERS) {
            if !id.is_empty() {
                spdx::Expression::parse(id).unwrap_or_else(|e| panic!("{id}: {e}"));
            }
        }
    }

    #[test]
    fn classifiers_map_only_what_they_name() {
        for (c, want) in [
            ("License :: OSI Approved :: MIT License", Some("MIT")),
            (
                "License :: OSI Approved :: Apache Software License",
                Some("Apache-2.0"),
            ),
            ("License :: OSI Approved :: BSD License", None),
            (
                "License :: OSI Approved :: GNU General Public License v3 (GPLv3)",
                Some("GPL-3.0-only"),
            ),
            (
                "License :: OSI Approved :: GNU General Public License v2 or later (GPLv2+)",
                Some("GPL-2.0-or-later"),
            ),
            (
                "License :: OSI Approved :: GNU Lesser General Public License v2 (LGPLv2)",
                None,
            ),
            (
                "License :: OSI Approved :: GNU Library or Lesser General Public License (LGPL)",
                None,
            ),
            (
                "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)",
                Some("MPL-2.0"),
            ),
            ("License :: OSI Approved :: ISC License (ISCL)", Some("ISC")),
            (
                "License :: OSI Approved :: Python Software Foundation License",
                Some("PSF-2.0"),
            ),
            (
                "License :: OSI Approved :: The Unlicense (Unlicense)",
                Some("Unlicense"),
            ),
            (
                "License :: CC0 1.0 Universal (CC0 1.0) Public Domain Dedication",
                Some("CC0-1.0"),
            ),
            ("License :: Public Domain", None),
            ("License :: OSI Approved :: Zope Public License", None),
            ("License :: OSI Approved", None),
            ("Topic :: Software Development", None),
        ] {
            assert_eq!(classifier_spdx(c), want, "{c:?}");
        }
        let (l, dropped) = found(|f| f.add_classifier("License :: OSI Approved :: BSD License"));
        assert!(dropped.is_empty());
        assert_eq!(l[0].declared, "License :: OSI Approved :: BSD License");
        assert_eq!(
            (l[0].spdx.as_deref(), l[0].source.as_str()),
            (None, "classifier")
        );
    }

    #[test]
    fn hostile_declarations_are_dropped_or_kept_verbatim() {
        let long = "x".repeat(10 * 1024);
        let (l, dropped) = found(|f| {
            f.add("MIT\u{1b}[31m", "License");
            f.add("Apache-2.0\nGPL", "License");
            f.add(&long, "License");
            f.add("  ", "License");
            f.add("</script><script>alert(1)</script>", "License");
            f.add("  MIT  ", "License-Expression");
            f.add("MIT", "License");
        });
        assert_eq!(dropped.len(), 3, "{dropped:?}");
        assert!(dropped.iter().all(|d| d.len() < 200), "{dropped:?}");
        assert!(dropped[2].contains("10240 characters"), "{dropped:?}");
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(l[0].declared, "</script><script>alert(1)</script>");
        assert_eq!(l[0].spdx, None);
        assert_eq!(l[1].declared, "MIT");
        assert_eq!(l[1].spdx.as_deref(), Some("MIT"));
        assert_eq!(l[1].source, "License-Expression");
        for x in &l {
            crate::names::check_licence(x).unwrap();
        }
        // Exactly the limit is kept; it is no expression.
        let edge = "y".repeat(MAX_LEN);
        let (l, dropped) = found(|f| f.add(&edge, "License"));
        assert!(dropped.is_empty());
        assert_eq!(l[0].declared.chars().count(), MAX_LEN);
        assert_eq!(l[0].spdx, None);
    }
}
