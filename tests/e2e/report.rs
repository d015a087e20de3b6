//! `ferry report`: one model, three renderings (report.json, report.md, a self-contained
//! report.html read here by headless Chromium, as an auditor's browser would from
//! `file://`). A bundle of every ecosystem (the compat fixture, which carries no SBOM),
//! a store with its import history and an SBOM, and the hostile twins: labels and policy
//! warnings that are markup, an audit log with a broken chain, one that is not JSON
//! lines, a bundle that does not verify against the key given.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::context::{Output, TestContext, p, repo_root, run, sha256_hex};
use super::images::demo_layout;
use super::tamper::Bundle;

/// `ferry report ARGS -o DIR`; returns the output and DIR.
fn report(ctx: &TestContext, dir: &str, args: &[&str]) -> (Output, PathBuf) {
    let out_dir = ctx.path(dir);
    let mut all = vec!["report"];
    all.extend_from_slice(args);
    all.extend(["-o", p(&out_dir)]);
    (ctx.ferry(all), out_dir)
}

fn json_of(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// One headless Chromium run over `dir/report.html` from `file://`: the DOM it built,
/// and (when `shot` is given) a screenshot written there.
fn chromium(ctx: &TestContext, dir: &Path, shot: Option<&Path>) -> String {
    let profile = tempfile::tempdir_in(ctx.dir.path()).unwrap();
    let mut cmd = Command::new("chromium");
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .env("HOME", ctx.dir.path());
    if let Some(shot) = shot {
        cmd.arg(format!("--screenshot={}", shot.display()))
            .arg("--window-size=1280,2400");
    }
    cmd.arg(format!("file://{}", dir.join("report.html").display()));
    let out = run(cmd);
    out.assert_success();
    assert!(out.stdout.contains("</html>"), "no DOM dumped: {out:?}");
    out.stdout
}

fn copy_compat(ctx: &TestContext) -> (PathBuf, PathBuf) {
    let fixtures = repo_root().join("fixtures/compat");
    let bundle = ctx.path("compat.ferry");
    let public = ctx.path("compat.pub");
    std::fs::copy(fixtures.join("main-d96b7ba.ferry"), &bundle).unwrap();
    std::fs::copy(fixtures.join("main-d96b7ba.pub"), &public).unwrap();
    (bundle, public)
}

#[test]
fn report_of_a_bundle_of_every_ecosystem_without_an_sbom() {
    let ctx = TestContext::new();
    let (bundle, public) = copy_compat(&ctx);
    let (out, dir) = report(&ctx, "out", &[p(&bundle), "--trust", p(&public)]);
    out.assert_success();
    for name in ["report.html", "report.json", "report.md"] {
        assert!(
            out.stdout
                .contains(&format!("{}", dir.join(name).display())),
            "{name} not printed: {out:?}"
        );
    }

    // The JSON agrees with the signed manifest.
    let parsed = Bundle::read(&bundle);
    let manifest = parsed.manifest();
    let manifest_bytes = &parsed.entries[0].data;
    let r = json_of(&dir);
    assert_eq!(r["format"], "dev.ferry.report.v1");
    assert_eq!(r["summary"]["status"], "ok", "{r:#}");
    let facts = r["summary"]["facts"].as_array().unwrap();
    let fact = |label: &str| {
        facts.iter().find(|f| f["label"] == label).unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        fact("Manifest sha256"),
        format!("sha256:{}", sha256_hex(manifest_bytes))
    );
    assert_eq!(fact("Series"), manifest["series"].as_str().unwrap());
    let groups = r["crossed"]["groups"].as_array().unwrap();
    let ecosystems: Vec<&str> = groups
        .iter()
        .map(|g| g["ecosystem"].as_str().unwrap())
        .collect();
    assert_eq!(ecosystems, ["image", "python", "conda", "model"]);
    let listed: Vec<(String, String)> = groups
        .iter()
        .flat_map(|g| g["artifacts"].as_array().unwrap())
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let artifacts = manifest["artifacts"].as_array().unwrap();
    assert_eq!(listed.len(), artifacts.len());
    for a in artifacts {
        let name = format!(
            "{}:{}",
            a["repository"].as_str().unwrap(),
            a["tag"].as_str().unwrap()
        );
        assert!(
            listed.contains(&(name.clone(), a["digest"].as_str().unwrap().to_string())),
            "{name} missing from {listed:?}"
        );
    }
    assert_eq!(r["signatures"]["verified"], true);
    assert_eq!(r["signatures"]["found"][0]["status"], "valid");
    assert_eq!(r["sbom"]["carried"], false);

    // Markdown: the same sections.
    let md = read(&dir, "report.md");
    for section in [
        "## Summary",
        "## What crossed",
        "### python (1)",
        "### conda (3)",
        "## Signatures and approvals",
        "## Policy",
        "## SBOM",
        "## How to check",
        "carries no SBOM",
        "app/web:1.0",
    ] {
        assert!(md.contains(section), "no {section:?} in report.md");
    }

    // The page, as a browser builds it from file://, and a screenshot of it.
    let shot = dir.join("report.png");
    let dom = chromium(&ctx, &dir, Some(&shot));
    for text in [
        ">Summary</h2>",
        ">What crossed</h2>",
        ">Signatures and approvals</h2>",
        ">Policy</h2>",
        ">SBOM</h2>",
        ">How to check</h2>",
        "app/web:1.0",
        "python/six:1.16.0",
        "conda/test-forge/linux-64/libfoo:1.2-0",
        "hf/models/org/tiny-bert:main",
        "carries no SBOM",
        "VERIFIED",
    ] {
        assert!(dom.contains(text), "the page shows no {text:?}");
    }
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "no screenshot"
    );
    if let Ok(keep) = std::env::var("FERRY_REPORT_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }

    // Without a trust list: the same report, the signatures listed as not checked.
    let (out, dir) = report(&ctx, "unchecked", &[p(&bundle)]);
    out.assert_success();
    let r = json_of(&dir);
    assert_eq!(r["summary"]["status"], "unchecked");
    assert_eq!(r["signatures"]["checked"], false);
    assert_eq!(r["signatures"]["found"][0]["status"], "not checked");
    assert!(
        r["signatures"]["verifyCommand"]
            .as_str()
            .unwrap()
            .starts_with("ferry bundle verify")
    );

    // Against the wrong key: the report is written and says so; exit 3.
    let (_, stranger) = ctx.generate_key("stranger");
    let (out, dir) = report(&ctx, "refused", &[p(&bundle), "--trust", p(&stranger)]);
    out.assert_code(3);
    let r = json_of(&dir);
    assert_eq!(r["summary"]["status"], "failed");
    assert_eq!(r["signatures"]["verified"], false);
    assert!(read(&dir, "report.html").contains("does NOT verify"));

    // -o naming a file is bad usage.
    let file = ctx.path("a-file");
    std::fs::write(&file, "x").unwrap();
    ctx.ferry(["report", p(&bundle), "-o", p(&file)])
        .assert_code(2);
}

const HOSTILE_POLICY: &str = r#"package ferry

warn contains msg if {
	some a in input.artifacts
	msg := sprintf("%s: <script>alert(2)</script><img src=y onerror=alert(2)> | `x` [l](javascript:alert(3))", [a.repository])
}
"#;

#[test]
fn report_escapes_hostile_labels_and_policy_warnings() {
    let ctx = TestContext::new();
    let (key, _) = ctx.generate_key("build");
    let spec = ctx.write_spec(
        "hostile.toml",
        &format!(
            "name = \"hostile\"\n[[image]]\nref = \"oci:{}:app/web:1.0\"\nrepository = \"app/web\"\n\
labels = {{ note = \"<script>alert(1)</script>\", owner = \"<img src=x onerror=alert(1)>\", pipe = \"a|b\\n\" }}\n",
            demo_layout().display()
        ),
    );
    // A newline is not a printable label: the spec is refused, so drop it.
    let text = std::fs::read_to_string(&spec).unwrap().replace("\\n", "");
    std::fs::write(&spec, text).unwrap();
    let policy = ctx.path("hostile.rego");
    std::fs::write(&policy, HOSTILE_POLICY).unwrap();
    let bundle = ctx.create_bundle(
        &spec,
        "hostile.ferry",
        &key,
        &["--store", p(&ctx.path("src")), "--policy", p(&policy)],
    );
    let (out, dir) = report(&ctx, "out", &[p(&bundle)]);
    out.assert_success();

    // The JSON keeps the text as it was.
    let r = json_of(&dir);
    let a = &r["crossed"]["groups"][0]["artifacts"][0];
    assert_eq!(a["labels"]["note"], "<script>alert(1)</script>");
    assert!(
        r["policy"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("<img src=y")
    );

    // The browser built no element from it: the markup is text on the page.
    let dom = chromium(&ctx, &dir, None);
    let lower = dom.to_lowercase();
    assert!(!lower.contains("<script"), "a script element: {dom}");
    assert!(!lower.contains("<img"), "an img element: {dom}");
    assert!(!lower.contains("href="), "a link: {dom}");
    assert!(dom.contains("label note = &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(dom.contains("&lt;script&gt;alert(2)&lt;/script&gt;&lt;img src=y"));

    // Markdown: no raw markup, no cell broken by `|`, no link.
    let md = read(&dir, "report.md");
    assert!(!md.contains("<script") && !md.contains("<img"), "{md}");
    assert!(md.contains("a\\|b"), "{md}");
    assert!(md.contains("\\[l\\](javascript:alert(3))"), "{md}");
    let crossed_row = md.lines().find(|l| l.starts_with("| app/web:1.0")).unwrap();
    let cells = crossed_row.replace("\\|", "").matches('|').count();
    assert_eq!(cells, 7, "a label broke the table row: {crossed_row}");
}

/// Puts an SBOM artifact into `store` as importers keep them: `ferry/sbom:<tag>`, an OCI
/// manifest whose layers are a CycloneDX and an SPDX document.
fn add_sbom(store: &Path, tag: &str, cyclonedx: &Value) {
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(store.join("blobs/sha256").join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let cdx = serde_json::to_vec(cyclonedx).unwrap();
    let spdx = br#"{"spdxVersion":"SPDX-2.3","packages":[]}"#;
    let (cdx_digest, cdx_size) = put(&cdx);
    let (spdx_digest, spdx_size) = put(spdx);
    let (config_digest, config_size) = put(b"{}");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.dev.ferry.sbom.v1",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config_digest, "size": config_size},
        "layers": [
            {"mediaType": "application/vnd.cyclonedx+json", "digest": cdx_digest, "size": cdx_size},
            {"mediaType": "application/spdx+json", "digest": spdx_digest, "size": spdx_size},
        ],
    });
    let (digest, size) = put(&serde_json::to_vec(&manifest).unwrap());
    let index_path = store.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": size,
            "artifactType": "application/vnd.dev.ferry.sbom.v1",
            "annotations": {
                "dev.ferry.repository": "ferry/sbom",
                "org.opencontainers.image.ref.name": format!("ferry/sbom:{tag}"),
            },
        }));
    std::fs::write(&index_path, serde_json::to_vec_pretty(&index).unwrap()).unwrap();
}

