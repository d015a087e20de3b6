//! Faults upstream and downstream: a fault-injecting proxy on loopback in front of the
//! real registry, the Python index, the conda channel and the hub stand-in resets
//! connections, answers 503 with `Retry-After`, stalls and cuts bodies short (of
//! responses, and of uploads on their way to the registry). `pull` and `import --to`
//! complete through it and the result is whole; through a proxy that never lets a
//! request by they fail with an `error:` within bounded time, and nothing in the target
//! points to missing content.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::context::{Output, TestContext, p, run};
use super::kill::{assert_registry_consistent, assert_store_consistent};
use super::registry::Registry;

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it and its answer.
    Pass,
    /// Read the request, then close the connection without a word.
    Reset,
    /// Answer `503 Service Unavailable` with `Retry-After: 1`.
    Unavailable,
    /// Send nothing until the client gives up (closes the connection), at most 60 s.
    Hang,
    /// Forward the answer's head (with its full `Content-Length`) and half its body,
    /// then close.
    Cut,
    /// Forward the request's head and half its body (an upload), then close both ways.
    CutUpload,
    /// Forward the answer whole but for its last byte, flipped: an upstream that lies.
    Flip,
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The path and query as sent.
    pub target: String,
    /// The method and path without the query, upload session ids folded away: what
    /// "the same request again" means for a schedule.
    pub key: String,
    /// How many requests with this key came before this one, plus one.
    pub nth: u32,
    /// How many distinct keys came before this key first appeared.
    pub key_index: usize,
}

type Schedule = dyn Fn(&Seen) -> Fault + Send + Sync;

#[derive(Default)]
struct Log {
    counts: HashMap<String, (u32, usize)>,
    /// Every request, with the fault that was applied to it.
    requests: Vec<(Seen, Fault)>,
}

/// A fault-injecting HTTP/1.1 proxy on `127.0.0.1`, in front of `upstream` (`HOST:PORT`).
/// Each request gets its own upstream connection and its answer goes back with
/// `Connection: close`, so every request the client makes passes the schedule.
pub struct FaultProxy {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    log: Arc<Mutex<Log>>,
}

impl FaultProxy {
    pub fn start(
        upstream: &str,
        schedule: impl Fn(&Seen) -> Fault + Send + Sync + 'static,
    ) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Log::default()));
        let schedule: Arc<Schedule> = Arc::new(schedule);
        let upstream = upstream.to_string();
        let shared = log.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let (upstream, schedule, log) =
                    (upstream.clone(), schedule.clone(), shared.clone());
                thread::spawn(move || {
                    let _ = serve(client, &upstream, &*schedule, &log);
                });
            }
        });
        FaultProxy { addr, log }
    }

    /// Faults the first request of every key, cycling through `faults` key by key;
    /// passes every repeat.
    pub fn first_of_each(upstream: &str, faults: &'static [Fault]) -> FaultProxy {
        FaultProxy::start(upstream, move |s| {
            if s.nth == 1 {
                faults[s.key_index % faults.len()]
            } else {
                Fault::Pass
            }
        })
    }

    /// Every request it saw, with what it did to it.
    pub fn requests(&self) -> Vec<(Seen, Fault)> {
        self.log.lock().unwrap().requests.clone()
    }

    /// How many requests got `fault` (a cut answer counts only where there was a body
    /// to cut: not for a HEAD).
    pub fn count(&self, fault: Fault) -> usize {
        self.requests()
            .iter()
            .filter(|(s, f)| *f == fault && !(fault == Fault::Cut && s.method == "HEAD"))
            .count()
    }

    /// The requests, one line each, for failure messages.
    pub fn describe(&self) -> String {
        self.requests()
            .iter()
            .map(|(s, f)| format!("{f:?} {} {}\n", s.method, s.target))
            .collect()
    }

    /// Asserts that each of `faults` was applied to at least one request.
    #[track_caller]
    pub fn assert_applied(&self, faults: &[Fault]) {
        for f in faults {
            assert!(
                self.count(*f) > 0,
                "the proxy never applied {f:?}:\n{}",
                self.describe()
            );
        }
    }
}

