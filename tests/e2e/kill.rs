//! kill -9 at random points: `pull`, `bundle create` (whole and `--split`), `import
//! --store` and `import --to` are each killed at 10 points spread over their run (a
//! fixed seed, so a failure reproduces), then run again. Every re-run succeeds, and the target is consistent
//! after every kill: every blob in a store matches its name, every tag of a store or a
//! registry resolves to content that is all there, and no bundle appears under its
//! final name half written.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::context::{TestContext, p, sha256_hex};
use super::faults::{Fault, FaultProxy};
use super::http::{self, MANIFEST_ACCEPT};

const KILLS: u32 = 10;

/// A small deterministic generator (xorshift): the kill points of a run.
struct Points(u64);

impl Points {
    fn next_fraction(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 10_000) as f64 / 10_000.0
    }
}

fn is_manifest(media_type: &str) -> bool {
    media_type.contains("manifest") || media_type.contains("image.index")
}

/// Every blob matches its name, and everything `index.json` names is all there.
pub(super) fn assert_store_consistent(store: &Path, when: &str) {
    if !store.join("oci-layout").exists() {
        assert!(
            !store.exists() || std::fs::read_dir(store).unwrap().next().is_none(),
            "{when}: {} exists but is not a store",
            store.display()
        );
        return;
    }
    let blobs = store.join("blobs/sha256");
    for e in std::fs::read_dir(&blobs).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(
            sha256_hex(&bytes),
            name,
            "{when}: blob {name} does not match its name"
        );
    }
    let index: Value = serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap())
        .unwrap_or_else(|e| panic!("{when}: index.json does not parse: {e}"));
    fn walk(blobs: &Path, desc: &Value, when: &str) {
        let hex = &desc["digest"].as_str().unwrap()["sha256:".len()..];
        let path = blobs.join(hex);
        assert!(path.is_file(), "{when}: {hex} is named but missing");
        if !is_manifest(desc["mediaType"].as_str().unwrap_or("")) {
            return;
        }
        let m: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        for child in m["manifests"].as_array().into_iter().flatten() {
            walk(blobs, child, when);
        }
        if m["config"].is_object() {
            walk(blobs, &m["config"], when);
        }
        for layer in m["layers"].as_array().into_iter().flatten() {
            walk(blobs, layer, when);
        }
    }
    for entry in index["manifests"].as_array().unwrap() {
        walk(&blobs, entry, when);
    }
}

/// Every tag under `prefix` in the registry resolves to content that is all there.
pub(super) fn assert_registry_consistent(host: &str, prefix: &str, when: &str) {
    let catalog = http::get(host, "/v2/_catalog?n=1000").json();
    fn walk(host: &str, repo: &str, reference: &str, media_type: Option<&str>, when: &str) {
        if media_type.is_some_and(|t| !is_manifest(t)) {
            let r = http::request(
                host,
                "HEAD",
                &format!("/v2/{repo}/blobs/{reference}"),
                &[],
                b"",
            )
            .unwrap();
            assert_eq!(r.status, 200, "{when}: {repo} lacks blob {reference}");
            return;
        }
        // The registry goes on with the request a killed client left in flight, and
        // docker-registry's filesystem driver writes a tag's link files in place: for a
        // moment a tag that tags/list shows answers 500 "unknown error" or 404 (each seen
        // about once in 100 kills, 200 two seconds later). Wait for it to settle; an
        // answer that stays wrong for 10 s fails.
        let get = || {
            http::request(
                host,
                "GET",
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("Accept", MANIFEST_ACCEPT)],
                b"",
            )
            .unwrap()
        };
        let mut r = get();
        let settle = Instant::now();
        while r.status != 200 && settle.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(200));
            r = get();
        }
        assert_eq!(r.status, 200, "{when}: {repo}:{reference} does not resolve");
        let m = r.json();
        for child in m["manifests"].as_array().into_iter().flatten() {
            walk(
                host,
                repo,
                child["digest"].as_str().unwrap(),
                child["mediaType"].as_str(),
                when,
            );
        }
        for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().into_iter().flatten()) {
            if let Some(digest) = d["digest"].as_str() {
                walk(
                    host,
                    repo,
                    digest,
                    Some(d["mediaType"].as_str().unwrap_or("x")),
                    when,
                );
            }
        }
    }
    for repo in catalog["repositories"].as_array().into_iter().flatten() {
        let repo = repo.as_str().unwrap();
        if !repo.starts_with(&format!("{prefix}/")) {
            continue;
        }
        let tags = http::get(host, &format!("/v2/{repo}/tags/list")).json();
        for tag in tags["tags"].as_array().into_iter().flatten() {
            walk(host, repo, tag.as_str().unwrap(), None, when);
        }
    }
}

