//! `-` reads a bundle from standard input (a pipe here, which cannot be read twice or
//! sought): verify, inspect, import and policy check take it; commands that need the
//! file (sign, sbom, report, split bundles) refuse it by name; and the stream's hostile
//! twins (no bundle, a directory, cut short, empty) fail as a file would.

use std::process::Stdio;

use super::context::{Output, TestContext, p, repo_root, run_piped, run_with_stdin};
use super::fixtures::fixtures;

/// `ferry ARGS` with `input` piped to its standard input.
fn piped(ctx: &TestContext, args: &[&str], input: Vec<u8>) -> Output {
    let mut cmd = ctx.ferry_command();
    cmd.args(args);
    run_piped(cmd, input)
}

#[test]
fn stdin_bundle_verifies_inspects_imports_and_is_checked_by_policy() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let bytes = std::fs::read(&fx.bundle).unwrap();

    let out = piped(
        &ctx,
        &["bundle", "verify", "-", "--trust", p(&fx.public)],
        bytes.clone(),
    );
    out.assert_success();
    assert!(out.stdout.starts_with("verified -: series e2e"), "{out:?}");

    // Inspect from the pipe shows what inspect of the file shows (no signature files
    // beside a fixture bundle, so the text is the same but for its first line).
    let from_pipe = piped(&ctx, &["bundle", "inspect", "-", "--json"], bytes.clone());
    from_pipe.assert_success();
    let from_file = ctx.ferry(["bundle", "inspect", p(&fx.bundle), "--json"]);
    from_file.assert_success();
    assert_eq!(from_pipe.stdout, from_file.stdout);

    let store = ctx.path("store");
    let out = piped(
        &ctx,
        &[
            "import",
            "-",
            "--trust",
            p(&fx.public),
            "--store",
            p(&store),
        ],
        bytes.clone(),
    );
    out.assert_success();
    let ls = ctx.ferry(["store", "ls", "--store", p(&store)]);
    ls.assert_success();
    assert!(ls.stdout.contains("e2e/multi:v1"), "{ls:?}");
    ctx.ferry(["store", "check", "--store", p(&store)])
        .assert_success();
    // The audit record says where the bundle came from.
    let log = std::fs::read_to_string(store.join(".ferry/audit.jsonl")).unwrap();
    let import: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["action"] == "import")
        .expect("an import record");
    assert_eq!(import["bundle"], "-", "{import}");
    assert_eq!(import["series"], "e2e", "{import}");

    // Policy check of a bundle on stdin gives the verdict it gives of the file.
    let policy = repo_root().join("policies/default.rego");
    let args = |input: &str| {
        vec![
            "policy".to_string(),
            "check".into(),
            input.into(),
            "--policy".into(),
            p(&policy).into(),
            "--json".into(),
        ]
    };
    let mut cmd = ctx.ferry_command();
    cmd.args(args("-"));
    let from_pipe = run_piped(cmd, bytes.clone());
    let from_file = ctx.ferry(args(p(&fx.bundle)));
    assert_eq!(
        from_pipe.code, from_file.code,
        "{from_pipe:?} {from_file:?}"
    );
    let verdict = |o: &Output| {
        let mut v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        v.as_object_mut().unwrap().remove("input");
        v
    };
    assert_eq!(verdict(&from_pipe), verdict(&from_file));

    // A file named `-` is `./-`.
    std::fs::copy(&fx.bundle, ctx.path("-")).unwrap();
    ctx.ferry(["bundle", "verify", "./-", "--trust", p(&fx.public)])
        .assert_success();
}

#[test]
fn stdin_that_is_no_bundle_or_cut_short_is_refused_and_nothing_is_written() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let bytes = std::fs::read(&fx.bundle).unwrap();
    let store = ctx.path("store");
    let import = [
        "import",
        "-",
        "--trust",
        p(&fx.public),
        "--store",
        p(&store),
    ];

    // A spec on stdin: usage (2), "not a ferry bundle".
    piped(&ctx, &import, b"name = \"x\"\n".to_vec())
        .assert_code(2)
        .assert_stderr_contains("not a ferry bundle");
    // A directory as stdin.
    let dir = std::fs::File::open(ctx.path(".")).unwrap();
    let mut cmd = ctx.ferry_command();
    cmd.args(import);
    run_with_stdin(cmd, Stdio::from(dir), None)
        .assert_code(2)
        .assert_stderr_contains("standard input is a directory");
    // Cut short in the middle, and empty: damaged (3).
    piped(&ctx, &import, bytes[..bytes.len() / 2].to_vec())
        .assert_code(3)
        .assert_stderr_contains("damaged");
    piped(&ctx, &import, Vec::new()).assert_code(3);
    assert!(
        !store.exists(),
        "a refused import created {}",
        store.display()
    );

    // A split bundle's volumes cannot come through one pipe.
    piped(
        &ctx,
        &[
            "bundle",
            "verify",
            "-",
            "--trust",
            p(&fx.public),
            "--volumes",
            p(&ctx.path(".")),
        ],
        bytes.clone(),
    )
    .assert_code(2)
    .assert_stderr_contains("split bundle cannot come from standard input");

    // Commands that need the file say so, before reading anything.
    let key = &fx.key;
    let report = ctx.path("report");
    for (args, why) in [
        (
            vec!["bundle", "sign", "-", "--key", p(key)],
            "written beside the bundle",
        ),
        (vec!["bundle", "sbom", "-"], "reads the manifest, then"),
        (vec!["report", "-", "-o", p(&report)], "reads it again"),
    ] {
        piped(&ctx, &args, bytes.clone())
            .assert_code(2)
            .assert_stderr_contains("cannot take the bundle from standard input")
            .assert_stderr_contains(why)
            .assert_stderr_contains("./-");
    }
    assert!(!report.exists());
}

/// A registry import from a pipe cannot read the bundle twice (as one from a file does,
/// checking it, then streaming its layers): it stages the whole stream, then pushes,
/// and lands what the file would. Cut short, it tags nothing.
#[test]
fn stdin_bundle_imports_into_a_registry_and_a_cut_one_tags_nothing() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let registry = ctx.registry();
    let bytes = std::fs::read(&fx.bundle).unwrap();
    let import = |prefix: &str, input: Vec<u8>| {
        let to = format!("{}/{prefix}", ctx.host());
        let state = ctx.path(format!("state-{prefix}"));
        piped(
            &ctx,
            &[
                "import",
                "-",
                "--trust",
                p(&fx.public),
                "--to",
                &to,
                "--state-dir",
                p(&state),
            ],
            input,
        )
    };
    import("stdin-cut", bytes[..bytes.len() * 2 / 3].to_vec()).assert_code(3);
    assert!(
        registry.snapshot("stdin-cut").is_empty(),
        "a cut stream left tags"
    );

    import("stdin-whole", bytes).assert_success();
    let images = ctx.images();
    assert_eq!(
        registry
            .manifest_digest("stdin-whole/e2e/multi", "v1")
            .as_deref(),
        Some(images.multi.digest.as_str())
    );
    super::kill::assert_registry_consistent(ctx.host(), "stdin-whole", "after a piped import");
}
