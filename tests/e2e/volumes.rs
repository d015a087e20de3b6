//! Split bundles: `bundle create --split SIZE` writes `NAME.ferry.001`, `.002`, ... of at
//! most SIZE each and a signed index; `bundle verify` and `import` take any volume (or
//! the name without the suffix), find the others beside it and in `--volumes DIR`
//! folders in any order, and name the volume that is missing, damaged or of another
//! bundle (exit 3, nothing written). `cat` of the volumes through `zstd -dc` is the tar.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::context::{TestContext, p, run_program, run_shell, sha256_hex};

/// A split bundle of the standard spec in `ctx`'s folder: its name, the volumes, the
/// split size.
struct Split {
    bundle: PathBuf,
    volumes: Vec<PathBuf>,
    size: u64,
}

fn volume(bundle: &Path, n: usize) -> PathBuf {
    PathBuf::from(format!("{}.{n:03}", bundle.display()))
}

fn index_of(bundle: &Path) -> PathBuf {
    PathBuf::from(format!("{}.volumes.json", bundle.display()))
}

fn split_bundle(ctx: &TestContext, key: &Path, store: &Path, name: &str) -> Split {
    let spec = ctx.write_spec("ferry.toml", &super::fixtures::standard_spec(ctx.host()));
    // A whole bundle first, to choose a size that makes four or five volumes.
    let whole = ctx.create_bundle(&spec, "whole.ferry", key, &["--store", p(store)]);
    let size = (std::fs::metadata(&whole).unwrap().len() / 4).max(64 * 1024) + 1;
    let bundle = ctx.path(name);
    ctx.ferry([
        "bundle",
        "create",
        p(&spec),
        "-o",
        p(&bundle),
        "--key",
        p(key),
        "--store",
        p(store),
        "--split",
        &size.to_string(),
    ])
    .assert_success();
    let volumes: Vec<PathBuf> = (1..)
        .map(|n| volume(&bundle, n))
        .take_while(|v| v.exists())
        .collect();
    Split {
        bundle,
        volumes,
        size,
    }
}

fn verify(ctx: &TestContext, path: &Path, public: &Path, dirs: &[&Path]) -> super::context::Output {
    let mut args = vec!["bundle", "verify", p(path), "--trust", p(public)];
    for d in dirs {
        args.extend(["--volumes", p(d)]);
    }
    ctx.ferry(args)
}