#[test]
fn report_of_a_store_shows_its_content_sbom_licences_and_history() {
    let ctx = TestContext::new();
    let (bundle, public) = copy_compat(&ctx);
    let store = ctx.path("store");
    // Imported, then again (already imported): two records.
    for _ in 0..2 {
        ctx.ferry([
            "import",
            p(&bundle),
            "--trust",
            p(&public),
            "--store",
            p(&store),
        ])
        .assert_success();
    }
    add_sbom(
        &store,
        "compat-1",
        &serde_json::json!({
            "bomFormat": "CycloneDX", "specVersion": "1.5",
            "components": [
                {"type": "library", "name": "six", "version": "1.16.0",
                 "purl": "pkg:pypi/six@1.16.0", "licenses": [{"license": {"id": "MIT"}}]},
                {"type": "library", "name": "libfoo", "version": "1.2",
                 "licenses": [{"expression": "Apache-2.0 OR MIT"}]},
                {"type": "library", "name": "<img src=x onerror=alert(1)>",
                 "licenses": [{"license": {"name": "<script>alert(1)</script>"}}]},
            ]
        }),
    );
    let (out, dir) = report(&ctx, "out", &["--store", p(&store)]);
    out.assert_success();
    let r = json_of(&dir);
    assert_eq!(r["summary"]["mode"], "store");
    let groups: Vec<&str> = r["store"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["ecosystem"].as_str().unwrap())
        .collect();
    for e in ["image", "python", "conda", "model", "sbom"] {
        assert!(groups.contains(&e), "no {e} in {groups:?}");
    }
    let sbom = &r["store"]["sboms"][0];
    assert_eq!(sbom["name"], "ferry/sbom:compat-1");
    assert_eq!(sbom["components"][0]["licences"][0], "MIT");
    assert_eq!(sbom["components"][1]["licences"][0], "Apache-2.0 OR MIT");
    let h = &r["history"];
    assert_eq!(h["chain"]["intact"], true);
    assert_eq!(h["records"][0]["action"], "import");
    assert_eq!(h["records"][0]["outcome"], "imported");
    assert_eq!(h["records"][0]["series"], "compat");
    let html = read(&dir, "report.html");
    assert!(!html.contains("<img") && !html.contains("<script"));
    assert!(html.contains("CHAIN INTACT") && html.contains("Apache-2.0 OR MIT"));

    assert_eq!(h["records"][1]["outcome"], "already-imported");

    // The first record edited: the chain breaks at record 2; the report is written,
    // shows the break, exit 3.
    let log = store.join(".ferry/audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("\"imported\"", "\"nothing\"", 1)).unwrap();
    let (out, dir) = report(&ctx, "broken", &["--store", p(&store)]);
    out.assert_code(3).assert_stderr_contains("record 2");
    let r = json_of(&dir);
    assert_eq!(r["summary"]["status"], "failed");
    assert_eq!(r["history"]["chain"]["brokenAt"], 2);
    assert!(r["store"]["entries"].as_u64().unwrap() > 0);
}

