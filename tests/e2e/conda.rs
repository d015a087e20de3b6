//! Conda packages end to end: the closure solved for the target from a real channel
//! (packages that `scripts/mkconda.py` builds in both formats, indexed by it and served
//! by `python3 -m http.server` on loopback), bundled, imported, served by `ferry serve`,
//! exported as a channel directory, and installed from each by unmodified py-rattler.
//!
//! The source channel `test-forge`:
//! - linux-64: `app 1.0` (`.conda`, depends `libfoo >=1.0`, installs `bin/app`),
//!   `libfoo 1.2` (`.tar.bz2`, depends `base-data`), `libfoo 1.1`, `unrelated 1.0`
//! - linux-aarch64: `app 1.0` and `libfoo 1.2` (so the closure solves there too)
//! - osx-arm64: `macapp 1.0`
//! - noarch: `base-data 1.0` (`.conda`)
//!
//! py-rattler comes from the test venv (`scripts/setup.sh`). Every client and every
//! `ferry` run here sees no channel but the loopback ones the test names: `CONDA_*`
//! and `RATTLER_*` are cleared, HOME is the test's directory, caches are per test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::context::{
    Output, TestContext, copy_tree, ferry_command_in, free_port, p, parse_json, repo_root, run,
    run_shell, sha256_hex, shared,
};
use super::http;
use super::python::venv;
use super::tamper::Bundle;

const CHANNEL: &str = "test-forge";
const APP: &str = "app-1.0-0.conda";
const LIBFOO: &str = "libfoo-1.2-0.tar.bz2";
const LIBFOO_OLD: &str = "libfoo-1.1-0.tar.bz2";
const BASE_DATA: &str = "base-data-1.0-0.conda";
const UNRELATED: &str = "unrelated-1.0-0.tar.bz2";
const MACAPP: &str = "macapp-1.0-0.tar.bz2";

/// (subdir, file name) of every package the linux-64 bundle must carry.
fn linux_closure() -> BTreeSet<(String, String)> {
    [
        ("linux-64", APP),
        ("linux-64", LIBFOO),
        ("noarch", BASE_DATA),
    ]
    .into_iter()
    .map(|(s, f)| (s.to_string(), f.to_string()))
    .collect()
}

// ---------------------------------------------------------------------------------------
// Fixtures: the packages, the source channel, a key, the main bundle.

/// One file `mkconda.py` made.
#[derive(Debug, Clone)]
pub struct Package {
    pub filename: String,
    pub subdir: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

pub struct CondaFixtures {
    pub dir: PathBuf,
    /// The directory that holds `test-forge/`.
    pub parent: PathBuf,
    /// (subdir, file name) → package.
    pub packages: BTreeMap<(String, String), Package>,
    /// `python3 -m http.server` in `parent`.
    pub server: StaticServer,
    pub key: PathBuf,
    pub public: PathBuf,
}

impl CondaFixtures {
    /// `http://127.0.0.1:PORT/test-forge`.
    pub fn channel_url(&self) -> String {
        format!("http://{}/{CHANNEL}", self.server.addr)
    }

    #[track_caller]
    pub fn package(&self, subdir: &str, filename: &str) -> &Package {
        self.packages
            .get(&(subdir.to_string(), filename.to_string()))
            .unwrap_or_else(|| panic!("the fixtures have no {subdir}/{filename}"))
    }
}

static CONDA: OnceLock<CondaFixtures> = OnceLock::new();

/// The packages and the running source channel, made on first use.
pub fn conda() -> &'static CondaFixtures {
    CONDA.get_or_init(|| {
        let dir = shared().root.join("conda");
        let parent = dir.join("channels");
        let channel = parent.join(CHANNEL);
        std::fs::create_dir_all(&channel).unwrap();
        let mut packages = BTreeMap::new();
        let mut make = |args: &[&str]| {
            let pkg = mkconda(&channel, args);
            packages.insert((pkg.subdir.clone(), pkg.filename.clone()), pkg);
        };
        let app = [
            "--name",
            "app",
            "--version",
            "1.0",
            "--format",
            "conda",
            "--depends",
            "libfoo >=1.0",
            "--script",
            "app",
        ];
        let libfoo = [
            "--name",
            "libfoo",
            "--version",
            "1.2",
            "--depends",
            "base-data",
        ];
        for subdir in ["linux-64", "linux-aarch64"] {
            make(&[&app[..], &["--subdir", subdir]].concat());
            make(&[&libfoo[..], &["--subdir", subdir]].concat());
        }
        make(&[
            "--name",
            "libfoo",
            "--version",
            "1.1",
            "--subdir",
            "linux-64",
        ]);
        make(&[
            "--name",
            "base-data",
            "--version",
            "1.0",
            "--subdir",
            "noarch",
            "--format",
            "conda",
        ]);
        make(&[
            "--name",
            "macapp",
            "--version",
            "1.0",
            "--subdir",
            "osx-arm64",
        ]);
        make(&[
            "--name",
            "unrelated",
            "--version",
            "1.0",
            "--subdir",
            "linux-64",
        ]);
        index_channel(&channel, &[]);

        let server = StaticServer::start(&parent);
        let mut cmd = ferry_command_in(&dir);
        isolate_conda(&mut cmd, &dir);
        cmd.args(["key", "generate", "team"]);
        run(cmd).assert_success();
        CondaFixtures {
            key: dir.join("team.key"),
            public: dir.join("team.pub"),
            dir,
            parent,
            packages,
            server,
        }
    })
}

