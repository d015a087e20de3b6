//! Policies as code: Rego at `bundle create` (exit 4, no bundle), at `import` (the
//! site's own gate: exit 4, target unchanged), and `policy check` of a spec or a bundle;
//! the shipped `policies/`, spec labels as policy input, and the verdict recorded in
//! the signed manifest and the import log. Hostile twins: a policy that does not
//! compile, one in the wrong package, one that never ends, labels a forged manifest
//! smuggles in.

use std::path::{Path, PathBuf};

use super::context::{TestContext, p, parse_json, repo_root, snapshot_tree};
use super::images::demo_layout;
use super::tamper::Bundle;

fn shipped(name: &str) -> PathBuf {
    repo_root().join("policies").join(name)
}

/// The demo layout's image, with `labels` (a TOML inline table, or empty).
fn demo_spec(ctx: &TestContext, labels: &str) -> PathBuf {
    let name = format!(
        "demo-{:x}.toml",
        labels.len() * 31 + labels.bytes().map(usize::from).sum::<usize>()
    );
    let labels = if labels.is_empty() {
        String::new()
    } else {
        format!("labels = {labels}\n")
    };
    ctx.write_spec(
        &name,
        &format!(
            "name = \"demo\"\n[[image]]\nref = \"oci:{}:app/web:1.0\"\nrepository = \"app/web\"\n{labels}",
            demo_layout().display()
        ),
    )
}

/// Requires `labels.classification` on every artifact; warns when there is no owner.
const NEEDS_CLASSIFICATION: &str = r#"package ferry

deny contains msg if {
	some a in input.artifacts
	not a.labels.classification
	msg := sprintf("%s has no classification label", [a.repository])
}

warn contains msg if {
	some a in input.artifacts
	not a.labels.owner
	msg := sprintf("%s has no owner label", [a.repository])
}
"#;

