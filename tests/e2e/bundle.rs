//! `ferry bundle create / verify / inspect`, and the auditor's view: a bundle opened with
//! `zstd`, `tar`, `minisign` and `sha256sum` alone.

use std::collections::BTreeSet;

use super::context::{TestContext, p, parse_json, run_shell, snapshot_tree};
use super::fixtures::{SERIES, fixtures};
use super::images::{DOCKER_MANIFEST, OCI_INDEX};
use super::tamper::Bundle;

#[test]
fn bundle_verifies_with_ferry_and_with_standard_tools() {
    let ctx = TestContext::new();
    let fx = fixtures();

    // `bundle verify` accepts it and writes nothing.
    let before = snapshot_tree(ctx.dir.path(), &[]);
    let bundle_dir_before = snapshot_tree(&fx.dir, &[]);
    ctx.ferry(["bundle", "verify", p(&fx.bundle), "--trust", p(&fx.public)])
        .assert_success();
    assert_eq!(
        before,
        snapshot_tree(ctx.dir.path(), &[]),
        "bundle verify wrote into HOME"
    );
    assert_eq!(
        bundle_dir_before,
        snapshot_tree(&fx.dir, &[]),
        "bundle verify wrote next to the bundle"
    );

    // Trusting more keys than signed, with the default threshold of one, still verifies.
    ctx.ferry([
        "bundle",
        "verify",
        p(&fx.bundle),
        "--trust",
        p(&fx.other_public),
        "--trust",
        p(&fx.public),
    ])
    .assert_success();
    // Two signatures required, one present: refused.
    ctx.ferry([
        "bundle",
        "verify",
        p(&fx.bundle),
        "--trust",
        p(&fx.other_public),
        "--trust",
        p(&fx.public),
        "--threshold",
        "2",
    ])
    .assert_code(3)
    .assert_stderr_contains("error:");

    // An auditor without ferry: zstd + tar, minisign, sha256sum.
    let audit = ctx.path("audit");
    std::fs::create_dir(&audit).unwrap();
    run_shell(&format!(
        "zstd -q -dc '{}' | tar -x -C '{}'",
        fx.bundle.display(),
        audit.display()
    ))
    .assert_success();
    run_shell(&format!(
        "minisign -V -p '{}' -m '{dir}/ferry-manifest.json' -x '{dir}/ferry-manifest.json.minisig'",
        fx.public.display(),
        dir = audit.display()
    ))
    .assert_success();

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(audit.join("ferry-manifest.json")).unwrap()).unwrap();
    let entries = manifest["entries"]
        .as_array()
        .expect("manifest has entries");
    let mut checklist = String::new();
    for e in entries {
        let path = e["path"].as_str().unwrap();
        let sha = e["sha256"].as_str().unwrap();
        assert!(
            sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
            "entry {e}: sha256 is not 64 hex"
        );
        let size = std::fs::metadata(audit.join(path)).map(|m| m.len()).ok();
        assert_eq!(size, e["size"].as_u64(), "size of {path}");
        checklist.push_str(&format!("{sha}  {path}\n"));
    }
    std::fs::write(ctx.path("SHA256SUMS"), checklist).unwrap();
    run_shell(&format!(
        "cd '{}' && sha256sum --quiet -c '{}'",
        audit.display(),
        ctx.path("SHA256SUMS").display()
    ))
    .assert_success();

    // Entry order: manifest, signature, then exactly the listed layout entries, all
    // regular files.
    let bundle = Bundle::read(&fx.bundle);
    let names: Vec<&str> = bundle.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        &names[..2],
        ["ferry-manifest.json", "ferry-manifest.json.minisig"]
    );
    let listed: Vec<&str> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        &names[2..],
        &listed[..],
        "tar entries after the signature must be the manifest's entries, in order"
    );
    assert!(listed.contains(&"oci-layout") && listed.contains(&"index.json"));
    for e in &bundle.entries {
        assert_eq!(
            e.kind,
            tar::EntryType::Regular,
            "{} is not a regular file",
            e.path
        );
    }
    // And skopeo reads the unpacked layout.
    let multi = &ctx.images().multi;
    run_shell(&format!(
        "skopeo inspect --raw 'oci:{}:e2e/multi:v1' | sha256sum | grep -q '^{}'",
        audit.display(),
        multi.digest.trim_start_matches("sha256:")
    ))
    .assert_success();
}

