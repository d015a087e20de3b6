//! `ferry serve`: a read-only OCI distribution endpoint over an imported store, checked
//! with skopeo and with raw HTTP.

use super::context::{TestContext, digest_of, p, run_program};
use super::fixtures::fixtures;
use super::http::{self, MANIFEST_ACCEPT};
use super::images::{DOCKER_MANIFEST, OCI_INDEX, read_blob};

#[test]
fn serve_an_imported_store_to_skopeo_and_http_clients() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let images = ctx.images();
    let multi = &images.multi;
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

    let server = ctx.serve(&store);
    let addr = server.addr.as_str();

    // skopeo: exact bytes, and a full copy of every platform.
    let out = run_program(
        "skopeo",
        [
            "inspect".to_string(),
            "--raw".into(),
            "--tls-verify=false".into(),
            format!("docker://{addr}/e2e/multi:v1"),
        ],
    );
    out.assert_success();
    assert_eq!(digest_of(out.stdout.as_bytes()), multi.digest);
    let copy = ctx.path("copy");
    run_program(
        "skopeo",
        [
            "copy".to_string(),
            "--quiet".into(),
            "--all".into(),
            "--src-tls-verify=false".into(),
            format!("docker://{addr}/e2e/multi:v1"),
            format!("dir:{}", copy.display()),
        ],
    )
    .assert_success();
    multi.assert_copied_to_dir(&copy);

    // The API base.
    let r = http::get(addr, "/v2/");
    assert_eq!(r.status, 200, "{r:?}");

    // Tags, including the signature tag.
    let r = http::get(addr, "/v2/e2e/multi/tags/list");
    assert_eq!(r.status, 200, "{r:?}");
    let tags = r.json();
    assert_eq!(tags["name"], "e2e/multi");
    let tags: Vec<&str> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(tags.contains(&"v1"), "tags: {tags:?}");
    assert!(
        tags.contains(&images.sig.tag.as_str()),
        "the signature tag is not served: {tags:?}"
    );

    // Manifests by tag and by digest, with their own media type and digest.
    for reference in ["v1", multi.digest.as_str()] {
        let r = http::request(
            addr,
            "GET",
            &format!("/v2/e2e/multi/manifests/{reference}"),
            &[("Accept", MANIFEST_ACCEPT)],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-type"), Some(OCI_INDEX), "{r:?}");
        assert_eq!(
            r.header("docker-content-digest"),
            Some(multi.digest.as_str()),
            "{r:?}"
        );
        assert_eq!(digest_of(&r.body), multi.digest);
    }
    let r = http::request(
        addr,
        "GET",
        "/v2/e2e/docker/manifests/v1",
        &[("Accept", MANIFEST_ACCEPT)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some(DOCKER_MANIFEST), "{r:?}");
    assert_eq!(
        r.header("docker-content-digest"),
        Some(images.docker.digest.as_str())
    );
    assert_eq!(digest_of(&r.body), images.docker.digest);

    // Blobs: HEAD with the size, GET of a range.
    let (blob, size) = multi.largest_blob();
    let blob_path = format!("/v2/e2e/multi/blobs/{blob}");
    let r = http::request(addr, "HEAD", &blob_path, &[], b"").unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("content-length"),
        Some(size.to_string().as_str()),
        "{r:?}"
    );
    let r = http::request(addr, "GET", &blob_path, &[("Range", "bytes=0-9")], b"").unwrap();
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(r.body, read_blob(&images.layout, &blob)[..10]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-9/{size}").as_str()),
        "{r:?}"
    );
    let r = http::get(addr, &blob_path);
    assert_eq!(r.status, 200);
    assert_eq!(digest_of(&r.body), blob);

    // Read-only.
    for (method, path) in [
        ("PUT", "/v2/e2e/multi/manifests/v2".to_string()),
        ("DELETE", "/v2/e2e/multi/manifests/v1".to_string()),
        ("DELETE", blob_path.clone()),
    ] {
        let r = http::request(
            addr,
            method,
            &path,
            &[("Content-Type", OCI_INDEX)],
            &read_blob(&images.layout, &multi.digest),
        )
        .unwrap();
        assert_eq!(r.status, 405, "{method} {path}: {r:?}");
    }
    // Unknown things are 404s.
    let unknown = format!("sha256:{}", "0".repeat(64));
    for path in [
        format!("/v2/e2e/multi/blobs/{unknown}"),
        format!("/v2/e2e/multi/manifests/{unknown}"),
        "/v2/e2e/multi/manifests/no-such-tag".to_string(),
        "/v2/no/such/repo/tags/list".to_string(),
    ] {
        let r = http::get(addr, &path);
        assert_eq!(r.status, 404, "{path}: {r:?}");
    }
    drop(server);
}

