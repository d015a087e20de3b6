//! Hugging Face models and datasets end to end: a small real safetensors model that
//! `scripts/mkmodel.py` makes, served by `scripts/fakehub.py` (a loopback stand-in that
//! answers as the hub does: revision and tree JSON with pagination, resolve with a 302 to
//! a CDN on another origin for LFS files), pinned to its commit and bundled as a CNCF
//! ModelPack OCI artifact, imported into a store and a registry, served by `ferry serve`
//! and exported as a hub cache, and loaded by the unmodified `huggingface_hub` client.
//!
//! huggingface_hub, safetensors and numpy come from the test venv that `scripts/setup.sh`
//! makes (`$FERRY_TEST_VENV`, default `target/test-venv`). Nothing is fetched from the
//! real hub: every `HF_*` variable is cleared, and each client and `ferry` run names its
//! endpoint (or the offline cache) explicitly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

use super::context::{
    Output, TestContext, ferry_command_in, p, parse_json, repo_root, run, run_program, sha256_hex,
    shared,
};
use super::http;
use super::tamper::Bundle;

const ARTIFACT_TYPE: &str = "application/vnd.cncf.model.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.cncf.model.config.v1+json";
const WEIGHT_TYPE: &str = "application/vnd.cncf.model.weight.v1.raw";
const WEIGHT_CONFIG_TYPE: &str = "application/vnd.cncf.model.weight.config.v1.raw";
const DOC_TYPE: &str = "application/vnd.cncf.model.doc.v1.raw";
const FILEPATH: &str = "org.cncf.model.filepath";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

const REPO: &str = "org/tiny-bert";
/// The same files as [`REPO`] under an id with upper-case letters.
const MIXED_REPO: &str = "Org/Mixed-Case";
const DATASET: &str = "org/data";
/// Where [`REPO`] lives in a store or registry.
const REPOSITORY: &str = "hf/models/org/tiny-bert";
const TAG: &str = "v1.0";
/// A token for the gated-repo test: it must never show up in a bundle or an output.
const TOKEN: &str = "hf_ferryE2eSecretTokenZq8Xw3Lk5Vn7Rt";

/// Every file of the test model, and the ModelPack media type its layer must have.
const MODEL_FILES: &[(&str, &str)] = &[
    ("README.md", DOC_TYPE),
    ("config.json", WEIGHT_CONFIG_TYPE),
    ("model.safetensors", WEIGHT_TYPE),
    ("sub/extra.safetensors", WEIGHT_TYPE),
    ("tokenizer.json", WEIGHT_CONFIG_TYPE),
];

// ---------------------------------------------------------------------------------------
// Fixtures: the model and dataset directories, the fake hub, a key, the main bundle.

/// A repository directory that `scripts/mkmodel.py` wrote.
pub struct MadeRepo {
    pub dir: PathBuf,
    /// path → (sha256, size)
    pub files: BTreeMap<String, (String, u64)>,
    /// safetensors path → tensor name → {dtype, shape, sha256}
    pub tensors: Value,
}

impl MadeRepo {
    #[track_caller]
    fn bytes(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }
}

/// One file as the hub's tree listing describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    pub oid: String,
    pub size: u64,
    /// (sha256, size, pointerSize) of an LFS file.
    pub lfs: Option<(String, u64, u64)>,
}

pub struct ModelFixtures {
    pub dir: PathBuf,
    pub model: MadeRepo,
    pub dataset: MadeRepo,
    /// Serves [`REPO`], [`MIXED_REPO`] and the dataset [`DATASET`], branch `main` and tag
    /// [`TAG`], two tree entries per page.
    pub hub: FakeHub,
    /// The commit of [`REPO`] on the hub.
    pub commit: String,
    pub mixed_commit: String,
    pub dataset_commit: String,
    /// The hub's tree of [`REPO`]: path → file.
    pub tree: BTreeMap<String, HubFile>,
    pub key: PathBuf,
    pub public: PathBuf,
}

static MODELS: OnceLock<ModelFixtures> = OnceLock::new();

/// The model, the dataset and the running fake hub, made on first use.
pub fn models() -> &'static ModelFixtures {
    MODELS.get_or_init(|| {
        let dir = shared().root.join("models");
        std::fs::create_dir_all(&dir).unwrap();
        let model = mkmodel(&dir.join("tiny-bert"), "model");
        let dataset = mkmodel(&dir.join("data"), "dataset");
        let listed: Vec<&str> = model.files.keys().map(String::as_str).collect();
        let expected: Vec<&str> = MODEL_FILES.iter().map(|(f, _)| *f).collect();
        assert_eq!(listed, expected, "the files mkmodel.py wrote");

        let hub = FakeHub::start(&[
            "--repo".to_string(),
            format!("{REPO}={}", p(&model.dir)),
            "--repo".to_string(),
            format!("{MIXED_REPO}={}", p(&model.dir)),
            "--dataset".to_string(),
            format!("{DATASET}={}", p(&dataset.dir)),
            "--tag".to_string(),
            TAG.to_string(),
            "--page-size".to_string(),
            "2".to_string(),
        ]);
        let commit = hub.commit("models", REPO);
        let mixed_commit = hub.commit("models", MIXED_REPO);
        let dataset_commit = hub.commit("datasets", DATASET);
        let tree = hub_tree(&hub.addr, &format!("/api/models/{REPO}/tree/{commit}"));
        assert_eq!(
            tree.keys().map(String::as_str).collect::<Vec<_>>(),
            expected,
            "the fake hub's tree"
        );

        let mut cmd = ferry_command_in(&dir);
        isolate_hf(&mut cmd, &dir);
        cmd.args(["key", "generate", "team"]);
        run(cmd).assert_success();
        ModelFixtures {
            key: dir.join("team.key"),
            public: dir.join("team.pub"),
            dir,
            model,
            dataset,
            hub,
            commit,
            mixed_commit,
            dataset_commit,
            tree,
        }
    })
}

