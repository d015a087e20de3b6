//! Shared state under attack: two ferry processes at once on one store, imports killed
//! half way, a registry that lost what the importer remembers, hostile sizes and
//! missing children, and bundles with tens of thousands of artifacts.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::context::{TestContext, copy_tree, p, parse_json, sha256_hex};
use super::fixtures::{fixtures, standard_spec};
use super::hostile::Case;
use super::tamper::Bundle;

/// Starts `ferry ARGS` in the background with the test's environment.
fn spawn(ctx: &TestContext, args: &[&str]) -> Child {
    let mut cmd = ctx.ferry_command();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn ferry")
}

/// Waits for a spawned ferry; returns (exit code, stderr).
fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().expect("wait for ferry");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every blob of a store holds the bytes its name says.
#[track_caller]
fn assert_blobs_match_names(store: &Path) {
    let dir = store.join("blobs/sha256");
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(sha256_hex(&bytes), name, "blob {name} holds other bytes");
    }
}

fn sequence_of(ctx: &TestContext, bundle: &Path) -> u64 {
    parse_json(&ctx.ferry(["bundle", "inspect", p(bundle), "--json"]))["sequence"]
        .as_u64()
        .expect("a sequence")
}

/// Two `bundle create` of one series into one fresh store, at once, several times: both
/// succeed, every blob holds the bytes its name says, and the sequences differ.
#[test]
fn state_two_creates_share_a_store() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let spec = ctx.write_spec("ferry.toml", &standard_spec(ctx.host()));
    for round in 0..3 {
        let store = ctx.path(format!("store-{round}"));
        let outs: Vec<PathBuf> = (0..2)
            .map(|i| ctx.path(format!("b-{round}-{i}.ferry")))
            .collect();
        let children: Vec<Child> = outs
            .iter()
            .map(|out| {
                spawn(
                    &ctx,
                    &[
                        "bundle",
                        "create",
                        p(&spec),
                        "-o",
                        p(out),
                        "--key",
                        p(&fx.key),
                        "--store",
                        p(&store),
                        "--quiet",
                    ],
                )
            })
            .collect();
        for child in children {
            let (code, stderr) = finish(child);
            assert_eq!(code, 0, "round {round}: a create failed:\n{stderr}");
        }
        assert_blobs_match_names(&store);
        let partial = store.join(".ferry/partial");
        let left: Vec<_> = std::fs::read_dir(&partial)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "round {round}: partial files left: {left:?}"
        );
        let (a, b) = (sequence_of(&ctx, &outs[0]), sequence_of(&ctx, &outs[1]));
        assert_ne!(a, b, "round {round}: two creates got sequence {a}");
        for out in &outs {
            ctx.ferry(["bundle", "verify", p(out), "--trust", p(&fx.public)])
                .assert_success();
        }
    }
}

