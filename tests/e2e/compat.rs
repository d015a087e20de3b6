//! Bundles already written stay readable: a bundle that main wrote at d96b7ba (before
//! the names, fetcher and state changes), with an image, a Python release, conda
//! packages and a model, still verifies, imports byte for byte, and exports.

use std::path::PathBuf;

use super::context::{TestContext, p, repo_root, sha256_hex};
use super::tamper::Bundle;

fn fixture(name: &str) -> PathBuf {
    repo_root().join("fixtures/compat").join(name)
}

#[test]
fn compat_a_bundle_of_main_d96b7ba_still_verifies_imports_and_exports() {
    let ctx = TestContext::new();
    let bundle = fixture("main-d96b7ba.ferry");
    let public = fixture("main-d96b7ba.pub");
    assert_eq!(
        sha256_hex(&std::fs::read(&bundle).unwrap()),
        "5d46c67f6bea2a39a4c16a623c6756df20fba68d651a7f1383dddfee6d517a42",
        "the fixture changed"
    );
    ctx.ferry(["bundle", "verify", p(&bundle), "--trust", p(&public)])
        .assert_success();
    let store = ctx.path("store");
    ctx.ferry([
        "import",
        p(&bundle),
        "--trust",
        p(&public),
        "--store",
        p(&store),
    ])
    .assert_success();

    // Every blob of the bundle is in the store, byte for byte, and every artifact is
    // named as the bundle names it.
    let parsed = Bundle::read(&bundle);
    let manifest = parsed.manifest();
    for e in &parsed.entries {
        if let Some(hex) = e.path.strip_prefix("blobs/sha256/") {
            let got = std::fs::read(store.join("blobs/sha256").join(hex)).unwrap();
            assert_eq!(got, e.data, "{} differs in the store", e.path);
        }
    }
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
    let artifacts = manifest["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 7);
    for a in artifacts {
        let name = format!(
            "{}:{}",
            a["repository"].as_str().unwrap(),
            a["tag"].as_str().unwrap()
        );
        let digest = a["digest"].as_str().unwrap().to_string();
        assert!(
            names.contains(&(name.clone(), digest)),
            "{name} is not in the store's index: {names:?}"
        );
    }

    // Exports read the records the old ferry wrote.
    for (what, file) in [
        ("python", "files/six-1.16.0-py2.py3-none-any.whl"),
        ("conda", "test-forge/linux-64/repodata.json"),
        ("hf", "models--org--tiny-bert/refs/main"),
    ] {
        let out = ctx.path(format!("export-{what}"));
        ctx.ferry(["export", what, "--store", p(&store), "--to", p(&out)])
            .assert_success();
        assert!(out.join(file).is_file(), "export {what} wrote no {file}");
    }

    // Into a registry: its blobs begin no zstd frame of their own (ferry wrote none
    // then), so they come from a second pass over the bundle; every artifact lands
    // under its tag.
    let registry = ctx.registry();
    ctx.ferry([
        "import",
        p(&bundle),
        "--trust",
        p(&public),
        "--to",
        &format!("{}/compat", ctx.host()),
        "--state-dir",
        p(&ctx.path("state")),
    ])
    .assert_success();
    for a in artifacts {
        let repo = format!("compat/{}", a["repository"].as_str().unwrap());
        assert_eq!(
            registry
                .manifest_digest(&repo, a["tag"].as_str().unwrap())
                .as_deref(),
            a["digest"].as_str(),
            "{repo}"
        );
    }
}
