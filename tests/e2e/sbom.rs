//! SBOMs: every bundle carries a CycloneDX 1.5 and an SPDX 2.3 document, signed with its
//! manifest, that the CycloneDX and SPDX projects' own validators accept; `bundle sbom`
//! prints them; imports keep them under `ferry/sbom:<series>-<sequence>`. A bundle from
//! before SBOMs gets a derived one, marked as such. Hostile twins: a signed bundle whose
//! SBOM artifact names more than its two documents, an SBOM altered in transit, and a
//! manifest naming an SBOM it does not carry.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::context::{Output, TestContext, p, parse_json, repo_root, run, run_shell, sha256_hex};
use super::python::PyIndex;
use super::tamper::Bundle;

fn venv_bin(name: &str) -> PathBuf {
    std::env::var_os("FERRY_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-venv"))
        .join("bin")
        .join(name)
}

/// The CycloneDX project's strict JSON schema validator (cyclonedx-python-lib).
fn assert_valid_cyclonedx(path: &Path) {
    let mut cmd = Command::new(venv_bin("python"));
    cmd.args([
        "-c",
        "import sys\n\
         from cyclonedx.schema import SchemaVersion\n\
         from cyclonedx.validation.json import JsonStrictValidator\n\
         err = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
         print(err)\n\
         sys.exit(1 if err else 0)\n",
    ])
    .arg(path);
    let out = run(cmd);
    assert!(
        out.code == 0,
        "CycloneDX validation of {} failed: {}{}",
        path.display(),
        out.stdout,
        out.stderr
    );
}

/// The SPDX project's parser and validator (spdx-tools).
fn assert_valid_spdx(path: &Path) {
    let mut cmd = Command::new(venv_bin("pyspdxtools"));
    cmd.arg("-i").arg(path);
    let out = run(cmd);
    assert!(
        out.code == 0,
        "SPDX validation of {} failed: {}{}",
        path.display(),
        out.stdout,
        out.stderr
    );
}

fn sbom(ctx: &TestContext, bundle: &Path, args: &[&str]) -> Output {
    let mut all = vec!["bundle", "sbom", p(bundle)];
    all.extend_from_slice(args);
    ctx.ferry(all)
}

fn all_purls(components: &Value, out: &mut Vec<String>) {
    for c in components.as_array().into_iter().flatten() {
        if let Some(p) = c["purl"].as_str() {
            out.push(p.to_string());
        }
        all_purls(&c["components"], out);
    }
}

fn spec(ctx: &TestContext, index: &PyIndex) -> String {
    format!(
        "name = \"sbom\"\n\n[[image]]\nref = \"{}/e2e/multi:v1\"\n\n[[python]]\nindex-url = \"{}\"\nrequirements = [\"six==1.16.0\"]\npython-version = \"3.11\"\nplatforms = [\"manylinux_2_28_x86_64\"]\n\n[[conda]]\nchannel = \"{}\"\nspecs = [\"app\"]\nplatforms = [\"linux-64\"]\n\n[[model]]\nrepo = \"org/tiny-bert\"\nendpoint = \"{}\"\n",
        ctx.host(),
        index.url(),
        super::conda::conda().channel_url(),
        super::models::models().hub.url(),
    )
}

