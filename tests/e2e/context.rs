//! The test context: one temporary directory per test (HOME, XDG dirs, specs, stores,
//! bundles), the shared registry and images, and helpers to run `ferry` and the peers.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest as _, Sha256};

use super::images::Images;
use super::registry::Registry;

/// The binary under test.
pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// The repository root (for `scripts/` and `fixtures/`).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// No single command of the suite may take longer than this.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// What lives once per test process: a scratch root (removed by the registry's
/// watchdog when the process ends), the registry and the images pushed into it.
pub struct Shared {
    pub root: PathBuf,
    pub registry: Registry,
    pub images: Images,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

/// The shared registry and images, started and built on first use.
pub fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let root = tempfile::Builder::new()
            .prefix("ferry-e2e-shared-")
            .tempdir()
            .expect("create shared temp dir")
            .keep();
        let registry = Registry::start(&root);
        let images = Images::build_and_push(&root.join("images"), &registry);
        Shared {
            root,
            registry,
            images,
        }
    })
}

/// One test's world: its own HOME and state, the shared registry and images.
pub struct TestContext {
    pub dir: tempfile::TempDir,
    pub shared: &'static Shared,
}

impl TestContext {
    pub fn new() -> Self {
        let shared = shared();
        let dir = tempfile::Builder::new()
            .prefix("ferry-e2e-")
            .tempdir()
            .expect("create test temp dir");
        TestContext { dir, shared }
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn registry(&self) -> &'static Registry {
        &self.shared.registry
    }

    pub fn images(&self) -> &'static Images {
        &self.shared.images
    }

    /// `127.0.0.1:PORT` of the shared registry.
    pub fn host(&self) -> &'static str {
        &self.shared.registry.host
    }

    /// Runs `ferry ARGS` in this test's directory with this test's HOME and state.
    pub fn ferry<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.ferry_command();
        cmd.args(args);
        run(cmd)
    }

    /// `ferry` with this test's environment, for callers that spawn it themselves.
    pub fn ferry_command(&self) -> Command {
        ferry_command_in(self.dir.path())
    }

    /// Writes `ferry.toml`-style text to `name` in the test dir.
    pub fn write_spec(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write spec");
        path
    }

    /// `ferry key generate NAME`; returns (NAME.key, NAME.pub).
    pub fn generate_key(&self, name: &str) -> (PathBuf, PathBuf) {
        let out = self.ferry(["key", "generate", name]);
        out.assert_success();
        (
            self.path(format!("{name}.key")),
            self.path(format!("{name}.pub")),
        )
    }

    /// `ferry bundle create SPEC -o OUT --key KEY EXTRA...`, which must succeed.
    pub fn create_bundle(&self, spec: &Path, out: &str, key: &Path, extra: &[&str]) -> PathBuf {
        let bundle = self.path(out);
        let mut args = vec![
            "bundle",
            "create",
            p(spec),
            "-o",
            p(&bundle),
            "--key",
            p(key),
        ];
        args.extend(extra);
        self.ferry(args).assert_success();
        assert!(
            bundle.is_file(),
            "bundle create wrote no {}",
            bundle.display()
        );
        bundle
    }

    /// Starts `ferry serve --store STORE` on a free loopback port.
    pub fn serve(&self, store: &Path) -> Server {
        Server::start(self, store, &[])
    }

    /// Starts `ferry serve --store STORE EXTRA...` on a free loopback port.
    pub fn serve_with(&self, store: &Path, extra: &[String]) -> Server {
        Server::start(self, store, extra)
    }

    /// Starts `ferry serve` over TLS, for the users of the suite's htpasswd and token
    /// files (see `pki`), logging requests to `access.jsonl` in the test directory.
    pub fn serve_secure(&self, store: &Path) -> Server {
        let mut args = super::pki::pki().serve_args();
        args.extend(["--access-log".into(), p(&self.path("access.jsonl")).into()]);
        Server::start(self, store, &args)
    }
}

/// `ferry` with HOME, XDG dirs and the working directory set to `dir`, and nothing from
/// the machine's container configuration.
pub fn ferry_command_in(dir: &Path) -> Command {
    let mut cmd = Command::new(FERRY);
    cmd.current_dir(dir)
        .env("HOME", dir)
        .env("XDG_STATE_HOME", dir.join(".local/state"))
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .env("XDG_CACHE_HOME", dir.join(".cache"))
        .env("XDG_RUNTIME_DIR", dir.join(".run"))
        .env("NO_COLOR", "1")
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("PIP_INDEX_URL")
        .env_remove("HF_ENDPOINT")
        .env_remove("RUST_LOG")
        .env_remove("FERRY_STORE");
    cmd
}

/// What a finished command left behind.
pub struct Output {
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

impl Output {
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        self
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "expected exit code {code}: {self:?}");
        self
    }

    /// Asserts that stderr mentions `needle` (case-insensitively).
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "expected stderr to mention {needle:?}: {self:?}"
        );
        self
    }
}