#[test]
fn bundle_inspect_lists_the_artifacts() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let images = ctx.images();

    let human = ctx.ferry(["bundle", "inspect", p(&fx.bundle)]);
    human.assert_success();
    for needle in [
        SERIES,
        "e2e/multi",
        images.multi.digest.as_str(),
        "e2e/docker",
        images.docker.digest.as_str(),
        "renamed/other",
        images.other.digest.as_str(),
        images.sig.digest.as_str(),
    ] {
        assert!(
            human.stdout.contains(needle),
            "inspect output lacks {needle}: {human:?}"
        );
    }

    let out = ctx.ferry(["bundle", "inspect", p(&fx.bundle), "--json"]);
    out.assert_success();
    let json = parse_json(&out);
    assert!(json["format"].is_string(), "format: {json}");
    assert_eq!(json["series"], SERIES);
    assert_eq!(json["sequence"], 1);
    assert!(json["created"].is_string());
    let artifacts = json["artifacts"].as_array().expect("artifacts");
    let find = |repo: &str, kind: &str| {
        artifacts
            .iter()
            .find(|a| a["repository"] == repo && a["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} artifact for {repo}: {json:#}"))
    };

    let multi = find("e2e/multi", "image");
    assert_eq!(multi["tag"], "v1");
    assert_eq!(multi["digest"], images.multi.digest.as_str());
    assert_eq!(multi["mediaType"], OCI_INDEX);
    assert_eq!(multi["mediaType"], images.multi.media_type.as_str());
    assert_eq!(multi["size"], images.multi.size);
    assert!(
        multi["origin"]
            .as_str()
            .unwrap_or_default()
            .contains(&images.multi.reference),
        "origin: {multi}"
    );
    let platforms: BTreeSet<&str> = multi["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(platforms, BTreeSet::from(["linux/amd64", "linux/arm64/v8"]));

    let docker = find("e2e/docker", "image");
    assert_eq!(docker["digest"], images.docker.digest.as_str());
    assert_eq!(docker["mediaType"], DOCKER_MANIFEST);

    let renamed = find("renamed/other", "image");
    assert_eq!(renamed["digest"], images.other.digest.as_str());
    assert!(
        renamed["origin"]
            .as_str()
            .unwrap_or_default()
            .contains("e2e/other"),
        "origin: {renamed}"
    );

    let sig = find("e2e/multi", "referrer");
    assert_eq!(sig["digest"], images.sig.digest.as_str());
    assert_eq!(sig["subject"], images.multi.digest.as_str());
    assert_eq!(sig["tag"], images.sig.tag.as_str());

    let entries = json["entries"].as_array().expect("entries");
    let paths: BTreeSet<&str> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    for digest in [
        &images.multi.digest,
        &images.docker.digest,
        &images.other.digest,
        &images.sig.digest,
    ] {
        assert!(
            paths.contains(format!("blobs/sha256/{}", &digest[7..]).as_str()),
            "entries lack {digest}"
        );
    }
}

/// Every blob is hashed again as it goes into the bundle: a store whose layer was
/// changed in place (same size, one byte) makes no bundle, and says which blob to
/// remove. Put back, the same create succeeds and the bundle verifies.
#[test]
fn bundle_create_from_a_store_with_a_changed_layer_is_refused() {
    let ctx = TestContext::new();
    let layout = ctx.path("layout");
    super::images::mkimage(
        &layout,
        "v1",
        &["--layers", "2", "--layer-size", "3000000", "--seed", "rot"],
    );
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!(
            "name = \"rot\"\n[[image]]\nref = \"oci:{}:v1\"\nrepository = \"rot/app\"\n",
            layout.display()
        ),
    );
    let (key, public) = ctx.generate_key("rot");
    let store = ctx.path("store");
    ctx.ferry(["pull", p(&spec), "--store", p(&store)])
        .assert_success();
    // The largest blob of the store: a layer.
    let blobs = store.join("blobs/sha256");
    let layer = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let original = std::fs::read(&layer).unwrap();
    let mut changed = original.clone();
    let at = changed.len() * 2 / 3;
    changed[at] ^= 0x01;
    std::fs::write(&layer, &changed).unwrap();

    let out = ctx.path("rot.ferry");
    let create = [
        "bundle",
        "create",
        p(&spec),
        "-o",
        p(&out),
        "--key",
        p(&key),
        "--store",
        p(&store),
    ];
    let hex = layer.file_name().unwrap().to_string_lossy().into_owned();
    ctx.ferry(create)
        .assert_code(3)
        .assert_stderr_contains("the store is corrupted")
        .assert_stderr_contains(&format!("remove blobs/sha256/{hex}"));
    assert!(!out.exists(), "a bundle was written from a changed store");
    let partial: Vec<_> = std::fs::read_dir(ctx.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("rot.ferry"))
        .collect();
    assert!(partial.is_empty(), "left behind: {partial:?}");

    std::fs::write(&layer, &original).unwrap();
    ctx.ferry(create).assert_success();
    ctx.ferry(["bundle", "verify", p(&out), "--trust", p(&public)])
        .assert_success();
}