/// Two `bundle create` with one `-o` at once (whole and split): they would share the
/// partial files, so one refuses (exit 1, naming the other writer) while the other
/// holds `OUT.lock`, or they ran one after the other. Either way the bundle there is
/// whole and verifies, and no partial file or lock is left. A lock held by another
/// process (as a running ferry holds it) is refused the same way, before any pull.
#[test]
fn state_two_creates_of_one_output_do_not_mix() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let spec = ctx.write_spec("ferry.toml", &standard_spec(ctx.host()));
    let store = ctx.path("store");
    let out = ctx.path("same.ferry");
    let create = |split: bool| {
        let mut args = vec![
            "bundle",
            "create",
            p(&spec),
            "-o",
            p(&out),
            "--key",
            p(&fx.key),
            "--store",
            p(&store),
            "--quiet",
            // Every round writes the same output again.
            "--force",
        ];
        if split {
            args.extend(["--split", "64KiB"]);
        }
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    // Pull once, so that the two creates below race on writing, not pulling.
    ctx.ferry(create(false)).assert_success();
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(ctx.path("."))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".partial") || n.ends_with(".lock"))
            .collect()
    };
    let mut refused = 0;
    for round in 0..4 {
        let split = round % 2 == 0; // the last round writes it whole
        let args = create(split);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let children: Vec<Child> = (0..2).map(|_| spawn(&ctx, &args)).collect();
        let mut ok = 0;
        for child in children {
            match finish(child) {
                (0, _) => ok += 1,
                (1, stderr) => {
                    assert!(
                        stderr.contains("another ferry is writing bundle")
                            && stderr.contains("another -o"),
                        "round {round}: {stderr}"
                    );
                    refused += 1;
                }
                (code, stderr) => panic!("round {round}: exit {code}:\n{stderr}"),
            }
        }
        assert!(ok >= 1, "round {round}: neither create succeeded");
        assert_eq!(leftovers(), Vec::<String>::new(), "round {round}");
        let verify = ["bundle", "verify", p(&out), "--trust", p(&fx.public)];
        ctx.ferry(verify).assert_success();
    }
    // What a running writer holds, held by another process: refused, nothing written.
    let lock = ctx.path("same.ferry.lock");
    let mut holder = std::process::Command::new("flock")
        .args([p(&lock), "sleep", "30"])
        .spawn()
        .expect("flock(1)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = std::fs::read(&out).unwrap();
    // Refused before anything is pulled: a fresh store is not even made.
    let unpulled = ctx.path("unpulled");
    let mut args = create(false);
    let at = args.iter().position(|a| a == "--store").unwrap() + 1;
    args[at] = p(&unpulled).to_string();
    ctx.ferry(args)
        .assert_code(1)
        .assert_stderr_contains("same.ferry.lock");
    assert_eq!(std::fs::read(&out).unwrap(), before, "the bundle changed");
    assert!(
        !unpulled.exists(),
        "a busy output still pulled into a store"
    );
    let _ = holder.kill();
    let _ = holder.wait();
    eprintln!("two creates of one -o: {refused} of 8 refused as busy");
}

/// Two imports of different series into a store that does not exist yet, at once: both
/// succeed and the store remembers both series, so neither can be rolled back.
#[test]
fn state_two_imports_create_one_store() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let seed = fx.dir.join("seed.ferry");
    for round in 0..3 {
        let store = ctx.path(format!("new-{round}/store"));
        let children: Vec<Child> = [&fx.bundle, &seed]
            .iter()
            .map(|b| {
                spawn(
                    &ctx,
                    &[
                        "import",
                        p(b),
                        "--trust",
                        p(&fx.public),
                        "--store",
                        p(&store),
                        "--quiet",
                    ],
                )
            })
            .collect();
        for child in children {
            let (code, stderr) = finish(child);
            assert_eq!(code, 0, "round {round}: an import failed:\n{stderr}");
        }
        let series: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.join(".ferry/series.json")).unwrap())
                .unwrap();
        assert!(
            series.get("e2e").is_some() && series.get("seed").is_some(),
            "round {round}: a series record was lost: {series}"
        );
        let parent = store.parent().unwrap();
        let names: Vec<String> = std::fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["store"], "round {round}: left beside the store");
        assert_blobs_match_names(&store);
    }
}

