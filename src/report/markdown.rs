//! `report.md`: the report as GitHub-flavoured Markdown. Every string from the report is
//! escaped ([`text`], [`code`]) so that a name cannot end a table cell, open a link or an
//! image, start a heading or list, or become HTML.

use std::fmt::Write as _;

use super::{Report, Status, human, visible};

/// Escapes `s` for Markdown text and table cells: the characters that make tables,
/// links, emphasis, code and HTML are backslash-escaped or written as entities, line
/// breaks become spaces.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in visible(s).chars().enumerate() {
        match c {
            '\\' | '|' | '`' | '*' | '_' | '[' | ']' | '~' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '-' | '+' | '=' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\u{FFFD}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `s` as an inline code span inside a table cell: fenced by more backticks than any
/// run inside it, `|` escaped (GFM splits cells before it parses code).
pub fn code(s: &str) -> String {
    let s = visible(s).replace('|', "\\|");
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    format!("{fence} {s} {fence}")
}

/// A fenced code block (for the commands of "How to check").
fn block(s: &str) -> String {
    let s = visible(s);
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}sh\n{s}\n{fence}\n")
}

fn row(out: &mut String, cells: &[String]) {
    out.push('|');
    for c in cells {
        let _ = write!(out, " {c} |");
    }
    out.push('\n');
}