/// Runs `scripts/mkmodel.py OUTDIR --kind KIND` with the venv's python.
fn mkmodel(outdir: &Path, kind: &str) -> MadeRepo {
    let mut cmd = Command::new(venv_python());
    cmd.arg(repo_root().join("scripts/mkmodel.py"))
        .arg(outdir)
        .args(["--kind", kind]);
    let out = run(cmd);
    out.assert_success();
    let j = parse_json(&out);
    let files: BTreeMap<String, (String, u64)> = j["files"]
        .as_array()
        .unwrap_or_else(|| panic!("mkmodel.py printed no files: {out:?}"))
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                (
                    f["sha256"].as_str().unwrap().to_string(),
                    f["size"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    for (path, (sha, _)) in &files {
        let data = std::fs::read(outdir.join(path)).unwrap();
        assert_eq!(&sha256_hex(&data), sha, "mkmodel.py's sha256 of {path}");
    }
    MadeRepo {
        dir: outdir.to_path_buf(),
        files,
        tensors: j["tensors"].clone(),
    }
}

/// Every file of a tree listing at `path` (`/api/.../tree/<rev>`), all pages followed.
fn hub_tree(addr: &str, path: &str) -> BTreeMap<String, HubFile> {
    let mut files = BTreeMap::new();
    let mut next = Some(format!("{path}?recursive=true&expand=false"));
    let mut pages = 0;
    while let Some(page) = next.take() {
        pages += 1;
        assert!(pages < 100, "the tree listing does not end: {page}");
        let r = http::get(addr, &page);
        assert_eq!(r.status, 200, "GET {page}: {r:?}");
        for e in r.json().as_array().unwrap_or_else(|| panic!("{r:?}")) {
            if e["type"] != "file" {
                continue;
            }
            let lfs = e.get("lfs").filter(|l| !l.is_null()).map(|l| {
                (
                    l["oid"].as_str().unwrap_or_default().to_string(),
                    l["size"].as_u64().unwrap_or_default(),
                    l["pointerSize"].as_u64().unwrap_or_default(),
                )
            });
            let f = HubFile {
                oid: e["oid"].as_str().unwrap_or_default().to_string(),
                size: e["size"].as_u64().unwrap_or_default(),
                lfs,
            };
            files.insert(e["path"].as_str().unwrap().to_string(), f);
        }
        next = r.header("link").and_then(|l| {
            let (target, rel) = l.strip_prefix('<')?.split_once('>')?;
            rel.contains("rel=\"next\"").then(|| {
                let rest = target.strip_prefix("http://").unwrap_or(target);
                rest[rest.find('/').unwrap_or(0)..].to_string()
            })
        });
    }
    files
}

/// The main bundle: [`REPO`] at `main` from the fake hub, made once with ferry.
pub struct MainBundle {
    pub bundle: PathBuf,
    /// The store `bundle create` pulled into.
    pub store: PathBuf,
}

static MAIN: OnceLock<MainBundle> = OnceLock::new();

pub fn main_bundle() -> &'static MainBundle {
    MAIN.get_or_init(|| {
        let fx = models();
        let dir = fx.dir.join("main");
        std::fs::create_dir_all(&dir).unwrap();
        let spec = dir.join("ferry.toml");
        std::fs::write(
            &spec,
            model_spec(&[model_entry(
                REPO,
                Some(&fx.hub.url()),
                "revision = \"main\"\n",
            )]),
        )
        .unwrap();
        let bundle = dir.join("m.ferry");
        let store = dir.join("store");
        let mut cmd = ferry_command_in(&dir);
        isolate_hf(&mut cmd, &dir);
        cmd.args(["bundle", "create", p(&spec), "-o", p(&bundle), "--key"])
            .arg(&fx.key)
            .arg("--store")
            .arg(&store);
        run(cmd).assert_success();
        assert!(bundle.is_file(), "bundle create wrote no {}", p(&bundle));
        MainBundle { bundle, store }
    })
}

/// A `ferry.toml` of series `models` with these `[[model]]` entries.
fn model_spec(entries: &[String]) -> String {
    let mut text = String::from("name = \"models\"\n");
    for e in entries {
        text.push_str("\n[[model]]\n");
        text.push_str(e);
    }
    text
}

/// One `[[model]]` entry's body: `repo`, `endpoint` when given, then `more` verbatim.
fn model_entry(repo: &str, endpoint: Option<&str>, more: &str) -> String {
    let mut text = format!("repo = {}\n", toml_string(repo));
    if let Some(endpoint) = endpoint {
        text.push_str(&format!("endpoint = {}\n", toml_string(endpoint)));
    }
    text.push_str(more);
    text
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

// ---------------------------------------------------------------------------------------
// Environments and peers.

/// The venv's python (scripts/setup.sh installs huggingface_hub, safetensors, numpy).
fn venv_python() -> PathBuf {
    let venv = std::env::var_os("FERRY_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} has no bin/python: run scripts/setup.sh",
        venv.display()
    );
    python
}

/// Clears every way a Hugging Face client (or ferry) could reach a hub, a token or a
/// cache other than the ones a test names, and any proxy.
fn isolate_hf(cmd: &mut Command, home: &Path) {
    super::context::isolate(
        cmd,
        home,
        &[
            "HF_",
            "HUGGINGFACE_",
            "HUGGING_FACE_",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
        ],
        &[("NO_PROXY", "*")],
    );
}

/// `ferry ARGS` in the test's directory, isolated from any hub configuration, with
/// extra environment variables.
fn ferry_hf<I, S>(ctx: &TestContext, args: I, env: &[(&str, &str)]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = ctx.ferry_command();
    isolate_hf(&mut cmd, ctx.dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args);
    run(cmd)
}

/// A running `scripts/fakehub.py`; killed (by its own pid) when dropped, and gone by
/// itself when the test process ends (it watches its stdin).
pub struct FakeHub {
    /// `127.0.0.1:PORT` of the hub.
    pub addr: String,
    /// `127.0.0.1:PORT` of its CDN.
    pub cdn: String,
    server: super::context::HelperServer,
}

impl FakeHub {
    pub fn start(args: &[String]) -> FakeHub {
        let mut cmd = Command::new("python3");
        cmd.arg(repo_root().join("scripts/fakehub.py"))
            .args(["--listen", "127.0.0.1:0", "--cdn-listen", "127.0.0.1:0"])
            .arg("--watch-stdin")
            .args(args);
        let (server, addrs) = super::context::HelperServer::start(
            cmd,
            &["listening on http://", "cdn listening on http://"],
        );
        FakeHub {
            addr: addrs[0].clone(),
            cdn: addrs[1].clone(),
            server,
        }
    }

    /// `http://127.0.0.1:PORT`, what `endpoint` and `HF_ENDPOINT` name.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests it logged so far.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// The commit `main` of a repo points at (`kind`: `models` or `datasets`).
    fn commit(&self, kind: &str, repo: &str) -> String {
        let r = http::get(&self.addr, &format!("/api/{kind}/{repo}/revision/main"));
        assert_eq!(r.status, 200, "{kind}/{repo}: {r:?}");
        let sha = r.json()["sha"].as_str().unwrap().to_string();
        assert_eq!(sha.len(), 40, "{r:?}");
        sha
    }
}

/// What the unmodified client does, one operation after another, each result a JSON
/// object: `{"ok": true, "path", "files": {path: sha256}, "tensors": {...}}` for a
/// snapshot, `{"ok": true, "path", "sha256", "tensors"?}` for one file, or
/// `{"ok": false, "error": CLASS, "message", "entry_not_found"}`.
const HF_CLIENT: &str = r#"
import hashlib, json, os, sys
import numpy as np
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
from safetensors.numpy import load_file

def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

def tensors(path):
    return {
        name: {
            "dtype": str(t.dtype),
            "shape": list(t.shape),
            "sha256": hashlib.sha256(np.ascontiguousarray(t).tobytes()).hexdigest(),
        }
        for name, t in load_file(path).items()
    }

results = []
for op in json.loads(sys.argv[1]):
    kw = {k: op[k] for k in ("revision", "repo_type", "allow_patterns", "cache_dir") if op.get(k) is not None}
    try:
        if op["op"] == "snapshot":
            root = snapshot_download(op["repo"], **kw)
            files, loaded = {}, {}
            for dirpath, dirnames, filenames in os.walk(root):
                for name in filenames:
                    full = os.path.join(dirpath, name)
                    rel = os.path.relpath(full, root).replace(os.sep, "/")
                    files[rel] = sha256(full)
                    if name.endswith(".safetensors"):
                        loaded[rel] = tensors(full)
            results.append({"ok": True, "path": root, "files": files, "tensors": loaded})
        else:
            path = hf_hub_download(op["repo"], op["filename"], **kw)
            r = {"ok": True, "path": path, "sha256": sha256(path)}
            if path.endswith(".safetensors"):
                r["tensors"] = tensors(path)
            results.append(r)
    except Exception as e:
        results.append({
            "ok": False,
            "error": type(e).__name__,
            "message": str(e),
            "entry_not_found": isinstance(e, EntryNotFoundError) and not isinstance(e, LocalEntryNotFoundError),
        })
print(json.dumps(results))
"#;

/// Runs the client's operations (see [`HF_CLIENT`]) with `HF_HOME=hf_home`, telemetry
/// off, no token, and `env` on top (`HF_ENDPOINT`, `HF_HUB_OFFLINE`, ...).
fn hf_client(ctx: &TestContext, hf_home: &Path, env: &[(&str, &str)], ops: &[Value]) -> Vec<Value> {
    let mut cmd = Command::new(venv_python());
    isolate_hf(&mut cmd, ctx.dir.path());
    cmd.env("HF_HOME", hf_home)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(["-c", HF_CLIENT, &Value::Array(ops.to_vec()).to_string()]);
    let out = run(cmd);
    out.assert_success();
    let results: Vec<Value> = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("the client printed no JSON ({e}): {out:?}"));
    assert_eq!(results.len(), ops.len(), "{out:?}");
    results
}

/// A client result that must have succeeded.
#[track_caller]
fn ok<'a>(result: &'a Value, what: &str) -> &'a Value {
    assert_eq!(
        result["ok"], true,
        "{what} failed: {} {}",
        result["error"], result["message"]
    );
    result
}

