//! Registry credentials come from the Docker/containers auth files, for pulling from a
//! source and for pushing on import; without them the error says how to fix it.

use super::context::{TestContext, p, run_program};
use super::images::demo_layout;
use super::registry::Registry;

#[test]
fn credentials_come_from_the_auth_file() {
    let ctx = TestContext::new();
    let htpasswd = ctx.path("htpasswd");
    let hashed = run_program("htpasswd", ["-Bbn", "alice", "s3cret"]);
    hashed.assert_success();
    std::fs::write(&htpasswd, hashed.stdout.trim()).unwrap();
    // Its own root: the watchdog removes it when the test process ends.
    let root = tempfile::Builder::new()
        .prefix("ferry-e2e-auth-")
        .tempdir()
        .unwrap()
        .keep();
    let registry = Registry::start_with_auth(&root, &htpasswd);
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
    let token = run_program("sh", ["-c", "printf alice:s3cret | base64"])
        .stdout
        .trim()
        .to_string();
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