#[test]
fn sbom_is_carried_signed_valid_and_kept_by_imports() {
    let ctx = TestContext::new();
    let index = PyIndex::start(&super::python::py().wheel_dir, &[]);
    let spec = ctx.write_spec("ferry.toml", &spec(&ctx, &index));
    let (key, public) = ctx.generate_key("team");
    let bundle = ctx.path("sbom.ferry");
    let mut cmd = ctx.ferry_command();
    cmd.env("PIP_CONFIG_FILE", "/dev/null").args([
        "bundle",
        "create",
        p(&spec),
        "-o",
        p(&bundle),
        "--key",
        p(&key),
        "--store",
        p(&ctx.path("store")),
    ]);
    run(cmd).assert_success();

    let manifest = Bundle::read(&bundle).manifest();
    let s = &manifest["sbom"];
    assert!(s.is_object(), "the manifest names no SBOM: {manifest:#}");

    // Both documents, verified first, pass the projects' own validators.
    let cdx_path = ctx.path("sbom.cdx.json");
    let spdx_path = ctx.path("sbom.spdx.json");
    sbom(&ctx, &bundle, &["--trust", p(&public), "-o", p(&cdx_path)]).assert_success();
    sbom(
        &ctx,
        &bundle,
        &[
            "--trust",
            p(&public),
            "--format",
            "spdx",
            "-o",
            p(&spdx_path),
        ],
    )
    .assert_success();
    assert_valid_cyclonedx(&cdx_path);
    assert_valid_spdx(&spdx_path);

    // They are the documents the signed manifest names, and standard tools find them
    // in the bundle.
    let cdx_bytes = std::fs::read(&cdx_path).unwrap();
    let spdx_bytes = std::fs::read(&spdx_path).unwrap();
    assert_eq!(
        format!("sha256:{}", sha256_hex(&cdx_bytes)),
        s["cyclonedx"]["digest"].as_str().unwrap()
    );
    assert_eq!(
        format!("sha256:{}", sha256_hex(&spdx_bytes)),
        s["spdx"]["digest"].as_str().unwrap()
    );
    let hex = s["cyclonedx"]["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    let extracted = run_shell(&format!(
        "zstd -dc '{}' | tar -xO blobs/sha256/{hex} | sha256sum",
        bundle.display()
    ));
    assert!(extracted.stdout.starts_with(hex), "{extracted:?}");

    // Without trust it says the signature was not checked, and prints the same bytes.
    let unverified = sbom(&ctx, &bundle, &[]);
    unverified
        .assert_success()
        .assert_stderr_contains("not checked");
    assert_eq!(unverified.stdout.as_bytes(), cdx_bytes.as_slice());

    // Every artifact is a component with its purl and sha256; the image index lists its
    // platform manifests; licences found upstream are there.
    let cdx: Value = serde_json::from_slice(&cdx_bytes).unwrap();
    assert_eq!(cdx["specVersion"], "1.5");
    let components = cdx["components"].as_array().unwrap();
    assert_eq!(
        components.len(),
        manifest["artifacts"].as_array().unwrap().len()
    );
    let mut purls = Vec::new();
    all_purls(&cdx["components"], &mut purls);
    for prefix in [
        "pkg:oci/multi@sha256",
        "pkg:pypi/six@1.16.0",
        "pkg:pypi/six@1.16.0?file_name=six-1.16.0-py2.py3-none-any.whl",
        "pkg:conda/app@1.0?",
        "pkg:huggingface/org/tiny-bert@",
    ] {
        assert!(
            purls.iter().any(|p| p.starts_with(prefix)),
            "no purl {prefix}…: {purls:#?}"
        );
    }
    let multi = components
        .iter()
        .find(|c| c["name"] == "e2e/multi" && c["version"] == "v1")
        .unwrap_or_else(|| panic!("no e2e/multi:v1 component: {cdx:#}"));
    let platforms = multi["components"].as_array().unwrap();
    assert!(platforms.len() >= 2, "{multi:#}");
    assert!(
        platforms
            .iter()
            .all(|c| c["purl"].as_str().unwrap().contains("arch=")),
        "{multi:#}"
    );
    for a in manifest["artifacts"].as_array().unwrap() {
        let c = components
            .iter()
            .find(|c| {
                c["properties"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == "ferry:repository" && p["value"] == a["repository"])
            })
            .unwrap_or_else(|| panic!("no component for {a:#}"));
        if a["kind"] == "image" || a["kind"] == "conda" {
            let want = match a["conda"]["sha256"].as_str() {
                Some(package) => package.to_string(),
                None => a["digest"].as_str().unwrap()["sha256:".len()..].to_string(),
            };
            assert_eq!(c["hashes"][0]["content"], want.as_str(), "{c:#}");
        }
        let spdx_licences: Vec<&str> = a["licenses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["spdx"].as_str())
            .collect();
        if !spdx_licences.is_empty() {
            let text = c["licenses"].to_string();
            for l in spdx_licences {
                assert!(text.contains(l), "licence {l} missing from {c:#}");
            }
        }
    }

    // The SPDX document describes the same packages.
    let spdx: Value = serde_json::from_slice(&spdx_bytes).unwrap();
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    let described = spdx["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["relationshipType"] == "DESCRIBES")
        .count();
    assert_eq!(described, components.len());

    // What it adds to the bundle, as scripts/sbom-size.sh measures it (the README's
    // figures come from that script).
    let size = run_shell(&format!(
        "bash '{}' '{}' '{}'",
        repo_root().join("scripts/sbom-size.sh").display(),
        bundle.display(),
        super::context::FERRY
    ));
    assert!(size.stdout.starts_with("sbom-size: bundle "), "{size:?}");
    println!("{}", size.stdout.trim());

    // An import into a store keeps them, named for the series and sequence.
    let tag = format!("sbom-{}", manifest["sequence"]);
    let store = ctx.path("target");
    ctx.ferry([
        "import",
        p(&bundle),
        "--trust",
        p(&public),
        "--store",
        p(&store),
    ])
    .assert_success();
    let index: Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"] == format!("ferry/sbom:{tag}")
        })
        .unwrap_or_else(|| panic!("the store does not name ferry/sbom:{tag}: {index:#}"));
    assert_eq!(entry["digest"], s["digest"]);
    assert_eq!(
        std::fs::read(store.join("blobs/sha256").join(hex)).unwrap(),
        cdx_bytes
    );
    // skopeo reads it from the store as any OCI artifact.
    let raw = run_shell(&format!(
        "skopeo inspect --raw 'oci:{}:ferry/sbom:{tag}'",
        store.display()
    ));
    assert_eq!(raw.code, 0, "{raw:?}");
    let raw: Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(raw["artifactType"], "application/vnd.dev.ferry.sbom.v1");
    assert_eq!(raw["layers"][0]["digest"], s["cyclonedx"]["digest"]);

    // And a registry target holds it under its prefix.
    let prefix = "sbom-mirror";
    ctx.ferry([
        "import",
        p(&bundle),
        "--trust",
        p(&public),
        "--to",
        &format!("{}/{prefix}", ctx.host()),
    ])
    .assert_success();
    let tags = super::http::get(ctx.host(), &format!("/v2/{prefix}/ferry/sbom/tags/list"));
    assert_eq!(tags.status, 200, "{tags:?}");
    assert!(
        tags.json()["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == tag.as_str()),
        "{:?}",
        tags.json()
    );
    let blob = super::http::get(
        ctx.host(),
        &format!("/v2/{prefix}/ferry/sbom/blobs/sha256:{hex}"),
    );
    assert_eq!(blob.status, 200);
    assert_eq!(blob.body, cdx_bytes);
}