/// Checks a snapshot result against a made repo: exactly `expected` files (default:
/// all), byte for byte, every safetensors file loading to the original tensors, in
/// the snapshot folder of `commit`.
#[track_caller]
fn assert_snapshot(result: &Value, made: &MadeRepo, commit: &str, expected: Option<&[&str]>) {
    let result = ok(result, "snapshot_download");
    let path = result["path"].as_str().unwrap();
    assert!(
        path.ends_with(&format!("snapshots/{commit}")),
        "the snapshot is not that of commit {commit}: {path}"
    );
    let got: BTreeMap<String, String> = result["files"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let want: BTreeMap<String, String> = made
        .files
        .iter()
        .filter(|(path, _)| expected.is_none_or(|e| e.contains(&path.as_str())))
        .map(|(path, (sha, _))| (path.clone(), sha.clone()))
        .collect();
    assert_eq!(got, want, "the files of the snapshot (path → sha256)");
    for (path, tensors) in result["tensors"].as_object().unwrap() {
        assert_eq!(
            tensors, &made.tensors[path],
            "{path}: the loaded tensors differ from the originals"
        );
    }
}

/// Checks a one-file result: the original bytes (and tensors).
#[track_caller]
fn assert_file(result: &Value, made: &MadeRepo, path: &str) {
    let result = ok(result, &format!("hf_hub_download {path}"));
    assert_eq!(
        result["sha256"].as_str(),
        Some(made.files[path].0.as_str()),
        "{path}: the bytes the client got"
    );
    if path.ends_with(".safetensors") {
        assert_eq!(
            result["tensors"], made.tensors[path],
            "{path}: the loaded tensors differ from the originals"
        );
    }
}

/// Checks that a client result failed with `EntryNotFoundError` from the server.
#[track_caller]
fn assert_entry_not_found(result: &Value, what: &str) {
    assert_eq!(
        result["entry_not_found"], true,
        "{what}: expected EntryNotFoundError (from the server), got {result}"
    );
}

fn snapshot_op(repo: &str, extra: Value) -> Value {
    let mut op = json!({"op": "snapshot", "repo": repo});
    merge(&mut op, extra);
    op
}

fn file_op(repo: &str, filename: &str, extra: Value) -> Value {
    let mut op = json!({"op": "file", "repo": repo, "filename": filename});
    merge(&mut op, extra);
    op
}

fn merge(op: &mut Value, extra: Value) {
    if let Value::Object(extra) = extra {
        op.as_object_mut().unwrap().extend(extra);
    }
}

// ---------------------------------------------------------------------------------------
// Reading what ferry wrote.

/// The artifacts of kind `model` that `ferry bundle inspect BUNDLE --json` lists.
fn model_artifacts(ctx: &TestContext, bundle: &Path) -> Vec<Value> {
    let out = ferry_hf(ctx, ["bundle", "inspect", p(bundle), "--json"], &[]);
    out.assert_success();
    let json = parse_json(&out);
    json["artifacts"]
        .as_array()
        .unwrap_or_else(|| panic!("no artifacts: {json:#}"))
        .iter()
        .filter(|a| a["kind"] == "model")
        .cloned()
        .collect()
}

/// The one model artifact of a bundle. It may be listed once per tag (the commit and
/// the revision name): then every listing is the same manifest and the same `model`.
#[track_caller]
fn the_model(ctx: &TestContext, bundle: &Path) -> Value {
    let found = model_artifacts(ctx, bundle);
    assert!(!found.is_empty(), "the bundle lists no model artifact");
    let first = &found[0];
    for other in &found[1..] {
        assert!(
            other["digest"] == first["digest"] && other["model"] == first["model"],
            "expected one model artifact (listed once per tag at most): {found:#?}"
        );
    }
    first.clone()
}

/// path → (size, sha256, oid, lfs) of an artifact's `model.files`.
fn listed_files(artifact: &Value) -> BTreeMap<String, (u64, String, String, bool)> {
    artifact["model"]["files"]
        .as_array()
        .unwrap_or_else(|| panic!("model.files: {artifact:#}"))
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or_default().to_string(),
                (
                    f["size"].as_u64().unwrap_or_default(),
                    f["sha256"]
                        .as_str()
                        .unwrap_or_default()
                        .trim_start_matches("sha256:")
                        .to_string(),
                    f["oid"].as_str().unwrap_or_default().to_string(),
                    f["lfs"].as_bool().unwrap_or_default(),
                ),
            )
        })
        .collect()
}

/// What `model.files` must say for these paths of the test model.
fn expected_files(paths: &[&str]) -> BTreeMap<String, (u64, String, String, bool)> {
    let fx = models();
    paths
        .iter()
        .map(|path| {
            let (sha, size) = &fx.model.files[*path];
            let hub = &fx.tree[*path];
            (
                path.to_string(),
                (*size, sha.clone(), hub.oid.clone(), hub.lfs.is_some()),
            )
        })
        .collect()
}

/// The digest (`sha256:<hex>`) of an artifact's top manifest.
fn artifact_digest(artifact: &Value) -> String {
    artifact["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("digest: {artifact:#}"))
        .to_string()
}

/// `skopeo inspect --raw oci:STORE:NAME`: the exact manifest bytes.
fn raw_from_store(store: &Path, name: &str) -> Output {
    run_program(
        "skopeo",
        [
            "inspect".to_string(),
            "--raw".into(),
            format!("oci:{}:{name}", store.display()),
        ],
    )
}

/// Asserts that `skopeo` finds `REPOSITORY:tag` in the store with this digest, and
/// returns the manifest.
#[track_caller]
fn assert_store_tag(store: &Path, repository: &str, tag: &str, digest: &str) -> Value {
    let name = format!("{repository}:{tag}");
    let out = raw_from_store(store, &name);
    assert_eq!(out.code, 0, "skopeo finds no {name} in the store: {out:?}");
    assert_eq!(
        format!("sha256:{}", sha256_hex(out.stdout.as_bytes())),
        digest,
        "{name}: the manifest's digest"
    );
    serde_json::from_str(&out.stdout).unwrap()
}

/// Every file under `STORE/blobs` is a whole blob: named `sha256/<hex>` and hashing to
/// that name. (A missing store is fine.)
#[track_caller]
fn assert_blobs_whole(store: &Path) {
    let blobs = store.join("blobs");
    if !blobs.exists() {
        return;
    }
    let mut stack = vec![blobs.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&blobs)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let hex = rel.strip_prefix("sha256/").unwrap_or("");
            assert!(
                hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && meta.is_file(),
                "a stray file in the store's blobs: {}",
                path.display()
            );
            assert_eq!(
                sha256_hex(&std::fs::read(&path).unwrap()),
                hex,
                "a half-written or wrong blob in the store: {}",
                path.display()
            );
        }
    }
}

