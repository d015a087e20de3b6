//! Python wheels end to end: the closure resolved for the target from a real index
//! (`scripts/pyindex.py` serving wheels that `scripts/mkwheel.py` builds), bundled,
//! imported, served by `ferry serve`, exported as a static PEP 503 tree and uploaded to
//! a real `pypiserver`, and installed from each by unmodified pip and uv.
//!
//! pip, uv and pypiserver come from the test venv that `scripts/setup.sh` creates
//! (`$FERRY_TEST_VENV`, default `target/test-venv`). Every client and every `ferry` run
//! here sees no index but the loopback ones the test names: `PIP_*` and `UV_*` are
//! cleared, pip's and uv's configuration files are off, caches are off.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use super::context::{
    Output, TestContext, copy_tree, ferry_command_in, free_port, p, parse_json, repo_root, run,
    sha256_hex, shared,
};
use super::fixtures::fixtures;
use super::http;
use super::tamper::Bundle;

const JSON_TYPE: &str = "application/vnd.pypi.simple.v1+json";
const HTML_V1_TYPE: &str = "application/vnd.pypi.simple.v1+html";
/// What pip sends.
const PIP_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, \
     application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";

const LINUX: &str = "manylinux_2_28_x86_64";
const MAC: &str = "macosx_11_0_arm64";
const PLATPKG_LINUX: &str = "platpkg-2.0-cp311-cp311-manylinux_2_28_x86_64.whl";
const PLATPKG_MAC: &str = "platpkg-2.0-cp311-cp311-macosx_11_0_arm64.whl";
const SIX: &str = "six-1.16.0-py2.py3-none-any.whl";
const SIX_YANKED: &str = "six-1.17.0-py2.py3-none-any.whl";
const DATEUTIL: &str = "python_dateutil-2.9.0-py2.py3-none-any.whl";
const DATEUTIL_REQUIRES_PYTHON: &str = ">=2.7, !=3.0.*";

/// The requirements of the main spec.
const MAIN_REQUIREMENTS: &[&str] = &[
    "python-dateutil>=2.8",
    "fancy[speed]",
    "withmarker",
    "platpkg",
    "oldpy",
];

/// What the main spec must carry for Python 3.11 on manylinux_2_28_x86_64:
/// project → (version, file names).
fn main_closure() -> BTreeMap<String, (String, BTreeSet<String>)> {
    [
        ("python-dateutil", "2.9.0", vec![DATEUTIL]),
        ("six", "1.16.0", vec![SIX]),
        ("fancy", "1.0", vec!["fancy-1.0-py3-none-any.whl"]),
        ("extradep", "1.0", vec!["extradep-1.0-py3-none-any.whl"]),
        ("withmarker", "1.0", vec!["withmarker-1.0-py3-none-any.whl"]),
        ("markerdep", "1.0", vec!["markerdep-1.0-py3-none-any.whl"]),
        ("platpkg", "2.0", vec![PLATPKG_LINUX]),
        ("oldpy", "0.9", vec!["oldpy-0.9-py3-none-any.whl"]),
    ]
    .into_iter()
    .map(|(project, version, files)| {
        (
            project.to_string(),
            (
                version.to_string(),
                files.into_iter().map(String::from).collect(),
            ),
        )
    })
    .collect()
}

// ---------------------------------------------------------------------------------------
// Fixtures: the wheels, the source index, a key, and the main bundle.

/// One file `mkwheel.py` made.
#[derive(Debug, Clone)]
pub struct Wheel {
    pub filename: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// METADATA (PKG-INFO for an sdist), byte for byte.
    pub metadata: String,
}

pub struct PyFixtures {
    pub dir: PathBuf,
    /// Every file of the source index.
    pub wheel_dir: PathBuf,
    pub files: BTreeMap<String, Wheel>,
    /// The source index: every file, with six 1.17.0 yanked.
    pub index: PyIndex,
    pub key: PathBuf,
    pub public: PathBuf,
}

impl PyFixtures {
    #[track_caller]
    pub fn file(&self, name: &str) -> &Wheel {
        self.files
            .get(name)
            .unwrap_or_else(|| panic!("the fixtures have no {name}"))
    }
}

static PY: OnceLock<PyFixtures> = OnceLock::new();

/// The wheels and the running source index, made on first use.
pub fn py() -> &'static PyFixtures {
    PY.get_or_init(|| {
        let dir = shared().root.join("python");
        let wheel_dir = dir.join("wheels");
        std::fs::create_dir_all(&wheel_dir).unwrap();
        let mut files = BTreeMap::new();
        let mut make = |args: &[&str]| {
            for w in mkwheel(&wheel_dir, args) {
                files.insert(w.filename.clone(), w);
            }
        };
        let universal = ["--tag", "py2.py3-none-any"];
        make(
            &[
                &["--name", "six", "--version", "1.16.0", "--module"],
                &universal[..],
            ]
            .concat(),
        );
        make(
            &[
                &["--name", "six", "--version", "1.17.0", "--module"],
                &universal[..],
            ]
            .concat(),
        );
        for version in ["2.8.2", "2.9.0"] {
            make(
                &[
                    &[
                        "--name",
                        "python-dateutil",
                        "--version",
                        version,
                        "--package",
                        "dateutil",
                        "--import",
                        "six",
                        "--requires",
                        "six>=1.5",
                        "--requires-python",
                        DATEUTIL_REQUIRES_PYTHON,
                    ],
                    &universal[..],
                ]
                .concat(),
            );
        }
        make(&[
            "--name",
            "fancy",
            "--version",
            "1.0",
            "--extra",
            "speed",
            "--requires",
            "extradep>=1.0; extra == \"speed\"",
        ]);
        make(&["--name", "extradep", "--version", "1.0"]);
        make(&[
            "--name",
            "withmarker",
            "--version",
            "1.0",
            "--requires",
            "markerdep; sys_platform == \"linux\"",
            "--requires",
            "windep; sys_platform == \"win32\"",
        ]);
        make(&["--name", "markerdep", "--version", "1.0"]);
        make(&[
            "--name",
            "platpkg",
            "--version",
            "2.0",
            "--tag",
            "cp311-cp311-manylinux_2_28_x86_64",
            "--tag",
            "cp311-cp311-macosx_11_0_arm64",
        ]);
        make(&[
            "--name",
            "oldpy",
            "--version",
            "1.0",
            "--requires-python",
            ">=3.12",
        ]);
        make(&["--name", "oldpy", "--version", "0.9"]);
        make(&["--name", "onlysdist", "--version", "1.0", "--sdist"]);
        assert!(files.contains_key(DATEUTIL) && files.contains_key(PLATPKG_MAC));

        let index = PyIndex::start(&wheel_dir, &["--yank", SIX_YANKED]);

        let ferry = |args: &[&str]| {
            let mut cmd = ferry_command_in(&dir);
            isolate_python(&mut cmd, &dir);
            cmd.args(args);
            run(cmd).assert_success();
        };
        ferry(&["key", "generate", "team"]);
        PyFixtures {
            key: dir.join("team.key"),
            public: dir.join("team.pub"),
            wheel_dir,
            files,
            index,
            dir,
        }
    })
}

