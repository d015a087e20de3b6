//! The README's demo: the checked-in demo layout carried in a bundle, imported into a
//! store, served, and pulled by an unmodified podman (both platforms).

use std::path::Path;
use std::sync::Mutex;

use super::context::{Output, TestContext, p, run_program};
use super::fixtures::fixtures;
use super::images::{DEMO_AMD64, DEMO_ARM64, DEMO_INDEX, demo_layout};

/// podman is slow and keeps state: one podman test at a time.
static PODMAN: Mutex<()> = Mutex::new(());

/// podman with its own storage under `dir`, so nothing is left on the machine.
fn podman(dir: &Path, args: &[&str]) -> Output {
    let root = dir.join("podman-root");
    let runroot = dir.join("podman-run");
    let mut all = vec![
        "--root",
        p(&root),
        "--runroot",
        p(&runroot),
        "--storage-driver",
        "vfs",
    ];
    all.extend_from_slice(args);
    run_program("podman", all)
}

/// The checked-in demo layout, bundled and imported into a fresh store `ctx/store`.
fn demo_store(ctx: &TestContext) -> std::path::PathBuf {
    let fx = fixtures();
    let spec = ctx.write_spec(
        "demo.toml",
        &format!(
            "name = \"demo\"\n\n[[image]]\nref = \"oci:{}:app/web:1.0\"\nrepository = \"app/web\"\n",
            demo_layout().display()
        ),
    );
    let bundle = ctx.create_bundle(&spec, "demo.ferry", &fx.key, &[]);
    let store = ctx.path("store");
    ctx.ferry([
        "import",
        p(&bundle),
        "--trust",
        p(&fx.public),
        "--store",
        p(&store),
    ])
    .assert_success();
    store
}

#[test]
fn podman_pulls_the_demo_image_from_ferry_serve() {
    let _guard = PODMAN.lock().unwrap_or_else(|e| e.into_inner());
    let ctx = TestContext::new();
    let store = demo_store(&ctx);
    let server = ctx.serve(&store);
    let image = format!("{}/app/web:1.0", server.addr);

    for (arch_args, arch, manifest) in [
        (&[][..], "amd64", DEMO_AMD64),
        (
            &["--arch", "arm64", "--variant", "v8"][..],
            "arm64",
            DEMO_ARM64,
        ),
    ] {
        let mut args = vec!["pull", "--quiet", "--tls-verify=false"];
        args.extend_from_slice(arch_args);
        args.push(&image);
        let pulled = podman(ctx.dir.path(), &args);
        assert_eq!(
            pulled.code,
            0,
            "{pulled:?}\nserver stderr:\n{}",
            server.stderr()
        );

        let inspect = podman(
            ctx.dir.path(),
            &[
                "image",
                "inspect",
                "--format",
                "{{.Digest}} {{.Architecture}} {{json .RepoDigests}}",
                &image,
            ],
        );
        inspect.assert_success();
        let line = inspect.stdout.trim();
        let mut fields = line.splitn(3, ' ');
        assert_eq!(
            fields.next(),
            Some(DEMO_INDEX),
            "podman image digest: {line}"
        );
        assert_eq!(
            fields.next(),
            Some(arch),
            "podman image architecture: {line}"
        );
        assert!(
            fields.next().unwrap_or_default().contains(manifest),
            "repo digests lack {manifest}: {line}"
        );

        podman(ctx.dir.path(), &["rmi", "--force", &image]).assert_success();
    }
    drop(server);
}

/// podman over TLS from a private CA (`--cert-dir`, no `--tls-verify=false`) with the
/// htpasswd user's credentials; without them the pull is refused.
#[test]
fn podman_pulls_from_ferry_serve_over_tls_with_credentials() {
    use super::pki::{PASSWORD, USER, pki};
    let _guard = PODMAN.lock().unwrap_or_else(|e| e.into_inner());
    let ctx = TestContext::new();
    let store = demo_store(&ctx);
    let server = ctx.serve_secure(&store);
    let image = format!("{}/app/web:1.0", server.addr);
    let cert_dir = p(&pki().cert_dir);
    let refused = podman(
        ctx.dir.path(),
        &["pull", "--quiet", "--cert-dir", cert_dir, &image],
    );
    assert_ne!(
        refused.code, 0,
        "podman pulled without credentials: {refused:?}"
    );
    let creds = format!("{USER}:{PASSWORD}");
    let pulled = podman(
        ctx.dir.path(),
        &[
            "pull",
            "--quiet",
            "--cert-dir",
            cert_dir,
            "--creds",
            &creds,
            &image,
        ],
    );
    assert_eq!(
        pulled.code,
        0,
        "{pulled:?}\nserver stderr:\n{}",
        server.stderr()
    );
    let inspect = podman(
        ctx.dir.path(),
        &["image", "inspect", "--format", "{{.Digest}}", &image],
    );
    inspect.assert_success();
    assert_eq!(inspect.stdout.trim(), DEMO_INDEX);
    podman(ctx.dir.path(), &["rmi", "--force", &image]).assert_success();
}
