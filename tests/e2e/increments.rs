//! Incremental bundles: `bundle create --since BASE` (an earlier bundle, or the receipt
//! an import wrote) leaves out the blobs BASE holds; import checks, before writing
//! anything, that the target holds every blob left out, and refuses naming them
//! otherwise. Into a store and into a registry.

use serde_json::Value;

use super::context::{TestContext, p, run_shell};
use super::tamper::Bundle;

fn blobs(manifest: &Value) -> Vec<String> {
    manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            e["path"]
                .as_str()?
                .strip_prefix("blobs/sha256/")
                .map(String::from)
        })
        .collect()
}

#[test]
fn increments_carry_only_what_is_new_and_imports_check_the_rest() {
    let ctx = TestContext::new();
    let (key, public) = ctx.generate_key("team");
    let (site_key, site_pub) = ctx.generate_key("site");
    let host = ctx.host();
    let store = ctx.path("store");
    let image = |name: &str| format!("\n[[image]]\nref = \"{host}/e2e/{name}:v1\"\n");
    let v1 = ctx.write_spec("v1.toml", &format!("name = \"inc\"\n{}", image("multi")));
    let v2 = ctx.write_spec(
        "v2.toml",
        &format!("name = \"inc\"\n{}{}", image("multi"), image("docker")),
    );
    let b1 = ctx.create_bundle(&v1, "b1.ferry", &key, &["--store", p(&store)]);
    let full = ctx.create_bundle(&v2, "full.ferry", &key, &["--store", p(&store)]);
    let b2 = ctx.create_bundle(
        &v2,
        "b2.ferry",
        &key,
        &["--store", p(&store), "--since", p(&b1)],
    );

    // b2 records its base and leaves out what b1 carried, except manifests and configs.
    let (m1, m2, mfull) = (
        Bundle::read(&b1).manifest(),
        Bundle::read(&b2).manifest(),
        Bundle::read(&full).manifest(),
    );
    assert_eq!(m2["base"]["kind"], "bundle");
    assert_eq!(m2["base"]["sequence"], m1["sequence"]);
    let omitted = m2["base"]["omitted"].as_u64().unwrap();
    assert!(omitted > 0, "{:#}", m2["base"]);
    let (in1, in2, infull) = (blobs(&m1), blobs(&m2), blobs(&mfull));
    assert_eq!(infull.len() - in2.len(), omitted as usize);
    // (Each bundle has SBOMs of its own.)
    let sbom_of = |m: &Value| {
        ["digest", "cyclonedx", "spdx"].map(|k| {
            let d = if k == "digest" {
                &m["sbom"][k]
            } else {
                &m["sbom"][k]["digest"]
            };
            d.as_str().unwrap()["sha256:".len()..].to_string()
        })
    };
    let own = sbom_of(&mfull);
    assert!(
        infull
            .iter()
            .filter(|b| !own.contains(b))
            .all(|b| in2.contains(b) || in1.contains(b)),
        "b2 lacks a blob that b1 did not carry"
    );
    assert!(std::fs::metadata(&b2).unwrap().len() < std::fs::metadata(&full).unwrap().len());
    ctx.ferry(["bundle", "verify", p(&b2), "--trust", p(&public)])
        .assert_success();

    // Into a store that lacks the base: refused before anything is written, naming
    // what is missing.
    let fresh = ctx.path("fresh");
    ctx.ferry([
        "import",
        p(&b2),
        "--trust",
        p(&public),
        "--store",
        p(&fresh),
    ])
    .assert_code(3)
    .assert_stderr_contains("leaves out")
    .assert_stderr_contains("that the target does not hold: sha256:");
    assert!(
        !fresh.exists(),
        "a refused import created {}",
        fresh.display()
    );

    // The base, with a signed receipt, then the increment: the target is complete.
    let target = ctx.path("target");
    let have = ctx.path("have.json");
    ctx.ferry([
        "import",
        p(&b1),
        "--trust",
        p(&public),
        "--store",
        p(&target),
        "--receipt",
        p(&have),
        "--receipt-key",
        p(&site_key),
    ])
    .assert_success();
    let check = run_shell(&format!(
        "minisign -Vm '{}' -p '{}'",
        have.display(),
        site_pub.display()
    ));
    assert_eq!(check.code, 0, "{check:?}");
    let receipt: Value = serde_json::from_slice(&std::fs::read(&have).unwrap()).unwrap();
    assert_eq!(receipt["format"], "dev.ferry.receipt.v1");
    assert_eq!(receipt["sequence"], m1["sequence"]);
    // The next receipt, unsigned this time, replaces the first: the first one's
    // signature does not stay beside it.
    let signature = ctx.path("have.json.minisig");
    assert!(signature.exists());
    ctx.ferry([
        "import",
        p(&b2),
        "--trust",
        p(&public),
        "--store",
        p(&target),
        "--receipt",
        p(&have),
    ])
    .assert_success();
    assert!(
        !signature.exists(),
        "a signature of the earlier receipt stands beside the new one"
    );
    let receipt: Value = serde_json::from_slice(&std::fs::read(&have).unwrap()).unwrap();
    assert_eq!(
        receipt["sequence"],
        Bundle::read(&b2).manifest()["sequence"]
    );
    for name in ["multi", "docker"] {
        let raw = run_shell(&format!(
            "skopeo inspect --raw 'oci:{}:e2e/{name}:v1' >/dev/null && skopeo copy --all 'oci:{}:e2e/{name}:v1' 'dir:{}'",
            target.display(),
            target.display(),
            ctx.path(name).display()
        ));
        assert_eq!(raw.code, 0, "{raw:?}");
    }

    // --since the receipt: the next increment leaves out everything the target holds.
    let v3 = ctx.write_spec(
        "v3.toml",
        &format!(
            "name = \"inc\"\n{}{}\n[[image]]\nref = \"{host}/e2e/other:v1\"\nrepository = \"renamed/other\"\n",
            image("multi"),
            image("docker")
        ),
    );
    let b3 = ctx.create_bundle(
        &v3,
        "b3.ferry",
        &key,
        &["--store", p(&store), "--since", p(&have)],
    );
    let m3 = Bundle::read(&b3).manifest();
    assert_eq!(m3["base"]["kind"], "receipt");
    ctx.ferry([
        "import",
        p(&b3),
        "--trust",
        p(&public),
        "--store",
        p(&target),
    ])
    .assert_success();

    // Hostile twin: a forged receipt claiming the target holds what it does not (the
    // connected side does not check a receipt's signature). The increment made from it
    // leaves out blobs the target lacks, and the target refuses it unchanged.
    let lagging = ctx.path("lagging");
    ctx.ferry([
        "import",
        p(&b1),
        "--trust",
        p(&public),
        "--store",
        p(&lagging),
    ])
    .assert_success();
    let mut forged = receipt.clone();
    let claimed = forged["blobs"].as_array_mut().unwrap();
    let form = |hex: &str| match claimed[0].as_str().unwrap().starts_with("sha256:") {
        true => Value::from(format!("sha256:{hex}")),
        false => Value::from(hex),
    };
    let extra: Vec<Value> = blobs(&m3).iter().map(|h| form(h)).collect();
    claimed.extend(extra);
    let forged_path = ctx.path("forged.json");
    std::fs::write(&forged_path, serde_json::to_vec(&forged).unwrap()).unwrap();
    let b4 = ctx.create_bundle(
        &v3,
        "b4.ferry",
        &key,
        &["--store", p(&store), "--since", p(&forged_path)],
    );
    let index_before = std::fs::read(lagging.join("index.json")).unwrap();
    ctx.ferry([
        "import",
        p(&b4),
        "--trust",
        p(&public),
        "--store",
        p(&lagging),
    ])
    .assert_code(3)
    .assert_stderr_contains("that the target does not hold: sha256:");
    assert_eq!(
        std::fs::read(lagging.join("index.json")).unwrap(),
        index_before,
        "a refused increment changed the target"
    );

    // A base of another series is refused before anything is pulled.
    let other = ctx.write_spec(
        "other.toml",
        &format!("name = \"else\"\n{}", image("multi")),
    );
    ctx.ferry([
        "bundle",
        "create",
        p(&other),
        "-o",
        p(&ctx.path("x.ferry")),
        "--key",
        p(&key),
        "--store",
        p(&store),
        "--since",
        p(&b1),
    ])
    .assert_code(2)
    .assert_stderr_contains("series `inc`");

    // A registry: the increment lands where the base is, and is refused (nothing
    // tagged) where it is not.
    let to = format!("{host}/inc-reg");
    ctx.ferry(["import", p(&b1), "--trust", p(&public), "--to", &to])
        .assert_success();
    ctx.ferry(["import", p(&b2), "--trust", p(&public), "--to", &to])
        .assert_success();
    let pulled = run_shell(&format!(
        "skopeo copy --all --src-tls-verify=false 'docker://{to}/e2e/docker:v1' 'dir:{}'",
        ctx.path("pulled").display()
    ));
    assert_eq!(pulled.code, 0, "{pulled:?}");
    let elsewhere = format!("{host}/inc-fresh");
    ctx.ferry(["import", p(&b2), "--trust", p(&public), "--to", &elsewhere])
        .assert_code(3)
        .assert_stderr_contains("that the target does not hold");
    let tags = super::http::get(host, "/v2/inc-fresh/e2e/docker/tags/list");
    assert_ne!(
        tags.status, 200,
        "a refused import tagged something: {tags:?}"
    );

    // Forged but validly signed: an increment that leaves out a manifest (a platform
    // manifest of e2e/multi) is refused even where the base is, nothing tagged.
    let mut forged = Bundle::read(&b2);
    let mut manifest = forged.manifest();
    let multi = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["repository"] == "e2e/multi")
        .unwrap()["digest"]
        .as_str()
        .unwrap()["sha256:".len()..]
        .to_string();
    let index: Value = serde_json::from_slice(forged.blob(&multi)).unwrap();
    let child = index["manifests"][0]["digest"].as_str().unwrap()["sha256:".len()..].to_string();
    let path = format!("blobs/sha256/{child}");
    forged.entries.retain(|e| e.path != path);
    manifest["entries"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["path"] != path.as_str());
    forged.set_manifest(&manifest);
    forged.resign(&key);
    let forged_path = ctx.path("forged.ferry");
    forged.write(&forged_path);
    let to_forged = format!("{host}/inc-forged");
    ctx.ferry(["import", p(&b1), "--trust", p(&public), "--to", &to_forged])
        .assert_success();
    ctx.ferry([
        "import",
        p(&forged_path),
        "--trust",
        p(&public),
        "--to",
        &to_forged,
    ])
    .assert_code(3)
    .assert_stderr_contains("incomplete");
    let tags = super::http::get(host, "/v2/inc-forged/e2e/docker/tags/list");
    assert_ne!(
        tags.status, 200,
        "a refused import tagged something: {tags:?}"
    );
}