/// Runs `scripts/mkwheel.py OUTDIR ARGS --json`.
fn mkwheel(outdir: &Path, args: &[&str]) -> Vec<Wheel> {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("scripts/mkwheel.py"))
        .arg(outdir)
        .args(args)
        .arg("--json");
    let out = run(cmd);
    out.assert_success();
    out.stdout
        .lines()
        .map(|line| {
            let j: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("mkwheel printed {line:?}: {e}"));
            let w = Wheel {
                filename: j["filename"].as_str().unwrap().to_string(),
                path: PathBuf::from(j["path"].as_str().unwrap()),
                sha256: j["sha256"].as_str().unwrap().to_string(),
                size: j["size"].as_u64().unwrap(),
                metadata: j["metadata"].as_str().unwrap().to_string(),
            };
            let bytes = std::fs::read(&w.path).unwrap();
            assert_eq!(sha256_hex(&bytes), w.sha256, "mkwheel's sha256");
            w
        })
        .collect()
}

/// The main bundle: the main spec against the source index, made once with ferry.
pub struct MainBundle {
    pub bundle: PathBuf,
}

static MAIN: OnceLock<MainBundle> = OnceLock::new();

pub fn main_bundle() -> &'static MainBundle {
    MAIN.get_or_init(|| {
        let fx = py();
        let dir = fx.dir.join("main");
        std::fs::create_dir_all(&dir).unwrap();
        let spec = dir.join("ferry.toml");
        std::fs::write(
            &spec,
            python_spec(Some(&fx.index.url()), MAIN_REQUIREMENTS, &[LINUX]),
        )
        .unwrap();
        let bundle = dir.join("py.ferry");
        let mut cmd = ferry_command_in(&dir);
        isolate_python(&mut cmd, &dir);
        cmd.args(["bundle", "create", p(&spec), "-o", p(&bundle), "--key"])
            .arg(&fx.key)
            .arg("--store")
            .arg(dir.join("store"));
        run(cmd).assert_success();
        assert!(bundle.is_file(), "bundle create wrote no {}", p(&bundle));
        MainBundle { bundle }
    })
}

/// A `ferry.toml` with one `[[python]]` entry for Python 3.11.
fn python_spec(index: Option<&str>, requirements: &[&str], platforms: &[&str]) -> String {
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|s| toml_string(s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = String::from("name = \"py\"\n\n[[python]]\n");
    if let Some(index) = index {
        text.push_str(&format!("index-url = {}\n", toml_string(index)));
    }
    text.push_str(&format!(
        "requirements = [{}]\npython-version = \"3.11\"\nplatforms = [{}]\n",
        list(requirements),
        list(platforms)
    ));
    text
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

// ---------------------------------------------------------------------------------------
// Environments and peers.

/// The venv with pip, uv and pypiserver (made by scripts/setup.sh).
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("FERRY_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-venv"));
    for tool in ["python", "pip", "uv", "pypi-server"] {
        assert!(
            venv.join("bin").join(tool).is_file(),
            "{} has no bin/{tool}: run scripts/setup.sh",
            venv.display()
        );
    }
    venv
}

/// Clears every way pip, uv or ferry could find an index other than the one a test
/// names: `PIP_*`, `UV_*`, virtualenv and path variables, pip's and uv's config files.
fn isolate_python(cmd: &mut Command, home: &Path) {
    super::context::isolate(
        cmd,
        home,
        &["PIP_", "UV_", "CONDA_PREFIX"],
        &[
            ("PIP_CONFIG_FILE", "/dev/null"),
            ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
            ("PIP_NO_INPUT", "1"),
            ("UV_NO_CONFIG", "1"),
            ("UV_PYTHON_DOWNLOADS", "never"),
        ],
    );
}

/// `ferry ARGS` in the test's directory, isolated from any index configuration.
fn ferry_py<I, S>(ctx: &TestContext, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    ferry_py_with(ctx, args, &[])
}

/// [`ferry_py`] with extra environment variables.
fn ferry_py_with<I, S>(ctx: &TestContext, args: I, env: &[(&str, &str)]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = ctx.ferry_command();
    isolate_python(&mut cmd, ctx.dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args);
    run(cmd)
}

/// A running `scripts/pyindex.py`; killed (by its own pid) when dropped, and gone
/// by itself when the test process ends (it watches its stdin).
pub struct PyIndex {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    server: super::context::HelperServer,
}

impl PyIndex {
    pub fn start(dir: &Path, extra: &[&str]) -> PyIndex {
        let mut cmd = Command::new("python3");
        cmd.arg(repo_root().join("scripts/pyindex.py"))
            .arg("--dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0", "--watch-stdin"])
            .args(extra);
        let (server, addrs) = super::context::HelperServer::start(cmd, &["listening on http://"]);
        PyIndex {
            addr: addrs[0].clone(),
            server,
        }
    }

    /// `http://127.0.0.1:PORT/simple/`.
    pub fn url(&self) -> String {
        format!("http://{}/simple/", self.addr)
    }

    /// The requests the index logged so far.
    pub fn log(&self) -> String {
        self.server.log()
    }
}

/// A running `pypi-server` (pypiserver from the test venv) with authentication off and
/// no fallback to any other index; killed when dropped.
struct PypiServer {
    addr: String,
    packages: PathBuf,
    child: Child,
}