/// Runs `args` twice to learn how long it takes, then `KILLS` times killed at a point in
/// that span, checking `consistent` after each kill, then to the end. Kills accumulate
/// (each run resumes what the killed ones left) until a run ends before its kill.
fn kill_and_rerun(
    ctx: &TestContext,
    what: &str,
    args: &[&str],
    seed: u64,
    reset: &dyn Fn(),
    consistent: &dyn Fn(&str),
) {
    // The shorter of two runs: one slow run on a loaded machine must not put every
    // kill point after the end.
    let mut span = Duration::MAX;
    for _ in 0..2 {
        let started = Instant::now();
        ctx.ferry(args).assert_success();
        span = span.min(started.elapsed().max(Duration::from_millis(20)));
        reset();
    }
    let mut points = Points(seed);
    let mut interrupted = 0;
    for i in 0..KILLS {
        let at = span.mul_f64(points.next_fraction());
        let mut child = ctx
            .ferry_command()
            .args(args)
            .arg("--quiet")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        let running = child.try_wait().unwrap().is_none();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        consistent(&format!("{what}: after kill {} at {at:?}", i + 1));
        if running {
            interrupted += 1;
        } else {
            // The run finished first (each resumed run is shorter than the measured
            // one): start over, so the next kill lands in a run that has work to do.
            reset();
        }
    }
    // Most kill points fall inside the run: the test must have cut runs short.
    assert!(
        interrupted >= KILLS / 3,
        "{what}: only {interrupted} of {KILLS} kills hit a running process"
    );
    ctx.ferry(args).assert_success();
    consistent(&format!("{what}: after the final run"));
}

/// What the target held verified, as runs went: after request `n` of the proxy's log,
/// these blobs (`REPO@HEX` for a registry, `HEX` for a store).
#[derive(Default)]
struct Held(RefCell<Vec<(usize, HashSet<String>)>>);

impl Held {
    fn at(&self, proxy: &FaultProxy, blobs: HashSet<String>) {
        self.0.borrow_mut().push((proxy.requests().len(), blobs));
    }

    /// No request of the log that `moves` a blob (its name, as `Held` keeps them) asks
    /// for one the target already held verified when the request was made.
    fn assert_never_again(
        &self,
        proxy: &FaultProxy,
        what: &str,
        moves: impl Fn(&str, &str) -> Option<String>,
    ) {
        let held = self.0.borrow();
        let mut moved = 0;
        let mut checked = 0;
        for (i, (seen, _)) in proxy.requests().iter().enumerate() {
            let Some(blob) = moves(&seen.method, &seen.target) else {
                continue;
            };
            moved += 1;
            let before = held.iter().take_while(|(n, _)| *n <= i).last();
            if let Some((_, blobs)) = before {
                checked += usize::from(!blobs.is_empty());
                assert!(
                    !blobs.contains(&blob),
                    "{what}: {} {} moves {blob} again, which the target already held verified",
                    seen.method,
                    seen.target
                );
            }
        }
        // Not vacuous: blobs moved, and some while the target already held others.
        assert!(
            moved > 0 && checked > 0,
            "{what}: {moved} blob transfers seen, {checked} checked against what the target held"
        );
    }
}

