//! `ferry import` into a registry and into a store: digests preserved, referrers carried,
//! re-import a no-op, rollback refused without touching the target.

use super::context::{TestContext, digest_of, p, run_program, snapshot_tree};
use super::fixtures::fixtures;
use super::http::{self, MANIFEST_ACCEPT};

#[test]
fn import_into_registry_preserves_digests_and_signatures() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let images = ctx.images();
    let host = ctx.host();
    let prefix = "mirror-import";
    let registry = ctx.registry();
    assert!(registry.snapshot(prefix).is_empty());

    ctx.ferry([
        "import",
        p(&fx.bundle),
        "--trust",
        p(&fx.public),
        "--to",
        &format!("{host}/{prefix}"),
    ])
    .assert_success();

    // Byte-for-byte: skopeo sees the source digest under the prefix.
    let out = run_program(
        "skopeo",
        [
            "inspect".to_string(),
            "--raw".into(),
            "--tls-verify=false".into(),
            format!("docker://{host}/{prefix}/e2e/multi:v1"),
        ],
    );
    out.assert_success();
    assert_eq!(digest_of(out.stdout.as_bytes()), images.multi.digest);

    // Both platforms' manifests are there, by digest.
    for (platform, child) in &images.multi.children {
        assert_eq!(
            registry
                .manifest_digest(&format!("{prefix}/e2e/multi"), child)
                .as_deref(),
            Some(child.as_str()),
            "{platform} manifest missing from the target"
        );
    }
    // And every blob: skopeo copies the whole index out of the target.
    let copy = ctx.path("copy");
    run_program(
        "skopeo",
        [
            "copy".to_string(),
            "--quiet".into(),
            "--all".into(),
            "--src-tls-verify=false".into(),
            format!("docker://{host}/{prefix}/e2e/multi:v1"),
            format!("dir:{}", copy.display()),
        ],
    )
    .assert_success();
    images.multi.assert_copied_to_dir(&copy);

    // The other images: Docker media types kept, the rename applied.
    assert_eq!(
        registry
            .manifest_digest(&format!("{prefix}/e2e/docker"), "v1")
            .as_deref(),
        Some(images.docker.digest.as_str())
    );
    let r = http::request(
        host,
        "GET",
        &format!("/v2/{prefix}/e2e/docker/manifests/v1"),
        &[("Accept", MANIFEST_ACCEPT)],
        b"",
    )
    .unwrap();
    assert_eq!(digest_of(&r.body), images.docker.digest);
    assert_eq!(
        registry
            .manifest_digest(&format!("{prefix}/renamed/other"), "v1")
            .as_deref(),
        Some(images.other.digest.as_str())
    );
    assert!(
        registry.tags(&format!("{prefix}/e2e/other")).is_empty(),
        "the renamed image also kept its old name"
    );

    // The cosign-style signature tag came along.
    assert_eq!(
        registry
            .manifest_digest(&format!("{prefix}/e2e/multi"), &images.sig.tag)
            .as_deref(),
        Some(images.sig.digest.as_str()),
        "the {} tag did not come along",
        images.sig.tag
    );

    // Importing the same bundle again changes nothing and succeeds.
    let before = registry.snapshot(prefix);
    ctx.ferry([
        "import",
        p(&fx.bundle),
        "--trust",
        p(&fx.public),
        "--to",
        &format!("{host}/{prefix}"),
    ])
    .assert_success();
    assert_eq!(before, registry.snapshot(prefix));
}

#[test]
fn import_into_store_names_images_by_repository_and_tag() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let images = ctx.images();
    let store = ctx.path("store");
    ctx.ferry([
        "import",
        p(&fx.bundle),
        "--trust",
        p(&fx.public),
        "--store",
        p(&store),
    ])
    .assert_success();

    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap()).unwrap();
    let names: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (name, digest) in [
        ("e2e/multi:v1", &images.multi.digest),
        ("e2e/docker:v1", &images.docker.digest),
        ("renamed/other:v1", &images.other.digest),
    ] {
        assert!(
            names.contains(&(name.to_string(), digest.clone())),
            "index.json lacks {name} = {digest}: {names:?}"
        );
    }
    let out = run_program(
        "skopeo",
        [
            "inspect".to_string(),
            "--raw".into(),
            format!("oci:{}:e2e/multi:v1", store.display()),
        ],
    );
    out.assert_success();
    assert_eq!(digest_of(out.stdout.as_bytes()), images.multi.digest);

    let before = snapshot_tree(&store, &[".ferry"]);
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
        before,
        snapshot_tree(&store, &[".ferry"]),
        "re-importing the same bundle changed the store"
    );
}

#[test]
fn rollback_to_an_older_sequence_is_refused() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let images = ctx.images();
    let host = ctx.host();
    let registry = ctx.registry();
    let spec_for = |file: &str, image: &str| {
        ctx.write_spec(
            file,
            &format!("name = \"rollback\"\n\n[[image]]\nref = \"{image}\"\n"),
        )
    };
    let newer = spec_for("newer.toml", &images.docker.reference);
    let older = spec_for("older.toml", &images.other.reference);
    let b5 = ctx.create_bundle(&newer, "five.ferry", &fx.key, &["--sequence", "5"]);
    let b4 = ctx.create_bundle(&older, "four.ferry", &fx.key, &["--sequence", "4"]);
    let b6 = ctx.create_bundle(&older, "six.ferry", &fx.key, &["--sequence", "6"]);

    // Registry target.
    let prefix = "mirror-rollback";
    let to = format!("{host}/{prefix}");
    ctx.ferry(["import", p(&b5), "--trust", p(&fx.public), "--to", &to])
        .assert_success();
    let before = registry.snapshot(prefix);
    let out = ctx.ferry(["import", p(&b4), "--trust", p(&fx.public), "--to", &to]);
    out.assert_code(3).assert_stderr_contains("error:");
    assert!(
        ["rollback", "sequence"]
            .iter()
            .any(|w| out.stderr.to_lowercase().contains(w)),
        "the error should say it is a rollback: {out:?}"
    );
    assert_eq!(
        before,
        registry.snapshot(prefix),
        "a refused rollback changed the registry"
    );
    // The same bundle again is fine, and so is a newer one.
    ctx.ferry(["import", p(&b5), "--trust", p(&fx.public), "--to", &to])
        .assert_success();
    ctx.ferry(["import", p(&b6), "--trust", p(&fx.public), "--to", &to])
        .assert_success();
    assert_eq!(
        registry
            .manifest_digest(&format!("{prefix}/e2e/other"), "v1")
            .as_deref(),
        Some(images.other.digest.as_str())
    );

    // Store target.
    let store = ctx.path("store");
    ctx.ferry([
        "import",
        p(&b5),
        "--trust",
        p(&fx.public),
        "--store",
        p(&store),
    ])
    .assert_success();
    let before = snapshot_tree(&store, &[".ferry"]);
    ctx.ferry([
        "import",
        p(&b4),
        "--trust",
        p(&fx.public),
        "--store",
        p(&store),
    ])
    .assert_code(3)
    .assert_stderr_contains("error:");
    assert_eq!(
        before,
        snapshot_tree(&store, &[".ferry"]),
        "a refused rollback changed the store"
    );
}