impl PypiServer {
    fn start(ctx: &TestContext) -> PypiServer {
        let venv = venv();
        let packages = ctx.path("pypiserver-packages");
        std::fs::create_dir_all(&packages).unwrap();
        let mut failures = Vec::new();
        for attempt in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let log = ctx.path(format!("pypiserver-{attempt}.log"));
            let mut cmd = Command::new(venv.join("bin/pypi-server"));
            isolate_python(&mut cmd, ctx.dir.path());
            let mut child = cmd
                .args(["run", "-p", &port.to_string(), "-i", "127.0.0.1"])
                .args(["--disable-fallback", "-a", ".", "-P", "."])
                .arg(&packages)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
                .spawn()
                .expect("start pypi-server (run scripts/setup.sh)");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(r) = http::request(&addr, "GET", "/simple/", &[], b"")
                    && r.status == 200
                {
                    return PypiServer {
                        addr,
                        packages,
                        child,
                    };
                }
                if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!(
                        "{addr}: {}{}",
                        std::fs::read_to_string(&log).unwrap_or_default(),
                        std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
                    ));
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("pypi-server did not start:\n{}", failures.join("\n"));
    }
}

impl Drop for PypiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug)]
enum Client {
    Pip,
    Uv,
}

/// `pip install` or `uv pip install` of `requirements` from `index_url` only, into
/// `target`, for CPython 3.11 on manylinux_2_28_x86_64 (whatever the host is).
fn install(
    ctx: &TestContext,
    client: Client,
    index_url: &str,
    target: &Path,
    requirements: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let venv = venv();
    let mut cmd = match client {
        Client::Pip => {
            let mut cmd = Command::new(venv.join("bin/python"));
            cmd.args(["-m", "pip", "install", "--no-cache-dir", "--index-url"])
                .arg(index_url)
                .arg("--target")
                .arg(target)
                .args(["--platform", LINUX, "--python-version", "3.11"])
                .args(["--implementation", "cp", "--abi", "cp311"])
                .arg("--only-binary=:all:");
            cmd
        }
        Client::Uv => {
            let mut cmd = Command::new(venv.join("bin/uv"));
            cmd.args(["pip", "install", "--no-cache", "--python"])
                .arg(venv.join("bin/python"))
                .arg("--index-url")
                .arg(index_url)
                .arg("--target")
                .arg(target)
                .args(["--python-platform", "x86_64-manylinux_2_28"])
                .args(["--python-version", "3.11"]);
            cmd
        }
    };
    cmd.args(requirements);
    isolate_python(&mut cmd, ctx.dir.path());
    cmd.envs(env.iter().copied());
    run(cmd)
}

/// pip and uv both install `python-dateutil`, `fancy[speed]` and `platpkg` from
/// `index_url` (and nothing else), and what they installed imports.
fn assert_pip_and_uv_install(ctx: &TestContext, index_url: &str, label: &str) {
    assert_pip_and_uv_install_with(ctx, index_url, label, &[]);
}

/// [`assert_pip_and_uv_install`] with more environment for the clients.
fn assert_pip_and_uv_install_with(
    ctx: &TestContext,
    index_url: &str,
    label: &str,
    env: &[(&str, &str)],
) {
    for client in [Client::Pip, Client::Uv] {
        let target = ctx.path(format!("{label}-{client:?}").to_lowercase());
        let out = install(
            ctx,
            client,
            index_url,
            &target,
            &["python-dateutil", "fancy[speed]", "platpkg"],
            env,
        );
        assert_eq!(
            out.code, 0,
            "{client:?} could not install from {index_url}: {out:?}"
        );
        let mut dist_infos: Vec<String> = std::fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".dist-info"))
            .collect();
        dist_infos.sort();
        assert_eq!(
            dist_infos,
            [
                "extradep-1.0.dist-info",
                "fancy-1.0.dist-info",
                "platpkg-2.0.dist-info",
                "python_dateutil-2.9.0.dist-info",
                "six-1.16.0.dist-info",
            ],
            "{client:?} from {index_url} installed another set: {out:?}"
        );
        let mut cmd = Command::new(venv().join("bin/python"));
        isolate_python(&mut cmd, ctx.dir.path());
        cmd.env("PYTHONPATH", &target).args([
            "-c",
            "import dateutil, six, fancy, extradep, platpkg\n\
             print(dateutil.__version__, six.__version__, fancy.__version__, \
             extradep.__version__, platpkg.__version__, platpkg.BUILD_TAG, dateutil.hello())",
        ]);
        let out = run(cmd);
        out.assert_success();
        assert_eq!(
            out.stdout.trim(),
            "2.9.0 1.16.0 1.0 1.0 2.0 cp311-cp311-manylinux_2_28_x86_64 \
             hello from python-dateutil 2.9.0",
            "{client:?} from {index_url}: {out:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Reading what ferry wrote.

/// A Python artifact as `bundle inspect --json` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PyArtifact {
    version: String,
    index: String,
    /// file name → (sha256, size)
    files: BTreeMap<String, (String, u64)>,
}

/// project → artifact, from `ferry bundle inspect BUNDLE --json`.
fn python_artifacts(ctx: &TestContext, bundle: &Path) -> BTreeMap<String, PyArtifact> {
    let out = ferry_py(ctx, ["bundle", "inspect", p(bundle), "--json"]);
    out.assert_success();
    let json = parse_json(&out);
    let mut found = BTreeMap::new();
    for a in json["artifacts"].as_array().expect("artifacts") {
        if a["kind"] != "python" {
            continue;
        }
        let py = &a["python"];
        let project = py["project"]
            .as_str()
            .unwrap_or_else(|| panic!("python.project: {a}"))
            .to_string();
        let files = py["files"]
            .as_array()
            .unwrap_or_else(|| panic!("python.files: {a}"))
            .iter()
            .map(|f| {
                (
                    f["filename"].as_str().unwrap().to_string(),
                    (
                        f["sha256"]
                            .as_str()
                            .unwrap()
                            .trim_start_matches("sha256:")
                            .to_string(),
                        f["size"].as_u64().unwrap(),
                    ),
                )
            })
            .collect();
        let artifact = PyArtifact {
            version: py["version"].as_str().unwrap_or_default().to_string(),
            index: py["index"].as_str().unwrap_or_default().to_string(),
            files,
        };
        let previous = found.insert(project.clone(), artifact);
        assert!(previous.is_none(), "{project} is listed twice: {json:#}");
    }
    found
}

