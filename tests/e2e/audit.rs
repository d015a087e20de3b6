//! The audit log: every create, sign, import and refused import appends a hash-chained
//! record with who, where and what; `ferry audit verify` names the first record that
//! was edited, removed, moved or cut (exit 3), and with `--trust` checks the log against
//! its signed checkpoint; an append after a writer died mid-record drops the fragment
//! and records that.

use std::path::{Path, PathBuf};

use super::context::{TestContext, digest_of, p, parse_json, run_program};
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

/// A store whose log holds `n` records made by the real binary: a `bundle create`, then
/// imports into it that are refused (each refusal is recorded). Returns the log.
fn store_log_with(ctx: &TestContext, n: usize) -> PathBuf {
    assert!(n >= 1);
    let (key, _) = ctx.generate_key("build");
    let (_, stranger) = ctx.generate_key("stranger");
    let spec = ctx.write_spec(
        "demo.toml",
        &format!(
            "name = \"demo\"\n[[image]]\nref = \"oci:{}:app/web:1.0\"\nrepository = \"app/web\"\n",
            demo_layout().display()
        ),
    );
    let store = ctx.path("store");
    let bundle = ctx.create_bundle(&spec, "app.ferry", &key, &["--store", p(&store)]);
    for _ in 1..n {
        refused_import(ctx, &bundle, &stranger, &store).assert_code(3);
    }
    let log = store.join(".ferry/audit.jsonl");
    assert_eq!(lines(&log).len(), n);
    log
}

