//! OCI referrers (manifests with a `subject`, such as SBOMs and signatures pushed by
//! oras or notation): pulled from a registry that lacks the referrers API through the
//! referrers tag schema, carried in the bundle, pushed on import, and answered by
//! `ferry serve`'s referrers API.

use serde_json::json;

use super::context::{TestContext, digest_of, p, parse_json, run_program};
use super::http;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SBOM: &str = "application/vnd.example.sbom.v1+json";

/// Uploads a blob monolithically (POST, then PUT with the digest).
fn push_blob(host: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = digest_of(bytes);
    let start = http::request(
        host,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(start.status, 202, "{start:?}");
    let location = start.header("Location").unwrap().to_string();
    let path = location
        .split_once(host)
        .map_or(location.as_str(), |(_, rest)| rest);
    let sep = if path.contains('?') { '&' } else { '?' };
    let put = http::request(
        host,
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        bytes,
    )
    .unwrap();
    assert_eq!(put.status, 201, "{put:?}");
    digest
}

fn put_manifest(host: &str, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
    let put = http::request(
        host,
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Content-Type", media_type)],
        bytes,
    )
    .unwrap();
    assert_eq!(put.status, 201, "{put:?}");
}

#[test]
fn referrers_are_carried_pushed_and_served() {
    let ctx = TestContext::new();
    let host = ctx.host();
    let multi = &ctx.images().multi;
    let repo = "e2e/withref";

    // The subject, in a repository of this test's own.
    run_program(
        "skopeo",
        [
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{host}/e2e/multi:v1"),
            &format!("docker://{host}/{repo}:v1"),
        ],
    )
    .assert_success();

    // An SBOM that refers to it, and the tag-schema index that clients write where the
    // registry (docker-registry 2.8 here) has no referrers API.
    let config = push_blob(host, repo, b"{}");
    let sbom = br#"{"sbom":"e2e"}"#;
    let layer = push_blob(host, repo, sbom);
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": SBOM, "digest": layer, "size": sbom.len()}],
        "subject": {"mediaType": multi.media_type, "digest": multi.digest, "size": multi.size},
    }))
    .unwrap();
    let artifact_digest = digest_of(&artifact);
    put_manifest(host, repo, &artifact_digest, OCI_MANIFEST, &artifact);
    let tag_schema = format!("sha256-{}", &multi.digest[7..]);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": artifact_digest, "size": artifact.len(), "artifactType": SBOM}],
    }))
    .unwrap();
    put_manifest(host, repo, &tag_schema, OCI_INDEX, &index);

    // Carried: the bundle names the SBOM as a referrer of the image.
    let (key, public) = ctx.generate_key("team");
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!("name = \"refs\"\n[[image]]\nref = \"{host}/{repo}:v1\"\n"),
    );
    let bundle = ctx.create_bundle(
        &spec,
        "refs.ferry",
        &key,
        &["--store", p(&ctx.path("store"))],
    );
    let inspect = parse_json(
        ctx.ferry(["bundle", "inspect", p(&bundle), "--json"])
            .assert_success(),
    );
    let artifacts = inspect["artifacts"].as_array().unwrap();
    let sbom_artifact = artifacts
        .iter()
        .find(|a| a["digest"] == artifact_digest.as_str())
        .unwrap_or_else(|| panic!("the SBOM is not in the bundle: {inspect:#}"));
    assert_eq!(sbom_artifact["kind"], "referrer");
    assert_eq!(sbom_artifact["subject"], multi.digest.as_str());
    assert_eq!(sbom_artifact["artifactType"], SBOM);

    // The bundle's own SBOM keeps the attached one and links it from the image.
    let cdx = ctx
        .ferry(["bundle", "sbom", p(&bundle), "--trust", p(&public)])
        .assert_success()
        .stdout
        .clone();
    let cdx: serde_json::Value = serde_json::from_str(&cdx).unwrap();
    let image = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["hashes"][0]["content"] == multi.digest["sha256:".len()..])
        .unwrap_or_else(|| panic!("no component for the image: {cdx:#}"));
    let links: Vec<&str> = image["externalReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["type"] == "bom")
        .filter_map(|r| r["url"].as_str())
        .collect();
    assert!(
        links
            .iter()
            .any(|u| u.contains(&artifact_digest["sha256:".len()..])),
        "the attached SBOM is not linked from the image: {image:#}"
    );

    // Served: the referrers API of `ferry serve` lists it, and filters by artifactType.
    let store = ctx.path("srv");
    ctx.ferry([
        "import",
        p(&bundle),
        "--trust",
        p(&public),
        "--store",
        p(&store),
    ])
    .assert_success();
    let server = ctx.serve(&store);
    let r = http::get(
        &server.addr,
        &format!("/v2/{repo}/referrers/{}", multi.digest),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("Content-Type"), Some(OCI_INDEX));
    let listed = r.json();
    let entry = listed["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["digest"] == artifact_digest.as_str())
        .unwrap_or_else(|| panic!("referrers API does not list the SBOM: {listed:#}"));
    assert_eq!(entry["artifactType"], SBOM);
    assert_eq!(entry["size"], artifact.len());
    let filtered = http::get(
        &server.addr,
        &format!(
            "/v2/{repo}/referrers/{}?artifactType=application%2Fvnd.example.other",
            multi.digest
        ),
    );
    assert_eq!(filtered.json()["manifests"], json!([]));
    let by_digest = http::get(
        &server.addr,
        &format!("/v2/{repo}/manifests/{artifact_digest}"),
    );
    assert_eq!(by_digest.status, 200);
    assert_eq!(by_digest.body, artifact);

    // Pushed: the SBOM by digest and the tag-schema index by tag.
    let to = format!("{host}/mirror-referrers");
    ctx.ferry(["import", p(&bundle), "--trust", p(&public), "--to", &to])
        .assert_success();
    let registry = ctx.registry();
    let target_repo = format!("mirror-referrers/{repo}");
    assert_eq!(
        registry
            .manifest_digest(&target_repo, &artifact_digest)
            .as_deref(),
        Some(artifact_digest.as_str())
    );
    assert!(
        registry.tags(&target_repo).contains(&tag_schema),
        "{:?}",
        registry.tags(&target_repo)
    );
}