/// The standard bundle, read for forging.
fn standard(ctx: &TestContext) -> (PathBuf, Bundle) {
    let fx = super::fixtures::fixtures();
    let copy = ctx.path("std.ferry");
    std::fs::copy(&fx.bundle, &copy).unwrap();
    let parsed = Bundle::read(&copy);
    (copy, parsed)
}

#[test]
fn sbom_artifact_naming_more_than_its_documents_is_refused_though_signed() {
    let ctx = TestContext::new();
    let fx = super::fixtures::fixtures();
    let (path, mut b) = standard(&ctx);
    let mut manifest = b.manifest();
    let old = manifest["sbom"]["digest"].as_str().unwrap().to_string();
    let mut oci: Value = serde_json::from_slice(b.blob(&old["sha256:".len()..])).unwrap();
    // The SBOM artifact now also names the largest blob (an image layer): a target
    // would reference it from `ferry/sbom`.
    let layer = super::tamper::blob_hex(&b.largest_blob()).to_string();
    let size = b.blob(&layer).len();
    oci["layers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/octet-stream",
            "digest": format!("sha256:{layer}"),
            "size": size,
        }));
    let bytes = serde_json::to_vec(&oci).unwrap();
    let len = bytes.len();
    let hex = b.add_blob(&mut manifest, bytes);
    manifest["sbom"]["digest"] = format!("sha256:{hex}").into();
    manifest["sbom"]["size"] = len.into();
    b.set_manifest(&manifest);
    b.resign(&fx.key);
    b.write(&path);

    let store = ctx.path("target");
    let out = ctx.ferry([
        "import",
        p(&path),
        "--trust",
        p(&fx.public),
        "--store",
        p(&store),
    ]);
    out.assert_code(3)
        .assert_stderr_contains("not the SBOM artifact the signed manifest describes");
    assert!(!store.exists(), "a refused import left {}", store.display());
    ctx.ferry(["bundle", "verify", p(&path), "--trust", p(&fx.public)])
        .assert_code(3);
}