#[test]
fn report_of_a_broken_or_garbage_log_is_written_and_exits_3() {
    let ctx = TestContext::new();
    let (key, _) = ctx.generate_key("build");
    let spec = ctx.write_spec(
        "demo.toml",
        &format!(
            "name = \"demo\"\n[[image]]\nref = \"oci:{}:app/web:1.0\"\nrepository = \"app/web\"\n",
            demo_layout().display()
        ),
    );
    let src = ctx.path("src");
    for out in ["a.ferry", "b.ferry", "c.ferry"] {
        ctx.create_bundle(&spec, out, &key, &["--store", p(&src)]);
    }
    let log = src.join(".ferry/audit.jsonl");
    let (out, dir) = report(&ctx, "intact", &["--log", p(&log)]);
    out.assert_success();
    let r = json_of(&dir);
    assert_eq!(r["history"]["chain"]["records"], 3);
    assert_eq!(r["history"]["records"][2]["action"], "bundle create");
    assert!(r["history"]["chain"]["lastHash"].as_str().is_some());

    // Record 2 edited: the chain breaks at record 3 (its `prev` no longer matches).
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let edited = ctx.path("edited.jsonl");
    let forged = lines[1].replace("\"created\"", "\"<script>alert(1)</script>\"");
    assert_ne!(forged, lines[1]);
    std::fs::write(&edited, format!("{}\n{forged}\n{}\n", lines[0], lines[2])).unwrap();
    let (out, dir) = report(&ctx, "edited", &["--log", p(&edited)]);
    out.assert_code(3).assert_stderr_contains("record 3");
    let r = json_of(&dir);
    assert_eq!(r["history"]["chain"]["brokenAt"], 3);
    assert_eq!(r["history"]["records"][1]["proven"], true);
    assert_eq!(r["history"]["records"][2]["proven"], false);
    let html = read(&dir, "report.html");
    assert!(html.contains("BROKEN at record 3"), "no break shown");
    assert!(html.contains("class=\"banner bad\""));
    assert!(!html.contains("<script>"));
    assert!(read(&dir, "report.md").contains("BROKEN at record 3"));

    // Not JSON lines at all: broken at record 1, every line shown as what it is.
    let garbage = ctx.path("garbage.jsonl");
    std::fs::write(&garbage, "this is not json\n<img src=x onerror=alert(1)>\n").unwrap();
    let (out, dir) = report(&ctx, "garbage", &["--log", p(&garbage)]);
    out.assert_code(3).assert_stderr_contains("record 1");
    let r = json_of(&dir);
    assert_eq!(r["history"]["chain"]["brokenAt"], 1);
    assert_eq!(r["history"]["records"].as_array().unwrap().len(), 2);
    let html = read(&dir, "report.html");
    assert!(html.contains("BROKEN at record 1") && !html.contains("<img"));

    // A log that does not exist is an error, and no report.
    let (out, dir) = report(&ctx, "none", &["--log", p(&ctx.path("nope.jsonl"))]);
    out.assert_code(1);
    assert!(!dir.join("report.html").exists());
}
