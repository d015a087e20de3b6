//! `ferry serve` fit for an enclave: TLS from a private CA, read access for the users of
//! an htpasswd file and the holders of tokens, a JSON-lines access log, `/healthz`, a
//! warning when it serves beyond loopback in clear, and replicas over one store that
//! answer alike. Checked with curl and skopeo (podman, pip, uv, py-rattler and
//! huggingface_hub each have their TLS test beside their other serve tests).

use std::path::Path;

use super::context::{Output, TestContext, digest_of, free_port, p, run_program};
use super::fixtures::{fixtures, import_fixture};
use super::http::{self, MANIFEST_ACCEPT};
use super::pki::{PASSWORD, TOKEN, TOKEN_NAME, USER, pki};

/// `curl -sS` against the server with the suite's CA; prints the status code last.
fn curl(addr: &str, path: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "-sS".to_string(),
        "--cacert".into(),
        p(&pki().ca).into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code} %header{www-authenticate}".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(format!("https://{addr}{path}"));
    run_program("curl", args)
}

#[test]
fn serve_over_tls_lets_only_its_users_read_and_logs_every_request() {
    let ctx = TestContext::new();
    let store = import_fixture(&ctx, "store");
    let multi = &ctx.images().multi;
    let server = ctx.serve_secure(&store);
    let addr = server.addr.as_str();
    assert!(
        server.stderr().contains("listening on https://"),
        "{}",
        server.stderr()
    );

    // Without credentials: 401 with a Basic challenge; /healthz is open to probes.
    let out = curl(addr, "/v2/", &[]);
    out.assert_success();
    assert_eq!(
        out.stdout, "401 Basic realm=\"ferry\", charset=\"UTF-8\"",
        "{out:?}"
    );
    for path in ["/simple/", "/conda/", "/api/models/x/y"] {
        let out = curl(addr, path, &[]);
        assert!(out.stdout.starts_with("401 Basic"), "{path}: {out:?}");
    }
    assert_eq!(curl(addr, "/healthz", &[]).stdout.trim(), "200", "healthz");

    // The htpasswd user, the token as Bearer and as a Basic password.
    let user = format!("{USER}:{PASSWORD}");
    let token_user = format!("{TOKEN_NAME}:{TOKEN}");
    let bearer = format!("Authorization: Bearer {TOKEN}");
    for creds in [
        vec!["-u", user.as_str()],
        vec!["-u", token_user.as_str()],
        vec!["-H", bearer.as_str()],
    ] {
        let out = curl(addr, "/v2/", &creds);
        assert_eq!(out.stdout.trim(), "200", "{creds:?}: {out:?}");
    }
    // Wrong ones: a wrong password, the token under another name, a user's password as
    // a token, a token one character short.
    let wrong_password = format!("{USER}:{PASSWORD}x");
    let token_as_user = format!("{USER}:{TOKEN}");
    let short = format!("Authorization: Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let password_bearer = format!("Authorization: Bearer {PASSWORD}");
    for creds in [
        vec!["-u", wrong_password.as_str()],
        vec!["-u", token_as_user.as_str()],
        vec!["-H", short.as_str()],
        vec!["-H", password_bearer.as_str()],
    ] {
        let out = curl(addr, "/v2/", &creds);
        assert!(out.stdout.starts_with("401 Basic"), "{creds:?}: {out:?}");
    }

    // Without the CA, curl refuses the certificate; plain HTTP to the TLS port gets no
    // answer; the server goes on.
    let out = run_program("curl", ["-sS", &format!("https://{addr}/healthz")]);
    assert_ne!(
        out.code, 0,
        "curl trusted a private CA it was not given: {out:?}"
    );
    if let Ok(r) = http::request(addr, "GET", "/healthz", &[], b"") {
        assert_ne!(
            r.status, 200,
            "plain HTTP was answered on the TLS port: {r:?}"
        );
    }
    assert_eq!(curl(addr, "/healthz", &[]).stdout.trim(), "200");

    // skopeo, with the CA in a cert dir and no switch to skip verification.
    let image = format!("docker://{addr}/e2e/multi:v1");
    let cert_dir = p(&pki().cert_dir);
    let out = run_program(
        "skopeo",
        ["inspect", "--raw", "--cert-dir", cert_dir, &image],
    );
    assert_ne!(out.code, 0, "skopeo read without credentials: {out:?}");
    let out = run_program(
        "skopeo",
        [
            "inspect",
            "--raw",
            "--cert-dir",
            cert_dir,
            "--creds",
            &user,
            &image,
        ],
    );
    out.assert_success();
    assert_eq!(digest_of(out.stdout.as_bytes()), multi.digest);
    let copy = ctx.path("copy");
    run_program(
        "skopeo",
        [
            "copy",
            "--quiet",
            "--all",
            "--src-cert-dir",
            cert_dir,
            "--src-creds",
            &token_user,
            &image,
            &format!("dir:{}", copy.display()),
        ],
    )
    .assert_success();
    multi.assert_copied_to_dir(&copy);

    // A blob read by byte count, then the log: one JSON object per request, with the
    // user, the status and the bytes actually sent.
    let (blob, size) = multi.largest_blob();
    let blob_path = format!("/v2/e2e/multi/blobs/{blob}");
    let out = curl(addr, &blob_path, &["-u", &user]);
    assert_eq!(out.stdout.trim(), "200", "{out:?}");
    let out = curl(addr, &blob_path, &["-u", &user, "-r", "0-9"]);
    assert_eq!(out.stdout.trim(), "206", "{out:?}");
    drop(server);
    let log = std::fs::read_to_string(ctx.path("access.jsonl")).unwrap();
    let entries: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    for e in &entries {
        for key in [
            "time",
            "client",
            "method",
            "path",
            "status",
            "bytes",
            "duration_ms",
        ] {
            assert!(e.get(key).is_some(), "{key} missing from {e}");
        }
        assert!(
            e["client"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{e}"
        );
    }
    let find = |status: u64, user: Option<&str>, path: &str| {
        entries
            .iter()
            .find(|e| e["status"] == status && e["user"].as_str() == user && e["path"] == path)
    };
    let full = find(200, Some(USER), &blob_path).unwrap_or_else(|| panic!("{log}"));
    assert_eq!(full["bytes"], size, "{full}");
    assert_eq!(full["method"], "GET");
    let range = find(206, Some(USER), &blob_path).unwrap_or_else(|| panic!("{log}"));
    assert_eq!(range["bytes"], 10, "{range}");
    assert!(find(401, None, "/v2/").is_some(), "{log}");
    assert!(find(200, Some(TOKEN_NAME), "/v2/").is_some(), "{log}");
    assert!(find(200, None, "/healthz").is_some(), "{log}");
    // The skopeo copy: every blob of the index fetched by the token's user.
    let by_token = entries
        .iter()
        .filter(|e| e["user"] == TOKEN_NAME && e["path"].as_str().unwrap().contains("/blobs/"))
        .count();
    assert!(by_token >= 2, "{log}");
}

#[test]
fn serve_refuses_to_start_with_secrets_it_cannot_trust() {
    let ctx = TestContext::new();
    let store = import_fixture(&ctx, "store");
    let pki = pki();
    use std::os::unix::fs::PermissionsExt as _;
    let copy = |from: &Path, name: &str, mode: u32| {
        let to = ctx.path(name);
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
        to
    };
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--store", p(&store), "--listen"];
        let listen = format!("127.0.0.1:{}", free_port());
        args.push(&listen);
        args.extend(extra);
        ctx.ferry(args)
    };
    let open_key = copy(&pki.key, "open.key", 0o644);
    serve(&["--tls-cert", p(&pki.cert), "--tls-key", p(&open_key)])
        .assert_code(2)
        .assert_stderr_contains("readable by others")
        .assert_stderr_contains("chmod 600");
    // The CA's certificate with the server's key: they do not go together.
    serve(&["--tls-cert", p(&pki.ca), "--tls-key", p(&pki.key)])
        .assert_code(2)
        .assert_stderr_contains("does not go with the certificate");
    let not_pem = ctx.write_spec("not.pem", "hello\n");
    serve(&["--tls-cert", p(&not_pem), "--tls-key", p(&pki.key)])
        .assert_code(2)
        .assert_stderr_contains("no PEM certificate");
    serve(&["--tls-cert", p(&pki.cert)])
        .assert_code(2)
        .assert_stderr_contains("--tls-key");
    let md5 = ctx.write_spec(
        "md5.htpasswd",
        "alice:$apr1$Vd8BqF0c$0Ua4n3r3l5y3Hn1Lw/9pW1\n",
    );
    serve(&["--htpasswd", p(&md5)])
        .assert_code(2)
        .assert_stderr_contains("not a bcrypt hash")
        .assert_stderr_contains("htpasswd -B");
    let open_tokens = copy(&pki.tokens, "open.tokens", 0o644);
    serve(&["--tokens", p(&open_tokens)])
        .assert_code(2)
        .assert_stderr_contains("readable by others");
}

#[test]
fn serve_warns_when_it_serves_beyond_loopback_in_clear_and_takes_docker_style_addresses() {
    let ctx = TestContext::new();
    let store = import_fixture(&ctx, "store");
    let port = free_port();
    let server = ctx.serve_with(&store, &["--listen".into(), format!(":{port}")]);
    assert!(
        server
            .stderr()
            .contains("beyond this machine over plain HTTP to anyone"),
        "{}",
        server.stderr()
    );
    assert!(
        server.stderr().contains(&format!("0.0.0.0:{port}")),
        "{}",
        server.stderr()
    );
    assert_eq!(
        http::get(&format!("127.0.0.1:{port}"), "/healthz").status,
        200
    );
    drop(server);

    let port = free_port();
    let server = ctx.serve_with(&store, &["--listen".into(), format!("localhost:{port}")]);
    assert!(!server.stderr().contains("warning"), "{}", server.stderr());
    assert_eq!(
        http::get(&format!("127.0.0.1:{port}"), "/healthz").status,
        200
    );
    drop(server);

    // With credentials but in clear beyond loopback: the passwords cross in clear.
    let mut args = vec!["--listen".to_string(), format!("0.0.0.0:{}", free_port())];
    args.extend(["--htpasswd".into(), p(&pki().htpasswd).into()]);
    let server = ctx.serve_with(&store, &args);
    assert!(server.stderr().contains("in clear"), "{}", server.stderr());
    drop(server);

    ctx.ferry(["serve", "--store", p(&store), "--listen", "nowhere"])
        .assert_code(2)
        .assert_stderr_contains("no port");
}

/// Two servers over one store answer every request alike (but for `Date`), before and
/// after an import changes the store: replicas behind a load balancer need no shared
/// state but the store.
#[test]
fn serve_replicas_over_one_store_answer_alike() {
    let ctx = TestContext::new();
    let store = import_fixture(&ctx, "store");
    let a = ctx.serve(&store);
    let b = ctx.serve(&store);
    let multi = &ctx.images().multi;
    let (blob, _) = multi.largest_blob();
    let requests = |paths: &[String]| -> Vec<(String, Vec<u8>)> {
        let mut answers = Vec::new();
        for path in paths {
            let one = |addr: &str| {
                let r =
                    http::request(addr, "GET", path, &[("Accept", MANIFEST_ACCEPT)], b"").unwrap();
                let mut headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .filter(|(k, _)| !k.eq_ignore_ascii_case("date"))
                    .map(|(k, v)| (k.to_lowercase(), v.clone()))
                    .collect();
                headers.sort();
                (r.status, headers, r.body)
            };
            let (ra, rb) = (one(&a.addr), one(&b.addr));
            assert_eq!(ra, rb, "the replicas differ on {path}");
            answers.push((path.clone(), ra.2));
        }
        answers
    };
    let paths: Vec<String> = [
        "/v2/".to_string(),
        "/v2/e2e/multi/tags/list".into(),
        "/v2/e2e/multi/manifests/v1".into(),
        format!("/v2/e2e/multi/manifests/{}", multi.digest),
        format!("/v2/e2e/multi/blobs/{blob}"),
        "/v2/e2e/multi/manifests/no-such-tag".into(),
        "/simple/".into(),
        "/conda/".into(),
        "/healthz".into(),
    ]
    .to_vec();
    let before = requests(&paths);
    // A second bundle lands while both serve: both see it.
    let fx = fixtures();
    let demo = ctx.write_spec(
        "demo.toml",
        &format!(
            "name = \"demo\"\n\n[[image]]\nref = \"oci:{}:app/web:1.0\"\nrepository = \"app/web\"\n",
            super::images::demo_layout().display()
        ),
    );
    let bundle = ctx.create_bundle(&demo, "demo.ferry", &fx.key, &[]);
    ctx.ferry([
        "import",
        p(&bundle),
        "--trust",
        p(&fx.public),
        "--store",
        p(&store),
    ])
    .assert_success();
    let mut paths = paths;
    paths.push("/v2/app/web/tags/list".into());
    let after = requests(&paths);
    assert_eq!(
        before[..],
        after[..before.len()],
        "the first bundle's answers changed"
    );
    let tags = String::from_utf8_lossy(&after.last().unwrap().1).into_owned();
    assert!(tags.contains("1.0"), "{tags}");
}

/// A client that connects to the TLS port and never says hello is closed after the idle
/// timeout, and the server goes on answering.
#[test]
fn serve_closes_a_tls_connection_that_never_finishes_its_handshake() {
    use std::io::Read as _;
    use std::time::{Duration, Instant};
    let ctx = TestContext::new();
    let store = import_fixture(&ctx, "store");
    let mut args = pki().serve_args();
    args.extend(["--idle-timeout".into(), "1".into()]);
    let server = ctx.serve_with(&store, &args);
    let mut silent = std::net::TcpStream::connect(&server.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = silent.read(&mut buf).unwrap_or(0);
    assert_eq!(
        n, 0,
        "the server sent something to a client that said nothing"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "a silent TLS client held its connection for {:?}",
        started.elapsed()
    );
    assert_eq!(
        curl(&server.addr, "/healthz", &[]).stdout.trim(),
        "200",
        "{}",
        server.stderr()
    );
}

/// Clients that reset the connection in the middle of a response (RST, as a killed
/// client or a load balancer's health check does), over TLS and in clear: the server
/// never dies of the broken pipe and goes on answering.
#[test]
fn serve_survives_clients_that_reset_mid_response() {
    let ctx = TestContext::new();
    let store = import_fixture(&ctx, "store");
    let (blob, _) = ctx.images().multi.largest_blob();
    let path = format!("/v2/e2e/multi/blobs/{blob}");
    let script = r#"
import socket, ssl, struct, sys
host, port, path, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
auth = sys.argv[5] if len(sys.argv) > 5 else ""
for i in range(40):
    raw = socket.create_connection((host, port))
    s = raw
    if ca != "-":
        s = ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname=host)
    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n"
    s.sendall(head.encode())
    s.recv(1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
print("done")
"#;
    let plain = ctx.serve(&store);
    let secure = ctx.serve_secure(&store);
    let basic = {
        let out = run_program(
            "sh",
            ["-c", &format!("printf %s '{USER}:{PASSWORD}' | base64 -w0")],
        );
        format!("Authorization: Basic {}\r\n", out.stdout.trim())
    };
    for (server, ca, auth) in [
        (&plain, "-".to_string(), String::new()),
        (&secure, p(&pki().ca).to_string(), basic),
    ] {
        let (host, port) = server.addr.split_once(':').unwrap();
        let out = run_program("python3", ["-c", script, host, port, &path, &ca, &auth]);
        out.assert_success();
        let check = if ca == "-" {
            http::get(&server.addr, "/healthz").status.to_string()
        } else {
            curl(&server.addr, "/healthz", &[])
                .stdout
                .trim()
                .to_string()
        };
        assert_eq!(check, "200", "the server died: {}", server.stderr());
    }
}