fn key_of(method: &str, target: &str) -> String {
    let path = target.split('?').next().unwrap_or(target);
    let path = match path.find("/blobs/uploads/") {
        Some(i) => &path[..i + "/blobs/uploads/".len()],
        None => path,
    };
    format!("{method} {path}")
}

/// Reads up to the end of an HTTP head; returns (head, bytes read past it).
fn read_head(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The head with any `Connection` header replaced by `Connection: close`, and the
/// `Content-Length` it declares.
fn close_head(head: &str) -> (String, Option<u64>) {
    let mut out = String::new();
    let mut length = None;
    for (i, line) in head.trim_end_matches("\r\n").split("\r\n").enumerate() {
        if i > 0 {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok();
            }
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    (out, length)
}

fn serve(
    mut client: TcpStream,
    upstream: &str,
    schedule: &Schedule,
    log: &Mutex<Log>,
) -> std::io::Result<()> {
    let (head, early) = read_head(&mut client)?;
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let target = words.next().unwrap_or("").to_string();
    let key = key_of(&method, &target);
    let fault = {
        let mut log = log.lock().unwrap();
        let next_index = log.counts.len();
        let entry = log.counts.entry(key.clone()).or_insert((0, next_index));
        entry.0 += 1;
        let seen = Seen {
            method,
            target,
            key,
            nth: entry.0,
            key_index: entry.1,
        };
        let fault = schedule(&seen);
        log.requests.push((seen, fault));
        fault
    };
    match fault {
        Fault::Reset => {
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        Fault::Unavailable => {
            client.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
                  Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\n\
                  unavailable\n",
            )?;
            let _ = client.shutdown(Shutdown::Write);
            // Let the client read the answer before the socket goes.
            client.set_read_timeout(Some(Duration::from_secs(5)))?;
            let _ = std::io::copy(&mut client, &mut std::io::sink());
            return Ok(());
        }
        Fault::Hang => {
            client.set_read_timeout(Some(Duration::from_secs(60)))?;
            let _ = std::io::copy(&mut client, &mut std::io::sink());
            return Ok(());
        }
        Fault::Pass | Fault::Cut | Fault::CutUpload | Fault::Flip => {}
    }
    let mut server = TcpStream::connect(upstream)?;
    let (request_head, request_length) = close_head(&head);
    server.write_all(request_head.as_bytes())?;
    // The request body: all of it, or half for a cut upload.
    let limit = match (fault, request_length) {
        (Fault::CutUpload, Some(n)) if n > 1 => Some(n / 2),
        _ => None,
    };
    {
        let (mut from, mut to) = (client.try_clone()?, server.try_clone()?);
        let mut first = early;
        thread::spawn(move || {
            let mut sent = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let data: Vec<u8> = if first.is_empty() {
                    match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf[..n].to_vec(),
                    }
                } else {
                    std::mem::take(&mut first)
                };
                let take = match limit {
                    Some(l) => (l - sent).min(data.len() as u64) as usize,
                    None => data.len(),
                };
                if to.write_all(&data[..take]).is_err() {
                    break;
                }
                sent += take as u64;
                if limit.is_some_and(|l| sent >= l) {
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    }
    let (response_head, rest) = read_head(&mut server)?;
    let (response_head, length) = close_head(&response_head);
    client.write_all(response_head.as_bytes())?;
    match (fault, length) {
        (Fault::Cut, Some(n)) if n > 1 => {
            let mut body = rest;
            let half = (n / 2) as usize;
            let mut buf = [0u8; 8192];
            while body.len() < half {
                match server.read(&mut buf)? {
                    0 => break,
                    k => body.extend_from_slice(&buf[..k]),
                }
            }
            body.truncate(half);
            client.write_all(&body)?;
        }
        (Fault::Flip, Some(n)) if n > 0 => {
            let mut body = rest;
            let mut buf = [0u8; 8192];
            while (body.len() as u64) < n {
                match server.read(&mut buf)? {
                    0 => break,
                    k => body.extend_from_slice(&buf[..k]),
                }
            }
            body.truncate(n as usize);
            if let Some(last) = body.last_mut() {
                *last ^= 0x01;
            }
            client.write_all(&body)?;
        }
        _ => {
            client.write_all(&rest)?;
            std::io::copy(&mut server, &mut client)?;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Running ferry.

/// Every fault a client might get past, in the order the first requests get them (few
/// stalls: each costs a read timeout).
const SURVIVABLE: &[Fault] = &[
    Fault::Reset,
    Fault::Unavailable,
    Fault::Cut,
    Fault::Hang,
    Fault::Reset,
    Fault::Unavailable,
    Fault::Cut,
    Fault::Reset,
    Fault::Unavailable,
    Fault::Cut,
];

/// How long ferry waits on a silent connection in these tests (long enough that a
/// loaded machine's real answers are not mistaken for stalls).
const READ_TIMEOUT: &str = "3";

/// `ferry ARGS` in the test's directory, seeing no index, channel or hub configuration
/// of the machine, with a short read timeout.
fn ferry(ctx: &TestContext, args: &[&str]) -> (Output, Duration) {
    let mut cmd: Command = ctx.ferry_command();
    super::context::isolate(
        &mut cmd,
        ctx.dir.path(),
        &[
            "PIP_",
            "UV_",
            "CONDA",
            "RATTLER_",
            "PIXI_",
            "MAMBA",
            "HF_",
            "HUGGINGFACE_",
            "HUGGING_FACE_",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
        ],
        &[
            ("PIP_CONFIG_FILE", "/dev/null"),
            ("UV_NO_CONFIG", "1"),
            ("NO_PROXY", "*"),
            ("FERRY_READ_TIMEOUT", READ_TIMEOUT),
        ],
    );
    cmd.args(args);
    let started = Instant::now();
    let out = run(cmd);
    (out, started.elapsed())
}

/// Pulls the spec that `spec_for(PROXY_ADDR)` gives through a proxy in front of
/// `upstream`, twice, into new stores: once with the first request of each kind getting
/// each of the [`SURVIVABLE`] faults in turn, once with every first answer cut short.
/// Both must succeed and leave a consistent store holding every sha256 in `expect`.
fn pull_through(
    ctx: &TestContext,
    upstream: &str,
    spec_for: impl Fn(&str) -> String,
    expect: &[&str],
) {
    const ONLY_CUTS: &[Fault] = &[Fault::Cut];
    for (run, faults) in [SURVIVABLE, ONLY_CUTS].into_iter().enumerate() {
        let proxy = FaultProxy::first_of_each(upstream, faults);
        let spec = ctx.write_spec("ferry.toml", &spec_for(&proxy.addr));
        let store = ctx.path(format!("store-{run}"));
        let (out, took) = ferry(ctx, &["pull", p(&spec), "--store", p(&store)]);
        eprintln!("pull took {took:?}\n{}", proxy.describe());
        out.assert_success();
        proxy.assert_applied(faults);
        assert_store_consistent(&store, "after a pull through faults");
        for hex in expect {
            assert!(
                store.join("blobs/sha256").join(hex).is_file(),
                "the store lacks {hex}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Upstream: pull through faults.

#[test]
fn faults_pull_images_through_resets_503s_cuts_and_stalls() {
    let ctx = TestContext::new();
    let images = ctx.images();
    let spec =
        |proxy: &str| format!("name = \"faults\"\n[[image]]\nref = \"{proxy}/e2e/multi:v1\"\n");
    let mut expect: Vec<&str> = vec![&images.multi.digest[7..]];
    expect.extend(images.multi.blobs.iter().map(|(d, _)| &d[7..]));
    pull_through(&ctx, ctx.host(), spec, &expect);
}

#[test]
fn faults_pull_python_through_resets_503s_cuts_and_stalls() {
    let ctx = TestContext::new();
    let fx = super::python::py();
    let spec = |proxy: &str| {
        format!(
            "name = \"faults\"\n[[python]]\nindex-url = \"http://{proxy}/simple/\"\n\
             requirements = [\"python-dateutil>=2.8\"]\npython-version = \"3.11\"\n\
             platforms = [\"manylinux_2_28_x86_64\"]\n"
        )
    };
    let wheels = [
        "python_dateutil-2.9.0-py2.py3-none-any.whl",
        "six-1.16.0-py2.py3-none-any.whl",
    ];
    let expect: Vec<&str> = wheels.iter().map(|w| fx.file(w).sha256.as_str()).collect();
    pull_through(&ctx, &fx.index.addr, spec, &expect);
}

#[test]
fn faults_pull_conda_through_resets_503s_cuts_and_stalls() {
    let ctx = TestContext::new();
    let fx = super::conda::conda();
    let spec = |proxy: &str| {
        format!(
            "name = \"faults\"\n[[conda]]\nchannel = \"http://{proxy}/test-forge\"\n\
             specs = [\"app\"]\nplatforms = [\"linux-64\"]\n"
        )
    };
    let packages = [
        ("linux-64", "app-1.0-0.conda"),
        ("linux-64", "libfoo-1.2-0.tar.bz2"),
        ("noarch", "base-data-1.0-0.conda"),
    ];
    let expect: Vec<&str> = packages
        .iter()
        .map(|(s, f)| fx.package(s, f).sha256.as_str())
        .collect();
    pull_through(&ctx, &fx.server.addr, spec, &expect);
}

#[test]
fn faults_pull_model_through_resets_503s_cuts_and_stalls() {
    let ctx = TestContext::new();
    let fx = super::models::models();
    let spec = |proxy: &str| {
        format!(
            "name = \"faults\"\n[[model]]\nrepo = \"org/tiny-bert\"\n\
             endpoint = \"http://{proxy}\"\nrevision = \"main\"\n"
        )
    };
    let expect: Vec<&str> = fx
        .model
        .files
        .values()
        .map(|(sha, _)| sha.as_str())
        .collect();
    pull_through(&ctx, &fx.hub.addr, spec, &expect);
}

// ---------------------------------------------------------------------------------------
// Downstream: import --to through faults.

/// Every fault on the way to a registry, uploads cut short among them.
const SURVIVABLE_PUSH: &[Fault] = &[
    Fault::Unavailable,
    Fault::Reset,
    Fault::CutUpload,
    Fault::Cut,
    Fault::Hang,
    Fault::Unavailable,
    Fault::Reset,
    Fault::CutUpload,
    Fault::Cut,
    Fault::Unavailable,
    Fault::Reset,
    Fault::CutUpload,
];

/// A registry of the test's own (so an upload is never a cross-repository mount of a
/// blob another test pushed) and `import --to` of the standard bundle through `proxy`.
fn import_through(
    ctx: &TestContext,
    registry: &Registry,
    proxy: &FaultProxy,
    prefix: &str,
) -> (Output, Duration) {
    let fx = super::fixtures::fixtures();
    let to = format!("{}/{prefix}", proxy.addr);
    let state = ctx.path("state");
    let result = ferry(
        ctx,
        &[
            "import",
            p(&fx.bundle),
            "--trust",
            p(&fx.public),
            "--to",
            &to,
            "--state-dir",
            p(&state),
        ],
    );
    eprintln!("import took {:?}\n{}", result.1, proxy.describe());
    assert_registry_consistent(&registry.host, prefix, "after an import through faults");
    result
}

#[test]
fn faults_import_to_a_registry_through_resets_503s_cut_uploads_and_stalls() {
    let ctx = TestContext::new();
    let images = ctx.images();
    let registry = Registry::start(&ctx.path("target"));
    let proxy = FaultProxy::first_of_each(&registry.host, SURVIVABLE_PUSH);
    let (out, _) = import_through(&ctx, &registry, &proxy, "faults");
    out.assert_success();
    proxy.assert_applied(SURVIVABLE_PUSH);
    for method in ["POST", "PUT"] {
        assert!(
            proxy
                .requests()
                .iter()
                .any(|(s, f)| s.method == method && *f != Fault::Pass),
            "no {method} was faulted:\n{}",
            proxy.describe()
        );
    }
    let held = registry.snapshot("faults");
    for (repo, image) in [
        ("faults/e2e/multi", &images.multi),
        ("faults/e2e/docker", &images.docker),
        ("faults/renamed/other", &images.other),
    ] {
        assert_eq!(
            held.get(repo).and_then(|tags| tags.get("v1")),
            Some(&image.digest),
            "{repo}:v1 in {held:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Hostile twins: a fault that never ends.

/// How long a command may take to give up on a source or target that never answers.
const GIVE_UP_WITHIN: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// bundle create: the layers are fetched while the bundle is written.

/// A spec of `e2e/docker` and `e2e/multi` through `proxy`.
fn two_images(proxy: &str) -> String {
    format!(
        "name = \"faults\"\n[[image]]\nref = \"{proxy}/e2e/docker:v1\"\n\
         [[image]]\nref = \"{proxy}/e2e/multi:v1\"\n"
    )
}

#[test]
fn faults_bundle_create_writes_through_faults_and_stops_cleanly_when_a_layer_never_comes_or_lies() {
    let ctx = TestContext::new();
    let images = ctx.images();
    let (key, public) = ctx.generate_key("k");

    // Resets, 503s, cuts and stalls of the first request of each kind: the layers that
    // arrive while the bundle is written come whole, and the bundle verifies.
    let proxy = FaultProxy::first_of_each(ctx.host(), SURVIVABLE);
    let spec = ctx.write_spec("ferry.toml", &two_images(&proxy.addr));
    let (store, bundle) = (ctx.path("store-0"), ctx.path("b0.ferry"));
    let create = |spec: &Path, store: &Path, bundle: &Path| {
        ferry(
            &ctx,
            &[
                "bundle",
                "create",
                p(spec),
                "-o",
                p(bundle),
                "--key",
                p(&key),
                "--store",
                p(store),
            ],
        )
    };
    let (out, took) = create(&spec, &store, &bundle);
    eprintln!("create took {took:?}\n{}", proxy.describe());
    out.assert_success();
    proxy.assert_applied(SURVIVABLE);
    ctx.ferry(["bundle", "verify", p(&bundle), "--trust", p(&public)])
        .assert_success();
    assert_store_consistent(&store, "after a bundle create through faults");

    // Hostile twins: one layer of `multi` never comes (every request for it gets a
    // 503), or comes with a byte changed (every time). The command fails naming that
    // layer, leaves no bundle and no partial file, keeps none of the lying bytes, and
    // the store is consistent: `docker`, whose layers all came, is tagged; `multi` is
    // not, nor the signature attached to it.
    let (layer, _) = images
        .multi
        .blobs
        .iter()
        .filter(|b| !images.docker.blobs.contains(b))
        .max_by_key(|(_, size)| *size)
        .cloned()
        .unwrap();
    for (run, fault) in [(1, Fault::Unavailable), (2, Fault::Flip)] {
        let hex = layer[7..].to_string();
        let proxy = FaultProxy::start(ctx.host(), move |s| {
            if s.target.contains(&hex) && s.method == "GET" {
                fault
            } else {
                Fault::Pass
            }
        });
        let spec = ctx.write_spec("ferry.toml", &two_images(&proxy.addr));
        let store = ctx.path(format!("store-{run}"));
        let bundle = ctx.path(format!("b{run}.ferry"));
        let (out, took) = create(&spec, &store, &bundle);
        eprintln!("{fault:?}: gave up after {took:?}: {}", out.stderr);
        assert_gave_up(&out, took);
        assert!(proxy.count(fault) > 0, "{fault:?} never applied");
        if fault == Fault::Flip {
            assert_eq!(
                out.code, 3,
                "a layer that lies is a verification failure: {out:?}"
            );
        }
        out.assert_stderr_contains(&layer[7..]);
        let prefix = format!("b{run}.");
        let leftovers: Vec<_> = std::fs::read_dir(ctx.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{fault:?}: left behind: {leftovers:?}"
        );
        assert_store_consistent(&store, &format!("after {fault:?} of a layer"));
        // (A download that was refused may leave its partial file to resume from; one
        // that lied may not.)
        let mut kept = vec![store.join("blobs/sha256").join(&layer[7..])];
        if fault == Fault::Flip {
            kept.push(store.join(".ferry/partial").join(&layer[7..]));
        }
        for path in kept {
            assert!(!path.exists(), "{fault:?}: {} is there", path.display());
        }
        let index = std::fs::read_to_string(store.join("index.json")).unwrap();
        assert!(
            index.contains(&images.docker.digest),
            "{fault:?}: the complete image is not tagged: {index}"
        );
        assert!(
            !index.contains(&images.multi.digest) && !index.contains(&images.sig.digest),
            "{fault:?}: the image with a missing layer, or its signature, is tagged: {index}"
        );
    }
}

#[track_caller]
fn assert_gave_up(out: &Output, took: Duration) {
    assert!(
        out.code != 0 && out.code != 101 && out.code != -1,
        "expected a clean failure: {out:?}"
    );
    out.assert_stderr_contains("error:");
    assert!(
        took < GIVE_UP_WITHIN,
        "it took {took:?} to give up: {out:?}"
    );
}

#[test]
fn faults_pull_through_an_upstream_that_never_answers_fails_cleanly() {
    let ctx = TestContext::new();
    for (case, fault) in [
        ("always 503", Fault::Unavailable),
        ("always reset", Fault::Reset),
    ] {
        let proxy = FaultProxy::start(ctx.host(), move |_| fault);
        let spec = ctx.write_spec(
            "ferry.toml",
            &format!(
                "name = \"faults\"\n[[image]]\nref = \"{}/e2e/docker:v1\"\n",
                proxy.addr
            ),
        );
        let store = ctx.path(format!("store-{}", fault as u8));
        let (out, took) = ferry(&ctx, &["pull", p(&spec), "--store", p(&store)]);
        eprintln!("{case}: gave up after {took:?}: {}", out.stderr);
        assert_gave_up(&out, took);
        assert!(
            proxy.requests().len() > 1,
            "{case}: ferry did not try again:\n{}",
            proxy.describe()
        );
        assert_store_consistent(&store, case);
    }
}

#[test]
fn faults_import_to_a_registry_that_never_takes_it_tags_nothing_missing() {
    let ctx = TestContext::new();
    type Rule = fn(&Seen) -> Fault;
    let cases: [(&str, Rule); 3] = [
        ("every request reset", |_| Fault::Reset),
        ("every upload refused with 503", |s| {
            if s.method == "POST" {
                Fault::Unavailable
            } else {
                Fault::Pass
            }
        }),
        ("every manifest PUT stalls", |s| {
            if s.method == "PUT" && s.key.contains("/manifests/") {
                Fault::Hang
            } else {
                Fault::Pass
            }
        }),
    ];
    for (i, (case, rule)) in cases.into_iter().enumerate() {
        let registry = Registry::start(&ctx.path(format!("target-{i}")));
        let proxy = FaultProxy::start(&registry.host, rule);
        let (out, took) = import_through(&ctx, &registry, &proxy, "faults");
        eprintln!("{case}: gave up after {took:?}: {}", out.stderr);
        assert_gave_up(&out, took);
        let tags: usize = registry.snapshot("faults").values().map(|t| t.len()).sum();
        assert_eq!(tags, 0, "{case}: a failed import left tags");
    }
}

/// `import --to` checks a bundle file in one pass and streams its layers to the
/// registry from a second (nothing is staged but its documents). Between the two, the
/// file can change: a rename over its path changes nothing (the file stays open), and
/// bytes written into it are caught as the second pass reads them, the upload they
/// were in is left unfinished and nothing is tagged. Both are done at the registry's
/// first request, which for an incremental bundle is the check, between the passes,
/// that the target holds what the bundle left out.
#[test]
fn faults_a_bundle_changed_between_its_check_and_its_push_is_caught() {
    let ctx = TestContext::new();
    let registry = ctx.registry();
    let layout = ctx.path("layout");
    super::images::mkimage(&layout, "v1", &["--seed", "base"]);
    // Three 8 MiB layers: the second pass is far from the bytes changed (at 3/4 of
    // the file) when it starts.
    let digest = super::images::mkimage(
        &layout,
        "v2",
        &[
            "--layers",
            "3",
            "--layer-size",
            "8388608",
            "--seed",
            "changed",
        ],
    );
    let image = |tag: &str| {
        format!(
            "[[image]]\nref = \"oci:{}:{tag}\"\nrepository = \"big/app\"\n",
            layout.display()
        )
    };
    let base_spec = ctx.write_spec("base.toml", &format!("name = \"changed\"\n{}", image("v1")));
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!("name = \"changed\"\n{}{}", image("v1"), image("v2")),
    );
    let (key, public) = ctx.generate_key("changed");
    let base = ctx.create_bundle(&base_spec, "base.ferry", &key, &["--sequence", "1"]);
    let since = ["--since", p(&base)];
    let bundle = ctx.create_bundle(
        &spec,
        "changed.ferry",
        &key,
        &[&["--sequence", "2"], &since[..]].concat(),
    );
    let other = ctx.create_bundle(
        &spec,
        "other.ferry",
        &key,
        &[&["--sequence", "3"], &since[..]].concat(),
    );
    let original = std::fs::read(&bundle).unwrap();
    let import = |bundle: &Path, to: &str, prefix: &str| {
        ctx.ferry([
            "import",
            p(bundle),
            "--trust",
            p(&public),
            "--to",
            &format!("{to}/{prefix}"),
            "--state-dir",
            p(&ctx.path(format!("state-{prefix}"))),
        ])
    };

    // Another signed bundle renamed over the path: the open file is still the one
    // that was checked, and it is what lands.
    import(&base, ctx.host(), "changed-renamed").assert_success();
    let (from, to) = (other.clone(), bundle.clone());
    let once = std::sync::Once::new();
    let proxy = FaultProxy::start(ctx.host(), move |_| {
        once.call_once(|| std::fs::rename(&from, &to).unwrap());
        Fault::Pass
    });
    import(&bundle, &proxy.addr, "changed-renamed").assert_success();
    assert!(!other.exists(), "the rename did not happen");
    assert_eq!(
        registry
            .manifest_digest("changed-renamed/big/app", "v2")
            .as_deref(),
        Some(digest.as_str())
    );
    assert_registry_consistent(ctx.host(), "changed-renamed", "after a rename mid-import");

    // One byte changed in place, far into the file.
    std::fs::write(&bundle, &original).unwrap();
    import(&base, ctx.host(), "changed-written").assert_success();
    let before = registry.snapshot("changed-written");
    let blobs_before = super::kill::registry_blobs("changed-written");
    let (path, at) = (bundle.clone(), original.len() as u64 * 3 / 4);
    let once = std::sync::Once::new();
    let proxy = FaultProxy::start(ctx.host(), move |_| {
        once.call_once(|| {
            use std::os::unix::fs::FileExt;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            let mut byte = [0u8];
            file.read_exact_at(&mut byte, at).unwrap();
            file.write_all_at(&[byte[0] ^ 0x5a], at).unwrap();
        });
        Fault::Pass
    });
    let out = import(&bundle, &proxy.addr, "changed-written");
    out.assert_code(3);
    assert!(
        out.stderr.contains("damaged") || out.stderr.contains("does not match"),
        "{out:?}"
    );
    assert_eq!(
        registry.snapshot("changed-written"),
        before,
        "a bundle caught changing moved tags"
    );
    assert_registry_consistent(
        ctx.host(),
        "changed-written",
        "after a bundle changed mid-import",
    );
    // Every blob that did land is a layer the bundle carries, whole (the registry
    // checked each against its digest as ferry did).
    for blob in super::kill::registry_blobs("changed-written").difference(&blobs_before) {
        let (_, hex) = blob.split_once('@').unwrap();
        assert!(
            layout.join("blobs/sha256").join(hex).is_file(),
            "the target holds {blob}, which the bundle does not carry"
        );
    }

    // Put back, the same import goes through.
    std::fs::write(&bundle, &original).unwrap();
    import(&bundle, ctx.host(), "changed-written").assert_success();
    assert_eq!(
        registry
            .manifest_digest("changed-written/big/app", "v2")
            .as_deref(),
        Some(digest.as_str())
    );
}

/// `import --to` uploads layers while its first pass still checks the bundle, each
/// upload held back by its last chunk until the whole bundle verified; the first pass
/// leaves the hashing of such a layer to the reading that sends it. A bundle damaged
/// near its end (zstd finds it), and a forged one whose last layer frame was re-encoded
/// with other bytes (valid zstd, same signed manifest: only the layer's sha256 tells),
/// complete none of those uploads: the registry holds no blob, repository or tag of
/// them. Whole, the bundle lands; forged again against a registry that holds every
/// blob already (nothing to send), it is still refused.
#[test]
fn faults_layers_uploaded_during_the_check_land_only_once_the_whole_bundle_verified() {
    let ctx = TestContext::new();
    let registry = ctx.registry();
    let layout = ctx.path("layout");
    let digest = super::images::mkimage(
        &layout,
        "v1",
        &[
            "--layers",
            "12",
            "--layer-size",
            "4194304",
            "--seed",
            "early",
        ],
    );
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!(
            "name = \"early\"\n[[image]]\nref = \"oci:{}:v1\"\nrepository = \"early/app\"\n",
            layout.display()
        ),
    );
    let (key, public) = ctx.generate_key("early");
    let bundle = ctx.create_bundle(&spec, "early.ferry", &key, &[]);
    let original = std::fs::read(&bundle).unwrap();
    let mut bytes = original.clone();
    // Inside the last layer (documents come first, layers after them).
    let at = bytes.len() - bytes.len() / 48;
    bytes[at] ^= 0x5a;
    let damaged = ctx.path("damaged.ferry");
    std::fs::write(&damaged, &bytes).unwrap();
    let forged = ctx.path("forged.ferry");
    std::fs::write(&forged, forge_last_layer(&original)).unwrap();
    let import = |bundle: &Path, force: bool| {
        let mut args = vec![
            "import".to_string(),
            p(bundle).to_string(),
            "--trust".into(),
            p(&public).to_string(),
            "--to".into(),
            format!("{}/early", ctx.host()),
            "--state-dir".into(),
            p(&ctx.path("state")).to_string(),
        ];
        if force {
            args.push("--force".into());
        }
        ctx.ferry(args)
    };

    for bad in [&damaged, &forged] {
        let out = import(bad, false);
        out.assert_code(3);
        assert!(
            out.stderr.contains("damaged") || out.stderr.contains("does not match"),
            "{out:?}"
        );
        let landed = super::kill::registry_blobs("early");
        assert!(
            landed.is_empty(),
            "a bundle that failed its check landed {landed:?}"
        );
        assert!(registry.snapshot("early").is_empty(), "tags moved");
    }

    import(&bundle, false).assert_success();
    assert_eq!(
        registry.manifest_digest("early/early/app", "v1").as_deref(),
        Some(digest.as_str())
    );
    let blobs = super::kill::registry_blobs("early");
    assert!(blobs.len() > 12, "12 layers and a config: {blobs:?}");

    let before = registry.snapshot("early");
    let out = import(&forged, true);
    out.assert_code(3);
    assert!(out.stderr.contains("does not match"), "{out:?}");
    assert_eq!(registry.snapshot("early"), before, "tags moved");
    assert_eq!(super::kill::registry_blobs("early"), blobs);
}

/// The bundle with the last zstd frame that begins a layer re-encoded after one byte of
/// the layer changed: valid zstd (its checksum recomputed), the signed manifest
/// untouched, the layer's bytes no longer its digest's.
fn forge_last_layer(bundle: &[u8]) -> Vec<u8> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bundle.len() {
        let size = zstd::zstd_safe::find_frame_compressed_size(&bundle[at..]).unwrap();
        frames.push((at, size));
        at += size;
    }
    let (at, size, mut content) = frames
        .iter()
        .rev()
        .find_map(|&(at, size)| {
            let content = zstd::decode_all(&bundle[at..at + size]).unwrap();
            (content.len() > 1 << 20 && content.starts_with(b"blobs/sha256/"))
                .then_some((at, size, content))
        })
        .expect("a frame that begins a layer");
    content[512 + 1000] ^= 0x5a;
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    encoder.include_checksum(true).unwrap();
    std::io::Write::write_all(&mut encoder, &content).unwrap();
    let frame = encoder.finish().unwrap();
    [&bundle[..at], &frame[..], &bundle[at + size..]].concat()
}