/// Runs a command to completion (with a timeout), capturing its output.
pub fn run(cmd: Command) -> Output {
    run_with_stdin(cmd, Stdio::null(), None)
}

/// Runs a command with `input` fed to its standard input through a pipe, which is then
/// closed: a pipe, unlike a file, can be read only once and not sought.
pub fn run_piped(cmd: Command, input: Vec<u8>) -> Output {
    run_with_stdin(cmd, Stdio::piped(), Some(input))
}

/// Runs a command with standard input `stdin` (fed `input` when it is a pipe).
pub fn run_with_stdin(mut cmd: Command, stdin: Stdio, input: Option<Vec<u8>>) -> Output {
    let command = describe(&cmd);
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
    if let (Some(input), Some(mut pipe)) = (input, child.stdin.take()) {
        // A reader that stops early closes its end: the rest is not its to take.
        thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut pipe, &input);
        });
    }
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_timeout(&mut child, COMMAND_TIMEOUT)
        .unwrap_or_else(|| panic!("`{command}` did not finish within {COMMAND_TIMEOUT:?}"));
    Output {
        command,
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs a program with arguments (a peer such as skopeo); see [`run`].
pub fn run_program<I, S>(program: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    run(cmd)
}

/// Runs `sh -c SCRIPT` (for pipelines such as `zstd -dc | tar -x`).
pub fn run_shell(script: &str) -> Output {
    run_program("sh", ["-c", script])
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port that was free a moment ago (bind `127.0.0.1:0`, then let it go).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// A running `ferry serve`; killed (by its own pid) when dropped.
pub struct Server {
    pub addr: String,
    child: Child,
    stderr: std::sync::Arc<Mutex<String>>,
}

impl Server {
    /// With `--listen ADDR` in `extra`, on that address (its port on 127.0.0.1 is
    /// `addr`), else on a free loopback port.
    fn start(ctx: &TestContext, store: &Path, extra: &[String]) -> Server {
        let mut last = String::new();
        let given = extra
            .iter()
            .position(|a| a == "--listen")
            .map(|i| extra[i + 1].rsplit(':').next().unwrap().to_string());
        for _ in 0..5 {
            let port = given.clone().unwrap_or_else(|| free_port().to_string());
            let addr = format!("127.0.0.1:{port}");
            let mut cmd = ctx.ferry_command();
            cmd.args(["serve", "--store"]).arg(store);
            if given.is_none() {
                cmd.args(["--listen", &addr]);
            }
            cmd.args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("spawn ferry serve");
            let stderr = std::sync::Arc::new(Mutex::new(String::new()));
            let (tx, rx) = mpsc::channel();
            let pipe = child.stderr.take().unwrap();
            let log = stderr.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    {
                        let mut log = log.lock().unwrap();
                        log.push_str(&line);
                        log.push('\n');
                    }
                    // After the line is in the log: a caller may read it at once.
                    if line.contains("listening on") {
                        let _ = tx.send(());
                    }
                }
            });
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if rx.recv_timeout(Duration::from_millis(50)).is_ok() {
                    return Server {
                        addr,
                        child,
                        stderr,
                    };
                }
                if let Some(status) = child.try_wait().unwrap() {
                    thread::sleep(Duration::from_millis(100));
                    last = format!(
                        "ferry serve exited with {status}:\n{}",
                        stderr.lock().unwrap()
                    );
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "ferry serve did not print `listening on` within 30 s:\n{}",
                        stderr.lock().unwrap()
                    );
                }
            }
            if !last.contains("in use") || given.is_some() {
                break;
            }
        }
        panic!("{last}");
    }

    /// What the server printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lowercase hex sha256 of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `sha256:<hex>` of some bytes.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// One file system entry as a snapshot sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub size: u64,
    pub modified: Option<SystemTime>,
    pub sha256: Option<String>,
}

/// Every path under `root` (recursively, relative), except the top-level names in
/// `exclude`, with type, size, mtime and the sha256 of regular files. A missing root
/// is an empty snapshot.
pub fn snapshot_tree(root: &Path, exclude: &[&str]) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    if root.exists() {
        walk(root, root, exclude, &mut out);
    }
    out
}

fn walk(root: &Path, dir: &Path, exclude: &[&str], out: &mut BTreeMap<PathBuf, Node>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        if dir == root && exclude.iter().any(|x| entry.file_name() == OsStr::new(x)) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let kind = if meta.is_dir() {
            "dir"
        } else if meta.is_file() {
            "file"
        } else if meta.file_type().is_symlink() {
            "symlink"
        } else {
            "other"
        };
        let sha256 = meta
            .is_file()
            .then(|| sha256_hex(&std::fs::read(&path).unwrap()));
        out.insert(
            rel,
            Node {
                kind,
                size: meta.len(),
                modified: meta.modified().ok(),
                sha256,
            },
        );
        if meta.is_dir() {
            walk(root, &path, exclude, out);
        }
    }
}

/// Copies a directory tree (regular files and directories only).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let dest = to.join(entry.file_name());
        if meta.is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Parses JSON that a command printed, with the command's output in the panic message.
