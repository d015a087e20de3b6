//! `report.html`: one self-contained page. No script, no external asset (a
//! Content-Security-Policy of `default-src 'none'` with inline styles only), so it reads
//! the same from `file://` on a machine with no network; every string from the report is
//! HTML-escaped ([`e`]); print-friendly.

use std::fmt::Write as _;

use super::{Report, Status, human, visible};

/// Text from the report, escaped for element content and quoted attributes, with the
/// characters that reorder or hide text made visible.
pub fn e(s: &str) -> String {
    crate::escape::html(&visible(s))
}

const CSS: &str = r#"
:root { --fg:#1d2430; --muted:#5b6577; --line:#d9dee7; --bg:#f6f7f9; --card:#fff;
  --ok:#17603a; --okbg:#e4f4ea; --warn:#7a4b00; --warnbg:#fff4dc; --bad:#9b1c1c; --badbg:#fde8e8;
  --accent:#1f4e8c; }
* { box-sizing: border-box; }
body { margin:0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color:var(--fg); background:var(--bg); }
header { background:#14263f; color:#fff; padding:22px 40px; }
header h1 { margin:0; font-size:24px; font-weight:600; letter-spacing:.2px; }
header .subject { margin:4px 0 0; color:#c9d6ea; font-family: ui-monospace, "DejaVu Sans Mono", monospace;
  font-size:14px; overflow-wrap:anywhere; }
main { max-width:1200px; margin:0 auto; padding:20px 40px 40px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:18px 22px; margin:18px 0; }
h2 { margin:0 0 12px; font-size:19px; color:var(--accent); border-bottom:1px solid var(--line); padding-bottom:6px; }
h3 { margin:18px 0 8px; font-size:16px; }
h3 .count { color:var(--muted); font-weight:normal; }
h4 { margin:14px 0 6px; font-size:14px; }
p { margin:6px 0; }
.banner { border-radius:8px; padding:14px 18px; margin:18px 0; font-weight:600; border:2px solid; }
.banner.bad { background:var(--badbg); color:var(--bad); border-color:#e5a3a3; }
.banner.note { background:var(--warnbg); color:var(--warn); border-color:#f0cf8a; font-weight:normal; }
.verdict { font-size:17px; margin:0 0 14px; }
.badge { display:inline-block; padding:2px 10px; border-radius:12px; font-size:13px; font-weight:700;
  letter-spacing:.4px; margin-right:8px; vertical-align:2px; }
.badge.ok { background:var(--okbg); color:var(--ok); }
.badge.unchecked { background:var(--warnbg); color:var(--warn); }
.badge.failed { background:var(--badbg); color:var(--bad); }
.cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(250px, 1fr)); gap:10px; }
.card { border:1px solid var(--line); border-radius:6px; padding:8px 12px; background:#fbfcfd; min-width:0; }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.5px; }
.card .value { font-size:15px; overflow-wrap:anywhere; }
.card.wide { grid-column:1 / -1; }
table { border-collapse:collapse; width:100%; font-size:13.5px; table-layout:auto; }
table.fixed { table-layout:fixed; }
td.time { white-space:nowrap; }
th, td { text-align:left; vertical-align:top; padding:6px 8px; border-bottom:1px solid var(--line); overflow-wrap:anywhere; }
th { background:#eef1f5; font-weight:600; white-space:nowrap; }
tr.unproven td { background:#fff1f1; }
tr.breakpoint td { background:var(--badbg); border-top:2px solid var(--bad); }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size:12.5px; }
td code, .card code { word-break:break-all; }
td.digest { max-width:260px; }
td.num { white-space:nowrap; text-align:right; }
.name { font-weight:600; overflow-wrap:anywhere; }
.sub { color:var(--muted); font-size:12.5px; overflow-wrap:anywhere; }
.lic { display:inline-block; background:#eef3fb; border:1px solid #d3deef; border-radius:4px; padding:0 6px;
  margin:1px 2px 1px 0; font-size:12.5px; overflow-wrap:anywhere; }
.lic.nospdx { background:#f6f1e6; border-color:#e6d8b8; }
.none { color:var(--muted); font-style:italic; }
.status-valid { color:var(--ok); font-weight:600; }
.status-invalid, .status-revoked { color:var(--bad); font-weight:600; }
.status-untrusted, .status-not-checked { color:var(--warn); font-weight:600; }
ul.warnings { margin:6px 0; padding-left:22px; }
pre { background:#0f1b2d; color:#e3ebf7; padding:10px 12px; border-radius:6px; white-space:pre-wrap;
  word-break:break-all; font-size:12.5px; margin:4px 0 14px; }
.check p { margin:10px 0 2px; }
footer { color:var(--muted); font-size:12.5px; text-align:center; padding:0 0 30px; }
.scroll { overflow-x:auto; }
@media print {
  body { background:#fff; font-size:11pt; }
  header { background:#fff; color:#000; border-bottom:2px solid #000; padding:8px 0; }
  header .subject { color:#000; }
  main { max-width:none; padding:0; }
  section { border:none; border-radius:0; padding:6px 0; break-inside:auto; }
  h2 { break-after:avoid; }
  tr { break-inside:avoid; }
  pre { background:#f3f3f3; color:#000; border:1px solid #ccc; }
  .scroll { overflow:visible; }
}
"#;

pub fn render(r: &Report) -> String {
    let s = &r.summary;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
<meta name=\"referrer\" content=\"no-referrer\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>ferry report: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        e(&s.subject)
    );
    let _ = write!(
        o,
        "<header><h1>ferry report &middot; {mode}</h1><p class=\"subject\">{}</p></header>\n<main>\n",
        e(&s.subject),
        mode = e(s.mode)
    );
    for p in &s.problems {
        let _ = writeln!(
            o,
            "<div class=\"banner bad\" role=\"alert\">&#9888; {}</div>",
            e(p)
        );
    }
    for n in &s.notes {
        let _ = writeln!(o, "<div class=\"banner note\">{}</div>", e(n));
    }

    // Summary.
    let (class, badge) = match s.status {
        Status::Ok => ("ok", "OK"),
        Status::Unchecked => ("unchecked", "NOT CHECKED"),
        Status::Failed => ("failed", "FAILED"),
    };
    let _ = write!(
        o,
        "<section id=\"summary\"><h2>Summary</h2>\n<p class=\"verdict\"><span class=\"badge {class}\">{badge}</span>{}</p>\n<div class=\"cards\">\n",
        e(&s.verdict)
    );
    let mut card = |label: &str, value: String, code: bool| {
        let wide = if code { " wide" } else { "" };
        let value = if code {
            format!("<code>{}</code>", e(&value))
        } else {
            e(&value)
        };
        let _ = writeln!(
            o,
            "<div class=\"card{wide}\"><div class=\"label\">{}</div><div class=\"value\">{value}</div></div>",
            e(label)
        );
    };
    for f in &s.facts {
        card(&f.label, f.value.clone(), f.code);
    }
    card("Generated", s.generated.clone(), false);
    card("ferry version", s.ferry_version.clone(), false);
    o.push_str("</div></section>\n");

    if let Some(c) = &r.crossed {
        let _ = write!(
            o,
            "<section id=\"crossed\"><h2>What crossed</h2>\n<p>{} artifact(s) in {} entries, {} of content.</p>\n",
            c.artifacts,
            c.entries,
            e(&human(c.bytes))
        );
        for g in &c.groups {
            let _ = write!(
                o,
                "<h3>{} <span class=\"count\">({})</span></h3>\n<div class=\"scroll\"><table class=\"fixed\">\n\
<colgroup><col style=\"width:31%\"><col style=\"width:25%\"><col style=\"width:9%\"><col style=\"width:15%\"><col style=\"width:20%\"></colgroup>\n\
<tr><th>Name</th><th>Digest</th><th>Size</th><th>Licences</th><th>Origin</th></tr>\n",
                e(&g.ecosystem),
                g.artifacts.len()
            );
            for a in &g.artifacts {
                let mut sub = String::new();
                for d in &a.details {
                    let _ = write!(sub, "<div class=\"sub\">{}</div>", e(d));
                }
                for (k, v) in &a.labels {
                    let _ = write!(sub, "<div class=\"sub\">label {} = {}</div>", e(k), e(v));
                }
                let licences = if a.licences.is_empty() {
                    "<span class=\"none\">none declared</span>".to_string()
                } else {
                    a.licences
                        .iter()
                        .map(|l| {
                            let class = if l.spdx.is_some() {
                                "lic"
                            } else {
                                "lic nospdx"
                            };
                            format!(
                                "<span class=\"{class}\" title=\"{}\">{}</span>",
                                e(&format!("from {}", l.source)),
                                e(&l.display())
                            )
                        })
                        .collect()
                };
                let _ = writeln!(
                    o,
                    "<tr><td><div class=\"name\">{}</div>{sub}</td><td class=\"digest\"><code>{}</code></td>\
<td class=\"num\">{}</td><td>{licences}</td><td class=\"sub\">{}</td></tr>",
                    e(&a.name),
                    e(&a.digest),
                    e(&human(a.size)),
                    e(&a.origin)
                );
            }
            o.push_str("</table></div>\n");
        }
        o.push_str("</section>\n");
    }

    if let Some(st) = &r.store {
        let _ = write!(
            o,
            "<section id=\"store\"><h2>What the store holds</h2>\n<p>{} entries in <code>index.json</code>.</p>\n",
            st.entries
        );
        for w in &st.warnings {
            let _ = writeln!(o, "<div class=\"banner note\">{}</div>", e(w));
        }
        for g in &st.groups {
            let _ = write!(
                o,
                "<h3>{} <span class=\"count\">({})</span></h3>\n<div class=\"scroll\"><table class=\"fixed\">\n\
<colgroup><col style=\"width:30%\"><col style=\"width:15%\"><col style=\"width:28%\"><col style=\"width:9%\"><col style=\"width:18%\"></colgroup>\n\
<tr><th>Repository</th><th>Tag</th><th>Digest</th><th>Size</th><th>Type</th></tr>\n",
                e(&g.ecosystem),
                g.entries.len()
            );
            for x in &g.entries {
                let _ = writeln!(
                    o,
                    "<tr><td class=\"name\">{}</td><td>{}</td><td class=\"digest\"><code>{}</code></td><td class=\"num\">{}</td><td class=\"sub\">{}</td></tr>",
                    e(&x.repository),
                    e(x.tag.as_deref().unwrap_or("")),
                    e(&x.digest),
                    e(&human(x.size)),
                    e(x.artifact_type.as_deref().unwrap_or(&x.media_type))
                );
            }
            o.push_str("</table></div>\n");
        }
        o.push_str("<h3>Licences (from the SBOMs in the store)</h3>\n");
        if st.sboms.is_empty() {
            o.push_str("<p class=\"none\">The store holds no SBOM (<code>ferry/sbom</code>): no licences per component to show.</p>\n");
        }
        for sb in &st.sboms {
            let _ = write!(
                o,
                "<h4>{} <code>{}</code></h4>\n<div class=\"scroll\"><table>\n<tr><th>Component</th><th>Version</th><th>purl</th><th>Licences</th></tr>\n",
                e(&sb.name),
                e(&sb.digest)
            );
            for c in &sb.components {
                let lic = if c.licences.is_empty() {
                    "<span class=\"none\">none</span>".to_string()
                } else {
                    c.licences
                        .iter()
                        .map(|l| format!("<span class=\"lic\">{}</span>", e(l)))
                        .collect()
                };
                let _ = writeln!(
                    o,
                    "<tr><td class=\"name\">{}</td><td>{}</td><td class=\"sub\">{}</td><td>{lic}</td></tr>",
                    e(&c.name),
                    e(c.version.as_deref().unwrap_or("")),
                    e(c.purl.as_deref().unwrap_or(""))
                );
            }
            o.push_str("</table></div>\n");
            if sb.omitted > 0 {
                let _ = writeln!(o, "<p>{} more component(s) not listed.</p>", sb.omitted);
            }
        }
        o.push_str("</section>\n");
    }

    if let Some(sig) = &r.signatures {
        o.push_str("<section id=\"signatures\"><h2>Signatures and approvals</h2>\n");
        match (&sig.trust, sig.verified) {
            (Some(t), Some(true)) => {
                let _ = writeln!(
                    o,
                    "<p><span class=\"badge ok\">VERIFIED</span>Signatures and every digest checked against {}.</p>",
                    e(t)
                );
            }
            (Some(t), _) => {
                let _ = writeln!(
                    o,
                    "<p><span class=\"badge failed\">NOT VERIFIED</span>Checked against {}: {}</p>",
                    e(t),
                    e(sig.error.as_deref().unwrap_or(""))
                );
            }
            (None, _) => {
                let _ = writeln!(
                    o,
                    "<p><span class=\"badge unchecked\">NOT CHECKED</span>These signatures were not checked against a trust list. To check them:</p><pre>{}</pre>",
                    e(&sig.verify_command)
                );
            }
        }
        if let Some(rule) = &sig.rule {
            let _ = writeln!(o, "<p><strong>Rule met:</strong> {}</p>", e(rule));
        }
        if sig.found.is_empty() {
            o.push_str("<p class=\"status-invalid\">No signature was found.</p>\n");
        } else {
            o.push_str("<div class=\"scroll\"><table>\n<tr><th>Source</th><th>File</th><th>Key id</th><th>Status</th><th>Holder</th><th>Reason</th></tr>\n");
            for f in &sig.found {
                let _ = writeln!(
                    o,
                    "<tr><td>{}</td><td class=\"sub\"><code>{}</code></td><td><code>{}</code></td><td class=\"status-{}\">{}</td><td>{}</td><td class=\"sub\">{}</td></tr>",
                    e(f.source),
                    e(&f.file),
                    e(&f.key_id),
                    e(&f.status.replace(' ', "-")),
                    e(&f.status),
                    e(f.holder.as_deref().unwrap_or("")),
                    e(f.reason.as_deref().unwrap_or(""))
                );
            }
            o.push_str("</table></div>\n");
        }
        o.push_str("</section>\n");
    }

    if let Some(p) = &r.policy {
        let _ = write!(
            o,
            "<section id=\"policy\"><h2>Policy</h2>\n<div class=\"cards\">\n\
<div class=\"card\"><div class=\"label\">Verdict</div><div class=\"value\">{}</div></div>\n\
<div class=\"card\"><div class=\"label\">Policy</div><div class=\"value\">{}</div></div>\n",
            e(&p.verdict),
            e(p.policy.as_deref().unwrap_or("none applied"))
        );
        if let Some(d) = &p.digest {
            let _ = writeln!(
                o,
                "<div class=\"card wide\"><div class=\"label\">Policy sha256</div><div class=\"value\"><code>{}</code></div></div>",
                e(d)
            );
        }
        o.push_str("</div>\n");
        if p.warnings.is_empty() {
            o.push_str("<p class=\"none\">No warnings.</p>\n");
        } else {
            o.push_str("<h3>Warnings</h3>\n<ul class=\"warnings\">\n");
            for w in &p.warnings {
                let _ = writeln!(o, "<li>{}</li>", e(w));
            }
            o.push_str("</ul>\n");
        }
        o.push_str("</section>\n");
    }

    if let Some(sb) = &r.sbom {
        let _ = write!(
            o,
            "<section id=\"sbom\"><h2>SBOM</h2>\n<p>{}</p>\n",
            e(&sb.note)
        );
        if !sb.documents.is_empty() {
            o.push_str("<table>\n<tr><th>Document</th><th>Digest</th><th>Size</th></tr>\n");
            for d in &sb.documents {
                let _ = writeln!(
                    o,
                    "<tr><td>{}</td><td class=\"digest\"><code>{}</code></td><td class=\"num\">{}</td></tr>",
                    e(&d.what),
                    e(&d.digest),
                    e(&human(d.size))
                );
            }
            o.push_str("</table>\n");
        }
        o.push_str("</section>\n");
    }

    if let Some(h) = &r.history {
        let _ = write!(
            o,
            "<section id=\"history\"><h2>Import and audit history</h2>\n<p>Log: <code>{}</code></p>\n",
            e(&h.log)
        );
        if !h.present {
            o.push_str("<p class=\"none\">There is no audit log.</p>\n");
        } else if h.chain.intact {
            let _ = writeln!(
                o,
                "<p><span class=\"badge ok\">CHAIN INTACT</span>{} record(s), each holding the sha256 of the one before it.</p>",
                h.chain.records
            );
        } else {
            let at = h.chain.broken_at.unwrap_or(0);
            let _ = writeln!(
                o,
                "<div class=\"banner bad\">&#9888; The hash chain is BROKEN at record {at}: {}. Records from {at} on (shaded) are not proven.</div>",
                e(h.chain.reason.as_deref().unwrap_or(""))
            );
        }
        if !h.records.is_empty() {
            o.push_str("<div class=\"scroll\"><table>\n<tr><th>#</th><th>Time</th><th>Who</th><th>Action</th><th>Series / sequence</th><th>Manifest</th><th>Signers</th><th>Policy</th><th>Artifacts</th></tr>\n");
            for rec in &h.records {
                let class = if Some(rec.line) == h.chain.broken_at {
                    " class=\"breakpoint\""
                } else if !rec.proven {
                    " class=\"unproven\""
                } else {
                    ""
                };
                let action = if rec.outcome.is_empty() {
                    e(&rec.action)
                } else {
                    format!(
                        "{} <span class=\"sub\">{}</span>",
                        e(&rec.action),
                        e(&rec.outcome)
                    )
                };
                let error = if rec.error.is_empty() {
                    String::new()
                } else {
                    format!("<div class=\"sub\">{}</div>", e(&rec.error))
                };
                let series = if rec.series.is_empty() && rec.sequence.is_empty() {
                    String::new()
                } else {
                    format!("{} / {}", e(&rec.series), e(&rec.sequence))
                };
                let counts = match (rec.artifacts.is_empty(), rec.bytes.parse::<u64>()) {
                    (false, Ok(b)) => format!("{} ({})", e(&rec.artifacts), e(&human(b))),
                    _ => e(&rec.artifacts),
                };
                let _ = writeln!(
                    o,
                    "<tr{class}><td class=\"num\">{}<div class=\"sub\">seq {}</div></td><td class=\"sub time\">{}</td><td>{}@{}</td><td>{action}{error}</td><td>{series}</td><td class=\"digest\"><code>{}</code></td><td class=\"sub\"><code>{}</code></td><td class=\"sub\">{}</td><td class=\"num\">{counts}</td></tr>",
                    rec.line,
                    e(&rec.seq),
                    e(&rec.time),
                    e(&rec.user),
                    e(&rec.host),
                    e(&rec.manifest),
                    e(&rec.signers),
                    e(&rec.policy),
                );
            }
            o.push_str("</table></div>\n");
        }
        if h.omitted > 0 {
            let _ = writeln!(o, "<p>{} more record(s) not listed.</p>", h.omitted);
        }
        o.push_str("</section>\n");
    }

    o.push_str("<section id=\"checks\"><h2>How to check</h2>\n<p>With standard tools (<code>zstd</code>, <code>tar</code>, <code>sha256sum</code>, <code>minisign</code>, <code>jq</code>), without ferry:</p>\n");
    for c in &r.checks {
        let _ = writeln!(
            o,
            "<div class=\"check\"><p>{}</p><pre>{}</pre></div>",
            e(&c.what),
            e(&c.command)
        );
    }
    o.push_str("</section>\n</main>\n");
    let _ = writeln!(
        o,
        "<footer>Generated by ferry {} at {}. This page runs no script and loads nothing.</footer>\n</body>\n</html>",
        e(&s.ferry_version),
        e(&s.generated)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped_and_the_page_is_self_contained() {
        assert_eq!(
            e("<img src=x onerror=alert(1)>\u{202E}"),
            "&lt;img src=x onerror=alert(1)&gt;\u{FFFD}"
        );
        let mut r = Report::new("log", "<script>alert(1)</script>".into());
        r.summary.verdict = "\"><script>x</script>".into();
        r.fail("<b>bold</b>");
        let page = render(&r);
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<b>"));
        assert!(page.contains("default-src 'none'"));
        for external in ["http://", "https://", "src=", "href=", "@import", "url("] {
            assert!(!page.contains(external), "{external} in the page");
        }
    }
}