fn store_blobs(store: &Path) -> HashSet<String> {
    std::fs::read_dir(store.join("blobs/sha256"))
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// `REPO@HEX` for every blob linked into a repository under `prefix`, from the
/// registry's own storage.
pub(super) fn registry_blobs(prefix: &str) -> HashSet<String> {
    let root = super::context::shared()
        .root
        .join("registry/docker/registry/v2/repositories");
    let mut found = HashSet::new();
    fn walk(dir: &Path, root: &Path, found: &mut HashSet<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            if e.file_name() == "_layers" {
                let repo = dir
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                for blob in std::fs::read_dir(path.join("sha256"))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if blob.path().join("link").is_file() {
                        found.insert(format!("{repo}@{}", blob.file_name().to_string_lossy()));
                    }
                }
            } else if path.is_dir() && !e.file_name().to_string_lossy().starts_with('_') {
                walk(&path, root, found);
            }
        }
    }
    walk(&root.join(prefix), &root, &mut found);
    found
}

#[test]
fn kill_minus_9_anywhere_then_rerun_leaves_targets_consistent() {
    let ctx = TestContext::new();
    let fx = super::fixtures::fixtures();
    // Every request to the registry goes through a proxy that only logs it.
    let proxy = FaultProxy::start(ctx.host(), |_| Fault::Pass);
    let spec = ctx.write_spec("ferry.toml", &super::fixtures::standard_spec(&proxy.addr));
    let (key, public) = ctx.generate_key("team");

    // pull, into a store that each kill leaves as it is; no blob the store holds is
    // fetched again.
    let store = ctx.path("store");
    let held = Held::default();
    kill_and_rerun(
        &ctx,
        "pull",
        &["pull", p(&spec), "--store", p(&store)],
        0x9e37_79b9_7f4a_7c15,
        &|| {
            let _ = std::fs::remove_dir_all(&store);
            held.at(&proxy, HashSet::new());
        },
        &|when| {
            assert_store_consistent(&store, when);
            held.at(&proxy, store_blobs(&store));
        },
    );
    held.assert_never_again(&proxy, "pull", |method, target| {
        let path = target.split('?').next()?;
        let (_, digest) = path
            .split_once("/blobs/sha256:")
            .or_else(|| path.split_once("/manifests/sha256:"))?;
        (method == "GET").then(|| digest.to_string())
    });

    // bundle create: no bundle under its name unless it is whole.
    let out = ctx.path("killed.ferry");
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
        // Each rerun writes the bundle again.
        "--force",
    ];
    kill_and_rerun(
        &ctx,
        "bundle create",
        &create,
        0x2545_f491_4f6c_dd1d,
        &|| {
            let _ = std::fs::remove_file(&out);
        },
        &|when| {
            if out.exists() {
                ctx.ferry(["bundle", "verify", p(&out), "--trust", p(&public)])
                    .assert_success();
            }
            assert_store_consistent(&store, when);
            let _ = std::fs::remove_file(&out);
        },
    );

    // bundle create --split: no index (what makes a set of volumes finished) unless the
    // set verifies.
    let split = ctx.path("split.ferry");
    let index = ctx.path("split.ferry.volumes.json");
    let create_split = [
        "bundle",
        "create",
        p(&spec),
        "-o",
        p(&split),
        "--key",
        p(&key),
        "--store",
        p(&store),
        "--split",
        "256KiB",
        "--force",
    ];
    kill_and_rerun(
        &ctx,
        "bundle create --split",
        &create_split,
        0x5851_f42d_4c95_7f2d,
        &|| {
            let _ = std::fs::remove_file(&index);
        },
        &|when| {
            if index.exists() {
                let out = ctx.ferry(["bundle", "verify", p(&split), "--trust", p(&public)]);
                assert_eq!(out.code, 0, "{when}: {out:?}");
            }
            let _ = std::fs::remove_file(&index);
        },
    );

    // import into a store: new each time (so kills hit the build of a new store too).
    let target = ctx.path("target");
    let bundle = fx.bundle.clone();
    kill_and_rerun(
        &ctx,
        "import --store",
        &[
            "import",
            p(&bundle),
            "--trust",
            p(&fx.public),
            "--store",
            p(&target),
        ],
        0xd1b5_4a32_d192_ed03,
        &|| {
            let _ = std::fs::remove_dir_all(&target);
        },
        &|when| assert_store_consistent(&target, when),
    );
    assert!(
        std::fs::read_dir(ctx.dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("ferry-new")),
        "a killed import left a half-built store beside the target"
    );

    // import into a registry (through the proxy), under a prefix of its own; no blob
    // a repository holds is uploaded to it again.
    let prefix = "killed";
    let to = format!("{}/{prefix}", proxy.addr);
    let held = Held::default();
    let state = ctx.path("state");
    kill_and_rerun(
        &ctx,
        "import --to",
        &[
            "import",
            p(&bundle),
            "--trust",
            p(&fx.public),
            "--to",
            &to,
            "--state-dir",
            p(&state),
            "--force",
        ],
        0x94d0_49bb_1331_11eb,
        // Its repositories removed from the registry's storage (the registry keeps no
        // cache), so the next run pushes everything again.
        &|| {
            let repos = super::context::shared()
                .root
                .join("registry/docker/registry/v2/repositories")
                .join(prefix);
            let _ = std::fs::remove_dir_all(repos);
            held.at(&proxy, HashSet::new());
        },
        &|when| {
            assert_registry_consistent(ctx.host(), prefix, when);
            held.at(&proxy, registry_blobs(prefix));
        },
    );
    // Uploads complete only once the whole bundle verified, so a kill rarely leaves
    // some blobs and not others. Made so by hand: the target holds one layer of the
    // bundle (uploaded straight to the registry), and the import must not send it again.
    let (repo, hex) = registry_blobs(prefix)
        .into_iter()
        .map(|b| {
            let (repo, hex) = b.split_once('@').unwrap();
            (repo.to_string(), hex.to_string())
        })
        .max_by_key(|(_, hex)| {
            let data = super::context::shared()
                .root
                .join("registry/docker/registry/v2/blobs/sha256")
                .join(&hex[..2])
                .join(hex)
                .join("data");
            std::fs::metadata(data).map(|m| m.len()).unwrap_or(0)
        })
        .expect("the import landed blobs");
    let data = super::context::shared()
        .root
        .join("registry/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .join("data");
    let layer = std::fs::read(&data).unwrap();
    let _ = std::fs::remove_dir_all(
        super::context::shared()
            .root
            .join("registry/docker/registry/v2/repositories")
            .join(prefix),
    );
    let layer_file = ctx.path("held-layer");
    std::fs::write(&layer_file, &layer).unwrap();
    let post = std::process::Command::new("curl")
        .args([
            "-fsS",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            "-w",
            "%header{location}",
        ])
        .arg(format!("http://{}/v2/{repo}/blobs/uploads/", ctx.host()))
        .output()
        .unwrap();
    assert!(post.status.success(), "{post:?}");
    let location = String::from_utf8(post.stdout).unwrap();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("http://{}{location}", ctx.host())
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = std::process::Command::new("curl")
        .args(["-fsS", "-o", "/dev/null", "-X", "PUT", "-H"])
        .arg("Content-Type: application/octet-stream")
        .arg("--data-binary")
        .arg(format!("@{}", layer_file.display()))
        .arg(format!("{location}{sep}digest=sha256:{hex}"))
        .status()
        .unwrap();
    assert!(put.success());
    let holds = registry_blobs(prefix);
    assert_eq!(holds.len(), 1, "{holds:?}");
    held.at(&proxy, holds);
    ctx.ferry([
        "import",
        p(&bundle),
        "--trust",
        p(&fx.public),
        "--to",
        &to,
        "--state-dir",
        p(&state),
        "--force",
    ])
    .assert_success();
    assert_registry_consistent(
        ctx.host(),
        prefix,
        "import --to: after a run over a held layer",
    );
    held.at(&proxy, registry_blobs(prefix));

    // An upload ends with `PUT /v2/REPO/blobs/uploads/ID?digest=sha256:HEX`.
    held.assert_never_again(&proxy, "import --to", |method, target| {
        let (path, query) = target.split_once('?')?;
        let repo = path.strip_prefix("/v2/")?.split("/blobs/uploads/").next()?;
        let hex = query.split('&').find_map(|kv| {
            kv.strip_prefix("digest=sha256%3A")
                .or(kv.strip_prefix("digest=sha256:"))
        })?;
        (method == "PUT" && path.contains("/blobs/uploads/")).then(|| format!("{repo}@{hex}"))
    });
}