/// `ferry import BUNDLE --trust KEY --store STORE`, refused when KEY did not sign it.
fn refused_import(
    ctx: &TestContext,
    bundle: &Path,
    key: &Path,
    store: &Path,
) -> super::context::Output {
    ctx.ferry(["import", p(bundle), "--trust", p(key), "--store", p(store)])
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(log: &Path, lines: &[String]) {
    std::fs::write(
        log,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

fn checkpoint(ctx: &TestContext, log: &Path, key: &Path) -> super::context::Output {
    ctx.ferry(["audit", "checkpoint", "--log", p(log), "--key", p(key)])
}

fn verify_trusting(ctx: &TestContext, log: &Path, public: &Path) -> super::context::Output {
    ctx.ferry(["audit", "verify", "--log", p(log), "--trust", p(public)])
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

#[test]
fn audit_checkpoint_is_signed_for_minisign_and_shows_deleted_records() {
    let ctx = TestContext::new();
    let log = store_log_with(&ctx, 5);
    let (site, site_pub) = ctx.generate_key("site");
    let (_, other_pub) = ctx.generate_key("other");

    let out = checkpoint(&ctx, &log, &site);
    out.assert_success();
    let statement = with_suffix(&log, ".checkpoint");
    let signature = with_suffix(&log, ".checkpoint.minisig");
    let text = std::fs::read_to_string(&statement).unwrap();
    assert!(
        out.stdout.contains(&text),
        "the statement is printed: {out:?}"
    );
    assert!(out.stdout.contains(p(&statement)), "{out:?}");
    let c: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(c["format"], "dev.ferry.audit-checkpoint.v1");
    assert_eq!(c["records"], 5);
    assert_eq!(c["head"], digest_of(lines(&log)[4].as_bytes()));
    let records = records(&ctx, &["--log", p(&log)]);
    assert_eq!(records.len(), 6, "the checkpoint is itself recorded");
    assert_eq!(records[5]["action"], "checkpoint");
    assert_eq!(records[5]["records"], 5);
    assert_eq!(records[5]["head"], c["head"]);
    assert_eq!(records[5]["keyId"], c["keyId"]);

    // minisign alone checks it, and only with the site's key.
    let minisign = |public: &Path| {
        run_program(
            "minisign",
            [
                "-V",
                "-p",
                p(public),
                "-m",
                p(&statement),
                "-x",
                p(&signature),
            ],
        )
    };
    let out = minisign(&site_pub);
    out.assert_success();
    assert!(out.stdout.contains("records=5"), "{out:?}");
    assert_ne!(minisign(&other_pub).code, 0);

    let out = ctx.ferry([
        "audit",
        "verify",
        "--log",
        p(&log),
        "--trust",
        p(&other_pub),
        "--trust",
        p(&site_pub),
        "--json",
    ]);
    out.assert_success();
    let v = parse_json(&out);
    assert_eq!(v["records"], 6);
    assert_eq!(v["checkpoint"]["checked"], true);
    assert_eq!(v["checkpoint"]["records"], 5);
    assert_eq!(v["checkpoint"]["keyId"], c["keyId"]);
    let out = verify(&ctx, &log);
    out.assert_success();
    assert!(out.stdout.contains("not checked"), "{out:?}");
    assert!(out.stdout.contains("--trust"), "{out:?}");

    // A copy kept elsewhere checks a log whose checkpoint beside it is gone.
    let offsite = ctx.path("offsite");
    std::fs::create_dir(&offsite).unwrap();
    let copy = offsite.join("store.checkpoint");
    std::fs::rename(&statement, &copy).unwrap();
    std::fs::rename(&signature, with_suffix(&copy, ".minisig")).unwrap();
    let with_copy = |log: &Path| {
        ctx.ferry([
            "audit",
            "verify",
            "--log",
            p(log),
            "--trust",
            p(&site_pub),
            "--checkpoint",
            p(&copy),
        ])
    };
    with_copy(&log).assert_success();

    // Hostile twin: the newest records deleted. The chain alone still holds; the
    // checkpoint names what is missing.
    let all = lines(&log);
    write_lines(&log, &all[..3]);
    verify(&ctx, &log).assert_success();
    with_copy(&log)
        .assert_code(3)
        .assert_stderr_contains("covers 5 records")
        .assert_stderr_contains("holds 3")
        .assert_stderr_contains("the newest records were deleted")
        .assert_stderr_contains(c["keyId"].as_str().unwrap());
}

#[test]
fn audit_checkpoint_shows_an_edited_or_rewritten_record() {
    let ctx = TestContext::new();
    let log = store_log_with(&ctx, 4);
    let (site, site_pub) = ctx.generate_key("site");
    checkpoint(&ctx, &log, &site).assert_success();
    let all = lines(&log);

    // An edit before the checkpoint breaks the chain at the next record.
    let mut edited = all.clone();
    edited[1] = edited[1].replacen("\"outcome\":\"refused\"", "\"outcome\":\"imported\"", 1);
    assert_ne!(edited[1], all[1]);
    write_lines(&log, &edited);
    verify_trusting(&ctx, &log, &site_pub)
        .assert_code(3)
        .assert_stderr_contains("record 3");

    // Hostile twin: the same edit with the chain recomputed after it. Only the
    // checkpoint shows it.
    let mut prev = format!("sha256:{}", "0".repeat(64));
    let rechained: Vec<String> = edited
        .iter()
        .map(|line| {
            let at = line.find("\"prev\":\"").unwrap() + "\"prev\":\"".len();
            let line = format!("{}{}{}", &line[..at], prev, &line[at + prev.len()..]);
            prev = digest_of(line.as_bytes());
            line
        })
        .collect();
    write_lines(&log, &rechained);
    verify(&ctx, &log).assert_success();
    verify_trusting(&ctx, &log, &site_pub)
        .assert_code(3)
        .assert_stderr_contains("record 4 of")
        .assert_stderr_contains("differs from the one the checkpoint signed");
}

#[test]
fn audit_checkpoint_forged_foreign_or_missing_is_refused() {
    let ctx = TestContext::new();
    let log = store_log_with(&ctx, 3);
    let (site, site_pub) = ctx.generate_key("site");
    let (rogue, rogue_pub) = ctx.generate_key("rogue");
    let statement = with_suffix(&log, ".checkpoint");
    let signature = with_suffix(&log, ".checkpoint.minisig");

    // Forged: the count edited after signing.
    checkpoint(&ctx, &log, &site).assert_success();
    let text = std::fs::read_to_string(&statement).unwrap();
    std::fs::write(&statement, text.replace("\"records\": 3", "\"records\": 2")).unwrap();
    verify_trusting(&ctx, &log, &site_pub)
        .assert_code(3)
        .assert_stderr_contains("does not verify")
        .assert_stderr_contains("does not match the signed content");

    // Signed by a key the verifier does not trust (a rogue re-signed a short log).
    write_lines(&log, &lines(&log)[..2]);
    checkpoint(&ctx, &log, &rogue).assert_success();
    verify_trusting(&ctx, &log, &rogue_pub).assert_success();
    verify_trusting(&ctx, &log, &site_pub)
        .assert_code(3)
        .assert_stderr_contains("not among the trusted keys")
        .assert_stderr_contains("hint:");

    // No signature beside it; no checkpoint at all.
    checkpoint(&ctx, &log, &site).assert_success();
    verify_trusting(&ctx, &log, &site_pub).assert_success();
    std::fs::remove_file(&signature).unwrap();
    verify_trusting(&ctx, &log, &site_pub)
        .assert_code(3)
        .assert_stderr_contains("no signature beside it");
    std::fs::remove_file(&statement).unwrap();
    verify_trusting(&ctx, &log, &site_pub)
        .assert_code(3)
        .assert_stderr_contains("no checkpoint at")
        .assert_stderr_contains("ferry audit checkpoint");
    // Without --trust nothing is claimed about checkpoints.
    let out = verify(&ctx, &log);
    out.assert_success();
    assert!(!out.stdout.contains("checkpoint"), "{out:?}");
    // --checkpoint without --trust would check nothing: a usage error.
    ctx.ferry([
        "audit",
        "verify",
        "--log",
        p(&log),
        "--checkpoint",
        p(&statement),
    ])
    .assert_code(2);
}

#[test]
fn audit_checkpoint_refuses_a_broken_or_empty_log_and_an_open_key() {
    let ctx = TestContext::new();
    let log = store_log_with(&ctx, 2);
    let (site, _) = ctx.generate_key("site");
    let statement = with_suffix(&log, ".checkpoint");
    let text = std::fs::read_to_string(&log).unwrap();

    std::fs::write(&log, text.replacen("\"seq\":1", "\"seq\":7", 1)).unwrap();
    checkpoint(&ctx, &log, &site)
        .assert_code(3)
        .assert_stderr_contains("record 1");
    assert!(!statement.exists());
    std::fs::write(&log, "").unwrap();
    checkpoint(&ctx, &log, &site)
        .assert_code(3)
        .assert_stderr_contains("no records");
    assert!(!statement.exists());

    std::fs::write(&log, &text).unwrap();
    std::fs::set_permissions(&site, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    checkpoint(&ctx, &log, &site)
        .assert_code(1)
        .assert_stderr_contains("readable by others");
    assert!(!statement.exists());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), text);
}

#[test]
fn audit_log_cut_mid_record_is_recovered_by_the_next_append() {
    let ctx = TestContext::new();
    let log = store_log_with(&ctx, 2);
    let store = log.parent().unwrap().parent().unwrap().to_path_buf();
    let stranger = ctx.path("stranger.pub");
    let bundle = ctx.path("app.ferry");
    let text = std::fs::read(&log).unwrap();
    let all = lines(&log);

    // What a writer killed with kill -9 mid-append leaves: a cut last line.
    let keep = all[0].len() + 1 + all[1].len() / 2;
    std::fs::write(&log, &text[..keep]).unwrap();
    verify(&ctx, &log)
        .assert_code(3)
        .assert_stderr_contains("record 2")
        .assert_stderr_contains("cut off");

    // The next import appends fine, without a warning, and the loss is in the chain.
    let out = refused_import(&ctx, &bundle, &stranger, &store);
    out.assert_code(3);
    assert!(!out.stderr.contains("warning"), "{out:?}");
    verify(&ctx, &log).assert_success();
    let after = records(&ctx, &["--log", p(&log)]);
    assert_eq!(after.len(), 2);
    assert_eq!(after[1]["seq"], 2);
    assert_eq!(after[1]["outcome"], "refused");
    let cut = &text[all[0].len() + 1..keep];
    assert_eq!(after[1]["recovered"]["cutBytes"], cut.len());
    assert_eq!(after[1]["recovered"]["sha256"], digest_of(cut));
    assert_eq!(lines(&log)[0], all[0], "the records before it are kept");
    let out = ctx.ferry(["audit", "show", "--log", p(&log)]);
    out.assert_success();
    assert!(out.stdout.contains("recovered"), "{out:?}");
    assert!(out.stdout.contains(&digest_of(cut)), "{out:?}");
    // And later appends are ordinary.
    refused_import(&ctx, &bundle, &stranger, &store).assert_code(3);
    let later = records(&ctx, &["--log", p(&log)]);
    assert_eq!(later.len(), 3);
    assert!(later[2].get("recovered").is_none());

    // Hostile twin: an attacker who cuts the log mid-record to drop what follows gets
    // it "repaired" by the next append; the checkpoint still shows it.
    let (site, site_pub) = ctx.generate_key("site");
    checkpoint(&ctx, &log, &site).assert_success();
    let all = lines(&log);
    let text = std::fs::read(&log).unwrap();
    let keep = all[0].len() + 1 + 9;
    std::fs::write(&log, &text[..keep]).unwrap();
    refused_import(&ctx, &bundle, &stranger, &store).assert_code(3);
    verify(&ctx, &log).assert_success();
    verify_trusting(&ctx, &log, &site_pub)
        .assert_code(3)
        .assert_stderr_contains("covers 3 records")
        .assert_stderr_contains("holds 2");

    // A cut line in the middle is no cut end: still broken after an append.
    let all = lines(&log);
    let mut middle = all.clone();
    middle[0] = all[0][..all[0].len() / 2].to_string();
    write_lines(&log, &middle);
    refused_import(&ctx, &bundle, &stranger, &store).assert_code(3);
    verify(&ctx, &log)
        .assert_code(3)
        .assert_stderr_contains("record 1");
}

#[test]
fn audit_log_that_is_not_json_lines_is_broken_at_record_1() {
    let ctx = TestContext::new();
    let log = store_log_with(&ctx, 2);
    let store = log.parent().unwrap().parent().unwrap().to_path_buf();
    let stranger = ctx.path("stranger.pub");
    let bundle = ctx.path("app.ferry");
    let held = records(&ctx, &["--log", p(&log)]);
    let array = serde_json::to_string(&held).unwrap();
    let pretty = serde_json::to_string_pretty(&held).unwrap();
    let random: Vec<u8> = (0u32..600)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .filter(|b| *b != b'\n')
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", random),
        ("a JSON array", array.into_bytes()),
        (
            "a JSON array with an end of line",
            format!("{pretty}\n").into_bytes(),
        ),
    ];
    for (what, bytes) in cases {
        std::fs::write(&log, &bytes).unwrap();
        let out = verify(&ctx, &log);
        out.assert_code(3).assert_stderr_contains("record 1");
        assert!(out.stderr.contains("hint:"), "{what}: {out:?}");
        ctx.ferry(["audit", "show", "--log", p(&log)])
            .assert_code(3)
            .assert_stderr_contains("record 1");
        // A command appending to it still finishes, warns, and leaves the log alone.
        let out = refused_import(&ctx, &bundle, &stranger, &store);
        out.assert_code(3);
        assert!(out.stderr.contains("warning"), "{what}: {out:?}");
        assert_eq!(
            std::fs::read(&log).unwrap(),
            bytes,
            "{what}: the log changed"
        );
    }
}
