//! Registry credentials come from the Docker/containers auth files, for pulling from a
//! source and for pushing on import; without them the error says how to fix it.

use super::context::{TestContext, p, run_program};
use super::images::demo_layout;
use super::registry::Registry;

#[test]
fn credentials_come_from_the_auth_file() {
    let ctx = TestContext::new();
    let htpasswd = password_file(&ctx, "alice", "s3cret");
    let registry = Registry::start_with_auth(&own_root("ferry-e2e-auth-"), &htpasswd);
    let host = &registry.host;
    run_program(
        "skopeo",
        [
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:s3cret",
            &format!("oci:{}:app/web:1.0", demo_layout().display()),
            &format!("docker://{host}/private/web:1.0"),
        ],
    )
    .assert_success();

    let spec = ctx.write_spec(
        "ferry.toml",
        &format!("name = \"auth\"\n[[image]]\nref = \"{host}/private/web:1.0\"\n"),
    );
    let store = ctx.path("store");

    // No credentials: refused by the registry, and the hint names where they come from.
    ctx.ferry(["pull", p(&spec), "--store", p(&store)])
        .assert_code(1)
        .assert_stderr_contains("auth files");

    // The containers auth file, as `podman login` writes it.
    let auth_file = ctx.path("auth.json");
    let token = base64_of("alice:s3cret");
    std::fs::write(
        &auth_file,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{token}"}}}}}}"#),
    )
    .unwrap();
    let with_auth = |args: &[&str]| {
        let mut cmd = ctx.ferry_command();
        cmd.args(args).env("REGISTRY_AUTH_FILE", &auth_file);
        super::context::run(cmd)
    };
    let (key, public) = ctx.generate_key("team");
    let bundle = ctx.path("auth.ferry");
    with_auth(&[
        "bundle",
        "create",
        p(&spec),
        "-o",
        p(&bundle),
        "--key",
        p(&key),
        "--store",
        p(&store),
    ])
    .assert_success();
    with_auth(&[
        "import",
        p(&bundle),
        "--trust",
        p(&public),
        "--to",
        &format!("{host}/mirror"),
    ])
    .assert_success();
    let pushed = run_program(
        "skopeo",
        [
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            "alice:s3cret",
            &format!("docker://{host}/mirror/private/web:1.0"),
        ],
    );
    pushed.assert_success();
    let source = std::fs::read_to_string(demo_layout().join("index.json")).unwrap();
    let want: serde_json::Value = serde_json::from_str(&source).unwrap();
    assert_eq!(
        super::context::digest_of(pushed.stdout.as_bytes()),
        want["manifests"][0]["digest"].as_str().unwrap()
    );
}

/// A docker-registry that serves TLS from a private CA and wants a password: with
/// `--ca-cert` and `--authfile` on the command line, pull (through `bundle create`) and
/// import work with nothing in the environment; without the CA the certificate is
/// refused, with a wrong password the registry's refusal is reported, and a bad
/// `--ca-cert` or `--authfile` is exit 2 before anything is fetched.
#[test]
fn a_tls_registry_with_a_private_ca_and_an_authfile_on_the_command_line() {
    use super::pki::pki;
    let ctx = TestContext::new();
    let htpasswd = password_file(&ctx, "bob", "hunter22");
    let registry = Registry::start_with_tls_and_auth(&own_root("ferry-e2e-tls-"), &htpasswd);
    let host = &registry.host;
    let cert_dir = p(&pki().cert_dir);
    run_program(
        "skopeo",
        [
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--dest-cert-dir",
            cert_dir,
            "--dest-creds",
            "bob:hunter22",
            &format!("oci:{}:app/web:1.0", demo_layout().display()),
            &format!("docker://{host}/private/web:1.0"),
        ],
    )
    .assert_success();

    let authfile = |name: &str, creds: &str| {
        let path = ctx.path(name);
        let token = base64_of(creds);
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"{host}":{{"auth":"{token}"}}}}}}"#),
        )
        .unwrap();
        path
    };
    let good = authfile("good.json", "bob:hunter22");
    let wrong = authfile("wrong.json", "bob:hunter2");
    let ca = p(&pki().ca);
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!("name = \"tls\"\n[[image]]\nref = \"{host}/private/web:1.0\"\n"),
    );
    let store = ctx.path("store");
    let (key, public) = ctx.generate_key("team");
    let bundle = ctx.path("tls.ferry");
    let create = |extra: &[&str]| {
        let mut args = vec![
            "bundle",
            "create",
            p(&spec),
            "-o",
            p(&bundle),
            "--key",
            p(&key),
            "--store",
            p(&store),
        ];
        args.extend(extra);
        ctx.ferry(args)
    };

    // Without the CA: the certificate is not trusted, and the hint names --ca-cert.
    create(&["--authfile", p(&good)])
        .assert_code(1)
        .assert_stderr_contains("--ca-cert");
    // A wrong password: refused, and the hint names --authfile.
    create(&["--ca-cert", ca, "--authfile", p(&wrong)])
        .assert_code(1)
        .assert_stderr_contains("--authfile");
    // Bad files are usage errors that name them.
    let not_pem = ctx.write_spec("not.pem", "not a certificate\n");
    create(&["--ca-cert", p(&not_pem), "--authfile", p(&good)])
        .assert_code(2)
        .assert_stderr_contains("not.pem")
        .assert_stderr_contains("not a PEM certificate");
    create(&["--ca-cert", ca, "--authfile", p(&ctx.path("missing.json"))])
        .assert_code(2)
        .assert_stderr_contains("missing.json");
    assert!(!bundle.exists());

    create(&["--ca-cert", ca, "--authfile", p(&good)]).assert_success();
    ctx.ferry([
        "import",
        p(&bundle),
        "--trust",
        p(&public),
        "--to",
        &format!("{host}/mirror"),
        "--ca-cert",
        ca,
        "--authfile",
        p(&good),
    ])
    .assert_success();
    let pushed = run_program(
        "skopeo",
        [
            "inspect",
            "--raw",
            "--cert-dir",
            cert_dir,
            "--creds",
            "bob:hunter22",
            &format!("docker://{host}/mirror/private/web:1.0"),
        ],
    );
    pushed.assert_success();
    let source = std::fs::read_to_string(demo_layout().join("index.json")).unwrap();
    let want: serde_json::Value = serde_json::from_str(&source).unwrap();
    assert_eq!(
        super::context::digest_of(pushed.stdout.as_bytes()),
        want["manifests"][0]["digest"].as_str().unwrap()
    );
}

/// An htpasswd file (bcrypt, by Apache's `htpasswd -B`) with one user.
fn password_file(ctx: &TestContext, user: &str, password: &str) -> std::path::PathBuf {
    let htpasswd = ctx.path("htpasswd");
    let hashed = run_program("htpasswd", ["-Bbn", user, password]);
    hashed.assert_success();
    std::fs::write(&htpasswd, hashed.stdout.trim()).unwrap();
    htpasswd
}

/// A registry's own root: the watchdog removes it when the test process ends.
fn own_root(prefix: &str) -> std::path::PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap()
        .keep()
}

fn base64_of(text: &str) -> String {
    let out = run_program("sh", ["-c", &format!("printf %s '{text}' | base64")]);
    out.assert_success();
    out.stdout.trim().to_string()
}