/// Checks the artifacts against `expected` (project → version, files) and the fixture
/// files' sha256 and size, and that each names `index` as its origin.
#[track_caller]
fn assert_artifacts(
    found: &BTreeMap<String, PyArtifact>,
    expected: &BTreeMap<String, (String, BTreeSet<String>)>,
    index: &str,
) {
    let fx = py();
    let got: BTreeMap<String, (String, BTreeSet<String>)> = found
        .iter()
        .map(|(k, a)| {
            (
                k.clone(),
                (a.version.clone(), a.files.keys().cloned().collect()),
            )
        })
        .collect();
    assert_eq!(&got, expected, "the Python artifacts of the bundle");
    for (project, a) in found {
        assert_eq!(
            a.index.trim_end_matches('/'),
            index.trim_end_matches('/'),
            "{project}: the index it came from"
        );
        for (name, (sha, size)) in &a.files {
            let w = fx.file(name);
            assert_eq!((sha, *size), (&w.sha256, w.size), "{name}: sha256 and size");
        }
    }
}

/// `bundle create` of `spec_text` must fail (see `context::assert_create_fails`).
fn assert_create_fails(
    ctx: &TestContext,
    spec_text: &str,
    code: Option<i32>,
    needles: &[&str],
    env: &[(&str, &str)],
) -> Output {
    super::context::assert_create_fails(ctx, &py().key, spec_text, code, needles, |args| {
        ferry_py_with(ctx, args, env)
    })
}

/// Imports the main bundle into a fresh store `ctx/NAME`.
fn import_main(ctx: &TestContext, name: &str) -> PathBuf {
    let store = ctx.path(name);
    ferry_py(
        ctx,
        [
            "import",
            p(&main_bundle().bundle),
            "--trust",
            p(&py().public),
            "--store",
            p(&store),
        ],
    )
    .assert_success();
    store
}