#[test]
fn sbom_altered_in_transit_or_missing_is_refused() {
    let ctx = TestContext::new();
    let fx = super::fixtures::fixtures();

    // Bytes of the CycloneDX document changed, manifest untouched: the digest fails.
    let (path, mut b) = standard(&ctx);
    let manifest = b.manifest();
    let hex =
        manifest["sbom"]["cyclonedx"]["digest"].as_str().unwrap()["sha256:".len()..].to_string();
    let entry = b.entry_mut(&format!("blobs/sha256/{hex}"));
    let at = entry.data.iter().position(|c| *c == b'1').unwrap();
    entry.data[at] = b'2';
    b.write(&path);
    sbom(&ctx, &path, &[])
        .assert_code(3)
        .assert_stderr_contains("does not match");
    sbom(&ctx, &path, &["--trust", p(&fx.public)]).assert_code(3);

    // A signed manifest naming an SBOM document the bundle does not carry.
    let (path, mut b) = standard(&ctx);
    let mut manifest = b.manifest();
    manifest["sbom"]["spdx"]["digest"] = format!("sha256:{}", "ab".repeat(32)).into();
    b.set_manifest(&manifest);
    b.resign(&fx.key);
    b.write(&path);
    ctx.ferry(["bundle", "verify", p(&path), "--trust", p(&fx.public)])
        .assert_code(3)
        .assert_stderr_contains("is not a blob of the bundle");
}

#[test]
fn sbom_of_a_bundle_written_before_sboms_is_derived_and_marked() {
    let ctx = TestContext::new();
    let dir = repo_root().join("fixtures/compat");
    let bundle = dir.join("main-d96b7ba.ferry");
    let public = dir.join("main-d96b7ba.pub");
    for (format, file) in [("cyclonedx", "old.cdx.json"), ("spdx", "old.spdx.json")] {
        let out = ctx.path(file);
        sbom(
            &ctx,
            &bundle,
            &["--trust", p(&public), "--format", format, "-o", p(&out)],
        )
        .assert_success()
        .assert_stderr_contains("carries no SBOM");
        if format == "cyclonedx" {
            assert_valid_cyclonedx(&out);
            let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
            let marked = v["metadata"]["properties"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "ferry:sbom" && p["value"] == "derived-from-manifest");
            assert!(marked, "{v:#}");
            let mut purls = Vec::new();
            all_purls(&v["components"], &mut purls);
            for prefix in ["pkg:oci/", "pkg:pypi/", "pkg:conda/", "pkg:huggingface/"] {
                assert!(purls.iter().any(|p| p.starts_with(prefix)), "{purls:#?}");
            }
        } else {
            assert_valid_spdx(&out);
            let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
            assert!(v["comment"].as_str().unwrap().contains("derived"), "{v:#}");
        }
    }
    let json = parse_json(
        ctx.ferry(["bundle", "inspect", p(&bundle), "--json"])
            .assert_success(),
    );
    assert!(json.get("sbom").is_none_or(Value::is_null));
}