#[test]
fn volumes_are_signed_standard_and_read_from_several_media_in_any_order() {
    let ctx = TestContext::new();
    let (key, public) = ctx.generate_key("team");
    let store = ctx.path("store");
    let split = split_bundle(&ctx, &key, &store, "big.ferry");
    let n = split.volumes.len();
    assert!((3..=6).contains(&n), "{n} volumes of {}", split.size);
    assert!(
        !split.bundle.exists(),
        "a split bundle is not also written whole"
    );

    // Each volume at most SIZE (all but the last exactly), each sha256 in the index,
    // and the index signed for minisign.
    let index_path = index_of(&split.bundle);
    let index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    assert_eq!(index["format"], "dev.ferry.volumes.v1");
    assert_eq!(index["volumes"].as_array().unwrap().len(), n);
    for (i, v) in split.volumes.iter().enumerate() {
        let bytes = std::fs::read(v).unwrap();
        let len = bytes.len() as u64;
        assert!(len <= split.size);
        if i + 1 < n {
            assert_eq!(len, split.size);
        }
        assert_eq!(index["volumes"][i]["sha256"], sha256_hex(&bytes));
        assert_eq!(index["volumes"][i]["size"], len);
    }
    run_program("minisign", ["-Vm", p(&index_path), "-p", p(&public)]).assert_success();

    // As the README shows: each volume's sha256 checks with sha256sum, and the volumes
    // concatenated in order are the zstd stream of the tar.
    run_shell(&format!(
        "cd '{}' && python3 -c 'import json; [print(v[\"sha256\"] + \"  big.ferry.%03d\" % (i + 1)) for i, v in enumerate(json.load(open(\"big.ferry.volumes.json\"))[\"volumes\"])]' | sha256sum -c",
        ctx.dir.path().display()
    ))
    .assert_success();
    let listing = run_shell(&format!(
        "cat '{}'.0?? | zstd -dc | tar -t",
        split.bundle.display()
    ));
    listing.assert_success();
    assert_eq!(
        listing.stdout.lines().next(),
        Some("ferry-manifest.json"),
        "{}",
        listing.stdout
    );

    // In place: by the first volume, a later one, or the name without a suffix.
    for given in [&split.volumes[0], &split.volumes[n - 1], &split.bundle] {
        verify(&ctx, given, &public, &[]).assert_success();
    }
    let inspected = ctx.ferry(["bundle", "inspect", p(&split.volumes[1]), "--json"]);
    inspected.assert_success();
    let shown: Value = serde_json::from_str(&inspected.stdout).unwrap();
    assert_eq!(shown["series"], "e2e");

    // A co-signature, given any volume, goes beside the set's name and counts.
    let (approver, approver_public) = ctx.generate_key("approver");
    ctx.ferry([
        "bundle",
        "sign",
        p(&split.volumes[2]),
        "--key",
        p(&approver),
    ])
    .assert_success();
    ctx.ferry([
        "bundle",
        "verify",
        p(&split.volumes[0]),
        "--trust",
        p(&public),
        "--trust",
        p(&approver_public),
        "--threshold",
        "2",
    ])
    .assert_success();

    // On three media: the index with volume 1, the others spread; named in any order.
    let media: Vec<PathBuf> = (1..=3).map(|m| ctx.path(format!("medium{m}"))).collect();
    for m in &media {
        std::fs::create_dir_all(m).unwrap();
    }
    let name = split
        .bundle
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let mv = |from: &Path, medium: &Path| {
        std::fs::rename(from, medium.join(from.file_name().unwrap())).unwrap();
    };
    mv(&index_path, &media[0]);
    mv(
        &PathBuf::from(format!("{}.minisig", index_path.display())),
        &media[0],
    );
    for (i, v) in split.volumes.iter().enumerate() {
        mv(v, &media[i % 3]);
    }
    let on = |m: usize, file: &str| media[m].join(file);
    verify(
        &ctx,
        &on(0, &format!("{name}.001")),
        &public,
        &[&media[2], &media[1]],
    )
    .assert_success();
    verify(
        &ctx,
        &on(1, &format!("{name}.002")),
        &public,
        &[&media[2], &media[0]],
    )
    .assert_success();

    // Import into a new store and into a registry, from the media.
    let target = ctx.path("target");
    ctx.ferry([
        "import",
        p(&on(2, &format!("{name}.003"))),
        "--trust",
        p(&public),
        "--volumes",
        p(&media[0]),
        "--volumes",
        p(&media[1]),
        "--store",
        p(&target),
    ])
    .assert_success();
    // Every blob of an image there (skopeo checks each digest as it copies).
    run_shell(&format!(
        "skopeo copy --all 'oci:{}:e2e/multi:v1' 'dir:{}'",
        target.display(),
        ctx.path("copied").display()
    ))
    .assert_success();
    let to = format!("{}/split", ctx.host());
    ctx.ferry([
        "import",
        p(&on(0, &name)),
        "--trust",
        p(&public),
        "--volumes",
        p(&media[1]),
        "--volumes",
        p(&media[2]),
        "--to",
        &to,
        "--state-dir",
        p(&ctx.path("state")),
    ])
    .assert_success();
    let r = super::http::request(
        ctx.host(),
        "HEAD",
        "/v2/split/e2e/docker/manifests/v1",
        &[("Accept", super::http::MANIFEST_ACCEPT)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);

    // Written whole under the same name, the old volumes and index go.
    let spec = ctx.path("ferry.toml");
    let again = ctx.path("again.ferry");
    let create = |extra: &[&str]| {
        let mut args = vec![
            "bundle",
            "create",
            p(&spec),
            "-o",
            p(&again),
            "--key",
            p(&key),
        ];
        args.extend(["--store", p(&store)]);
        args.extend(extra);
        ctx.ferry(args).assert_success();
    };
    create(&["--split", "64KiB"]);
    assert!(volume(&again, 1).exists());
    create(&["--force"]);
    assert!(again.is_file());
    assert!(!volume(&again, 1).exists() && !index_of(&again).exists());
    verify(&ctx, &again, &public, &[]).assert_success();
}

#[test]
fn volumes_missing_damaged_swapped_or_of_another_bundle_are_named_and_nothing_is_written() {
    let ctx = TestContext::new();
    let (key, public) = ctx.generate_key("team");
    let store = ctx.path("store");
    let split = split_bundle(&ctx, &key, &store, "big.ferry");
    let v = |n: usize| split.volumes[n - 1].clone();
    let target = ctx.path("target");
    // Refused: exit 3, the message names `needle`, and an import creates no store.
    let refused = |given: &Path, needle: &str| {
        let out = verify(&ctx, given, &public, &[]);
        out.assert_code(3).assert_stderr_contains(needle);
        ctx.ferry([
            "import",
            p(given),
            "--trust",
            p(&public),
            "--store",
            p(&target),
        ])
        .assert_code(3)
        .assert_stderr_contains(needle);
        assert!(!target.exists(), "a refused import created the store");
    };
    let aside = ctx.path("aside");
    std::fs::create_dir_all(&aside).unwrap();

    // Missing: named with its number, before anything is read.
    std::fs::rename(v(3), aside.join("x")).unwrap();
    refused(&v(1), "big.ferry.003 (volume 3");
    std::fs::rename(aside.join("x"), v(3)).unwrap();

    // Damaged: one byte flipped in the middle of volume 2.
    let original = std::fs::read(v(2)).unwrap();
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    std::fs::write(v(2), &flipped).unwrap();
    refused(&v(1), "volume 2 of");
    // Cut short by a byte: its size is wrong before it is read.
    std::fs::write(v(2), &original[..original.len() - 1]).unwrap();
    refused(&v(1), "volume 2 of");
    std::fs::write(v(2), &original).unwrap();

    // Two volumes swapped (same size): the first of them out of place is named.
    let third = std::fs::read(v(3)).unwrap();
    std::fs::write(v(2), &third).unwrap();
    std::fs::write(v(3), &original).unwrap();
    refused(&v(1), "volume 2 of");
    std::fs::write(v(2), &original).unwrap();
    std::fs::write(v(3), &third).unwrap();
    verify(&ctx, &v(1), &public, &[]).assert_success();

    // The index altered (a volume's sha256 replaced with that of the forged bytes):
    // its signature no longer verifies.
    let index_path = index_of(&split.bundle);
    let index_text = std::fs::read_to_string(&index_path).unwrap();
    let forged = index_text.replace(&sha256_hex(&original), &sha256_hex(&flipped));
    assert_ne!(forged, index_text);
    std::fs::write(&index_path, &forged).unwrap();
    std::fs::write(v(2), &flipped).unwrap();
    refused(&v(1), "not signed by a trusted key");
    std::fs::write(v(2), &original).unwrap();
    std::fs::write(&index_path, &index_text).unwrap();

    // Signed by a key the importer does not trust.
    let (_, other_public) = ctx.generate_key("other");
    verify(&ctx, &v(1), &other_public, &[])
        .assert_code(3)
        .assert_stderr_contains("not signed by a trusted key");

    // The validly signed index of another bundle (same key, next sequence) beside
    // these volumes: refused as another bundle's.
    let spec = ctx.path("ferry.toml");
    let other = ctx.path("other.ferry");
    let size = split.size.to_string();
    ctx.ferry([
        "bundle",
        "create",
        p(&spec),
        "-o",
        p(&other),
        "--key",
        p(&key),
        "--store",
        p(&store),
        "--split",
        &size,
    ])
    .assert_success();
    let sig = |i: &Path| PathBuf::from(format!("{}.minisig", i.display()));
    let sig_text = std::fs::read(sig(&index_path)).unwrap();
    std::fs::copy(index_of(&other), &index_path).unwrap();
    std::fs::copy(sig(&index_of(&other)), sig(&index_path)).unwrap();
    refused(&v(1), "the volumes are of another bundle");
    std::fs::write(&index_path, &index_text).unwrap();
    std::fs::write(sig(&index_path), &sig_text).unwrap();
    verify(&ctx, &v(1), &public, &[]).assert_success();

    // No index: a volume beside others is not taken for a whole bundle.
    std::fs::remove_file(&index_path).unwrap();
    refused(&v(1), "big.ferry.volumes.json");
}