/// What an import killed with -9 leaves (its staging directory, half written) is gone
/// after the next import of the same target, for stores that exist, stores that did not
/// exist yet, and registry targets.
#[test]
fn state_staging_of_a_killed_import_is_reclaimed() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let half = |dir: &Path| {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("blobs/sha256/x.part"), vec![7u8; 1 << 20]).unwrap();
    };

    // A real kill first: an import stopped at once, wherever it was.
    let store = ctx.path("store");
    copy_tree(&fx.seeded_store, &store);
    let child = spawn(
        &ctx,
        &[
            "import",
            p(&fx.bundle),
            "--trust",
            p(&fx.public),
            "--store",
            p(&store),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !staging_dirs(&store.join(".ferry"), "staging-").is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = std::process::Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    finish(child);
    // And what a kill in the middle of staging leaves, made by hand, so the case is
    // there whatever the timing above.
    half(&store.join(".ferry/staging-killed1"));
    ctx.ferry([
        "import",
        p(&fx.bundle),
        "--trust",
        p(&fx.public),
        "--store",
        p(&store),
    ])
    .assert_success();
    assert_eq!(
        staging_dirs(&store.join(".ferry"), "staging-"),
        Vec::<String>::new()
    );

    // A store that does not exist yet: its staging is a hidden sibling.
    let parent = ctx.path("fresh");
    half(&parent.join(".store.ferry-new-killed1"));
    ctx.ferry([
        "import",
        p(&fx.bundle),
        "--trust",
        p(&fx.public),
        "--store",
        p(&parent.join("store")),
    ])
    .assert_success();
    assert_eq!(staging_dirs(&parent, ".store.ferry"), Vec::<String>::new());

    // A registry target: staging under the state directory.
    let to = format!("{}/state-killed", ctx.host());
    let state = ctx.path("registry-state");
    let target_state = state.join("registries").join(
        to.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>(),
    );
    half(&target_state.join("staging-killed1"));
    ctx.ferry([
        "import",
        p(&fx.bundle),
        "--trust",
        p(&fx.public),
        "--to",
        &to,
        "--state-dir",
        p(&state),
    ])
    .assert_success();
    assert_eq!(
        staging_dirs(&target_state, "staging-"),
        Vec::<String>::new()
    );
}

fn staging_dirs(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// A registry that lost what was imported into it gets it again on a re-import, not
/// "already imported" from local state; `--force` imports again and keeps the rollback
/// record.
#[test]
fn state_reimport_checks_the_registry() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let registry = ctx.registry();
    let to = format!("{}/state-lost", ctx.host());
    let import = |extra: &[&str]| {
        let mut args = vec![
            "import",
            p(&fx.bundle),
            "--trust",
            p(&fx.public),
            "--to",
            &to,
        ];
        args.extend(extra);
        ctx.ferry(args)
    };
    import(&[]).assert_success();
    let before = registry.snapshot("state-lost");
    assert!(!before.is_empty());
    let out = import(&[]);
    out.assert_success();
    assert!(
        out.stderr.contains("already") || out.stdout.contains("already"),
        "{out:?}"
    );

    // The registry loses every manifest.
    for (repo, tags) in &before {
        for digest in tags.values() {
            super::http::request(
                &registry.host,
                "DELETE",
                &format!("/v2/{repo}/manifests/{digest}"),
                &[],
                b"",
            )
            .unwrap();
        }
    }
    assert!(
        registry
            .snapshot("state-lost")
            .values()
            .all(|t| t.is_empty())
    );
    let out = import(&[]);
    out.assert_success();
    assert!(
        !out.stdout.contains("already") && !out.stderr.contains("already"),
        "{out:?}"
    );
    assert_eq!(registry.snapshot("state-lost"), before);

    // --force imports again; an older bundle of the series is still refused.
    let out = import(&["--force"]);
    out.assert_success();
    assert!(!out.stdout.contains("already"), "{out:?}");
    let spec = ctx.write_spec("ferry.toml", &standard_spec(ctx.host()));
    let newer = ctx.create_bundle(&spec, "newer.ferry", &fx.key, &["--sequence", "5"]);
    ctx.ferry(["import", p(&newer), "--trust", p(&fx.public), "--to", &to])
        .assert_success();
    import(&["--force"])
        .assert_code(3)
        .assert_stderr_contains("rollback");
}

/// An artifact whose size is absurd, or whose child blob is missing from the bundle, is
/// a verification failure (exit 3) naming it; a refused import into a store that did not
/// exist leaves no store behind.
#[test]
fn state_hostile_sizes_and_missing_children_are_exit_3() {
    let ctx = TestContext::new();
    let fx = fixtures();

    let mut bundle = Bundle::read(&fx.bundle);
    let mut manifest = bundle.manifest();
    manifest["artifacts"][0]["size"] = u64::MAX.into();
    bundle.set_manifest(&manifest);
    bundle.resign(&fx.key);
    let case = Case::new(&ctx, "huge-size");
    let file = case.write(&bundle);
    case.assert_refused(&file, &fx.public, &["e2e/"]);
    let absent = ctx.path("absent/store");
    ctx.ferry([
        "import",
        p(&file),
        "--trust",
        p(&fx.public),
        "--store",
        p(&absent),
    ])
    .assert_code(3);
    assert!(!absent.exists(), "a refused import left a store behind");
    assert_eq!(
        std::fs::read_dir(ctx.path("absent")).unwrap().count(),
        0,
        "a refused import left something beside the store"
    );

    // A layer listed by an image but not carried (nor in the target store already).
    let mut bundle = Bundle::read(&fx.bundle);
    let seeded = fx.seeded_store.join("blobs/sha256");
    let layer = bundle
        .entries
        .iter()
        .filter(|e| {
            e.path
                .strip_prefix("blobs/sha256/")
                .is_some_and(|hex| !seeded.join(hex).exists())
        })
        .max_by_key(|e| e.data.len())
        .unwrap()
        .path
        .clone();
    let mut manifest = bundle.manifest();
    manifest["entries"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["path"] != layer.as_str());
    bundle.entries.retain(|e| e.path != layer);
    bundle.set_manifest(&manifest);
    bundle.resign(&fx.key);
    let case = Case::new(&ctx, "missing-child");
    let file = case.write(&bundle);
    case.assert_refused(&file, &fx.public, &["incomplete"]);
}

/// A bundle of 40,000 artifacts (one image under many tags, as a hostile signer could
/// make) imports and re-imports: the import is linear in the artifacts, so this ends
/// well inside the command time-out (a quadratic import took minutes).
#[test]
fn state_forty_thousand_artifacts_import_and_reimport() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let mut bundle = Bundle::read(&fx.bundle);
    let mut manifest = bundle.manifest();
    let first = manifest["artifacts"][0].clone();
    let many: Vec<serde_json::Value> = (0..40_000)
        .map(|i| {
            let mut a = first.clone();
            a["tag"] = format!("t{i}").into();
            a
        })
        .collect();
    manifest["artifacts"] = many.into();
    bundle.set_manifest(&manifest);
    bundle.resign(&fx.key);
    let file = ctx.path("many.ferry");
    bundle.write(&file);
    let store = ctx.path("store");
    let started = Instant::now();
    for _ in 0..2 {
        ctx.ferry([
            "import",
            p(&file),
            "--trust",
            p(&fx.public),
            "--store",
            p(&store),
            "--quiet",
        ])
        .assert_success();
    }
    let entries: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap()).unwrap();
    // Every artifact, and the bundle's SBOM artifact (`ferry/sbom:<series>-<sequence>`).
    assert_eq!(entries["manifests"].as_array().unwrap().len(), 40_001);
    // Generous: the point is linear against quadratic (minutes), not speed.
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "import and re-import of 40k artifacts took {:?}",
        started.elapsed()
    );
}

