//! The audit log: every create, sign, import and refused import appends a hash-chained
//! record with who, where and what; `ferry audit verify` names the first record that
//! was edited, removed, moved or cut (exit 3).

use std::path::Path;

use super::context::{TestContext, p, parse_json};
use super::images::demo_layout;

fn records(ctx: &TestContext, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["audit", "show"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = ctx.ferry(all);
    out.assert_success();
    parse_json(&out).as_array().unwrap().clone()
}

fn verify(ctx: &TestContext, log: &Path) -> super::context::Output {
    ctx.ferry(["audit", "verify", "--log", p(log)])
}

#[test]
fn audit_records_create_sign_import_and_refusals_and_detects_tampering() {
    let ctx = TestContext::new();
    let (key, public) = ctx.generate_key("build");
    let (alice, _) = ctx.generate_key("alice");
    let (_, stranger) = ctx.generate_key("stranger");
    let spec = ctx.write_spec(
        "demo.toml",
        &format!(
            "name = \"demo\"\n[[image]]\nref = \"oci:{}:app/web:1.0\"\nrepository = \"app/web\"\n",
            demo_layout().display()
        ),
    );
    let src = ctx.path("src");
    let bundle = ctx.create_bundle(&spec, "app.ferry", &key, &["--store", p(&src)]);
    let sign_log = ctx.path("approvals.jsonl");
    ctx.ferry([
        "bundle",
        "sign",
        p(&bundle),
        "--key",
        p(&alice),
        "--log",
        p(&sign_log),
    ])
    .assert_success();
    let target = ctx.path("target");
    let state = ctx.path("state");
    // Refused (untrusted signer) before the store exists: recorded in the importer's
    // state directory, and the store is not created.
    ctx.ferry([
        "import",
        p(&bundle),
        "--trust",
        p(&stranger),
        "--store",
        p(&target),
        "--state-dir",
        p(&state),
    ])
    .assert_code(3);
    assert!(!target.exists());
    ctx.ferry([
        "import",
        p(&bundle),
        "--trust",
        p(&public),
        "--store",
        p(&target),
    ])
    .assert_success();
    // Refused into the existing store: recorded in its log.
    ctx.ferry([
        "import",
        p(&bundle),
        "--trust",
        p(&stranger),
        "--store",
        p(&target),
    ])
    .assert_code(3);

    let created = records(&ctx, &["--store", p(&src)]);
    assert_eq!(created.len(), 1);
    let c = &created[0];
    assert_eq!(c["action"], "bundle create");
    assert_eq!(c["outcome"], "created");
    assert_eq!(c["series"], "demo");
    assert!(c["manifest"].as_str().unwrap().starts_with("sha256:"));
    assert!(c["store"].as_str().unwrap().starts_with('/'), "{c}");
    for field in [
        "user",
        "host",
        "time",
        "prev",
        "seq",
        "bytes",
        "artifacts",
        "signers",
    ] {
        assert!(!c[field].is_null(), "no {field}: {c}");
    }
    let signed = records(&ctx, &["--log", p(&sign_log)]);
    assert_eq!(signed[0]["action"], "bundle sign");
    assert_eq!(signed[0]["manifest"], c["manifest"]);
    let early = records(&ctx, &["--log", p(&state.join("audit.jsonl"))]);
    assert_eq!(early[0]["outcome"], "refused");
    assert_eq!(early[0]["exit"], 3);
    assert_eq!(early[0]["claimed"]["series"], "demo");
    let imported = records(&ctx, &["--store", p(&target)]);
    assert_eq!(imported.len(), 2);
    assert_eq!(imported[0]["outcome"], "imported");
    assert_eq!(imported[0]["manifest"], c["manifest"]);
    assert!(
        imported[0]["target"]
            .as_str()
            .unwrap()
            .starts_with("store:/")
    );
    assert_eq!(imported[1]["outcome"], "refused");
    assert_eq!(imported[1]["seq"], 2);

    // Tampering, each on a fresh copy of the store's log: exit 3 naming the record.
    let log = target.join(".ferry/audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    verify(&ctx, &log).assert_success();
    let copy = ctx.path("copy.jsonl");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "edited",
            text.replacen("\"outcome\":\"imported\"", "\"outcome\":\"nothing\"", 1),
            "record 2",
        ),
        ("removed", format!("{}\n", lines[1]), "record 1"),
        (
            "reordered",
            format!("{}\n{}\n", lines[1], lines[0]),
            "record 1",
        ),
        ("truncated", text[..text.len() - 5].to_string(), "record 2"),
    ];
    for (what, bytes, at) in cases {
        std::fs::write(&copy, bytes).unwrap();
        verify(&ctx, &copy)
            .assert_code(3)
            .assert_stderr_contains(at);
        let _ = what;
    }
}