/// Runs `scripts/mkconda.py OUTDIR ARGS --json`.
fn mkconda(outdir: &Path, args: &[&str]) -> Package {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("scripts/mkconda.py"))
        .arg(outdir)
        .args(args)
        .arg("--json");
    let out = run(cmd);
    out.assert_success();
    let j: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("mkconda printed {:?}: {e}", out.stdout));
    let pkg = Package {
        filename: j["filename"].as_str().unwrap().to_string(),
        subdir: j["subdir"].as_str().unwrap().to_string(),
        path: PathBuf::from(j["path"].as_str().unwrap()),
        sha256: j["sha256"].as_str().unwrap().to_string(),
        size: j["size"].as_u64().unwrap(),
    };
    let bytes = std::fs::read(&pkg.path).unwrap();
    assert_eq!(sha256_hex(&bytes), pkg.sha256, "mkconda's sha256");
    pkg
}

/// Runs `scripts/mkconda.py --index CHANNEL EXTRA...`.
fn index_channel(channel: &Path, extra: &[&str]) {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("scripts/mkconda.py"))
        .arg("--index")
        .arg(channel)
        .args(extra);
    run(cmd).assert_success();
}

/// The main bundle: `app` for linux-64 from the source channel, made once with ferry.
pub struct MainBundle {
    pub bundle: PathBuf,
}

static MAIN: OnceLock<MainBundle> = OnceLock::new();

pub fn main_bundle() -> &'static MainBundle {
    MAIN.get_or_init(|| {
        let fx = conda();
        let dir = fx.dir.join("main");
        std::fs::create_dir_all(&dir).unwrap();
        let spec = dir.join("ferry.toml");
        std::fs::write(
            &spec,
            conda_spec(&fx.channel_url(), &["app"], &["linux-64"]),
        )
        .unwrap();
        let bundle = dir.join("c.ferry");
        let mut cmd = ferry_command_in(&dir);
        isolate_conda(&mut cmd, &dir);
        cmd.args(["bundle", "create", p(&spec), "-o", p(&bundle), "--key"])
            .arg(&fx.key)
            .arg("--store")
            .arg(dir.join("store"));
        run(cmd).assert_success();
        assert!(bundle.is_file(), "bundle create wrote no {}", p(&bundle));
        MainBundle { bundle }
    })
}

/// A `ferry.toml` with one `[[conda]]` entry.
pub(super) fn conda_spec(channel: &str, specs: &[&str], platforms: &[&str]) -> String {
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "name = \"conda\"\n\n[[conda]]\nchannel = \"{channel}\"\nspecs = [{}]\nplatforms = [{}]\n",
        list(specs),
        list(platforms)
    )
}

// ---------------------------------------------------------------------------------------
// Environments and peers.

/// Clears every way py-rattler or ferry could find a channel, cache or configuration
/// other than the ones a test names.
fn isolate_conda(cmd: &mut Command, home: &Path) {
    super::context::isolate(cmd, home, &["CONDA", "RATTLER_", "PIXI_", "MAMBA"], &[]);
}

/// `ferry ARGS` in the test's directory, isolated from any conda configuration.
fn ferry_conda<I, S>(ctx: &TestContext, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = ctx.ferry_command();
    isolate_conda(&mut cmd, ctx.dir.path());
    cmd.args(args);
    run(cmd)
}

/// `python3 -m http.server` serving a directory on loopback. It runs under a shell that
/// waits for its stdin to close, then stops exactly that server: so it goes away when
/// dropped and when the test process ends, whatever way it ends.
pub struct StaticServer {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Where the server logs each request.
    log: PathBuf,
    child: Mutex<(Child, Option<ChildStdin>)>,
}

