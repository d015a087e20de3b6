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