fn write(ctx: &TestContext, name: &str, text: &str) -> PathBuf {
    let path = ctx.path(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn manifest_of(bundle: &Path) -> serde_json::Value {
    Bundle::read(bundle).manifest()
}

#[test]
fn policy_create_records_the_verdict_and_denies_with_every_reason() {
    let ctx = TestContext::new();
    let (key, public) = ctx.generate_key("team");
    let store = ctx.path("store");
    let policy = write(&ctx, "classified.rego", NEEDS_CLASSIFICATION);

    // Denied: exit 4, every reason listed, no bundle (not even a partial file).
    let spec = demo_spec(&ctx, "");
    let out = ctx.path("denied.ferry");
    ctx.ferry([
        "bundle",
        "create",
        p(&spec),
        "-o",
        p(&out),
        "--key",
        p(&key),
        "--store",
        p(&store),
        "--policy",
        p(&policy),
    ])
    .assert_code(4)
    .assert_stderr_contains("policy classified.rego denied")
    .assert_stderr_contains("app/web has no classification label");
    let left: Vec<_> = std::fs::read_dir(ctx.path("."))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("denied.ferry"))
        .collect();
    assert!(left.is_empty(), "a denied create left {left:?}");

    // Allowed once the spec labels it: the labels, the policy's name and file digest,
    // the verdict and its warnings are in the signed manifest.
    let spec = demo_spec(&ctx, "{ classification = \"internal\" }");
    let bundle = ctx.create_bundle(
        &spec,
        "ok.ferry",
        &key,
        &["--store", p(&store), "--policy", p(&policy)],
    );
    let m = manifest_of(&bundle);
    assert_eq!(m["artifacts"][0]["labels"]["classification"], "internal");
    assert_eq!(m["policy"]["policy"], "classified.rego");
    assert_eq!(m["policy"]["verdict"], "allowed");
    let file_digest = format!(
        "sha256:{}",
        super::context::sha256_hex(NEEDS_CLASSIFICATION.as_bytes())
    );
    assert_eq!(m["policy"]["digest"], file_digest.as_str());
    assert_eq!(m["policy"]["warnings"][0], "app/web has no owner label");
    ctx.ferry(["bundle", "verify", p(&bundle), "--trust", p(&public)])
        .assert_success();
    let inspect = ctx.ferry(["bundle", "inspect", p(&bundle)]);
    inspect.assert_success();
    assert!(inspect.stdout.contains("allowed"), "{inspect:?}");

    // The shipped default policy allows a local layout pinned by tag.
    let spec = demo_spec(&ctx, "");
    ctx.create_bundle(
        &spec,
        "default.ferry",
        &key,
        &[
            "--store",
            p(&store),
            "--policy",
            p(&shipped("default.rego")),
        ],
    );
}

#[test]
fn policy_import_is_the_sites_own_gate() {
    let ctx = TestContext::new();
    let (key, public) = ctx.generate_key("team");
    // An older bundle, imported first below.
    let first = ctx.create_bundle(
        &demo_spec(&ctx, ""),
        "first.ferry",
        &key,
        &["--store", p(&ctx.path("src"))],
    );
    let spec = demo_spec(&ctx, "{ classification = \"internal\" }");
    let bundle = ctx.create_bundle(&spec, "app.ferry", &key, &["--store", p(&ctx.path("src"))]);
    let target = ctx.path("target");
    let state = ctx.path("state");

    // HIPAA wants two approvers: one builder's signature is denied, exit 4, and the
    // target is not even created.
    ctx.ferry([
        "import",
        p(&bundle),
        "--trust",
        p(&public),
        "--store",
        p(&target),
        "--policy",
        p(&shipped("hipaa.rego")),
        "--state-dir",
        p(&state),
    ])
    .assert_code(4)
    .assert_stderr_contains("0 approver signature(s)");
    assert!(!target.exists(), "a denied import created the store");

    // Into an existing store: denied leaves it exactly as it was.
    ctx.ferry([
        "import",
        p(&first),
        "--trust",
        p(&public),
        "--store",
        p(&target),
    ])
    .assert_success();
    // The content, and the state that records imports (locks may come and go; the
    // audit log gains a record of the refusal).
    let state_of = |t: &Path| std::fs::read(t.join(".ferry/series.json")).ok();
    let before = snapshot_tree(&target, &[".ferry"]);
    let state_before = state_of(&target);
    let deny_all = write(
        &ctx,
        "deny.rego",
        "package ferry\ndeny contains \"nothing crosses today\" if { true }\n",
    );
    ctx.ferry([
        "import",
        p(&bundle),
        "--trust",
        p(&public),
        "--store",
        p(&target),
        "--policy",
        p(&deny_all),
    ])
    .assert_code(4)
    .assert_stderr_contains("nothing crosses today");
    let log = std::fs::read_to_string(target.join(".ferry/audit.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["outcome"], "refused", "{last:#}");
    assert_eq!(last["exit"], 4, "{last:#}");
    let after = snapshot_tree(&target, &[".ferry"]);
    assert_eq!(
        state_of(&target),
        state_before,
        "a denied import changed the import state"
    );
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(before.keys().filter(|k| !after.contains_key(*k)).cloned())
        .collect();
    assert!(
        changed.is_empty(),
        "a denied import changed the store: {changed:?}"
    );

    // Allowed: imported, and the verdict is in the import log.
    let policy = write(&ctx, "classified.rego", NEEDS_CLASSIFICATION);
    ctx.ferry([
        "import",
        p(&bundle),
        "--trust",
        p(&public),
        "--store",
        p(&target),
        "--policy",
        p(&policy),
    ])
    .assert_success()
    .assert_stderr_contains("warning: policy classified.rego: app/web has no owner label");
    let log = std::fs::read_to_string(target.join(".ferry/audit.jsonl")).unwrap_or_else(|_| {
        let found = snapshot_tree(&target, &[]);
        panic!("no audit log in {found:?}")
    });
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["policy"]["site"]["policy"], "classified.rego");
    assert_eq!(last["policy"]["site"]["verdict"], "allowed");
    assert_eq!(
        last["policy"]["site"]["warnings"][0],
        "app/web has no owner label"
    );
    assert!(last["policy"]["bundle"]["verdict"].is_string(), "{last:#}");
}

#[test]
fn policy_check_of_a_bundle_and_a_spec() {
    let ctx = TestContext::new();
    let (key, _) = ctx.generate_key("team");
    let store = ctx.path("store");
    let spec = demo_spec(&ctx, "");
    let bundle = ctx.create_bundle(&spec, "app.ferry", &key, &["--store", p(&store)]);
    let policy = write(&ctx, "classified.rego", NEEDS_CLASSIFICATION);

    let out = ctx.ferry([
        "policy",
        "check",
        p(&bundle),
        "--policy",
        p(&policy),
        "--json",
    ]);
    out.assert_code(4);
    let v = parse_json(&out);
    assert_eq!(v["allowed"], false);
    assert_eq!(v["deny"][0], "app/web has no classification label");

    ctx.ferry([
        "policy",
        "check",
        p(&bundle),
        "--policy",
        p(&shipped("default.rego")),
    ])
    .assert_success();

    // A spec is pulled (as `bundle create` would) and checked; nothing is written but
    // the store.
    let labelled = demo_spec(&ctx, "{ classification = \"internal\", owner = \"ml\" }");
    let out = ctx.ferry([
        "policy",
        "check",
        p(&labelled),
        "--policy",
        p(&policy),
        "--store",
        p(&store),
    ]);
    out.assert_success();
    assert!(out.stdout.contains("allowed"), "{out:?}");
    ctx.ferry([
        "policy",
        "check",
        p(&spec),
        "--policy",
        p(&policy),
        "--store",
        p(&store),
    ])
    .assert_code(4)
    .assert_stderr_contains("no classification label");
}

#[test]
fn policy_hostile_policies_and_labels() {
    let ctx = TestContext::new();
    let (key, public) = ctx.generate_key("team");
    let store = ctx.path("store");
    let spec = demo_spec(&ctx, "");

    // A policy that does not compile: exit 2 with the file and line, before any pull.
    let broken = write(
        &ctx,
        "broken.rego",
        "package ferry\n\ndeny contains msg if {\n  input.x ==\n",
    );
    let out = ctx.ferry([
        "bundle",
        "create",
        p(&spec),
        "-o",
        p(&ctx.path("x.ferry")),
        "--key",
        p(&key),
        "--store",
        p(&store),
        "--policy",
        p(&broken),
    ]);
    out.assert_code(2).assert_stderr_contains("broken.rego");
    assert!(
        out.stderr.contains(":4") || out.stderr.contains(":5"),
        "no line: {out:?}"
    );
    assert!(!store.exists(), "a bad policy still pulled");
    // The wrong package.
    let other = write(
        &ctx,
        "other.rego",
        "package other\ndeny contains \"x\" if { true }\n",
    );
    ctx.ferry(["policy", "check", p(&spec), "--policy", p(&other)])
        .assert_code(2)
        .assert_stderr_contains("package ferry");
    // A policy that runs forever is stopped (exit 2), not waited for.
    let forever = write(
        &ctx,
        "forever.rego",
        "package ferry\ndeny contains msg if {\n  n := numbers.range(1, 100000000)\n  some i in n\n  i < 0\n  msg := \"x\"\n}\n",
    );
    let bundle = ctx.create_bundle(&spec, "app.ferry", &key, &["--store", p(&store)]);
    let started = std::time::Instant::now();
    let out = ctx.ferry(["policy", "check", p(&bundle), "--policy", p(&forever)]);
    assert!(out.code == 2 || out.code == 1, "{out:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "a looping policy ran for {:?}",
        started.elapsed()
    );

    // Labels with control characters are refused in a spec (exit 2) ...
    let bad = demo_spec(&ctx, "{ classification = \"a\\u001b[31mb\" }");
    ctx.ferry(["pull", p(&bad), "--store", p(&store)])
        .assert_code(2)
        .assert_stderr_contains("label");
    // ... and in a validly signed manifest (exit 3).
    let mut forged = Bundle::read(&bundle);
    let mut m = forged.manifest();
    m["artifacts"][0]["labels"] = serde_json::json!({"classification": "x\u{7}y"});
    forged.set_manifest(&m);
    forged.resign(&key);
    let path = ctx.path("forged.ferry");
    forged.write(&path);
    ctx.ferry(["bundle", "verify", p(&path), "--trust", p(&public)])
        .assert_code(3)
        .assert_stderr_contains("label");
}

/// Under a trust policy the Rego input names each signer's role, so `hipaa.rego`'s
/// two-approver rule is met by two `bundle sign` co-signatures, and what is left is
/// what the bundle lacks (here: a declared licence for the demo image).
#[test]
fn policy_hipaa_counts_approvers_from_the_trust_policy() {
    let ctx = TestContext::new();
    for name in ["build", "alice", "bob"] {
        ctx.generate_key(name);
    }
    let spec = demo_spec(&ctx, "{ classification = \"internal\" }");
    let bundle = ctx.create_bundle(
        &spec,
        "app.ferry",
        &ctx.path("build.key"),
        &["--store", p(&ctx.path("src"))],
    );
    let trust = write(
        &ctx,
        "trust.toml",
        "[keys.build]\nkey = \"build.pub\"\nrole = \"builder\"\n[keys.alice]\nkey = \"alice.pub\"\nrole = \"approver\"\n[keys.bob]\nkey = \"bob.pub\"\nrole = \"approver\"\n[[rule]]\nseries = \"*\"\nrequire = { builder = 1 }\n",
    );
    let import = |target: &str| {
        ctx.ferry([
            "import",
            p(&bundle),
            "--trust-policy",
            p(&trust),
            "--store",
            p(&ctx.path(target)),
            "--policy",
            p(&shipped("hipaa.rego")),
        ])
    };
    let out = import("one");
    out.assert_code(4)
        .assert_stderr_contains("0 approver signature(s)");
    for approver in ["alice", "bob"] {
        ctx.ferry([
            "bundle",
            "sign",
            p(&bundle),
            "--key",
            p(&ctx.path(format!("{approver}.key"))),
        ])
        .assert_success();
    }
    let out = import("two");
    out.assert_code(4)
        .assert_stderr_contains("declares no licence");
    assert!(
        !out.stderr.contains("approver signature(s)"),
        "two approvers did not count: {out:?}"
    );
    assert!(!ctx.path("two").exists());
}