/// A conda pull writes every package's record in one batch (one sync, then the renames)
/// and tags them all with one change of the index: killed anywhere, the store is
/// consistent and holds the entry's packages all tagged or none, and a re-run finishes.
#[test]
fn kill_minus_9_in_a_conda_pull_tags_all_its_packages_or_none() {
    let ctx = TestContext::new();
    let fx = super::conda::conda();
    let spec = ctx.write_spec(
        "conda.toml",
        &super::conda::conda_spec(&fx.channel_url(), &["app"], &["linux-64"]),
    );
    let store = ctx.path("store");
    let conda_tags = |when: &str| -> usize {
        let Ok(bytes) = std::fs::read(store.join("index.json")) else {
            return 0;
        };
        let index: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{when}: index.json does not parse: {e}"));
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["annotations"]["dev.ferry.repository"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("conda/"))
            })
            .count()
    };
    kill_and_rerun(
        &ctx,
        "conda pull",
        &["pull", p(&spec), "--store", p(&store)],
        0x2545_f491_4f6c_dd1d,
        &|| {
            let _ = std::fs::remove_dir_all(&store);
        },
        &|when| {
            assert_store_consistent(&store, when);
            let n = conda_tags(when);
            assert!(
                n == 0 || n == 3,
                "{when}: {n} conda packages tagged, not none or all three"
            );
        },
    );
    assert_eq!(conda_tags("after the final run"), 3);
}