/// `bundle create` of `spec_text` must fail (see `context::assert_create_fails`), and
/// leave only whole blobs in the store.
fn assert_create_fails(
    ctx: &TestContext,
    spec_text: &str,
    code: Option<i32>,
    needles: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let out =
        super::context::assert_create_fails(ctx, &models().key, spec_text, code, needles, |args| {
            ferry_hf(ctx, args, env)
        });
    assert_blobs_whole(&ctx.path("store"));
    out
}

/// `ferry bundle create SPEC -o NAME.ferry --store ctx/store` that must succeed.
fn create_model_bundle(
    ctx: &TestContext,
    spec_text: &str,
    name: &str,
    env: &[(&str, &str)],
) -> (PathBuf, Output) {
    let spec = ctx.write_spec(&format!("{name}.toml"), spec_text);
    let bundle = ctx.path(format!("{name}.ferry"));
    let out = ferry_hf(
        ctx,
        [
            "bundle",
            "create",
            p(&spec),
            "-o",
            p(&bundle),
            "--key",
            p(&models().key),
            "--store",
            p(&ctx.path("store")),
        ],
        env,
    );
    out.assert_success();
    assert!(bundle.is_file(), "bundle create wrote no {}", p(&bundle));
    (bundle, out)
}

/// Imports a bundle into a fresh store `ctx/NAME`.
fn import_into_store(ctx: &TestContext, bundle: &Path, name: &str) -> PathBuf {
    let store = ctx.path(name);
    ferry_hf(
        ctx,
        [
            "import",
            p(bundle),
            "--trust",
            p(&models().public),
            "--store",
            p(&store),
        ],
        &[],
    )
    .assert_success();
    store
}