/// The server path a link from a page at `base` (a path ending in `/`) points to: a
/// link to another host is an error, relative links are resolved.
#[track_caller]
fn link_path(addr: &str, base: &str, url: &str) -> String {
    let url = url.split('#').next().unwrap();
    let joined = if let Some(rest) = url.strip_prefix("http://") {
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        assert_eq!(host, addr, "a file link points at another server: {url}");
        path.to_string()
    } else if url.starts_with('/') {
        url.to_string()
    } else {
        format!("{}{url}", &base[..=base.rfind('/').unwrap()])
    };
    let mut parts: Vec<&str> = Vec::new();
    for seg in joined.split('/').skip(1) {
        match seg {
            "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The media type of a Content-Type header, without parameters.
fn essence(content_type: Option<&str>) -> String {
    content_type
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_ascii_lowercase()
}

// ---------------------------------------------------------------------------------------
// Resolution.

#[test]
fn python_bundle_carries_the_closure_for_the_target() {
    let ctx = TestContext::new();
    let fx = py();
    let found = python_artifacts(&ctx, &main_bundle().bundle);
    assert_artifacts(&found, &main_closure(), &fx.index.url());
    assert!(!found.contains_key("windep"), "windep is for win32 only");

    // The human view names them too.
    let out = ferry_py(&ctx, ["bundle", "inspect", p(&main_bundle().bundle)]);
    out.assert_success();
    for needle in ["python-dateutil", "2.9.0", DATEUTIL, PLATPKG_LINUX] {
        assert!(
            out.stdout.contains(needle),
            "inspect does not show {needle}: {out:?}"
        );
    }
}

#[test]
fn python_several_platforms_give_the_union() {
    let ctx = TestContext::new();
    let fx = py();
    let spec = ctx.write_spec(
        "ferry.toml",
        &python_spec(Some(&fx.index.url()), MAIN_REQUIREMENTS, &[LINUX, MAC]),
    );
    let bundle = create_bundle_py(&ctx, &spec);
    let found = python_artifacts(&ctx, &bundle);
    let mut expected = main_closure();
    expected.get_mut("platpkg").unwrap().1 =
        BTreeSet::from([PLATPKG_LINUX.to_string(), PLATPKG_MAC.to_string()]);
    assert_artifacts(&found, &expected, &fx.index.url());
}

#[test]
fn python_yanked_files_are_skipped_unless_pinned() {
    let ctx = TestContext::new();
    let fx = py();
    let spec = ctx.write_spec(
        "latest.toml",
        &python_spec(Some(&fx.index.url()), &["six"], &[LINUX]),
    );
    let found = python_artifacts(&ctx, &create_bundle_py(&ctx, &spec));
    assert_eq!(found["six"].version, "1.16.0", "{found:?}");
    assert_eq!(found.len(), 1, "{found:?}");

    let spec = ctx.write_spec(
        "pinned.toml",
        &python_spec(Some(&fx.index.url()), &["six==1.17.0"], &[LINUX]),
    );
    let found = python_artifacts(&ctx, &create_bundle_py(&ctx, &spec));
    assert_eq!(found["six"].version, "1.17.0", "{found:?}");
    assert_eq!(
        found["six"].files.keys().collect::<Vec<_>>(),
        [SIX_YANKED],
        "pinned to the yanked release"
    );
}

#[test]
fn python_html_only_index_without_metadata_files() {
    // A legacy index: PEP 503 HTML only (relative links), no PEP 658 metadata, so the
    // metadata comes out of the wheels themselves.
    let ctx = TestContext::new();
    let fx = py();
    let legacy = PyIndex::start(
        &fx.wheel_dir,
        &["--no-json", "--no-metadata", "--yank", SIX_YANKED],
    );
    let spec = ctx.write_spec(
        "ferry.toml",
        &python_spec(Some(&legacy.url()), MAIN_REQUIREMENTS, &[LINUX]),
    );
    let bundle = create_bundle_py(&ctx, &spec);
    assert_artifacts(
        &python_artifacts(&ctx, &bundle),
        &main_closure(),
        &legacy.url(),
    );
    assert!(
        !legacy.log().contains(".metadata HTTP"),
        "the index offers no .metadata files, yet they were asked for:\n{}",
        legacy.log()
    );
}

#[test]
fn python_index_from_pip_index_url_and_from_pip_config() {
    let ctx = TestContext::new();
    let fx = py();
    let url = fx.index.url();
    let spec = ctx.write_spec("ferry.toml", &python_spec(None, &["six"], &[LINUX]));

    // PIP_INDEX_URL.
    let bundle = ctx.path("env.ferry");
    let create = |bundle: &Path, env: &[(&str, &str)]| {
        ferry_py_with(
            &ctx,
            [
                "bundle",
                "create",
                p(&spec),
                "-o",
                p(bundle),
                "--key",
                p(&fx.key),
                "--store",
                p(&ctx.path("store")),
            ],
            env,
        )
    };
    create(&bundle, &[("PIP_INDEX_URL", &url)]).assert_success();
    let found = python_artifacts(&ctx, &bundle);
    assert_eq!(found["six"].version, "1.16.0");
    assert_eq!(
        found["six"].index.trim_end_matches('/'),
        url.trim_end_matches('/')
    );

    // pip's configuration file, as PIP_CONFIG_FILE names it.
    let conf = ctx.path("pip.conf");
    std::fs::write(&conf, format!("[global]\nindex-url = {url}\n")).unwrap();
    let bundle = ctx.path("conf.ferry");
    create(&bundle, &[("PIP_CONFIG_FILE", p(&conf))]).assert_success();
    assert_eq!(python_artifacts(&ctx, &bundle)["six"].version, "1.16.0");

    // pip's per-user configuration file.
    let user_conf = ctx.path(".config/pip/pip.conf");
    std::fs::create_dir_all(user_conf.parent().unwrap()).unwrap();
    std::fs::write(&user_conf, format!("[global]\nindex-url = {url}\n")).unwrap();
    let bundle = ctx.path("user.ferry");
    let mut cmd = ctx.ferry_command();
    isolate_python(&mut cmd, ctx.dir.path());
    cmd.env_remove("PIP_CONFIG_FILE").args([
        "bundle",
        "create",
        p(&spec),
        "-o",
        p(&bundle),
        "--key",
        p(&fx.key),
        "--store",
        p(&ctx.path("store")),
    ]);
    run(cmd).assert_success();
    assert_eq!(python_artifacts(&ctx, &bundle)["six"].version, "1.16.0");
}

// ---------------------------------------------------------------------------------------
// Hash-pinned requirements files.

#[test]
fn python_hash_pinned_requirements_are_honoured_exactly() {
    let ctx = TestContext::new();
    let fx = py();
    // The spec lives in its own directory; ferry runs from another one.
    let spec_dir = ctx.path("spec");
    std::fs::create_dir_all(&spec_dir).unwrap();
    std::fs::write(
        spec_dir.join("requirements.txt"),
        format!(
            "# pinned with hashes, as `pip-compile --generate-hashes` writes them\n\
             python-dateutil==2.9.0 \\\n    --hash=sha256:{}\n\
             six==1.16.0 --hash=sha256:{}\n\
             platpkg==2.0 \\\n    --hash=sha256:{}\n",
            fx.file(DATEUTIL).sha256,
            fx.file(SIX).sha256,
            fx.file(PLATPKG_LINUX).sha256,
        ),
    )
    .unwrap();
    let spec = spec_dir.join("ferry.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"py\"\n\n[[python]]\nindex-url = \"{}\"\n\
             requirements-file = \"requirements.txt\"\n\
             python-version = \"3.11\"\nplatforms = [\"{LINUX}\"]\n",
            fx.index.url()
        ),
    )
    .unwrap();
    let bundle = create_bundle_py(&ctx, &spec);
    let expected: BTreeMap<String, (String, BTreeSet<String>)> = [
        ("python-dateutil", "2.9.0", DATEUTIL),
        ("six", "1.16.0", SIX),
        ("platpkg", "2.0", PLATPKG_LINUX),
    ]
    .into_iter()
    .map(|(n, v, f)| {
        (
            n.to_string(),
            (v.to_string(), BTreeSet::from([f.to_string()])),
        )
    })
    .collect();
    assert_artifacts(&python_artifacts(&ctx, &bundle), &expected, &fx.index.url());
}

#[test]
fn python_hash_pin_mismatch_is_exit_3() {
    let ctx = TestContext::new();
    let fx = py();
    std::fs::write(
        ctx.path("requirements.txt"),
        format!("six==1.16.0 --hash=sha256:{}\n", "0".repeat(64)),
    )
    .unwrap();
    assert_create_fails(
        &ctx,
        &format!(
            "name = \"py\"\n\n[[python]]\nindex-url = \"{}\"\n\
             requirements-file = \"requirements.txt\"\n\
             python-version = \"3.11\"\nplatforms = [\"{LINUX}\"]\n",
            fx.index.url()
        ),
        Some(3),
        &["six"],
        &[],
    );
}

// ---------------------------------------------------------------------------------------
// Bad input.

#[test]
fn python_unknown_project_is_an_error() {
    let ctx = TestContext::new();
    let out = assert_create_fails(
        &ctx,
        &python_spec(Some(&py().index.url()), &["nosuchproject"], &[LINUX]),
        None,
        &["nosuchproject"],
        &[],
    );
    assert!(
        matches!(out.code, 1 | 2),
        "an unknown project is exit 1 or 2: {out:?}"
    );
}

/// A version excluded by its Requires-Python is named as such, with the target's
/// Python, not only in the solver's terms.
#[test]
fn python_requires_python_of_the_target_is_named_as_the_cause() {
    let ctx = TestContext::new();
    assert_create_fails(
        &ctx,
        &python_spec(Some(&py().index.url()), &["oldpy>=1.0"], &[LINUX]),
        Some(1),
        &[
            "`oldpy` 1.0 requires Python >=3.12 (Requires-Python)",
            "the target is Python 3.11",
        ],
        &[],
    );
}

#[test]
fn python_unsatisfiable_version_is_an_error() {
    let ctx = TestContext::new();
    let out = assert_create_fails(
        &ctx,
        &python_spec(Some(&py().index.url()), &["six==9.9"], &[LINUX]),
        None,
        &["six"],
        &[],
    );
    assert!(matches!(out.code, 1 | 2), "{out:?}");
}

#[test]
fn python_only_an_sdist_is_an_error() {
    let ctx = TestContext::new();
    let out = assert_create_fails(
        &ctx,
        &python_spec(Some(&py().index.url()), &["onlysdist"], &[LINUX]),
        None,
        &["onlysdist"],
        &[],
    );
    let stderr = out.stderr.to_lowercase();
    assert!(
        stderr.contains("sdist") || stderr.contains("no wheel"),
        "the error should say only an sdist exists: {out:?}"
    );
    assert!(matches!(out.code, 1 | 2), "{out:?}");
}

#[test]
fn python_index_with_a_wrong_hash_is_exit_3() {
    let ctx = TestContext::new();
    let fx = py();
    let bad = PyIndex::start(&fx.wheel_dir, &["--corrupt", SIX, "--yank", SIX_YANKED]);
    assert_create_fails(
        &ctx,
        &python_spec(Some(&bad.url()), &["six==1.16.0"], &[LINUX]),
        Some(3),
        &[SIX],
        &[],
    );
    // The bytes that did not match are nowhere in the store.
    let mut served = std::fs::read(&fx.file(SIX).path).unwrap();
    served[10] ^= 0x01; // what pyindex.py --corrupt serves
    let bad_blob = ctx.path("store/blobs/sha256").join(sha256_hex(&served));
    assert!(
        !bad_blob.exists(),
        "the corrupt wheel landed in the store: {}",
        bad_blob.display()
    );
}

#[test]
fn python_index_down_is_an_error() {
    let ctx = TestContext::new();
    assert_create_fails(
        &ctx,
        &python_spec(Some("http://127.0.0.1:1/simple/"), &["six"], &[LINUX]),
        Some(1),
        &["six", "127.0.0.1:1"],
        &[],
    );
}

#[test]
fn python_no_index_configured_says_how_to_configure_one() {
    let ctx = TestContext::new();
    let out = assert_create_fails(
        &ctx,
        &python_spec(None, &["six"], &[LINUX]),
        None,
        &["hint:"],
        &[],
    );
    let hint = out
        .stderr
        .lines()
        .skip_while(|l| !l.contains("hint:"))
        .collect::<Vec<_>>()
        .join("\n")
        .to_lowercase();
    assert!(
        hint.contains("index-url") && hint.contains("pip_index_url"),
        "the hint should say how to configure an index (index-url, PIP_INDEX_URL): {out:?}"
    );
}

#[test]
fn python_altered_wheel_in_a_bundle_is_refused() {
    let ctx = TestContext::new();
    let fx = py();
    let mut bundle = Bundle::read(&main_bundle().bundle);
    let path = format!("blobs/sha256/{}", fx.file(SIX).sha256);
    {
        let entry = bundle.entry_mut(&path);
        let middle = entry.data.len() / 2;
        entry.data[middle] ^= 0xFF;
    }
    let altered = ctx.path("altered.ferry");
    bundle.write(&altered);

    let store = ctx.path("store");
    copy_tree(&fixtures().seeded_store, &store);
    super::context::assert_verify_and_import_refuse(
        |args| ferry_py(&ctx, args),
        &altered,
        &fx.public,
        &store,
    );
}

// ---------------------------------------------------------------------------------------
// Serving, exporting, uploading: unmodified pip and uv install from each.

#[test]
fn python_pip_and_uv_install_from_ferry_serve() {
    let ctx = TestContext::new();
    let store = import_main(&ctx, "srv");
    let server = ctx.serve(&store);
    let url = format!("http://{}/simple/", server.addr);
    assert_pip_and_uv_install(&ctx, &url, "serve");
}

/// Over TLS from a private CA (pip's PIP_CERT, uv's SSL_CERT_FILE; no "trusted host"),
/// with the htpasswd user in the index URL as both clients take it; without the
/// credentials both fail.
#[test]
fn python_pip_and_uv_install_from_ferry_serve_over_tls_with_a_password() {
    use super::pki::{PASSWORD, USER, pki};
    let ctx = TestContext::new();
    let store = import_main(&ctx, "srv");
    let server = ctx.serve_secure(&store);
    let ca = p(&pki().ca);
    let env = [("PIP_CERT", ca), ("SSL_CERT_FILE", ca)];
    let password = PASSWORD.replace(' ', "%20");
    let url = format!("https://{USER}:{password}@{}/simple/", server.addr);
    assert_pip_and_uv_install_with(&ctx, &url, "tls", &env);
    let anonymous = format!("https://{}/simple/", server.addr);
    for client in [Client::Pip, Client::Uv] {
        let target = ctx.path(format!("anon-{client:?}"));
        let out = install(&ctx, client, &anonymous, &target, &["six"], &env);
        assert_ne!(
            out.code, 0,
            "{client:?} installed without credentials: {out:?}"
        );
    }
}

#[test]
fn python_serve_speaks_pep_691_and_pep_503() {
    let ctx = TestContext::new();
    let fx = py();
    let store = import_main(&ctx, "srv");
    let server = ctx.serve(&store);
    let addr = server.addr.as_str();
    let get = |path: &str, accept: Option<&str>| {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        http::request(addr, "GET", path, &headers, b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    };

    // The project list, both ways.
    let r = get("/simple/", Some(JSON_TYPE));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some(JSON_TYPE), "{r:?}");
    let names: BTreeSet<String> = r.json()["projects"]
        .as_array()
        .unwrap_or_else(|| panic!("projects: {r:?}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = main_closure().into_keys().collect();
    assert_eq!(names, expected, "the projects /simple/ lists");
    let r = get("/simple/", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(essence(r.header("content-type")), "text/html", "{r:?}");
    for name in &expected {
        assert!(
            r.text().contains(name.as_str()),
            "/simple/ lacks {name}: {r:?}"
        );
    }

    // A project, in JSON (as pip and uv ask for it).
    let wheel = fx.file(DATEUTIL);
    let metadata_sha = sha256_hex(wheel.metadata.as_bytes());
    let base = "/simple/python-dateutil/";
    for accept in [JSON_TYPE, PIP_ACCEPT] {
        let r = get(base, Some(accept));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.header("content-type"),
            Some(JSON_TYPE),
            "Accept: {accept}: {r:?}"
        );
    }
    let r = get(base, Some(PIP_ACCEPT));
    let json = r.json();
    assert_eq!(json["name"], "python-dateutil", "{json:#}");
    assert!(json["meta"]["api-version"].is_string(), "{json:#}");
    let files = json["files"].as_array().expect("files");
    assert_eq!(files.len(), 1, "only 2.9.0 was carried: {json:#}");
    let file = &files[0];
    assert_eq!(file["filename"], DATEUTIL);
    assert_eq!(file["hashes"]["sha256"], wheel.sha256.as_str(), "{file:#}");
    assert_eq!(
        file["requires-python"], DATEUTIL_REQUIRES_PYTHON,
        "{file:#}"
    );
    assert_eq!(
        file["core-metadata"]["sha256"],
        metadata_sha.as_str(),
        "PEP 714 core-metadata: {file:#}"
    );
    if let Some(size) = file.get("size") {
        assert_eq!(size, wheel.size, "{file:#}");
    }
    let file_path = link_path(addr, base, file["url"].as_str().expect("url"));

    // The same project in HTML: fragments, escaped Requires-Python, PEP 658/714.
    for (accept, ctype) in [(None, "text/html"), (Some("text/html"), "text/html")] {
        let r = get(base, accept);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(essence(r.header("content-type")), ctype, "{r:?}");
        let html = r.text();
        for needle in [
            format!("{DATEUTIL}#sha256={}", wheel.sha256),
            "data-requires-python=\"&gt;=2.7, !=3.0.*\"".to_string(),
            format!("data-core-metadata=\"sha256={metadata_sha}\""),
        ] {
            assert!(
                html.contains(&needle),
                "the HTML page lacks {needle}: {r:?}"
            );
        }
    }
    let r = get(base, Some(HTML_V1_TYPE));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some(HTML_V1_TYPE), "{r:?}");

    // A name that is not normalised reaches the same project.
    let r = get("/simple/Python_Dateutil/", Some(JSON_TYPE));
    match r.status {
        200 => assert_eq!(r.json()["name"], "python-dateutil", "{r:?}"),
        301 | 302 | 307 | 308 => assert!(
            r.header("location")
                .unwrap_or_default()
                .ends_with("/simple/python-dateutil/"),
            "{r:?}"
        ),
        _ => panic!("/simple/Python_Dateutil/: {r:?}"),
    }

    // Only the wheel for the target.
    let r = get("/simple/platpkg/", Some(JSON_TYPE));
    let names: Vec<String> = r.json()["files"]
        .as_array()
        .unwrap_or_else(|| panic!("files: {r:?}"))
        .iter()
        .map(|f| f["filename"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, [PLATPKG_LINUX], "{r:?}");

    // An unknown project.
    assert_eq!(get("/simple/nosuchproject/", Some(JSON_TYPE)).status, 404);
    assert_eq!(get("/simple/nosuchproject/", None).status, 404);

    // The wheel: whole, with Content-Length; a range; HEAD.
    let whole = std::fs::read(&wheel.path).unwrap();
    let r = get(&file_path, None);
    assert_eq!(r.status, 200, "{file_path}: {r:?}");
    assert_eq!(
        r.header("content-length"),
        Some(wheel.size.to_string().as_str()),
        "{r:?}"
    );
    assert_eq!(sha256_hex(&r.body), wheel.sha256);
    let r = http::request(addr, "GET", &file_path, &[("Range", "bytes=0-99")], b"").unwrap();
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-99/{}", wheel.size).as_str()),
        "{r:?}"
    );
    assert_eq!(r.body, &whole[..100]);
    let r = http::request(addr, "HEAD", &file_path, &[], b"").unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("content-length"),
        Some(wheel.size.to_string().as_str()),
        "{r:?}"
    );

    // PEP 658: the wheel's METADATA, byte for byte.
    let r = get(&format!("{file_path}.metadata"), None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), wheel.metadata, "the .metadata file");
}

#[test]
fn python_export_static_tree_installs_over_file_urls() {
    let ctx = TestContext::new();
    let fx = py();
    let store = import_main(&ctx, "srv");
    let tree = ctx.path("tree");
    ferry_py(
        &ctx,
        ["export", "python", "--store", p(&store), "--to", p(&tree)],
    )
    .assert_success();
    let simple = tree.join("simple");
    assert!(
        simple.join("index.html").is_file(),
        "no simple/index.html in the exported tree"
    );
    let page = std::fs::read_to_string(simple.join("python-dateutil/index.html"))
        .expect("simple/python-dateutil/index.html");
    assert!(
        page.contains(&format!("{DATEUTIL}#sha256={}", fx.file(DATEUTIL).sha256)),
        "the static page lacks the sha256 fragment:\n{page}"
    );
    let url = format!("file://{}", simple.display());
    assert_pip_and_uv_install(&ctx, &url, "static");
}

#[test]
fn python_export_uploads_to_pypiserver() {
    let ctx = TestContext::new();
    let fx = py();
    let store = import_main(&ctx, "srv");
    let server = PypiServer::start(&ctx);
    let out = ferry_py(
        &ctx,
        [
            "export",
            "python",
            "--store",
            p(&store),
            "--upload",
            &format!("http://{}/", server.addr),
        ],
    );
    out.assert_success();

    // Every wheel of the bundle, byte for byte.
    let mut uploaded = BTreeMap::new();
    for entry in std::fs::read_dir(&server.packages).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        uploaded.insert(name, sha256_hex(&std::fs::read(entry.path()).unwrap()));
    }
    let expected: BTreeMap<String, String> = main_closure()
        .into_values()
        .flat_map(|(_, files)| files)
        .map(|f| {
            let sha = fx.file(&f).sha256.clone();
            (f, sha)
        })
        .collect();
    assert_eq!(uploaded, expected, "what pypiserver holds: {out:?}");

    let url = format!("http://{}/simple/", server.addr);
    assert_pip_and_uv_install(&ctx, &url, "pypiserver");
}

