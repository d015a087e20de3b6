//! `ferry serve` against hostile clients and hostile stores: idle and slow connections
//! under a low open-file limit, store records edited on disk to inject headers or
//! markup. The server must answer every request, stay up, and never echo the injection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::context::{TestContext, digest_of, free_port, p, run, run_program};
use super::fixtures::fixtures;
use super::http;

/// A `ferry serve` started through `sh -c` (so a test can lower its limits first);
/// killed by its own pid when dropped (`exec` makes the shell's pid ferry's).
struct Serve {
    addr: String,
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    /// `sh -c "PRELUDE; exec ferry serve --store STORE --listen ADDR EXTRA..."`.
    fn start(ctx: &TestContext, store: &Path, prelude: &str, extra: &[&str]) -> Serve {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut script = format!("{prelude}; exec \"$0\" serve --store \"$1\" --listen \"$2\"");
        for i in 0..extra.len() {
            script.push_str(&format!(" \"${}\"", i + 3));
        }
        let ferry = ctx.ferry_command();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg(ferry.get_program())
            .arg(store)
            .arg(&addr)
            .args(extra)
            .current_dir(ctx.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in ferry.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut child = cmd.spawn().expect("spawn ferry serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ferry serve did not start:\n{}",
                stderr.lock().unwrap().as_str()
            );
        }
        Serve {
            addr,
            child,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Its stderr once every needle is in it (another thread reads the pipe), or after
    /// ten seconds.
    fn stderr_with(&self, needles: &[&str]) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let log = self.stderr();
            if needles.iter().all(|n| log.contains(n)) || std::time::Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[track_caller]
    fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "ferry serve exited:\n{}",
            self.stderr()
        );
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A store written by hand, blob by blob, the way ferry lays it out: what a store edited
/// on disk (or written by a buggy tool) can hold.
struct RawStore {
    root: PathBuf,
    entries: Vec<serde_json::Value>,
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

impl RawStore {
    fn new(root: PathBuf) -> RawStore {
        std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        std::fs::write(
            root.join("oci-layout"),
            "{\"imageLayoutVersion\":\"1.0.0\"}",
        )
        .unwrap();
        let store = RawStore {
            root,
            entries: Vec::new(),
        };
        store.write_index();
        store
    }

    /// Writes a blob; returns its digest and size.
    fn blob(&self, bytes: &[u8]) -> (String, usize) {
        let digest = digest_of(bytes);
        std::fs::write(
            self.root
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
            bytes,
        )
        .unwrap();
        (digest, bytes.len())
    }

    /// Writes an artifact (config, manifest over `layers`) and lists it in `index.json`.
    fn artifact(
        &mut self,
        repository: &str,
        tag: &str,
        artifact_type: &str,
        config: (&str, &serde_json::Value),
        layers: Vec<serde_json::Value>,
        annotations: serde_json::Value,
    ) {
        let (config_digest, config_size) = self.blob(&serde_json::to_vec(config.1).unwrap());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": config.0, "digest": config_digest, "size": config_size},
            "layers": layers,
            "annotations": annotations,
        });
        let (digest, size) = self.blob(&serde_json::to_vec(&manifest).unwrap());
        self.entries.push(serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": size,
            "artifactType": artifact_type,
            "annotations": {
                "dev.ferry.repository": repository,
                "org.opencontainers.image.ref.name": format!("{repository}:{tag}"),
            },
        }));
        self.write_index();
    }

    fn write_index(&self) {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": self.entries,
        });
        std::fs::write(
            self.root.join("index.json"),
            serde_json::to_vec_pretty(&index).unwrap(),
        )
        .unwrap();
    }

    /// A Hugging Face model snapshot of one file, as `src/ecosystems/model/record.rs` writes it.
    fn model(&mut self, repo: &str, commit: &str, file: (&str, &[u8], &str)) {
        let (path, bytes, oid) = file;
        let (digest, size) = self.blob(bytes);
        let layer = serde_json::json!({
            "mediaType": "application/vnd.cncf.model.weight.config.v1.raw",
            "digest": digest,
            "size": size,
            "annotations": {
                "org.cncf.model.filepath": path,
                "dev.ferry.hf.oid": oid,
                "dev.ferry.hf.lfs": "false",
            },
        });
        let annotations = serde_json::json!({
            "dev.ferry.hf.repo": repo,
            "dev.ferry.hf.type": "model",
            "dev.ferry.hf.revision": "main",
            "dev.ferry.hf.commit": commit,
            "dev.ferry.hf.endpoint": "http://127.0.0.1:9",
            "org.opencontainers.image.revision": commit,
        });
        let config = serde_json::json!({"descriptor": {"name": repo}, "config": {}, "modelfs": {"type": "layers", "diffIds": [digest]}});
        self.artifact(
            &format!("hf/models/{}", repo.to_ascii_lowercase()),
            "main",
            "application/vnd.cncf.model.manifest.v1+json",
            ("application/vnd.cncf.model.config.v1+json", &config),
            vec![layer],
            annotations,
        );
    }

    /// A Python release of one wheel (and its core metadata), as
    /// `src/ecosystems/python/record.rs` writes it; returns the wheel's bytes.
    fn python(&mut self, project: &str, filename: &str, requires_python: &str) -> Vec<u8> {
        let wheel = format!("not really a wheel: {project} {filename}").into_bytes();
        let metadata = format!("Metadata-Version: 2.1\nName: {project}\nVersion: 1.0\n");
        let (wheel_digest, wheel_size) = self.blob(&wheel);
        let (meta_digest, meta_size) = self.blob(metadata.as_bytes());
        let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
        let config = serde_json::json!({
            "project": project,
            "version": "1.0",
            "index": "http://127.0.0.1:9/simple/",
            "files": [{
                "filename": filename,
                "sha256": hex(&wheel_digest),
                "size": wheel_size,
                "requiresPython": requires_python,
                "metadataSha256": hex(&meta_digest),
                "metadataSize": meta_size,
            }],
        });
        let layers = vec![
            serde_json::json!({"mediaType": "application/vnd.ferry.python.wheel.v1", "digest": wheel_digest, "size": wheel_size}),
            serde_json::json!({"mediaType": "application/vnd.ferry.python.metadata.v1", "digest": meta_digest, "size": meta_size}),
        ];
        self.artifact(
            &format!("python/{}", project.to_ascii_lowercase()),
            "1.0",
            "application/vnd.ferry.python.release.v1",
            (
                "application/vnd.ferry.python.release.config.v1+json",
                &config,
            ),
            layers,
            serde_json::json!({}),
        );
        wheel
    }
}