fn header(out: &mut String, names: &[&str]) {
    row(
        out,
        &names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
    );
    row(
        out,
        &names.iter().map(|_| "---".to_string()).collect::<Vec<_>>(),
    );
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let s = &r.summary;
    let _ = writeln!(out, "# ferry report: {}\n", text(&s.subject));
    out.push_str("## Summary\n\n");
    let badge = match s.status {
        Status::Ok => "OK",
        Status::Unchecked => "NOT CHECKED AGAINST A TRUST LIST",
        Status::Failed => "FAILED",
    };
    let _ = writeln!(out, "**{badge}**: {}\n", text(&s.verdict));
    for p in &s.problems {
        let _ = writeln!(out, "> **Problem:** {}\n", text(p));
    }
    for n in &s.notes {
        let _ = writeln!(out, "> **Note:** {}\n", text(n));
    }
    header(&mut out, &["", ""]);
    let mut facts = vec![
        ("Mode".to_string(), text(s.mode)),
        ("Generated".to_string(), text(&s.generated)),
        ("ferry".to_string(), text(&s.ferry_version)),
    ];
    facts.extend(s.facts.iter().map(|f| {
        (
            text(&f.label),
            if f.code {
                code(&f.value)
            } else {
                text(&f.value)
            },
        )
    }));
    for (k, v) in facts {
        row(&mut out, &[format!("**{k}**"), v]);
    }
    out.push('\n');

    if let Some(c) = &r.crossed {
        let _ = writeln!(
            out,
            "## What crossed\n\n{} artifact(s), {} entries, {}.\n",
            c.artifacts,
            c.entries,
            human(c.bytes)
        );
        for g in &c.groups {
            let _ = writeln!(out, "### {} ({})\n", text(&g.ecosystem), g.artifacts.len());
            header(
                &mut out,
                &["Name", "Digest", "Size", "Licences", "Origin", "Details"],
            );
            for a in &g.artifacts {
                let licences = if a.licences.is_empty() {
                    "none declared".to_string()
                } else {
                    a.licences
                        .iter()
                        .map(|l| text(&l.display()))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                let mut details: Vec<String> = a.details.iter().map(|d| text(d)).collect();
                details.extend(
                    a.labels
                        .iter()
                        .map(|(k, v)| format!("label {} = {}", text(k), text(v))),
                );
                row(
                    &mut out,
                    &[
                        text(&a.name),
                        code(&a.digest),
                        human(a.size),
                        licences,
                        text(&a.origin),
                        details.join("<br>"),
                    ],
                );
            }
            out.push('\n');
        }
    }

    if let Some(st) = &r.store {
        let _ = writeln!(out, "## What the store holds\n\n{} entries.\n", st.entries);
        for w in &st.warnings {
            let _ = writeln!(out, "> **Warning:** {}\n", text(w));
        }
        for g in &st.groups {
            let _ = writeln!(out, "### {} ({})\n", text(&g.ecosystem), g.entries.len());
            header(&mut out, &["Repository", "Tag", "Digest", "Size", "Type"]);
            for e in &g.entries {
                row(
                    &mut out,
                    &[
                        text(&e.repository),
                        text(e.tag.as_deref().unwrap_or("")),
                        code(&e.digest),
                        human(e.size),
                        text(e.artifact_type.as_deref().unwrap_or(&e.media_type)),
                    ],
                );
            }
            out.push('\n');
        }
        out.push_str("### Licences (from the SBOMs in the store)\n\n");
        if st.sboms.is_empty() {
            out.push_str(
                "The store holds no SBOM (`ferry/sbom`): no licences per component to show.\n\n",
            );
        }
        for sb in &st.sboms {
            let _ = writeln!(out, "#### {} ({})\n", text(&sb.name), code(&sb.digest));
            header(&mut out, &["Component", "Version", "purl", "Licences"]);
            for c in &sb.components {
                row(
                    &mut out,
                    &[
                        text(&c.name),
                        text(c.version.as_deref().unwrap_or("")),
                        text(c.purl.as_deref().unwrap_or("")),
                        text(&c.licences.join("; ")),
                    ],
                );
            }
            if sb.omitted > 0 {
                let _ = writeln!(out, "\n{} more component(s) not listed.", sb.omitted);
            }
            out.push('\n');
        }
    }

    if let Some(sig) = &r.signatures {
        out.push_str("## Signatures and approvals\n\n");
        match (&sig.trust, sig.verified) {
            (Some(t), Some(true)) => {
                let _ = writeln!(out, "Verified against {}.\n", text(t));
            }
            (Some(t), _) => {
                let _ = writeln!(
                    out,
                    "**Did NOT verify** against {}: {}\n",
                    text(t),
                    text(sig.error.as_deref().unwrap_or(""))
                );
            }
            (None, _) => {
                let _ = writeln!(
                    out,
                    "The signatures were **not checked** against a trust list. To check them: {}\n",
                    code(&sig.verify_command)
                );
            }
        }
        if let Some(rule) = &sig.rule {
            let _ = writeln!(out, "Rule met: {}\n", text(rule));
        }
        if sig.found.is_empty() {
            out.push_str("**No signature was found.**\n\n");
        } else {
            header(
                &mut out,
                &["Source", "File", "Key id", "Status", "Holder", "Reason"],
            );
            for f in &sig.found {
                row(
                    &mut out,
                    &[
                        text(f.source),
                        text(&f.file),
                        code(&f.key_id),
                        text(&f.status),
                        text(f.holder.as_deref().unwrap_or("")),
                        text(f.reason.as_deref().unwrap_or("")),
                    ],
                );
            }
            out.push('\n');
        }
    }

    if let Some(p) = &r.policy {
        out.push_str("## Policy\n\n");
        header(&mut out, &["", ""]);
        row(&mut out, &["**Verdict**".into(), text(&p.verdict)]);
        row(
            &mut out,
            &[
                "**Policy**".into(),
                text(p.policy.as_deref().unwrap_or("none applied")),
            ],
        );
        if let Some(d) = &p.digest {
            row(&mut out, &["**Policy sha256**".into(), code(d)]);
        }
        out.push('\n');
        if p.warnings.is_empty() {
            out.push_str("No warnings.\n\n");
        } else {
            out.push_str("Warnings:\n\n");
            for w in &p.warnings {
                let _ = writeln!(out, "- {}", text(w));
            }
            out.push('\n');
        }
    }

    if let Some(sb) = &r.sbom {
        let _ = writeln!(out, "## SBOM\n\n{}\n", text(&sb.note));
        if !sb.documents.is_empty() {
            header(&mut out, &["Document", "Digest", "Size"]);
            for d in &sb.documents {
                row(
                    &mut out,
                    &[text(&d.what), code(&d.digest), d.size.to_string()],
                );
            }
            out.push('\n');
        }
    }

    if let Some(h) = &r.history {
        let _ = writeln!(
            out,
            "## Import and audit history\n\nLog: {}\n",
            text(&h.log)
        );
        if !h.present {
            out.push_str("There is no audit log.\n\n");
        } else if h.chain.intact {
            let _ = writeln!(
                out,
                "The hash chain is **intact**: {} record(s).\n",
                h.chain.records
            );
        } else {
            let _ = writeln!(
                out,
                "> **The hash chain is BROKEN at record {}**: {}. Records from {} on are not proven.\n",
                h.chain.broken_at.unwrap_or(0),
                text(h.chain.reason.as_deref().unwrap_or("")),
                h.chain.broken_at.unwrap_or(0)
            );
        }
        if !h.records.is_empty() {
            header(
                &mut out,
                &[
                    "Line",
                    "Seq",
                    "Time",
                    "User@host",
                    "Action",
                    "Outcome",
                    "Series",
                    "Sequence",
                    "Manifest",
                    "Signers",
                    "Policy",
                    "Artifacts",
                    "Bytes",
                    "Error",
                ],
            );
            for rec in &h.records {
                row(
                    &mut out,
                    &[
                        if rec.proven {
                            rec.line.to_string()
                        } else {
                            format!("{} (unproven)", rec.line)
                        },
                        text(&rec.seq),
                        text(&rec.time),
                        format!("{}@{}", text(&rec.user), text(&rec.host)),
                        text(&rec.action),
                        text(&rec.outcome),
                        text(&rec.series),
                        text(&rec.sequence),
                        text(&rec.manifest),
                        text(&rec.signers),
                        text(&rec.policy),
                        text(&rec.artifacts),
                        text(&rec.bytes),
                        text(&rec.error),
                    ],
                );
            }
            out.push('\n');
        }
        if h.omitted > 0 {
            let _ = writeln!(out, "{} more record(s) not listed.\n", h.omitted);
        }
    }

    out.push_str("## How to check\n\nWith standard tools, without ferry:\n\n");
    for c in &r.checks {
        let _ = writeln!(out, "{}:\n", text(&c.what));
        out.push_str(&block(&c.command));
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "---\n\nGenerated by ferry {} at {}.",
        text(&s.ferry_version),
        text(&s.generated)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_breaks_out_of_a_cell_or_becomes_markup() {
        let hostile = "a|b`c<script>alert(1)</script>\n# x [l](javascript:x) ![i](y) &lt;";
        let t = text(hostile);
        assert!(!t.contains('\n') && !t.contains('<'));
        assert!(!t.replace("\\|", "").contains('|'));
        assert!(!t.replace("\\`", "").contains('`'));
        assert!(!t.replace("\\[", "").contains('['));
        assert!(t.contains("&amp;lt;"));
        assert_eq!(text("-x"), "\\-x");
        let c = code("a`b``c|d");
        assert!(c.starts_with("``` ") && c.ends_with(" ```") && c.contains("\\|"));
        assert!(block("x```y").starts_with("````sh\n"));
    }
}