/// `ferry bundle create SPEC -o <stem>.ferry` isolated from any index configuration,
/// which must succeed.
fn create_bundle_py(ctx: &TestContext, spec: &Path) -> PathBuf {
    let stem = spec.file_stem().unwrap().to_string_lossy().into_owned();
    let bundle = ctx.path(format!("{stem}.ferry"));
    ferry_py(
        ctx,
        [
            "bundle",
            "create",
            p(spec),
            "-o",
            p(&bundle),
            "--key",
            p(&py().key),
            "--store",
            p(&ctx.path("store")),
        ],
    )
    .assert_success();
    assert!(bundle.is_file(), "bundle create wrote no {}", p(&bundle));
    bundle
}

/// A `pylock.toml` (PEP 751) is honoured exactly: no resolution (python-dateutil's
/// dependency six is carried only because the lock lists it), markers of the target,
/// wheels from their locked URLs, and a wrong locked hash is exit 3.
#[test]
fn python_pylock_is_honoured_exactly() {
    let ctx = TestContext::new();
    let fx = py();
    let files = fx.index.url().replace("/simple/", "/files/");
    let lock = |six_hash: &str| {
        format!(
            "lock-version = \"1.0\"\ncreated-by = \"e2e\"\n\
             [[packages]]\nname = \"python-dateutil\"\nversion = \"2.9.0\"\n\
             [[packages.wheels]]\nurl = \"{files}{DATEUTIL}\"\nhashes = {{ sha256 = \"{}\" }}\n\
             [[packages]]\nname = \"six\"\nversion = \"1.16.0\"\n\
             [[packages.wheels]]\nurl = \"{files}{SIX}\"\nhashes = {{ sha256 = \"{six_hash}\" }}\n\
             [[packages]]\nname = \"windep\"\nversion = \"1.0\"\nmarker = \"sys_platform == 'win32'\"\n\
             [[packages.wheels]]\nurl = \"{files}windep-1.0-py3-none-any.whl\"\nhashes = {{ sha256 = \"{}\" }}\n",
            fx.file(DATEUTIL).sha256,
            "0".repeat(64),
        )
    };
    let spec_text = format!(
        "name = \"py\"\n\n[[python]]\nrequirements-file = \"pylock.toml\"\n\
         python-version = \"3.11\"\nplatforms = [\"{LINUX}\"]\n"
    );
    std::fs::write(ctx.path("pylock.toml"), lock(&fx.file(SIX).sha256)).unwrap();
    let spec = ctx.write_spec("locked.toml", &spec_text);
    let bundle = create_bundle_py(&ctx, &spec);
    let artifacts = python_artifacts(&ctx, &bundle);
    let names: BTreeSet<&str> = artifacts.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["python-dateutil", "six"]),
        "{artifacts:?}"
    );

    std::fs::write(ctx.path("pylock.toml"), lock(&"a".repeat(64))).unwrap();
    assert_create_fails(&ctx, &spec_text, Some(3), &["six"], &[]);
}

