//! `ferry store ls|rm|gc|check`: what a store holds and which bundle placed it, taking
//! entries out, collecting what nothing references while `serve` runs (and not while a
//! pull or import holds the store), and checking every blob and reference.

use std::collections::BTreeSet;

use super::context::{TestContext, digest_of, p, parse_json, run_program, sha256_hex};
use super::fixtures::import_fixture;

fn blob_names(store: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(store.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn store_ls_names_each_entry_its_size_and_the_bundle_that_placed_it() {
    let ctx = TestContext::new();
    let store = import_fixture(&ctx, "store");
    let images = ctx.images();
    let out = ctx.ferry(["store", "ls", "--store", p(&store), "--json"]);
    out.assert_success();
    let v = parse_json(&out);
    let entries = v["entries"].as_array().unwrap();
    let find = |repo: &str, tag: &str| {
        entries
            .iter()
            .find(|e| e["repository"] == repo && e["tag"] == tag)
            .unwrap_or_else(|| panic!("no {repo}:{tag} in {v:#}"))
    };
    let multi = find("e2e/multi", "v1");
    assert_eq!(multi["ecosystem"], "image");
    assert_eq!(multi["digest"], images.multi.digest.as_str());
    assert_eq!(multi["bundle"], "e2e-1");
    // Its size: the index, its child manifests and every blob, each once.
    let children: u64 = images
        .multi
        .children
        .iter()
        .map(|(_, d)| {
            std::fs::metadata(store.join("blobs/sha256").join(&d[7..]))
                .unwrap()
                .len()
        })
        .sum();
    let blobs: u64 = images.multi.blobs.iter().map(|(_, s)| s).sum();
    assert_eq!(
        multi["size"],
        images.multi.size + children + blobs,
        "{multi}"
    );
    assert_eq!(find("renamed/other", "v1")["bundle"], "e2e-1");
    assert!(
        entries
            .iter()
            .any(|e| e["ecosystem"] == "sbom" && e["tag"] == "e2e-1"),
        "{v:#}"
    );
    assert_eq!(v["ecosystems"]["image"]["entries"], 4, "{v:#}");
    let text = ctx.ferry(["store", "ls", "--store", p(&store)]);
    text.assert_success();
    assert!(
        text.stdout.contains("e2e/multi:v1") && text.stdout.contains("from e2e-1"),
        "{text:?}"
    );
}

#[test]
fn store_rm_then_gc_frees_only_what_nothing_else_reaches_while_serve_runs() {
    let ctx = TestContext::new();
    let store = import_fixture(&ctx, "store");
    let images = ctx.images();
    let server = ctx.serve(&store);
    let before = blob_names(&store);

    // Nothing is unreferenced after an import.
    let out = ctx.ferry(["store", "gc", "--store", p(&store), "--json"]);
    out.assert_success();
    assert_eq!(parse_json(&out)["removed"].as_array().unwrap().len(), 0);
    assert_eq!(blob_names(&store), before);

    ctx.ferry(["store", "rm", "e2e/multi:v1", "--store", p(&store)])
        .assert_success();
    let dry = ctx.ferry(["store", "gc", "--store", p(&store), "--dry-run", "--json"]);
    dry.assert_success();
    assert_eq!(blob_names(&store), before, "a dry run removed something");
    let gc = ctx.ferry(["store", "gc", "--store", p(&store), "--json"]);
    gc.assert_success();
    let removed: BTreeSet<String> = parse_json(&gc)["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap()[7..].to_string())
        .collect();
    assert_eq!(
        parse_json(&dry)["removed"],
        parse_json(&gc)["removed"],
        "the dry run listed other blobs"
    );
    // multi's own index and layers went; the base layer it shares with other stayed.
    assert!(removed.contains(&images.multi.digest[7..]), "{removed:?}");
    let other_blobs: BTreeSet<&str> = images.other.blobs.iter().map(|(d, _)| &d[7..]).collect();
    assert!(removed.iter().all(|d| !other_blobs.contains(d.as_str())));
    assert_eq!(
        blob_names(&store),
        before
            .difference(&removed)
            .cloned()
            .collect::<BTreeSet<_>>()
    );

    // The server goes on serving what is left, and no longer what was removed.
    let copy = ctx.path("copy");
    run_program(
        "skopeo",
        [
            "copy".to_string(),
            "--quiet".into(),
            "--all".into(),
            "--src-tls-verify=false".into(),
            format!("docker://{}/renamed/other:v1", server.addr),
            format!("dir:{}", copy.display()),
        ],
    )
    .assert_success();
    let r = super::http::get(&server.addr, "/v2/e2e/multi/manifests/v1");
    assert_eq!(r.status, 404, "{r:?}");
    ctx.ferry(["store", "check", "--store", p(&store)])
        .assert_success();

    // Both are in the audit log, whose chain still holds.
    ctx.ferry(["audit", "verify", "--store", p(&store)])
        .assert_success();
    let log = ctx.ferry(["audit", "show", "--store", p(&store), "--json"]);
    log.assert_success();
    let actions: Vec<String> = parse_json(&log)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        actions.contains(&"store rm".to_string()) && actions.contains(&"store gc".to_string()),
        "{actions:?}"
    );

    // The bundle imported again puts back what was removed.
    import_fixture(&ctx, "store");
    assert_eq!(blob_names(&store), before);
}

#[test]
fn store_rm_refuses_what_it_cannot_find_or_parse() {
    let ctx = TestContext::new();
    let store = import_fixture(&ctx, "store");
    let before = std::fs::read(store.join("index.json")).unwrap();
    ctx.ferry(["store", "rm", "e2e/multi:v2", "--store", p(&store)])
        .assert_code(1)
        .assert_stderr_contains("no entry e2e/multi:v2")
        .assert_stderr_contains("store ls");
    ctx.ferry(["store", "rm", "../../etc:v1", "--store", p(&store)])
        .assert_code(2)
        .assert_stderr_contains("not a reference");
    assert_eq!(std::fs::read(store.join("index.json")).unwrap(), before);
}

/// gc never runs while a pull or an import holds the store (they write blobs before
/// the entries that name them), nor on a store with an entry it cannot follow.
#[test]
fn store_gc_waits_for_no_one_and_deletes_nothing_it_cannot_account_for() {
    let ctx = TestContext::new();
    let store = import_fixture(&ctx, "store");
    // A stray blob nothing references, as a pull in progress leaves it.
    let stray = b"a blob a pull has just written";
    let stray_name = sha256_hex(stray);
    std::fs::write(store.join("blobs/sha256").join(&stray_name), stray).unwrap();
    // An import or pull holds the store (the same flock(2) lock ferry takes).
    let lock = store.join(".ferry/gc.lock");
    let mut holder = std::process::Command::new("flock")
        .args(["--shared", "--close", p(&lock), "sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = ctx.ferry(["store", "gc", "--store", p(&store)]);
    let _ = holder.kill();
    let _ = holder.wait();
    out.assert_code(1)
        .assert_stderr_contains("a pull or an import is using");
    assert!(store.join("blobs/sha256").join(&stray_name).exists());

    // A missing layer: check names the entry, gc refuses and removes nothing.
    let images = ctx.images();
    let (layer, _) = images.docker.largest_blob();
    std::fs::remove_file(store.join("blobs/sha256").join(&layer[7..])).unwrap();
    let before = blob_names(&store);
    ctx.ferry(["store", "gc", "--store", p(&store)])
        .assert_code(3)
        .assert_stderr_contains("store check");
    assert_eq!(blob_names(&store), before);
    let out = ctx.ferry(["store", "check", "--store", p(&store), "--json"]);
    out.assert_code(3);
    let v = parse_json(&out);
    assert_eq!(v["ok"], false);
    let problems = v["problems"].to_string();
    assert!(problems.contains("e2e/docker:v1"), "{problems}");
}

#[test]
fn store_check_finds_a_blob_whose_content_is_not_its_name() {
    let ctx = TestContext::new();
    let store = import_fixture(&ctx, "store");
    ctx.ferry(["store", "check", "--store", p(&store)])
        .assert_success();
    let (layer, _) = ctx.images().multi.largest_blob();
    let path = store.join("blobs/sha256").join(&layer[7..]);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let out = ctx.ferry(["store", "check", "--store", p(&store)]);
    out.assert_code(3)
        .assert_stderr_contains(&format!(
            "blob {layer} holds content of {}",
            digest_of(&bytes)
        ))
        .assert_stderr_contains("e2e/multi:v1 reaches the damaged blob");
}