/// Every request gets a whole HTTP answer (no dropped connection) that carries no
/// injected header.
#[track_caller]
fn answered(addr: &str, method: &str, path: &str) -> http::Response {
    let r = http::request(addr, method, path, &[], b"")
        .unwrap_or_else(|e| panic!("{method} {path}: no answer ({e})"));
    assert!(
        r.header("x-injected").is_none(),
        "{method} {path}: an injected header came through: {r:?}"
    );
    assert!(
        matches!(r.status, 200 | 400 | 404 | 500),
        "{method} {path}: {r:?}"
    );
    r
}

#[test]
fn serve_survives_a_store_with_header_injection_in_model_records() {
    let ctx = TestContext::new();
    let mut store = RawStore::new(ctx.path("store"));
    let good_commit = "1".repeat(40);
    store.model(
        "org/good",
        &good_commit,
        ("config.json", b"{}", &"a".repeat(40)),
    );
    store.model(
        "org/evil-commit",
        "abc\r\nX-Injected: 1",
        ("config.json", b"{\"a\":1}", &"b".repeat(40)),
    );
    store.model(
        "org/evil-oid",
        &"2".repeat(40),
        ("config.json", b"{\"b\":2}", "bad\netag"),
    );
    store.model(
        "org/evil-path",
        &"3".repeat(40),
        ("a\r\nX-Injected: 1", b"{\"c\":3}", &"c".repeat(40)),
    );
    let mut server = Serve::start(&ctx, &store.root, "true", &[]);
    let addr = server.addr.clone();

    for repo in ["org/evil-commit", "org/evil-oid", "org/evil-path"] {
        for path in [
            format!("/{repo}/resolve/main/config.json"),
            format!("/{repo}/resolve/main/a%0D%0AX-Injected:%201"),
            format!("/{repo}/resolve/abc%0D%0AX-Injected:%201/config.json"),
            format!("/api/models/{repo}"),
            format!("/api/models/{repo}/revision/main"),
            format!("/api/models/{repo}/tree/main"),
        ] {
            for method in ["GET", "HEAD"] {
                let r = answered(&addr, method, &path);
                assert_ne!(
                    r.status, 200,
                    "{method} {path}: a hostile record is served: {r:?}"
                );
            }
        }
    }
    // A percent sign before a multi-byte character in a request path.
    answered(&addr, "GET", "/org/good/resolve/main/%a\u{e9}");
    answered(&addr, "GET", "/simple/%a\u{e9}/");

    // The well-formed snapshot next to them is served as usual.
    let r = answered(&addr, "GET", "/org/good/resolve/main/config.json");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, b"{}");
    assert_eq!(r.header("x-repo-commit"), Some(good_commit.as_str()));
    let r = answered(&addr, "GET", "/api/models/org/good/revision/main");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["sha"], good_commit.as_str());

    // Still up, and it said why the hostile records are not served.
    assert_eq!(answered(&addr, "GET", "/v2/").status, 200);
    server.assert_running();
    let log = server.stderr_with(&["commit", "oid", "file path"]);
    for why in ["commit", "oid", "file path"] {
        assert!(
            log.lines()
                .any(|l| l.starts_with("warning:") && l.contains(why) && l.contains("not served")),
            "no warning about the bad {why}:\n{log}"
        );
    }
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn serve_escapes_hostile_python_names_in_simple_pages() {
    let ctx = TestContext::new();
    let mut store = RawStore::new(ctx.path("store"));
    // What the name types let through still goes into the page escaped.
    let wheel = store.python(
        "evil",
        "evil-1.0-py3-none-any.whl",
        ">=3\"><script>alert(2)</script>",
    );
    // What they refuse is not served at all.
    store.python(
        "markup",
        "markup-1.0-py3-none-any.whl\"><script>alert(1)<a href=\"x#?%",
        ">=3",
    );
    store.python(
        "x\"><img src=x onerror=alert(3)>",
        "x-1.0-py3-none-any.whl",
        ">=3",
    );
    store.python("slash", "../../slash-1.0-py3-none-any.whl", ">=3");
    let mut server = Serve::start(&ctx, &store.root, "true", &[]);
    let addr = server.addr.clone();

    for path in ["/simple/", "/simple/evil/"] {
        let r = http::request(&addr, "GET", path, &[("Accept", "text/html")], b"").unwrap();
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let page = r.text();
        for markup in ["<script", "<img", "onerror=alert", "<a href=\"x"] {
            assert!(
                !page.contains(markup),
                "{path}: unescaped {markup:?} in the page:\n{page}"
            );
        }
        // Every attribute value is one quoted string: no quote inside a link's href.
        for link in page.split("<a ").skip(1) {
            let tag = &link[..link.find('>').unwrap()];
            assert_eq!(
                tag.matches('"').count() % 2,
                0,
                "{path}: unbalanced quotes in <a {tag}>"
            );
        }
    }
    let r = http::request(
        &addr,
        "GET",
        "/simple/evil/",
        &[("Accept", "text/html")],
        b"",
    )
    .unwrap();
    let page = r.text();
    assert!(
        page.contains("data-requires-python=\"&gt;=3&quot;&gt;&lt;script&gt;alert(2)"),
        "{page}"
    );
    let href = page
        .split("href=\"")
        .nth(1)
        .and_then(|h| h.split('"').next())
        .unwrap();
    let url = href.split('#').next().unwrap();
    let r = http::get(&addr, url);
    assert_eq!(r.status, 200, "{url}: {r:?}");
    assert_eq!(r.body, wheel);

    // Releases whose project or file names are refused are left out, with a warning.
    let r = http::request(
        &addr,
        "GET",
        "/simple/",
        &[("Accept", "application/vnd.pypi.simple.v1+json")],
        b"",
    )
    .unwrap();
    assert_eq!(r.json()["projects"], serde_json::json!([{"name": "evil"}]));
    for project in ["markup", "slash"] {
        let r = http::request(
            &addr,
            "GET",
            &format!("/simple/{project}/"),
            &[("Accept", "text/html")],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 404, "{project}: {r:?}");
    }
    server.assert_running();
    let log = server.stderr_with(&["python project name", "python file name"]);
    for why in ["python project name", "python file name"] {
        assert!(
            log.lines()
                .any(|l| l.starts_with("warning:") && l.contains(why)),
            "no warning with {why:?}:\n{log}"
        );
    }
}

