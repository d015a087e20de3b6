//! `ferry pull`: the store is an OCI layout that skopeo reads, pulls are idempotent,
//! digests are preserved and platform filters produce a filtered index.

use std::path::Path;

use super::context::{TestContext, digest_of, p, run_program, snapshot_tree};
use super::images::OCI_INDEX;

/// `skopeo inspect --raw oci:STORE:NAME` (the exact manifest bytes).
fn raw_from_store(store: &Path, name: &str) -> Vec<u8> {
    let out = run_program(
        "skopeo",
        [
            "inspect".to_string(),
            "--raw".into(),
            format!("oci:{}:{name}", store.display()),
        ],
    );
    out.assert_success();
    out.stdout.into_bytes()
}

/// The store's `index.json` entry named `name`, if any.
fn index_entry(store: &Path, name: &str) -> Option<serde_json::Value> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()?
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .cloned()
}

#[test]
fn pull_twice_fills_the_store_once_and_skopeo_reads_it() {
    let ctx = TestContext::new();
    let multi = &ctx.images().multi;
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!(
            "name = \"e2e\"\n\n[[image]]\nref = \"{}\"\n",
            multi.reference
        ),
    );
    let store = ctx.path("store");

    ctx.ferry(["pull", p(&spec), "--store", p(&store), "--jobs", "2"])
        .assert_success();
    assert!(
        store.join("oci-layout").is_file(),
        "the store has no oci-layout"
    );
    let entry = index_entry(&store, &multi.name()).expect("index.json names e2e/multi:v1");
    assert_eq!(entry["digest"], multi.digest.as_str());
    for (blob, size) in &multi.blobs {
        let path = store
            .join("blobs/sha256")
            .join(blob.trim_start_matches("sha256:"));
        assert_eq!(
            std::fs::metadata(&path).map(|m| m.len()).ok(),
            Some(*size),
            "blob {blob} in the store"
        );
    }
    let blobs = snapshot_tree(&store.join("blobs"), &[]);
    let index = std::fs::read(store.join("index.json")).unwrap();

    // The second pull finds every blob in place: nothing is fetched or rewritten.
    ctx.ferry(["pull", p(&spec), "--store", p(&store)])
        .assert_success();
    assert_eq!(
        blobs,
        snapshot_tree(&store.join("blobs"), &[]),
        "the second pull rewrote blobs"
    );
    assert_eq!(
        index,
        std::fs::read(store.join("index.json")).unwrap(),
        "the second pull changed index.json"
    );

    // skopeo sees the same bytes, and can copy the whole index out.
    let raw = raw_from_store(&store, "e2e/multi:v1");
    assert_eq!(digest_of(&raw), multi.digest);
    let copy = ctx.path("copy");
    run_program(
        "skopeo",
        [
            "copy".to_string(),
            "--quiet".into(),
            "--all".into(),
            format!("oci:{}:e2e/multi:v1", store.display()),
            format!("dir:{}", copy.display()),
        ],
    )
    .assert_success();
    multi.assert_copied_to_dir(&copy);
}

#[test]
fn pull_docker_media_type_image_is_readable_by_skopeo() {
    let ctx = TestContext::new();
    let docker = &ctx.images().docker;
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!(
            "name = \"e2e\"\n\n[[image]]\nref = \"{}\"\n",
            docker.reference
        ),
    );
    let store = ctx.path("store");
    ctx.ferry(["pull", p(&spec), "--store", p(&store)])
        .assert_success();
    let entry = index_entry(&store, &docker.name()).expect("index.json names e2e/docker:v1");
    assert_eq!(entry["digest"], docker.digest.as_str());
    let raw = raw_from_store(&store, "e2e/docker:v1");
    assert_eq!(
        digest_of(&raw),
        docker.digest,
        "Docker media types must survive byte for byte"
    );
}

#[test]
fn platform_filter_keeps_only_the_asked_platforms() {
    let ctx = TestContext::new();
    let multi = &ctx.images().multi;
    let pull = |name: &str, platforms: &str| {
        let spec = ctx.write_spec(
            &format!("{name}.toml"),
            &format!(
                "name = \"e2e\"\n\n[[image]]\nref = \"{}\"\nplatforms = {platforms}\n",
                multi.reference
            ),
        );
        let store = ctx.path(name);
        ctx.ferry(["pull", p(&spec), "--store", p(&store)])
            .assert_success();
        raw_from_store(&store, "e2e/multi:v1")
    };

    let raw = pull("amd64", r#"["linux/amd64"]"#);
    assert_ne!(
        digest_of(&raw),
        multi.digest,
        "a filtered index must be a new index"
    );
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(index["mediaType"], OCI_INDEX);
    let children = index["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 1, "filtered index: {index}");
    assert_eq!(children[0]["digest"], multi.child("linux/amd64"));
    assert_eq!(children[0]["platform"]["architecture"], "amd64");

    let raw = pull("both", r#"["linux/amd64", "linux/arm64/v8"]"#);
    assert_eq!(
        digest_of(&raw),
        multi.digest,
        "asking for every platform keeps the source index"
    );
}

#[test]
fn a_store_named_without_a_directory_is_created_in_the_working_directory() {
    // `--store S` has the empty path as its parent; creating it once failed with
    // "cannot sync" (of the empty path).
    let ctx = TestContext::new();
    let spec = ctx.write_spec(
        "demo.toml",
        &format!(
            "name = \"demo\"\n[[image]]\nref = \"oci:{}:app/web:1.0\"\n",
            super::images::demo_layout().display()
        ),
    );
    ctx.ferry(["pull", p(&spec), "--store", "S", "-q"])
        .assert_success();
    assert!(ctx.path("S/oci-layout").is_file());
}