/// Serving during an import: a tag that moves takes its old index out of `index.json`,
/// not out of the store. A client that fetched the old index a moment ago (or pinned its
/// digest) still gets it, its child manifests (with their own media types) and their
/// blobs by digest; and a tag whose content is not all in the store is not served.
#[test]
fn serve_keeps_content_reachable_by_digest_after_its_tag_moves() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let images = ctx.images();
    let (multi, other) = (&images.multi, &images.other);
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
    let server = ctx.serve(&store);
    let addr = server.addr.as_str();
    let manifest = |reference: &str| {
        http::request(
            addr,
            "GET",
            &format!("/v2/e2e/multi/manifests/{reference}"),
            &[("Accept", MANIFEST_ACCEPT)],
            b"",
        )
        .unwrap()
    };

    // A client fetches the index by tag...
    let r = manifest("v1");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(digest_of(&r.body), multi.digest);
    let old_index = r.body;

    // ...and meanwhile a pull into the served store moves the tag to another image.
    let spec = ctx.write_spec(
        "move.toml",
        &format!(
            "name = \"move\"\n\n[[image]]\nref = \"{}\"\nrepository = \"e2e/multi\"\n",
            other.reference
        ),
    );
    ctx.ferry(["pull", p(&spec), "--store", p(&store)])
        .assert_success();
    let r = manifest("v1");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        digest_of(&r.body),
        other.digest,
        "the tag did not move: {r:?}"
    );

    // The old index, its children and their blobs are still served by digest.
    let r = manifest(&multi.digest);
    assert_eq!(r.status, 200, "old index by digest: {r:?}");
    assert_eq!(r.body, old_index);
    assert_eq!(r.header("content-type"), Some(OCI_INDEX), "{r:?}");
    assert_eq!(
        r.header("docker-content-digest"),
        Some(multi.digest.as_str())
    );
    let index: serde_json::Value = serde_json::from_slice(&old_index).unwrap();
    let children = index["manifests"].as_array().unwrap();
    assert!(!children.is_empty());
    for child in children {
        let digest = child["digest"].as_str().unwrap();
        let r = manifest(digest);
        assert_eq!(r.status, 200, "child {digest}: {r:?}");
        assert_eq!(digest_of(&r.body), digest);
        let own: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            r.header("content-type"),
            own["mediaType"].as_str(),
            "the child's Content-Type is not its own mediaType: {r:?}"
        );
    }
    for (blob, size) in &multi.blobs {
        let r = http::get(addr, &format!("/v2/e2e/multi/blobs/{blob}"));
        assert_eq!(r.status, 200, "blob {blob}: {r:?}");
        assert_eq!(
            (digest_of(&r.body), r.body.len() as u64),
            (blob.clone(), *size)
        );
    }
    // A real client pulls the whole old image by digest.
    let copy = ctx.path("copy");
    run_program(
        "skopeo",
        [
            "copy".to_string(),
            "--quiet".into(),
            "--all".into(),
            "--src-tls-verify=false".into(),
            format!("docker://{addr}/e2e/multi@{}", multi.digest),
            format!("dir:{}", copy.display()),
        ],
    )
    .assert_success();
    multi.assert_copied_to_dir(&copy);
    // A blob is not a manifest, and what the store does not hold is still a 404.
    let (layer, _) = multi.largest_blob();
    assert_eq!(manifest(&layer).status, 404);
    let unknown = format!("sha256:{}", "1".repeat(64));
    assert_eq!(manifest(&unknown).status, 404);
    assert_eq!(
        http::get(addr, &format!("/v2/e2e/multi/blobs/{unknown}")).status,
        404
    );

    // A tag whose manifest is in the store but one of whose blobs is not: never listed,
    // never served (its manifest stays reachable by digest, like any stored manifest).
    let missing = format!("sha256:{}", "2".repeat(64));
    let broken = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": missing, "size": 2},
        "layers": [],
    });
    let bytes = serde_json::to_vec(&broken).unwrap();
    let digest = digest_of(&bytes);
    std::fs::write(
        store
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
        &bytes,
    )
    .unwrap();
    let index_path = store.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": bytes.len(),
            "annotations": {
                "dev.ferry.repository": "e2e/multi",
                "org.opencontainers.image.ref.name": "e2e/multi:broken",
            },
        }));
    std::fs::write(&index_path, serde_json::to_vec_pretty(&index).unwrap()).unwrap();
    let r = http::get(addr, "/v2/e2e/multi/tags/list");
    assert_eq!(r.status, 200, "{r:?}");
    let tags = r.json()["tags"].clone();
    assert!(
        tags.as_array().unwrap().iter().all(|t| t != "broken"),
        "a tag whose content is incomplete is listed: {tags}"
    );
    assert!(tags.as_array().unwrap().iter().any(|t| t == "v1"), "{tags}");
    assert_eq!(manifest("broken").status, 404);
    // The server's stderr is read by another thread: give the line a moment to arrive.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.stderr().contains("incomplete") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        server.stderr().contains("incomplete"),
        "no warning about the incomplete entry:\n{}",
        server.stderr()
    );
    drop(server);
}