// ---------------------------------------------------------------------------------------
// Credentials in an index URL.

/// Every file below `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path);
            }
        }
    }
    found
}

/// `user:password@` in an index URL (from the spec or PIP_INDEX_URL) is used to talk to
/// the index and written nowhere: not in the bundle, its manifest or inspect output, the
/// stores on either side, the import log, or anything ferry prints, even on errors.
#[test]
fn python_index_credentials_are_never_written_or_printed() {
    let ctx = TestContext::new();
    let fx = py();
    const PASSWORD: &str = "s3cr3t-Pw-42";
    let url = fx
        .index
        .url()
        .replacen("http://", &format!("http://ferry-user:{PASSWORD}@"), 1);
    let mut outputs = Vec::new();

    let spec = ctx.write_spec("spec.toml", &python_spec(Some(&url), &["six"], &[LINUX]));
    let from_spec = ctx.path("spec.ferry");
    let env_spec = ctx.write_spec("env.toml", &python_spec(None, &["six"], &[LINUX]));
    let from_env = ctx.path("env.ferry");
    for (spec, bundle, env) in [
        (&spec, &from_spec, vec![]),
        (&env_spec, &from_env, vec![("PIP_INDEX_URL", url.as_str())]),
    ] {
        let out = ferry_py_with(
            &ctx,
            [
                "bundle",
                "create",
                p(spec),
                "-o",
                p(bundle),
                "--key",
                p(&fx.key),
                "--store",
                p(&ctx.path("store")),
            ],
            &env,
        );
        out.assert_success();
        outputs.push(out);
        let found = python_artifacts(&ctx, bundle);
        assert_eq!(
            found["six"].index.trim_end_matches('/'),
            fx.index.url().trim_end_matches('/'),
            "the index is recorded without its credentials"
        );
        let bytes = zstd::decode_all(std::fs::File::open(bundle).unwrap()).unwrap();
        assert!(
            !bytes
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "{} carries the password",
            p(bundle)
        );
        outputs.push(ctx.ferry(["bundle", "inspect", p(bundle)]));
        outputs.push(ctx.ferry(["bundle", "inspect", p(bundle), "--json"]));
        let store = ctx.path(format!("imported-{}", outputs.len()));
        let out = ctx.ferry([
            "import",
            p(bundle),
            "--trust",
            p(&fx.public),
            "--store",
            p(&store),
        ]);
        out.assert_success();
        outputs.push(out);
        assert_eq!(
            files_containing(&store, PASSWORD.as_bytes()),
            Vec::<PathBuf>::new()
        );
    }
    assert_eq!(
        files_containing(&ctx.path("store"), PASSWORD.as_bytes()),
        Vec::<PathBuf>::new()
    );

    // An index that cannot be reached: the error names it, without the password.
    let down = ctx.write_spec(
        "down.toml",
        &python_spec(
            Some(&format!("http://ferry-user:{PASSWORD}@127.0.0.1:9/simple/")),
            &["six"],
            &[LINUX],
        ),
    );
    let out = ferry_py(
        &ctx,
        [
            "bundle",
            "create",
            p(&down),
            "-o",
            p(&ctx.path("down.ferry")),
            "--key",
            p(&fx.key),
            "--store",
            p(&ctx.path("store")),
        ],
    );
    assert_ne!(out.code, 0);
    out.assert_stderr_contains("127.0.0.1:9");
    outputs.push(out);
    for out in &outputs {
        assert!(
            !out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD),
            "ferry printed the password: {out:?}"
        );
    }
}

/// A second pull of the same spec into the same store downloads no wheel again: the
/// store already holds each one under the sha256 the index gives.
#[test]
fn python_second_pull_fetches_no_wheel() {
    let ctx = TestContext::new();
    let fx = py();
    let index = PyIndex::start(&fx.wheel_dir, &[]);
    let spec = ctx.write_spec(
        "ferry.toml",
        &python_spec(Some(&index.url()), MAIN_REQUIREMENTS, &[LINUX]),
    );
    let store = ctx.path("store");
    let pull = || {
        ferry_py(&ctx, ["pull", p(&spec), "--store", p(&store)]).assert_success();
    };
    let wheels = |log: &str| {
        log.lines()
            .filter(|l| l.contains("\"GET ") && l.contains(".whl HTTP"))
            .count()
    };
    pull();
    let first = wheels(&index.log());
    assert!(first > 0, "{}", index.log());
    pull();
    assert_eq!(
        wheels(&index.log()),
        first,
        "the second pull downloaded wheels again:\n{}",
        index.log()
    );
}