/// `store gc` removes, one file at a time, blobs that no entry reaches: killed anywhere,
/// it has removed only such blobs (every entry still complete and every blob what its
/// name says), and a re-run removes the rest.
#[test]
fn kill_minus_9_in_a_store_gc_removes_only_what_no_entry_reaches() {
    let ctx = TestContext::new();
    let images = ctx.images();
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!(
            "name = \"gc\"\n[[image]]\nref = \"{}\"\n",
            images.multi.reference
        ),
    );
    let store = ctx.path("store");
    ctx.ferry(["pull", p(&spec), "--store", p(&store)])
        .assert_success();
    let reached = store_blobs(&store);
    // Enough unreferenced blobs that a gc takes long enough to be cut short.
    let garbage: Vec<(String, Vec<u8>)> = (0..4000)
        .map(|i| {
            let bytes = format!("garbage {i}\n").into_bytes();
            (sha256_hex(&bytes), bytes)
        })
        .collect();
    let litter = || {
        for (hex, bytes) in &garbage {
            std::fs::write(store.join("blobs/sha256").join(hex), bytes).unwrap();
        }
    };
    litter();
    kill_and_rerun(
        &ctx,
        "store gc",
        &["store", "gc", "--store", p(&store)],
        0x7f4a_7c15_9e37_79b9,
        &litter,
        &|when| {
            assert_store_consistent(&store, when);
            let now = store_blobs(&store);
            let lost: Vec<_> = reached.difference(&now).collect();
            assert!(lost.is_empty(), "{when}: gc removed reached blobs {lost:?}");
        },
    );
    assert_eq!(
        store_blobs(&store),
        reached,
        "after the final run: blobs no entry reaches are left"
    );
}