/// A signed bundle whose artifact is a chain of 40 image indexes, each holding the next
/// (a stack-exhaustion attempt): refused with exit 3, nothing written.
#[test]
fn state_manifests_nested_too_deep_are_refused() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let mut bundle = Bundle::read(&fx.bundle);
    let mut manifest = bundle.manifest();
    let first = &manifest["artifacts"][0];
    let mut child = serde_json::json!({
        "mediaType": first["mediaType"],
        "digest": first["digest"],
        "size": first["size"],
    });
    let mut top = (String::new(), 0usize);
    for _ in 0..40 {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [child],
        });
        let bytes = serde_json::to_vec(&index).unwrap();
        let size = bytes.len();
        let hex = bundle.add_blob(&mut manifest, bytes);
        top = (format!("sha256:{hex}"), size);
        child = serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": top.0,
            "size": size,
        });
    }
    manifest["artifacts"][0]["digest"] = top.0.as_str().into();
    manifest["artifacts"][0]["size"] = top.1.into();
    manifest["artifacts"][0]["mediaType"] = "application/vnd.oci.image.index.v1+json".into();
    bundle.set_manifest(&manifest);
    bundle.resign(&fx.key);
    let case = Case::new(&ctx, "too-deep");
    let file = case.write(&bundle);
    case.assert_refused(&file, &fx.public, &["nested more than 16"]);
}