/// An imported store, for the connection tests.
fn imported_store(ctx: &TestContext) -> PathBuf {
    let fx = fixtures();
    let store = ctx.path("store");
    ctx.ferry([
        "import",
        p(&fx.bundle),
        "--trust",
        p(&fx.public),
        "--store",
        p(&store),
    ])
    .assert_success();
    store
}

#[test]
fn serve_keeps_answering_with_hundreds_of_idle_connections_under_a_low_fd_limit() {
    let ctx = TestContext::new();
    let store = imported_store(&ctx);
    let mut server = Serve::start(&ctx, &store, "ulimit -n 256", &[]);
    let addr = server.addr.clone();

    // 300 connections that never send a byte: more than the server has files for.
    let idle: Vec<TcpStream> = (0..300)
        .map(|i| TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    thread::sleep(Duration::from_millis(500));

    // Real clients are still served, promptly.
    let started = Instant::now();
    let mut curl = Command::new("curl");
    curl.args([
        "-sS",
        "-f",
        "--max-time",
        "20",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ])
    .arg(format!("http://{addr}/v2/"));
    let out = run(curl);
    out.assert_success();
    assert_eq!(out.stdout, "200");
    let out = run_program(
        "skopeo",
        [
            "inspect".to_string(),
            "--raw".into(),
            "--tls-verify=false".into(),
            "--retry-times=0".into(),
            format!("docker://{addr}/e2e/multi:v1"),
        ],
    );
    out.assert_success();
    assert_eq!(digest_of(out.stdout.as_bytes()), ctx.images().multi.digest);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "clients waited {:?} behind idle connections",
        started.elapsed()
    );
    // The idle connections that made room were closed by the server (EOF, not a hang).
    let mut closed = 0;
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let mut buf = [0u8; 1];
        if matches!(s.read(&mut buf), Ok(0)) {
            closed += 1;
        }
    }
    assert!(closed > 0, "no idle connection was shed");
    server.assert_running();
}