#[track_caller]
pub fn parse_json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out:?}"))
}

/// A path as `&str`, for argument lists (test paths are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// `bundle verify` and `import --store STORE` both refuse `bundle` with exit 3 and an
/// `error:`, and the store (but for ferry's own `.ferry/`) is left exactly as it was.
/// `run` runs ferry with the caller's environment.
#[track_caller]
pub fn assert_verify_and_import_refuse(
    run: impl Fn(&[&str]) -> Output,
    bundle: &Path,
    public: &Path,
    store: &Path,
) {
    run(&["bundle", "verify", p(bundle), "--trust", p(public)])
        .assert_code(3)
        .assert_stderr_contains("error:");
    let before = snapshot_tree(store, &[".ferry"]);
    run(&[
        "import",
        p(bundle),
        "--trust",
        p(public),
        "--store",
        p(store),
    ])
    .assert_code(3)
    .assert_stderr_contains("error:");
    assert_eq!(
        before,
        snapshot_tree(store, &[".ferry"]),
        "a refused import changed the store"
    );
}

/// `ferry bundle create` of `spec_text` (written as `ferry.toml`, signed with `key`,
/// into `ctx/store`) must fail: with exit `code` when given, else cleanly (no panic,
/// no signal); with an `error:` naming every needle; and without writing a bundle.
/// `run` runs ferry with the caller's client isolation and environment.
#[track_caller]
pub fn assert_create_fails(
    ctx: &TestContext,
    key: &Path,
    spec_text: &str,
    code: Option<i32>,
    needles: &[&str],
    run: impl FnOnce(&[&str]) -> Output,
) -> Output {
    let spec = ctx.write_spec("ferry.toml", spec_text);
    let bundle = ctx.path("out.ferry");
    let store = ctx.path("store");
    let out = run(&[
        "bundle",
        "create",
        p(&spec),
        "-o",
        p(&bundle),
        "--key",
        p(key),
        "--store",
        p(&store),
    ]);
    eprintln!("exit {}\n{}", out.code, out.stderr.trim_end());
    match code {
        Some(code) => {
            out.assert_code(code);
        }
        None => assert!(
            out.code != 0 && out.code != 101 && out.code != -1,
            "expected a clean failure: {out:?}"
        ),
    }
    out.assert_stderr_contains("error:");
    for needle in needles {
        out.assert_stderr_contains(needle);
    }
    let leftovers: Vec<String> = std::fs::read_dir(ctx.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("out.ferry"))
        .collect();
    assert!(leftovers.is_empty(), "a bundle was written: {leftovers:?}");
    out
}

/// A helper server of the suite (a script on loopback standing in for an index or a
/// hub). Its stdin is held open, so with `--watch-stdin` it exits when the test process
/// does; its stderr is kept as its request log; the lines it prints on stdout that
/// start with each of `prefixes` (in any order) give its addresses.
pub struct HelperServer {
    child: Mutex<(Child, Option<std::process::ChildStdin>)>,
    log: std::sync::Arc<Mutex<String>>,
}

impl HelperServer {
    /// Starts `cmd`; returns it and the rest of each `prefixes` line, in that order.
    pub fn start(mut cmd: Command, prefixes: &[&str]) -> (HelperServer, Vec<String>) {
        let what = describe(&cmd);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdin = child.stdin.take();
        let log = std::sync::Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let wanted: Vec<String> = prefixes.iter().map(|s| s.to_string()).collect();
        thread::spawn(move || {
            let mut found: Vec<Option<String>> = vec![None; wanted.len()];
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                for (i, prefix) in wanted.iter().enumerate() {
                    if let Some(rest) = line.strip_prefix(prefix.as_str()) {
                        found[i] = Some(rest.trim().to_string());
                    }
                }
                if found.iter().all(Option::is_some) {
                    let _ = tx.send(found.iter().flatten().cloned().collect::<Vec<_>>());
                    found = vec![None; wanted.len()];
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(values) => (
                HelperServer {
                    child: Mutex::new((child, stdin)),
                    log,
                },
                values,
            ),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "{what} did not print {prefixes:?}:\n{}",
                    log.lock().unwrap()
                );
            }
        }
    }

    /// What it logged on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for HelperServer {
    fn drop(&mut self) {
        let mut guard = self.child.lock().unwrap();
        let (child, stdin) = &mut *guard;
        drop(stdin.take());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Keeps a client (or ferry) away from the machine's configuration for one ecosystem:
/// removes every variable whose name (upper-cased) starts with one of `prefixes`, and
/// those that point Python somewhere else; sets HOME to `home`, then `set`.
pub fn isolate(cmd: &mut Command, home: &Path, prefixes: &[&str], set: &[(&str, &str)]) {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy().to_ascii_uppercase();
        if prefixes.iter().any(|p| k.starts_with(p))
            || matches!(k.as_str(), "VIRTUAL_ENV" | "PYTHONPATH" | "PYTHONHOME")
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HOME", home);
    for (k, v) in set {
        cmd.env(k, v);
    }
}