impl StaticServer {
    // The child is waited for in `Drop` (the server is kept) or right here (it failed).
    #[allow(clippy::zombie_processes)]
    pub fn start(dir: &Path) -> StaticServer {
        let mut failures = Vec::new();
        for attempt in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let log = dir
                .parent()
                .unwrap_or(dir)
                .join(format!("http-server-{port}-{attempt}.log"));
            let mut child = Command::new("sh")
                .args([
                    "-c",
                    "python3 -m http.server --bind 127.0.0.1 \"$1\" --directory \"$2\" \
                     >\"$3\" 2>&1 </dev/null & pid=$!; cat >/dev/null; kill \"$pid\"; wait",
                    "sh",
                    &port.to_string(),
                    p(dir),
                    p(&log),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start python3 -m http.server");
            let stdin = child.stdin.take();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(r) = http::request(&addr, "GET", "/", &[], b"")
                    && r.status == 200
                {
                    return StaticServer {
                        addr,
                        log,
                        child: Mutex::new((child, stdin)),
                    };
                }
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("Address already in use") || Instant::now() > deadline {
                    drop(stdin);
                    let _ = child.wait();
                    failures.push(format!("{addr}: {text}"));
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        panic!(
            "python3 -m http.server did not start:\n{}",
            failures.join("\n")
        );
    }
}

impl StaticServer {
    /// The requests it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let mut guard = self.child.lock().unwrap();
        let (child, stdin) = &mut *guard;
        drop(stdin.take());
        let _ = child.wait();
    }
}

/// Solves `specs` with py-rattler from `channel` only (linux-64 and noarch, no virtual
/// packages) and installs them into `prefix`; prints the solved records as JSON.
/// An exception exits 1 with its traceback, before the final `os._exit(0)`.
const RATTLER_INSTALL: &str = r#"
import asyncio, json, os, sys
import rattler

async def main(channel, prefix, cache, specs):
    # The client pixi uses: credentials from RATTLER_AUTH_FILE when there are any.
    client = rattler.Client.authenticated_client()
    records = await rattler.solve(
        sources=[rattler.Channel(channel)],
        specs=specs,
        gateway=rattler.Gateway(cache_dir=cache, client=client),
        platforms=["linux-64", "noarch"],
        virtual_packages=[],
    )
    await rattler.install(records, target_prefix=prefix, cache_dir=cache, client=client)
    print(json.dumps(sorted(
        f"{r.subdir}/{r.file_name}" for r in records
    )))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
# py-rattler's background threads can abort the interpreter while it finalises
# ("PyGILState_Release: thread state ... must be current"): leave without finalising.
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
"#;

/// py-rattler installs `app` from `channel` into a fresh prefix, and `bin/app` runs.
fn assert_rattler_installs(ctx: &TestContext, channel: &str, label: &str) {
    assert_rattler_installs_with(ctx, channel, label, &[]);
}

/// py-rattler installing `app` from `channel` with more environment.
fn rattler_install(ctx: &TestContext, channel: &str, label: &str, env: &[(&str, &str)]) -> Output {
    let prefix = ctx.path(format!("{label}-prefix"));
    let cache = ctx.path(format!("{label}-cache"));
    let mut cmd = Command::new(venv().join("bin/python"));
    cmd.args(["-c", RATTLER_INSTALL, channel, p(&prefix), p(&cache), "app"]);
    isolate_conda(&mut cmd, ctx.dir.path());
    cmd.envs(env.iter().copied());
    run(cmd)
}

/// [`assert_rattler_installs`] with more environment for py-rattler.
fn assert_rattler_installs_with(
    ctx: &TestContext,
    channel: &str,
    label: &str,
    env: &[(&str, &str)],
) {
    let prefix = ctx.path(format!("{label}-prefix"));
    let out = rattler_install(ctx, channel, label, env);
    assert_eq!(
        out.code, 0,
        "py-rattler could not install app from {channel}: {out:?}"
    );
    let solved: BTreeSet<(String, String)> =
        serde_json::from_str::<Vec<String>>(out.stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("py-rattler printed no record list ({e}): {out:?}"))
            .into_iter()
            .map(|s| {
                let (subdir, file) = s.split_once('/').unwrap();
                (subdir.to_string(), file.to_string())
            })
            .collect();
    assert_eq!(
        solved,
        linux_closure(),
        "what py-rattler solved from {channel}"
    );
    let app = prefix.join("bin/app");
    let ran = run(Command::new(&app));
    assert_eq!(ran.code, 0, "{} did not run: {ran:?}", app.display());
    assert_eq!(ran.stdout.trim(), "app app 1.0", "{ran:?}");
    for name in ["app", "libfoo", "base-data"] {
        assert!(
            prefix.join(format!("share/{name}/{name}.txt")).is_file(),
            "{name} is not installed in {}",
            prefix.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Helpers on bundles and stores.

/// (subdir, file name) → the `conda` object of each conda artifact of
/// `ferry bundle inspect BUNDLE --json`.
fn conda_artifacts(
    ctx: &TestContext,
    bundle: &Path,
) -> BTreeMap<(String, String), serde_json::Value> {
    let out = ferry_conda(ctx, ["bundle", "inspect", p(bundle), "--json"]);
    out.assert_success();
    let json = parse_json(&out);
    let mut found = BTreeMap::new();
    for a in json["artifacts"].as_array().expect("artifacts") {
        if a["kind"] != "conda" {
            continue;
        }
        let c = &a["conda"];
        let key = (
            c["subdir"]
                .as_str()
                .unwrap_or_else(|| panic!("conda.subdir: {a}"))
                .to_string(),
            c["fileName"]
                .as_str()
                .unwrap_or_else(|| panic!("conda.fileName: {a}"))
                .to_string(),
        );
        let previous = found.insert(key.clone(), c.clone());
        assert!(previous.is_none(), "{key:?} is listed twice: {json:#}");
    }
    found
}

/// Checks each listed package against the fixture it came from: name, version, build,
/// sha256, size, channel, and the repodata record with depends, license, timestamp.
#[track_caller]
fn assert_conda_objects(found: &BTreeMap<(String, String), serde_json::Value>) {
    let fx = conda();
    for ((subdir, file), c) in found {
        let pkg = fx.package(subdir, file);
        assert_eq!(c["channel"], CHANNEL, "{file}: channel: {c:#}");
        assert_eq!(
            c["sha256"]
                .as_str()
                .map(|s| s.trim_start_matches("sha256:")),
            Some(pkg.sha256.as_str()),
            "{file}: sha256: {c:#}"
        );
        assert_eq!(c["size"], pkg.size, "{file}: size: {c:#}");
        let stem = file.trim_end_matches(".conda").trim_end_matches(".tar.bz2");
        let mut parts = stem.rsplitn(3, '-');
        let (build, version, name) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        assert_eq!(c["name"], name, "{c:#}");
        assert_eq!(c["version"], version, "{c:#}");
        assert_eq!(c["build"], build, "{c:#}");
        let record = &c["record"];
        assert!(
            record["depends"].is_array(),
            "{file}: record.depends: {c:#}"
        );
        assert_eq!(record["license"], "MIT", "{file}: record.license: {c:#}");
        assert!(
            record["timestamp"].is_u64(),
            "{file}: record.timestamp: {c:#}"
        );
    }
}

/// `bundle create` of `spec_text` must fail (see `context::assert_create_fails`).
fn assert_create_fails(
    ctx: &TestContext,
    spec_text: &str,
    code: Option<i32>,
    needles: &[&str],
) -> Output {
    super::context::assert_create_fails(ctx, &conda().key, spec_text, code, needles, |args| {
        ferry_conda(ctx, args)
    })
}

/// `ferry bundle create SPEC -o <stem>.ferry`, which must succeed.
fn create_bundle_conda(ctx: &TestContext, spec: &Path) -> PathBuf {
    let stem = spec.file_stem().unwrap().to_string_lossy().into_owned();
    let bundle = ctx.path(format!("{stem}.ferry"));
    ferry_conda(
        ctx,
        [
            "bundle",
            "create",
            p(spec),
            "-o",
            p(&bundle),
            "--key",
            p(&conda().key),
            "--store",
            p(&ctx.path("store")),
        ],
    )
    .assert_success();
    assert!(bundle.is_file(), "bundle create wrote no {}", p(&bundle));
    bundle
}

/// Imports `bundle` into a fresh store `ctx/NAME`.
fn import(ctx: &TestContext, bundle: &Path, name: &str) -> PathBuf {
    let store = ctx.path(name);
    ferry_conda(
        ctx,
        [
            "import",
            p(bundle),
            "--trust",
            p(&conda().public),
            "--store",
            p(&store),
        ],
    )
    .assert_success();
    store
}

/// A copy of the source channel under `ctx/NAME/test-forge`; returns the copy.
fn copy_channel(ctx: &TestContext, name: &str) -> PathBuf {
    let to = ctx.path(name).join(CHANNEL);
    copy_tree(&conda().parent.join(CHANNEL), &to);
    to
}

/// (file name → sha256) of the packages a repodata.json lists, both formats.
#[track_caller]
fn repodata_files(repodata: &serde_json::Value) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for key in ["packages", "packages.conda"] {
        if let Some(table) = repodata[key].as_object() {
            for (file, record) in table {
                let sha = record["sha256"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: no sha256: {repodata:#}"));
                files.insert(file.clone(), sha.to_string());
            }
        }
    }
    files
}

/// What `expected` says a subdir's repodata lists: file name → sha256.
fn expected_files(subdir: &str, files: &[&str]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|f| (f.to_string(), conda().package(subdir, f).sha256.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Solving and bundling.

#[test]
fn conda_bundle_carries_the_solved_closure_for_the_target() {
    let ctx = TestContext::new();
    let found = conda_artifacts(&ctx, &main_bundle().bundle);
    let keys: BTreeSet<(String, String)> = found.keys().cloned().collect();
    assert_eq!(
        keys,
        linux_closure(),
        "the conda artifacts of the linux-64 bundle (not {LIBFOO_OLD}, {UNRELATED}, {MACAPP})"
    );
    assert_conda_objects(&found);
    let app = &found[&("linux-64".to_string(), APP.to_string())];
    let depends: Vec<&str> = app["record"]["depends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(depends, ["libfoo >=1.0"], "app's record: {app:#}");
}

#[test]
fn conda_several_platforms_carry_each_build() {
    let ctx = TestContext::new();
    let fx = conda();
    let spec = ctx.write_spec(
        "multi.toml",
        &conda_spec(&fx.channel_url(), &["app"], &["linux-64", "linux-aarch64"]),
    );
    let bundle = create_bundle_conda(&ctx, &spec);
    let found = conda_artifacts(&ctx, &bundle);
    let keys: BTreeSet<(String, String)> = found.keys().cloned().collect();
    let mut expected = linux_closure();
    expected.insert(("linux-aarch64".into(), APP.into()));
    expected.insert(("linux-aarch64".into(), LIBFOO.into()));
    assert_eq!(
        keys, expected,
        "the conda artifacts for linux-64 + linux-aarch64"
    );
    assert_conda_objects(&found);
}

// ---------------------------------------------------------------------------------------
// Serving and exporting: unmodified py-rattler installs from each.

#[test]
fn conda_serve_answers_the_channel_api() {
    let ctx = TestContext::new();
    let fx = conda();
    let store = import(&ctx, &main_bundle().bundle, "srv");
    let server = ctx.serve(&store);
    let addr = server.addr.as_str();
    let base = format!("/conda/{CHANNEL}");

    // repodata.json per subdir: exactly the carried packages, with their sha256.
    for (subdir, files) in [("linux-64", vec![APP, LIBFOO]), ("noarch", vec![BASE_DATA])] {
        let path = format!("{base}/{subdir}/repodata.json");
        let r = http::get(addr, &path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let json = r.json();
        assert_eq!(json["info"]["subdir"], subdir, "{path}: {json:#}");
        assert_eq!(
            repodata_files(&json),
            expected_files(subdir, &files),
            "{path}: the packages it lists"
        );
        assert!(
            json["packages.conda"]
                .as_object()
                .is_some_and(|t| t.keys().all(|k| k.ends_with(".conda")))
                && json["packages"]
                    .as_object()
                    .is_none_or(|t| t.keys().all(|k| k.ends_with(".tar.bz2"))),
            "{path}: .conda files under packages.conda, .tar.bz2 under packages: {json:#}"
        );
        assert!(r.header("etag").is_some(), "{path}: no ETag: {r:?}");
        assert!(
            r.header("last-modified").is_some(),
            "{path}: no Last-Modified: {r:?}"
        );

        // The zstd form, the same repodata.
        let zst = format!("{path}.zst");
        let r = http::get(addr, &zst);
        assert_eq!(r.status, 200, "{zst}: {r:?}");
        let raw = ctx.path(format!("{subdir}-repodata.json.zst"));
        std::fs::write(&raw, &r.body).unwrap();
        let out = run_shell(&format!("zstd -q -d -c '{}'", p(&raw)));
        out.assert_success();
        let unzst: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{zst} is not zstd JSON ({e})"));
        assert_eq!(
            repodata_files(&unzst),
            repodata_files(&json),
            "{zst} and repodata.json differ"
        );

        // Real 404s for what a channel lacks.
        for absent in [
            format!("{base}/{subdir}/repodata_shards.msgpack.zst"),
            format!("{path}.bz2"),
        ] {
            for method in ["GET", "HEAD"] {
                let r = http::request(addr, method, &absent, &[], b"").unwrap();
                assert_eq!(r.status, 404, "{method} {absent}: {r:?}");
            }
        }
    }

    // The package files: whole, HEAD, a range.
    for (subdir, file) in linux_closure() {
        let pkg = fx.package(&subdir, &file);
        let path = format!("{base}/{subdir}/{file}");
        let r = http::get(addr, &path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(
            r.header("content-length"),
            Some(pkg.size.to_string().as_str()),
            "{path}: {r:?}"
        );
        assert_eq!(sha256_hex(&r.body), pkg.sha256, "{path}: the bytes");
        let r = http::request(addr, "HEAD", &path, &[], b"").unwrap();
        assert_eq!(r.status, 200, "HEAD {path}: {r:?}");
        assert_eq!(
            r.header("content-length"),
            Some(pkg.size.to_string().as_str()),
            "HEAD {path}: {r:?}"
        );
        let whole = std::fs::read(&pkg.path).unwrap();
        let r = http::request(addr, "GET", &path, &[("Range", "bytes=0-99")], b"").unwrap();
        assert_eq!(r.status, 206, "{path} bytes=0-99: {r:?}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes 0-99/{}", pkg.size).as_str()),
            "{r:?}"
        );
        assert_eq!(r.body, &whole[..100], "{path} bytes=0-99");
    }

    // What was not carried is not there.
    for absent in [
        format!("{base}/linux-64/{UNRELATED}"),
        format!("{base}/linux-64/{LIBFOO_OLD}"),
        "/conda/no-such-forge/linux-64/repodata.json".to_string(),
    ] {
        assert_eq!(http::get(addr, &absent).status, 404, "{absent}");
    }
}

#[test]
fn conda_rattler_installs_from_ferry_serve() {
    let ctx = TestContext::new();
    let store = import(&ctx, &main_bundle().bundle, "srv");
    let server = ctx.serve(&store);
    let url = format!("http://{}/conda/{CHANNEL}", server.addr);
    assert_rattler_installs(&ctx, &url, "serve");
}

/// Over TLS from a private CA (SSL_CERT_FILE) with the htpasswd user in rattler's
/// authentication file (RATTLER_AUTH_FILE, as `pixi auth login` writes it); without it,
/// the install fails.
#[test]
fn conda_rattler_installs_from_ferry_serve_over_tls_with_a_password() {
    use super::pki::{PASSWORD, USER, pki};
    let ctx = TestContext::new();
    let store = import(&ctx, &main_bundle().bundle, "srv");
    let server = ctx.serve_secure(&store);
    let url = format!("https://{}/conda/{CHANNEL}", server.addr);
    let auth = ctx.path("rattler-auth.json");
    // Filed by host: rattler looks credentials up by the URL's host, not its port.
    let entry = serde_json::json!({
        "127.0.0.1": {"BasicHTTP": {"username": USER, "password": PASSWORD}}
    });
    std::fs::write(&auth, entry.to_string()).unwrap();
    let ca = p(&pki().ca);
    let out = rattler_install(&ctx, &url, "anon", &[("SSL_CERT_FILE", ca)]);
    assert_ne!(
        out.code, 0,
        "py-rattler installed without credentials: {out:?}"
    );
    assert_rattler_installs_with(
        &ctx,
        &url,
        "tls",
        &[("SSL_CERT_FILE", ca), ("RATTLER_AUTH_FILE", p(&auth))],
    );
}

#[test]
fn conda_export_writes_a_channel_rattler_installs_from() {
    let ctx = TestContext::new();
    let store = import(&ctx, &main_bundle().bundle, "srv");
    let to = ctx.path("channel");
    ferry_conda(
        &ctx,
        ["export", "conda", "--store", p(&store), "--to", p(&to)],
    )
    .assert_success();
    let channel = to.join(CHANNEL);
    for (subdir, files) in [("linux-64", vec![APP, LIBFOO]), ("noarch", vec![BASE_DATA])] {
        let repodata = channel.join(subdir).join("repodata.json");
        let text = std::fs::read_to_string(&repodata)
            .unwrap_or_else(|e| panic!("{}: {e}", repodata.display()));
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e})", repodata.display()));
        assert_eq!(
            repodata_files(&json),
            expected_files(subdir, &files),
            "{}",
            repodata.display()
        );
        for file in files {
            let bytes = std::fs::read(channel.join(subdir).join(file))
                .unwrap_or_else(|e| panic!("{subdir}/{file} in the export: {e}"));
            assert_eq!(sha256_hex(&bytes), conda().package(subdir, file).sha256);
        }
    }
    assert_rattler_installs(&ctx, &format!("file://{}", p(&channel)), "export");
}

#[test]
fn conda_noarch_is_always_served_and_exported() {
    let ctx = TestContext::new();
    let fx = conda();
    let spec = ctx.write_spec(
        "plain.toml",
        &conda_spec(&fx.channel_url(), &["unrelated"], &["linux-64"]),
    );
    let bundle = create_bundle_conda(&ctx, &spec);
    let keys: BTreeSet<(String, String)> = conda_artifacts(&ctx, &bundle).into_keys().collect();
    assert_eq!(
        keys,
        BTreeSet::from([("linux-64".to_string(), UNRELATED.to_string())]),
        "a package without dependencies carries only itself"
    );
    let store = import(&ctx, &bundle, "srv");

    let server = ctx.serve(&store);
    let path = format!("/conda/{CHANNEL}/noarch/repodata.json");
    let r = http::get(&server.addr, &path);
    assert_eq!(r.status, 200, "{path}: {r:?}");
    assert!(
        repodata_files(&r.json()).is_empty(),
        "{path} should be empty: {r:?}"
    );

    let to = ctx.path("channel");
    ferry_conda(
        &ctx,
        ["export", "conda", "--store", p(&store), "--to", p(&to)],
    )
    .assert_success();
    let noarch = to.join(CHANNEL).join("noarch/repodata.json");
    let text =
        std::fs::read_to_string(&noarch).unwrap_or_else(|e| panic!("{}: {e}", noarch.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(repodata_files(&json).is_empty(), "{text}");
}

// ---------------------------------------------------------------------------------------
// Bad input.

#[test]
fn conda_unknown_channel_is_an_error() {
    let ctx = TestContext::new();
    let url = format!("http://{}/no-such-forge", conda().server.addr);
    assert_create_fails(
        &ctx,
        &conda_spec(&url, &["app"], &["linux-64"]),
        None,
        &["no-such-forge"],
    );
}

#[test]
fn conda_unsatisfiable_spec_shows_the_solver_explanation() {
    let ctx = TestContext::new();
    let out = assert_create_fails(
        &ctx,
        &conda_spec(&conda().channel_url(), &["app >=9"], &["linux-64"]),
        None,
        &["app >=9"],
    );
    let stderr = out.stderr.to_lowercase();
    assert!(
        stderr.contains("no candidates") || stderr.contains("cannot be installed"),
        "the error should carry the solver's explanation: {out:?}"
    );
}

#[test]
fn conda_channel_without_noarch_is_an_error() {
    let ctx = TestContext::new();
    let channel = copy_channel(&ctx, "nonoarch");
    std::fs::remove_dir_all(channel.join("noarch")).unwrap();
    let server = StaticServer::start(&ctx.path("nonoarch"));
    let url = format!("http://{}/{CHANNEL}", server.addr);
    assert_create_fails(
        &ctx,
        &conda_spec(&url, &["unrelated"], &["linux-64"]),
        None,
        &["noarch"],
    );
}

#[test]
fn conda_package_not_matching_repodata_is_exit_3() {
    let ctx = TestContext::new();
    let channel = copy_channel(&ctx, "corrupt");
    index_channel(&channel, &["--corrupt", LIBFOO]);
    let server = StaticServer::start(&ctx.path("corrupt"));
    let url = format!("http://{}/{CHANNEL}", server.addr);
    assert_create_fails(
        &ctx,
        &conda_spec(&url, &["app"], &["linux-64"]),
        Some(3),
        &[LIBFOO],
    );
    // The bytes that did not match are nowhere in the store.
    let blob = ctx
        .path("store/blobs/sha256")
        .join(&conda().package("linux-64", LIBFOO).sha256);
    assert!(
        !blob.exists(),
        "the package that failed its check landed in the store: {}",
        blob.display()
    );
}

#[test]
fn conda_altered_package_in_a_bundle_is_refused() {
    let ctx = TestContext::new();
    let fx = conda();
    let mut bundle = Bundle::read(&main_bundle().bundle);
    let path = format!("blobs/sha256/{}", fx.package("linux-64", APP).sha256);
    {
        let entry = bundle.entry_mut(&path);
        let middle = entry.data.len() / 2;
        entry.data[middle] ^= 0xFF;
    }
    let altered = ctx.path("altered.ferry");
    bundle.write(&altered);

    let store = ctx.path("store");
    super::context::assert_verify_and_import_refuse(
        |args| ferry_conda(&ctx, args),
        &altered,
        &fx.public,
        &store,
    );
}

/// An explicit lock (`@EXPLICIT`, as `conda list --explicit --sha256` writes it) is
/// honoured exactly: its packages and no others (nothing is solved: `unrelated` comes
/// along because the lock lists it, with an md5), each record rebuilt from the package's
/// own index.json, installable by rattler; a wrong locked hash is exit 3.
#[test]
fn conda_explicit_lock_is_honoured_exactly() {
    let ctx = TestContext::new();
    let fx = conda();
    let url = fx.channel_url();
    let line = |subdir: &str, file: &str, hash: String| format!("{url}/{subdir}/{file}#{hash}\n");
    let lock = |app_hash: &str| {
        let mut text = String::from("# exported by hand\n@EXPLICIT\n");
        text += &line("linux-64", APP, format!("sha256:{app_hash}"));
        text += &line(
            "linux-64",
            LIBFOO,
            format!("sha256:{}", fx.package("linux-64", LIBFOO).sha256),
        );
        text += &line(
            "noarch",
            BASE_DATA,
            format!("sha256:{}", fx.package("noarch", BASE_DATA).sha256),
        );
        let md5 =
            super::context::run_program("md5sum", [p(&fx.package("linux-64", UNRELATED).path)]);
        text += &line("linux-64", UNRELATED, md5.stdout[..32].to_string());
        text
    };
    let spec_text =
        "name = \"conda\"\n[[conda]]\nlock-file = \"explicit.txt\"\nplatforms = [\"linux-64\"]\n";
    std::fs::write(
        ctx.path("explicit.txt"),
        lock(&fx.package("linux-64", APP).sha256),
    )
    .unwrap();
    let spec = ctx.write_spec("locked.toml", spec_text);
    let bundle = create_bundle_conda(&ctx, &spec);
    let found = conda_artifacts(&ctx, &bundle);
    let mut expected = linux_closure();
    expected.insert(("linux-64".to_string(), UNRELATED.to_string()));
    assert_eq!(found.keys().cloned().collect::<BTreeSet<_>>(), expected);
    let app = &found[&("linux-64".to_string(), APP.to_string())];
    assert_eq!(
        app["record"]["depends"],
        serde_json::json!(["libfoo >=1.0"]),
        "{app:#}"
    );

    let store = import(&ctx, &bundle, "srv");
    let server = ctx.serve(&store);
    assert_rattler_installs(
        &ctx,
        &format!("http://{}/conda/{CHANNEL}", server.addr),
        "explicit lock via ferry serve",
    );

    std::fs::write(ctx.path("explicit.txt"), lock(&"0".repeat(64))).unwrap();
    assert_create_fails(&ctx, spec_text, Some(3), &[APP]);
}

/// A channel that lies about a record's subdir (no key needed: the upstream is enough)
/// must not make ferry write outside its folders: create refuses it, exit 3, naming
/// the field and value, before anything is fetched or written.
#[test]
fn conda_hostile_subdir_from_the_channel_is_refused() {
    let ctx = TestContext::new();
    let channel = copy_channel(&ctx, "hostile");
    let subdir = channel.join("linux-64");
    for entry in std::fs::read_dir(&subdir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("repodata") && name != "repodata.json" {
            std::fs::remove_file(&path).unwrap();
        }
    }
    let repodata_path = subdir.join("repodata.json");
    let mut repodata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&repodata_path).unwrap()).unwrap();
    let evil = format!("linux-64/../../../..{}", p(&ctx.path("victim")));
    let mut edited = 0;
    for key in ["packages", "packages.conda"] {
        if let Some(table) = repodata[key].as_object_mut() {
            for record in table.values_mut() {
                record["subdir"] = evil.as_str().into();
                edited += 1;
            }
        }
    }
    assert!(edited > 0, "the channel lists no linux-64 package");
    std::fs::write(&repodata_path, serde_json::to_vec(&repodata).unwrap()).unwrap();
    let server = StaticServer::start(&ctx.path("hostile"));
    let url = format!("http://{}/{CHANNEL}", server.addr);
    assert_create_fails(
        &ctx,
        &conda_spec(&url, &["app"], &["linux-64"]),
        Some(3),
        &["conda subdir", &evil],
    );
    assert!(
        !ctx.path("victim").exists(),
        "ferry wrote outside its folders"
    );
}

/// A second pull of the same spec into the same store downloads no package again.
#[test]
fn conda_second_pull_fetches_no_package() {
    let ctx = TestContext::new();
    copy_channel(&ctx, "again");
    let server = StaticServer::start(&ctx.path("again"));
    let url = format!("http://{}/{CHANNEL}", server.addr);
    let spec = ctx.write_spec("ferry.toml", &conda_spec(&url, &["app"], &["linux-64"]));
    let store = ctx.path("store");
    let pull = || {
        ferry_conda(&ctx, ["pull", p(&spec), "--store", p(&store)]).assert_success();
    };
    let packages = |log: &str| {
        log.lines()
            .filter(|l| {
                l.contains("\"GET ") && (l.contains(".conda HTTP") || l.contains(".tar.bz2 HTTP"))
            })
            .count()
    };
    pull();
    let first = packages(&server.log());
    assert!(first > 0, "{}", server.log());
    pull();
    assert_eq!(
        packages(&server.log()),
        first,
        "the second pull downloaded packages again:\n{}",
        server.log()
    );
}

/// A partial download left by an interrupted run, from a server that ignores Range
/// (python's http.server answers 200 with the whole file): the fetcher starts that file
/// again from zero and the pull completes with the right bytes.
#[test]
fn conda_resume_against_a_server_without_range_starts_again() {
    let ctx = TestContext::new();
    copy_channel(&ctx, "norange");
    let server = StaticServer::start(&ctx.path("norange"));
    let url = format!("http://{}/{CHANNEL}", server.addr);
    let spec = ctx.write_spec("ferry.toml", &conda_spec(&url, &["app"], &["linux-64"]));
    let store = ctx.path("store");
    // An empty store, then what a killed run left: the first half of a package.
    ferry_conda(&ctx, ["pull", p(&spec), "--store", p(&store), "--dry-run"]).assert_success();
    std::fs::create_dir_all(store.join("blobs/sha256")).unwrap();
    std::fs::write(
        store.join("oci-layout"),
        "{\"imageLayoutVersion\":\"1.0.0\"}",
    )
    .unwrap();
    std::fs::write(
        store.join("index.json"),
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}",
    )
    .unwrap();
    let package = conda().package("linux-64", LIBFOO);
    let bytes = std::fs::read(&package.path).unwrap();
    let partial = store.join(".ferry/partial").join(&package.sha256);
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, &bytes[..bytes.len() / 2]).unwrap();
    ferry_conda(&ctx, ["pull", p(&spec), "--store", p(&store)]).assert_success();
    let got = std::fs::read(store.join("blobs/sha256").join(&package.sha256)).unwrap();
    assert_eq!(got, bytes);
    assert!(!partial.exists(), "the partial download was left behind");
}

/// A channel URL with credentials that cannot be reached: the error names the channel
/// without them (nothing ferry prints carries a password).
#[test]
fn conda_channel_credentials_are_never_printed() {
    let ctx = TestContext::new();
    let out = assert_create_fails(
        &ctx,
        &conda_spec(
            "http://ferry-user:s3cr3t-Pw-42@127.0.0.1:9/chan",
            &["app"],
            &["linux-64"],
        ),
        None,
        &["127.0.0.1:9"],
    );
    assert!(
        !out.stderr.contains("s3cr3t-Pw-42") && !out.stdout.contains("s3cr3t-Pw-42"),
        "{out:?}"
    );
}