/// The quoted or weak ETag value, bare.
fn bare_etag(value: &str) -> String {
    value
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

/// `HEAD` as huggingface_hub sends it: redirects to the same server are followed, a
/// redirect elsewhere (a CDN) is the answer.
fn head_like_client(addr: &str, path: &str) -> http::Response {
    let mut path = path.to_string();
    for _ in 0..5 {
        let r = http::request(addr, "HEAD", &path, &[("Accept-Encoding", "identity")], b"")
            .unwrap_or_else(|e| panic!("HEAD {path}: {e}"));
        let location = match r.header("location") {
            Some(l) if (300..400).contains(&r.status) => l.to_string(),
            _ => return r,
        };
        match same_server_path(addr, &location) {
            Some(next) => path = next,
            None => return r,
        }
    }
    panic!("HEAD {path}: too many redirects");
}

/// `GET` with headers, following every redirect to the same server.
fn get_following(addr: &str, path: &str, headers: &[(&str, &str)]) -> http::Response {
    let mut path = path.to_string();
    for _ in 0..5 {
        let r = http::request(addr, "GET", &path, headers, b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let location = match r.header("location") {
            Some(l) if (300..400).contains(&r.status) => l.to_string(),
            _ => return r,
        };
        path = same_server_path(addr, &location)
            .unwrap_or_else(|| panic!("GET {path} redirects off the server: {location}"));
    }
    panic!("GET {path}: too many redirects");
}

/// The path of a redirect target on `addr` (absolute or relative), None for another host.
fn same_server_path(addr: &str, location: &str) -> Option<String> {
    if let Some(rest) = location.strip_prefix("http://") {
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        return (host == addr).then(|| path.to_string());
    }
    if location.starts_with('/') {
        return Some(location.to_string());
    }
    None
}

// ---------------------------------------------------------------------------------------
// The fake hub answers as the real one does (the real client proves it).

#[test]
fn model_fakehub_serves_the_real_client() {
    let ctx = TestContext::new();
    let fx = models();
    let env = [("HF_ENDPOINT", fx.hub.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cache = |n: &str| p(&ctx.path(format!("cache-{n}"))).to_string();
    let results = hf_client(
        &ctx,
        &ctx.path("hf-home"),
        &env,
        &[
            snapshot_op(REPO, json!({"cache_dir": cache("all")})),
            file_op(
                REPO,
                "config.json",
                json!({"revision": TAG, "cache_dir": cache("tag")}),
            ),
            snapshot_op(
                REPO,
                json!({"allow_patterns": ["*.json"], "cache_dir": cache("json")}),
            ),
            file_op(
                REPO,
                "sub/extra.safetensors",
                json!({"revision": fx.commit, "cache_dir": cache("commit")}),
            ),
            snapshot_op(
                DATASET,
                json!({"repo_type": "dataset", "cache_dir": cache("dataset")}),
            ),
            file_op(REPO, "missing.txt", json!({"cache_dir": cache("missing")})),
        ],
    );
    assert_snapshot(&results[0], &fx.model, &fx.commit, None);
    assert_file(&results[1], &fx.model, "config.json");
    assert_snapshot(
        &results[2],
        &fx.model,
        &fx.commit,
        Some(&["config.json", "tokenizer.json"]),
    );
    assert_file(&results[3], &fx.model, "sub/extra.safetensors");
    assert_snapshot(&results[4], &fx.dataset, &fx.dataset_commit, None);
    assert_entry_not_found(&results[5], "missing.txt from the fake hub");
    // LFS files redirect to the CDN (another origin), where the client got them.
    let r = head_like_client(
        &fx.hub.addr,
        &format!("/{REPO}/resolve/main/model.safetensors"),
    );
    assert_eq!(r.status, 302, "{r:?}");
    assert!(
        r.header("location")
            .is_some_and(|l| l.starts_with(&format!("http://{}/", fx.hub.cdn))),
        "{r:?}"
    );
    let log = fx.hub.log();
    assert!(
        log.lines().any(|l| l.starts_with("fakehub: cdn GET")),
        "the client downloaded nothing from the CDN:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------
// The bundle: pinned, described, a ModelPack artifact.

#[test]
fn model_bundle_pins_the_commit_and_lists_every_file() {
    let ctx = TestContext::new();
    let fx = models();
    let a = the_model(&ctx, &main_bundle().bundle);
    let m = &a["model"];
    assert_eq!(m["repo"], REPO, "{a:#}");
    assert_eq!(m["type"], "model", "{a:#}");
    assert_eq!(m["revision"], "main", "{a:#}");
    assert_eq!(
        m["commit"],
        fx.commit.as_str(),
        "pinned to the commit: {a:#}"
    );
    assert_eq!(
        m["endpoint"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/'),
        fx.hub.url(),
        "{a:#}"
    );
    let all: Vec<&str> = MODEL_FILES.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        listed_files(&a),
        expected_files(&all),
        "model.files: path → (size, sha256, oid, lfs)"
    );
    assert_eq!(a["repository"], REPOSITORY, "{a:#}");

    // The human view names the repo, the commit and the files.
    let out = ferry_hf(&ctx, ["bundle", "inspect", p(&main_bundle().bundle)], &[]);
    out.assert_success();
    for needle in [
        REPO,
        fx.commit.as_str(),
        "model.safetensors",
        "sub/extra.safetensors",
    ] {
        assert!(
            out.stdout.contains(needle),
            "inspect does not show {needle}: {out:?}"
        );
    }

    // The signed bundle manifest records repo and commit too.
    let manifest = Bundle::read(&main_bundle().bundle).manifest().to_string();
    for needle in [REPO, fx.commit.as_str()] {
        assert!(
            manifest.contains(needle),
            "the bundle manifest does not record {needle}: {manifest}"
        );
    }
}

#[test]
fn model_manifest_is_a_modelpack_artifact() {
    let ctx = TestContext::new();
    let fx = models();
    let main = main_bundle();
    let a = the_model(&ctx, &main.bundle);
    let digest = artifact_digest(&a);

    // By the commit and by the revision name, as skopeo reads the store.
    let manifest = assert_store_tag(&main.store, REPOSITORY, &fx.commit, &digest);
    assert_store_tag(&main.store, REPOSITORY, "main", &digest);

    assert_eq!(manifest["mediaType"], OCI_MANIFEST, "{manifest:#}");
    assert_eq!(manifest["artifactType"], ARTIFACT_TYPE, "{manifest:#}");
    assert_eq!(manifest["config"]["mediaType"], CONFIG_TYPE, "{manifest:#}");
    let config_hex = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let config = std::fs::read(main.store.join("blobs/sha256").join(&config_hex))
        .expect("the config blob is in the store");
    assert_eq!(sha256_hex(&config), config_hex);
    serde_json::from_slice::<Value>(&config).expect("the model config is JSON");

    let mut layers = BTreeMap::new();
    for layer in manifest["layers"].as_array().expect("layers") {
        let path = layer["annotations"][FILEPATH]
            .as_str()
            .unwrap_or_else(|| panic!("a layer without {FILEPATH}: {layer:#}"))
            .to_string();
        let previous = layers.insert(
            path.clone(),
            (
                layer["mediaType"].as_str().unwrap_or_default().to_string(),
                layer["digest"].as_str().unwrap_or_default().to_string(),
                layer["size"].as_u64().unwrap_or_default(),
            ),
        );
        assert!(previous.is_none(), "two layers for {path}: {manifest:#}");
    }
    let expected: BTreeMap<String, (String, String, u64)> = MODEL_FILES
        .iter()
        .map(|(path, media_type)| {
            let (sha, size) = &fx.model.files[*path];
            (
                path.to_string(),
                (media_type.to_string(), format!("sha256:{sha}"), *size),
            )
        })
        .collect();
    assert_eq!(
        layers, expected,
        "the layers: file path → (media type, digest, size)"
    );

    // The bundle carries the manifest, the config and every file as blobs.
    let bundle = Bundle::read(&main.bundle);
    let entries: BTreeSet<&str> = bundle.entries.iter().map(|e| e.path.as_str()).collect();
    let wanted = std::iter::once(digest.trim_start_matches("sha256:").to_string())
        .chain(std::iter::once(config_hex))
        .chain(fx.model.files.values().map(|(sha, _)| sha.clone()));
    for hex in wanted {
        let path = format!("blobs/sha256/{hex}");
        assert!(entries.contains(path.as_str()), "the bundle lacks {path}");
    }
}

#[test]
fn model_files_patterns_filter() {
    let ctx = TestContext::new();
    let fx = models();
    let (bundle, _) = create_model_bundle(
        &ctx,
        &model_spec(&[model_entry(
            REPO,
            Some(&fx.hub.url()),
            "files = [\"*.safetensors\", \"*.json\"]\n",
        )]),
        "filtered",
        &[],
    );
    let kept = [
        "config.json",
        "model.safetensors",
        "sub/extra.safetensors",
        "tokenizer.json",
    ];
    let a = the_model(&ctx, &bundle);
    assert_eq!(
        listed_files(&a),
        expected_files(&kept),
        "`files` are fnmatch patterns (`*` matches `/` too)"
    );

    // Served: the kept files, and README.md is not there.
    let store = import_into_store(&ctx, &bundle, "srv");
    let server = ctx.serve(&store);
    let endpoint = format!("http://{}", server.addr);
    let results = hf_client(
        &ctx,
        &ctx.path("hf-home"),
        &[("HF_ENDPOINT", &endpoint)],
        &[
            snapshot_op(REPO, json!({})),
            file_op(REPO, "README.md", json!({})),
        ],
    );
    assert_snapshot(&results[0], &fx.model, &fx.commit, Some(&kept));
    assert_entry_not_found(&results[1], "README.md, which the bundle does not carry");
}

#[test]
fn model_revision_tag_is_pinned_and_served() {
    let ctx = TestContext::new();
    let fx = models();
    let (bundle, _) = create_model_bundle(
        &ctx,
        &model_spec(&[model_entry(
            REPO,
            Some(&fx.hub.url()),
            &format!("revision = \"{TAG}\"\n"),
        )]),
        "tagged",
        &[],
    );
    let a = the_model(&ctx, &bundle);
    assert_eq!(a["model"]["revision"], TAG, "{a:#}");
    assert_eq!(a["model"]["commit"], fx.commit.as_str(), "{a:#}");
    let digest = artifact_digest(&a);
    assert_store_tag(&ctx.path("store"), REPOSITORY, TAG, &digest);
    assert_store_tag(&ctx.path("store"), REPOSITORY, &fx.commit, &digest);

    let store = import_into_store(&ctx, &bundle, "srv");
    assert_store_tag(&store, REPOSITORY, TAG, &digest);
    let server = ctx.serve(&store);
    let endpoint = format!("http://{}", server.addr);
    let results = hf_client(
        &ctx,
        &ctx.path("hf-home"),
        &[("HF_ENDPOINT", &endpoint)],
        &[
            snapshot_op(REPO, json!({"revision": TAG})),
            file_op(REPO, "config.json", json!({"revision": TAG})),
        ],
    );
    assert_snapshot(&results[0], &fx.model, &fx.commit, None);
    assert_file(&results[1], &fx.model, "config.json");
}

#[test]
fn model_endpoint_from_hf_endpoint() {
    let ctx = TestContext::new();
    let fx = models();
    let url = fx.hub.url();
    let (bundle, _) = create_model_bundle(
        &ctx,
        &model_spec(&[model_entry(REPO, None, "")]),
        "env",
        &[("HF_ENDPOINT", &url)],
    );
    let a = the_model(&ctx, &bundle);
    assert_eq!(
        a["model"]["revision"], "main",
        "the default revision: {a:#}"
    );
    assert_eq!(a["model"]["commit"], fx.commit.as_str(), "{a:#}");
    assert_eq!(
        a["model"]["endpoint"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/'),
        url,
        "{a:#}"
    );
}

#[test]
fn model_mixed_case_repo_is_lowercased_in_the_store() {
    let ctx = TestContext::new();
    let fx = models();
    let (bundle, _) = create_model_bundle(
        &ctx,
        &model_spec(&[model_entry(MIXED_REPO, Some(&fx.hub.url()), "")]),
        "mixed",
        &[],
    );
    let a = the_model(&ctx, &bundle);
    assert_eq!(
        a["model"]["repo"], MIXED_REPO,
        "the hub's id, as given: {a:#}"
    );
    assert_eq!(a["model"]["commit"], fx.mixed_commit.as_str(), "{a:#}");
    let digest = artifact_digest(&a);
    assert_store_tag(
        &ctx.path("store"),
        "hf/models/org/mixed-case",
        &fx.mixed_commit,
        &digest,
    );

    let store = import_into_store(&ctx, &bundle, "srv");
    let server = ctx.serve(&store);
    let endpoint = format!("http://{}", server.addr);
    let results = hf_client(
        &ctx,
        &ctx.path("hf-home"),
        &[("HF_ENDPOINT", &endpoint)],
        &[snapshot_op(MIXED_REPO, json!({}))],
    );
    assert_snapshot(&results[0], &fx.model, &fx.mixed_commit, None);
}

// ---------------------------------------------------------------------------------------
// Serving: huggingface_hub downloads through `ferry serve`.

#[test]
fn model_snapshot_download_from_ferry_serve() {
    let ctx = TestContext::new();
    let fx = models();
    let store = import_into_store(&ctx, &main_bundle().bundle, "srv");
    let server = ctx.serve(&store);
    let endpoint = format!("http://{}", server.addr);
    let cache = |n: &str| p(&ctx.path(format!("cache-{n}"))).to_string();
    let results = hf_client(
        &ctx,
        &ctx.path("hf-home"),
        &[("HF_ENDPOINT", &endpoint)],
        &[
            snapshot_op(REPO, json!({"cache_dir": cache("all")})),
            file_op(
                REPO,
                "config.json",
                json!({"revision": "main", "cache_dir": cache("main")}),
            ),
            snapshot_op(
                REPO,
                json!({"revision": fx.commit, "cache_dir": cache("commit")}),
            ),
            file_op(
                REPO,
                "model.safetensors",
                json!({"revision": fx.commit, "cache_dir": cache("commit-file")}),
            ),
            file_op(
                REPO,
                "sub/extra.safetensors",
                json!({"cache_dir": cache("nested")}),
            ),
            snapshot_op(
                REPO,
                json!({"allow_patterns": ["*.safetensors"], "cache_dir": cache("weights")}),
            ),
            file_op(REPO, "missing.txt", json!({"cache_dir": cache("missing")})),
        ],
    );
    assert_snapshot(&results[0], &fx.model, &fx.commit, None);
    assert_file(&results[1], &fx.model, "config.json");
    assert_snapshot(&results[2], &fx.model, &fx.commit, None);
    assert_file(&results[3], &fx.model, "model.safetensors");
    assert_file(&results[4], &fx.model, "sub/extra.safetensors");
    assert_snapshot(
        &results[5],
        &fx.model,
        &fx.commit,
        Some(&["model.safetensors", "sub/extra.safetensors"]),
    );
    assert_entry_not_found(&results[6], "a file not in the bundle");
}

/// huggingface_hub over TLS from a private CA (SSL_CERT_FILE) with a token of the
/// server's token file as HF_TOKEN (sent as a bearer token); without it, refused.
#[test]
fn model_snapshot_download_from_ferry_serve_over_tls_with_a_token() {
    use super::pki::{TOKEN, pki};
    let ctx = TestContext::new();
    let fx = models();
    let store = import_into_store(&ctx, &main_bundle().bundle, "srv");
    let server = ctx.serve_secure(&store);
    let endpoint = format!("https://{}", server.addr);
    let ca = p(&pki().ca);
    let cache = |n: &str| p(&ctx.path(format!("cache-{n}"))).to_string();
    let results = hf_client(
        &ctx,
        &ctx.path("hf-home"),
        &[
            ("HF_ENDPOINT", &endpoint),
            ("SSL_CERT_FILE", ca),
            ("HF_TOKEN", TOKEN),
            // The token is the server's, not the hub's: send it (the suite's default
            // keeps tokens from leaving).
            ("HF_HUB_DISABLE_IMPLICIT_TOKEN", "0"),
        ],
        &[snapshot_op(REPO, json!({"cache_dir": cache("all")}))],
    );
    assert_snapshot(&results[0], &fx.model, &fx.commit, None);
    let results = hf_client(
        &ctx,
        &ctx.path("hf-home-anon"),
        &[("HF_ENDPOINT", &endpoint), ("SSL_CERT_FILE", ca)],
        &[snapshot_op(REPO, json!({"cache_dir": cache("anon")}))],
    );
    assert_ne!(
        results[0]["ok"], true,
        "downloaded without a token: {}",
        results[0]
    );
}

#[test]
fn model_serve_answers_as_the_hub() {
    let ctx = TestContext::new();
    let fx = models();
    let store = import_into_store(&ctx, &main_bundle().bundle, "srv");
    let server = ctx.serve(&store);
    let addr = server.addr.as_str();

    // Repo info, by branch, by commit and without a revision.
    for path in [
        format!("/api/models/{REPO}/revision/main"),
        format!("/api/models/{REPO}/revision/{}", fx.commit),
        format!("/api/models/{REPO}"),
    ] {
        let r = http::get(addr, &path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let j = r.json();
        assert_eq!(j["sha"], fx.commit.as_str(), "{path}: {j:#}");
        assert_eq!(j["id"], REPO, "{path}: {j:#}");
        let siblings: BTreeSet<&str> = j["siblings"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: no siblings: {j:#}"))
            .iter()
            .map(|s| s["rfilename"].as_str().unwrap())
            .collect();
        let all: BTreeSet<&str> = MODEL_FILES.iter().map(|(f, _)| *f).collect();
        assert_eq!(siblings, all, "{path}: siblings");
    }

    // The tree at the commit says what the hub's said.
    let tree = hub_tree(addr, &format!("/api/models/{REPO}/tree/{}", fx.commit));
    assert_eq!(tree, fx.tree, "the tree listing: path → (oid, size, lfs)");

    // Unknown revision, repo and file: the hub's errors.
    let r = http::get(addr, &format!("/api/models/{REPO}/revision/nope-branch"));
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.header("x-error-code"), Some("RevisionNotFound"), "{r:?}");
    let r = http::get(addr, "/api/models/org/nope/revision/main");
    assert!(matches!(r.status, 401 | 404), "{r:?}");
    assert_eq!(r.header("x-error-code"), Some("RepoNotFound"), "{r:?}");
    let r = head_like_client(addr, &format!("/{REPO}/resolve/main/missing.txt"));
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.header("x-repo-commit"), Some(fx.commit.as_str()), "{r:?}");
    assert_eq!(r.header("x-error-code"), Some("EntryNotFound"), "{r:?}");

    // HEAD on resolve: what the client needs to name the blob and check the size.
    for (path, _) in MODEL_FILES {
        let hub = &fx.tree[*path];
        for rev in ["main", fx.commit.as_str()] {
            let url = format!("/{REPO}/resolve/{rev}/{path}");
            let r = head_like_client(addr, &url);
            assert!(
                r.status == 200 || (300..400).contains(&r.status),
                "HEAD {url}: {r:?}"
            );
            assert_eq!(
                r.header("x-repo-commit"),
                Some(fx.commit.as_str()),
                "HEAD {url}: {r:?}"
            );
            assert!(r.header("x-xet-hash").is_none(), "HEAD {url}: {r:?}");
            let etag = r
                .header("x-linked-etag")
                .or(r.header("etag"))
                .map(bare_etag)
                .unwrap_or_else(|| panic!("HEAD {url} has no ETag: {r:?}"));
            let want = match &hub.lfs {
                Some((sha, _, _)) => sha.clone(),
                None => hub.oid.clone(),
            };
            assert_eq!(
                etag, want,
                "HEAD {url}: the ETag the client names the blob by"
            );
            let size = r
                .header("x-linked-size")
                .or(if r.status == 200 {
                    r.header("content-length")
                } else {
                    None
                })
                .and_then(|s| s.parse::<u64>().ok());
            assert_eq!(size, Some(hub.size), "HEAD {url}: the size: {r:?}");
        }
    }

    // GET whole and with a Range, for a plain file and an LFS one.
    for path in ["config.json", "model.safetensors"] {
        let whole = fx.model.bytes(path);
        let url = format!("/{REPO}/resolve/main/{path}");
        let r = get_following(addr, &url, &[]);
        assert_eq!(r.status, 200, "GET {url}: {r:?}");
        assert_eq!(sha256_hex(&r.body), fx.model.files[path].0, "GET {url}");
        let r = get_following(addr, &url, &[("Range", "bytes=100-199")]);
        assert_eq!(r.status, 206, "GET {url} with a Range: {r:?}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes 100-199/{}", whole.len()).as_str()),
            "{r:?}"
        );
        assert_eq!(r.body, &whole[100..200], "GET {url} bytes=100-199");
    }
}

#[test]
fn model_dataset_through_ferry_serve() {
    let ctx = TestContext::new();
    let fx = models();
    let (bundle, _) = create_model_bundle(
        &ctx,
        &model_spec(&[model_entry(
            DATASET,
            Some(&fx.hub.url()),
            "type = \"dataset\"\n",
        )]),
        "dataset",
        &[],
    );
    let a = the_model(&ctx, &bundle);
    assert_eq!(a["model"]["type"], "dataset", "{a:#}");
    assert_eq!(a["model"]["repo"], DATASET, "{a:#}");
    assert_eq!(a["model"]["commit"], fx.dataset_commit.as_str(), "{a:#}");
    let listed: BTreeSet<String> = listed_files(&a).into_keys().collect();
    let made: BTreeSet<String> = fx.dataset.files.keys().cloned().collect();
    assert_eq!(listed, made, "the dataset's files");

    let store = import_into_store(&ctx, &bundle, "srv");
    let server = ctx.serve(&store);
    let r = http::get(
        &server.addr,
        &format!("/api/datasets/{DATASET}/revision/main"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["sha"], fx.dataset_commit.as_str(), "{r:?}");
    // A dataset is not a model of the same name.
    let r = http::get(
        &server.addr,
        &format!("/api/models/{DATASET}/revision/main"),
    );
    assert!(matches!(r.status, 401 | 404), "{r:?}");

    let endpoint = format!("http://{}", server.addr);
    let results = hf_client(
        &ctx,
        &ctx.path("hf-home"),
        &[("HF_ENDPOINT", &endpoint)],
        &[
            snapshot_op(DATASET, json!({"repo_type": "dataset"})),
            file_op(DATASET, "data/train.jsonl", json!({"repo_type": "dataset"})),
        ],
    );
    assert_snapshot(&results[0], &fx.dataset, &fx.dataset_commit, None);
    assert_file(&results[1], &fx.dataset, "data/train.jsonl");
}

// ---------------------------------------------------------------------------------------
// The offline cache and the registry.

#[test]
fn model_export_hf_cache_loads_offline() {
    let ctx = TestContext::new();
    let fx = models();
    let store = import_into_store(&ctx, &main_bundle().bundle, "srv");
    let cache = ctx.path("hf-cache");
    ferry_hf(
        &ctx,
        ["export", "hf", "--store", p(&store), "--to", p(&cache)],
        &[],
    )
    .assert_success();
    let repo_dir = cache.join("models--org--tiny-bert");
    assert!(
        repo_dir.join("blobs").is_dir(),
        "no blobs/ in {}",
        p(&repo_dir)
    );
    assert!(
        repo_dir.join("snapshots").join(&fx.commit).is_dir(),
        "no snapshots/{} in {}",
        fx.commit,
        p(&repo_dir)
    );
    let main_ref = std::fs::read_to_string(repo_dir.join("refs/main")).expect("refs/main");
    assert_eq!(
        main_ref, fx.commit,
        "refs/main must hold the commit and nothing else (the client reads it raw)"
    );

    // No server at all: an endpoint that refuses connections, offline mode on.
    let results = hf_client(
        &ctx,
        &ctx.path("hf-home"),
        &[
            ("HF_HUB_OFFLINE", "1"),
            ("HF_HUB_CACHE", p(&cache)),
            ("HF_ENDPOINT", "http://127.0.0.1:1"),
        ],
        &[
            snapshot_op(REPO, json!({})),
            file_op(REPO, "config.json", json!({})),
            file_op(REPO, "model.safetensors", json!({"revision": "main"})),
            snapshot_op(REPO, json!({"revision": fx.commit})),
            file_op(
                REPO,
                "sub/extra.safetensors",
                json!({"revision": fx.commit}),
            ),
        ],
    );
    assert_snapshot(&results[0], &fx.model, &fx.commit, None);
    assert_file(&results[1], &fx.model, "config.json");
    assert_file(&results[2], &fx.model, "model.safetensors");
    assert_snapshot(&results[3], &fx.model, &fx.commit, None);
    assert_file(&results[4], &fx.model, "sub/extra.safetensors");
}

#[test]
fn model_export_matches_the_clients_own_cache() {
    let ctx = TestContext::new();
    let fx = models();
    // What huggingface_hub itself writes, downloading from the hub.
    let theirs = ctx.path("client-cache");
    let results = hf_client(
        &ctx,
        &ctx.path("hf-home"),
        &[("HF_ENDPOINT", &fx.hub.url()), ("HF_HUB_CACHE", p(&theirs))],
        &[snapshot_op(REPO, json!({}))],
    );
    ok(&results[0], "snapshot_download from the fake hub");

    let store = import_into_store(&ctx, &main_bundle().bundle, "srv");
    let ours = ctx.path("ferry-cache");
    ferry_hf(
        &ctx,
        ["export", "hf", "--store", p(&store), "--to", p(&ours)],
        &[],
    )
    .assert_success();

    let describe = |root: &Path| {
        let repo = root.join("models--org--tiny-bert");
        let blobs: BTreeMap<String, String> = std::fs::read_dir(repo.join("blobs"))
            .unwrap_or_else(|e| panic!("{}/blobs: {e}", repo.display()))
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    sha256_hex(&std::fs::read(e.path()).unwrap()),
                )
            })
            .collect();
        let snapshot = repo.join("snapshots").join(&fx.commit);
        let mut files = BTreeMap::new();
        for (path, _) in MODEL_FILES {
            let data = std::fs::read(snapshot.join(path))
                .unwrap_or_else(|e| panic!("{}/{path}: {e}", snapshot.display()));
            files.insert(path.to_string(), sha256_hex(&data));
        }
        let main_ref = std::fs::read_to_string(repo.join("refs/main")).unwrap_or_default();
        (blobs, files, main_ref)
    };
    let (their_blobs, their_files, their_ref) = describe(&theirs);
    let (our_blobs, our_files, our_ref) = describe(&ours);
    assert_eq!(
        our_blobs, their_blobs,
        "blobs/: named by ETag (git oid, or sha256 for LFS) as the client names them"
    );
    assert_eq!(our_files, their_files, "snapshots/<commit>/");
    assert_eq!(our_ref, their_ref, "refs/main");
}

#[test]
fn model_import_to_registry_is_a_modelpack_artifact() {
    let ctx = TestContext::new();
    let fx = models();
    let registry = ctx.registry();
    let prefix = "models-import";
    let a = the_model(&ctx, &main_bundle().bundle);
    let digest = artifact_digest(&a);
    ferry_hf(
        &ctx,
        [
            "import",
            p(&main_bundle().bundle),
            "--trust",
            p(&fx.public),
            "--to",
            &format!("{}/{prefix}", ctx.host()),
        ],
        &[],
    )
    .assert_success();

    let repo = format!("{prefix}/{REPOSITORY}");
    let tags = registry.tags(&repo);
    for tag in [fx.commit.as_str(), "main"] {
        assert!(
            tags.iter().any(|t| t == tag),
            "{repo} lacks the tag {tag}: {tags:?}"
        );
        assert_eq!(
            registry.manifest_digest(&repo, tag).as_deref(),
            Some(digest.as_str()),
            "{repo}:{tag}"
        );
    }
    let out = run_program(
        "skopeo",
        [
            "inspect".to_string(),
            "--raw".into(),
            "--tls-verify=false".into(),
            format!("docker://{}/{repo}:{}", ctx.host(), fx.commit),
        ],
    );
    out.assert_success();
    assert_eq!(
        format!("sha256:{}", sha256_hex(out.stdout.as_bytes())),
        digest,
        "the registry holds the manifest byte for byte"
    );
    let manifest: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(manifest["artifactType"], ARTIFACT_TYPE, "{manifest:#}");
    let paths: BTreeSet<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["annotations"][FILEPATH].as_str().unwrap_or_default())
        .collect();
    let all: BTreeSet<&str> = MODEL_FILES.iter().map(|(f, _)| *f).collect();
    assert_eq!(paths, all, "the layers' file paths in the registry");
}

// ---------------------------------------------------------------------------------------
// Bad input.

#[test]
fn model_unknown_repo_is_an_error() {
    let ctx = TestContext::new();
    let fx = models();
    assert_create_fails(
        &ctx,
        &model_spec(&[model_entry("org/nope", Some(&fx.hub.url()), "")]),
        None,
        &["org/nope"],
        &[],
    );
}

#[test]
fn model_unknown_revision_is_an_error() {
    let ctx = TestContext::new();
    let fx = models();
    assert_create_fails(
        &ctx,
        &model_spec(&[model_entry(
            REPO,
            Some(&fx.hub.url()),
            "revision = \"nope-branch\"\n",
        )]),
        None,
        &["nope-branch", REPO],
        &[],
    );
}

/// What `fakehub.py --corrupt` serves instead of `data`.
fn corrupted(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let middle = out.len() / 2;
    out[middle] ^= 0xFF;
    out
}

#[test]
fn model_lfs_file_that_does_not_match_its_sha256_is_exit_3() {
    let ctx = TestContext::new();
    let fx = models();
    let hub = FakeHub::start(&[
        "--repo".to_string(),
        format!("{REPO}={}", p(&fx.model.dir)),
        "--corrupt".to_string(),
        "model.safetensors".to_string(),
    ]);
    assert_create_fails(
        &ctx,
        &model_spec(&[model_entry(REPO, Some(&hub.url()), "")]),
        Some(3),
        &["model.safetensors"],
        &[],
    );
    let bad = sha256_hex(&corrupted(&fx.model.bytes("model.safetensors")));
    assert!(
        !ctx.path("store/blobs/sha256").join(&bad).exists(),
        "the corrupt bytes landed in the store"
    );
}

#[test]
fn model_plain_file_that_does_not_match_its_git_oid_is_exit_3() {
    let ctx = TestContext::new();
    let fx = models();
    let hub = FakeHub::start(&[
        "--repo".to_string(),
        format!("{REPO}={}", p(&fx.model.dir)),
        "--corrupt".to_string(),
        "config.json".to_string(),
    ]);
    assert_create_fails(
        &ctx,
        &model_spec(&[model_entry(REPO, Some(&hub.url()), "")]),
        Some(3),
        &["config.json"],
        &[],
    );
    let bad = sha256_hex(&corrupted(&fx.model.bytes("config.json")));
    assert!(
        !ctx.path("store/blobs/sha256").join(&bad).exists(),
        "the corrupt bytes landed in the store"
    );
}

#[test]
fn model_hub_down_is_an_error() {
    let ctx = TestContext::new();
    assert_create_fails(
        &ctx,
        &model_spec(&[model_entry(REPO, Some("http://127.0.0.1:1"), "")]),
        None,
        &[REPO, "127.0.0.1:1"],
        &[],
    );
}

/// A download cut half way resumes by itself: the next request carries a Range from
/// where the bytes stopped and fetches only the rest; the blob is whole.
#[test]
fn model_cut_download_resumes_with_a_range_request() {
    let ctx = TestContext::new();
    let fx = models();
    let hub = FakeHub::start(&[
        "--repo".to_string(),
        format!("{REPO}={}", p(&fx.model.dir)),
        "--cut".to_string(),
        "model.safetensors".to_string(),
    ]);
    let spec = model_spec(&[model_entry(REPO, Some(&hub.url()), "")]);
    let (bundle, _) = create_model_bundle(&ctx, &spec, "cut", &[]);
    let all: Vec<&str> = MODEL_FILES.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        listed_files(&the_model(&ctx, &bundle)),
        expected_files(&all)
    );
    assert_blobs_whole(&ctx.path("store"));
    let size = fx.model.bytes("model.safetensors").len();
    let log = hub.log();
    let gets: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("fakehub: cdn GET") && l.contains("model.safetensors"))
        .collect();
    assert_eq!(gets.len(), 2, "one cut GET and one resumed GET:\n{log}");
    assert!(!gets[0].contains("range="), "{}", gets[0]);
    let start: usize = gets[1]
        .split(" range=bytes=")
        .nth(1)
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the second GET has no Range: {}", gets[1]));
    assert!(
        start > 0 && start <= size / 2,
        "resumed at {start} of {size}: {}",
        gets[1]
    );
    assert!(gets[1].contains("-> 206"), "{}", gets[1]);
}

/// A second pull of the same spec into the same store downloads no file again (git
/// ids and LFS oids are matched against what the store holds).
#[test]
fn model_second_pull_fetches_no_file() {
    let ctx = TestContext::new();
    let fx = models();
    let hub = FakeHub::start(&["--repo".to_string(), format!("{REPO}={}", p(&fx.model.dir))]);
    let spec = ctx.write_spec(
        "ferry.toml",
        &model_spec(&[model_entry(REPO, Some(&hub.url()), "")]),
    );
    let store = ctx.path("store");
    let pull = || {
        ferry_hf(&ctx, ["pull", p(&spec), "--store", p(&store)], &[]).assert_success();
    };
    pull();
    let downloads = |log: &str| {
        log.lines()
            .filter(|l| l.contains(" GET ") && l.contains("/resolve/"))
            .count()
    };
    let first = downloads(&hub.log());
    assert!(first >= MODEL_FILES.len(), "{}", hub.log());
    pull();
    assert_eq!(
        downloads(&hub.log()),
        first,
        "the second pull downloaded files again:\n{}",
        hub.log()
    );
}

#[test]
fn model_gated_repo_needs_hf_token_which_is_never_written() {
    let ctx = TestContext::new();
    let fx = models();
    let hub = FakeHub::start(&[
        "--repo".to_string(),
        format!("{REPO}={}", p(&fx.model.dir)),
        "--token".to_string(),
        TOKEN.to_string(),
    ]);
    let spec = model_spec(&[model_entry(REPO, Some(&hub.url()), "")]);
    let failed = assert_create_fails(&ctx, &spec, None, &[REPO], &[]);

    let (bundle, created) = create_model_bundle(&ctx, &spec, "gated", &[("HF_TOKEN", TOKEN)]);
    let a = the_model(&ctx, &bundle);
    // Same repo id and files as on the main hub: the same commit.
    assert_eq!(a["model"]["commit"], fx.commit.as_str(), "{a:#}");
    let inspect = ferry_hf(&ctx, ["bundle", "inspect", p(&bundle)], &[]);
    let inspect_json = ferry_hf(&ctx, ["bundle", "inspect", p(&bundle), "--json"], &[]);
    for out in [&failed, &created, &inspect, &inspect_json] {
        assert!(
            !out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN),
            "the token shows in ferry's output: {out:?}"
        );
    }
    let raw = zstd::stream::decode_all(std::fs::File::open(&bundle).unwrap())
        .expect("decompress the bundle");
    assert!(
        !raw.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
        "the token is written in the bundle"
    );
    let compressed = std::fs::read(&bundle).unwrap();
    assert!(
        !compressed
            .windows(TOKEN.len())
            .any(|w| w == TOKEN.as_bytes()),
        "the token is written in the bundle"
    );
    // Nor anywhere in the store or the test's state directories.
    let mut stack = vec![ctx.dir.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let data = std::fs::read(&path).unwrap();
                assert!(
                    !data.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
                    "the token is written in {}",
                    path.display()
                );
            }
        }
    }
    // Like huggingface_hub, ferry keeps the token on the hub: the CDN's signed URLs
    // need none.
    let log = hub.log();
    let leaked: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("fakehub: cdn") && l.contains(" auth="))
        .collect();
    assert!(
        leaked.is_empty(),
        "the Authorization header was sent to the CDN (another origin):\n{}",
        leaked.join("\n")
    );
}