#[test]
fn serve_closes_slow_and_idle_connections_after_the_idle_timeout() {
    let ctx = TestContext::new();
    let store = imported_store(&ctx);
    let mut server = Serve::start(&ctx, &store, "true", &["--idle-timeout", "2"]);
    let addr = server.addr.clone();

    // Slowloris: a request head, one byte every 100 ms, never finished.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let head = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let started = Instant::now();
    let mut closed_after = None;
    let mut sent = 0usize;
    while started.elapsed() < Duration::from_secs(15) {
        let byte = head.get(sent).copied().unwrap_or(b'a');
        if slow.write_all(&[byte]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        sent += 1;
        let mut buf = [0u8; 256];
        match slow.read(&mut buf) {
            Ok(0) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed_after = Some(started.elapsed());
                break;
            }
        }
    }
    let closed_after =
        closed_after.expect("a connection sending its head byte by byte was never closed");
    assert!(
        closed_after >= Duration::from_millis(1500),
        "closed before the idle timeout: {closed_after:?}"
    );

    // A keep-alive connection that goes quiet after a response is closed too.
    let mut keep = TcpStream::connect(&addr).unwrap();
    keep.write_all(format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    keep.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let quiet = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match keep.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("the idle keep-alive connection was not closed: {e}"),
        }
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        quiet.elapsed() < Duration::from_secs(8),
        "idle keep-alive connection held for {:?}",
        quiet.elapsed()
    );
    // And the server goes on serving.
    assert_eq!(http::get(&addr, "/v2/").status, 200);
    server.assert_running();
}
