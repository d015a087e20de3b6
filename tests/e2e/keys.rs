//! `ferry key generate`: minisign-format keys, the secret one private to its owner.

use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;

use std::process::Command;

use super::context::{TestContext, p, run};

fn key_line(path: &std::path::Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let comment = lines.next().unwrap_or_default();
    assert!(
        comment.starts_with("untrusted comment:"),
        "{} does not start with a minisign comment line: {text:?}",
        path.display()
    );
    let b64 = lines.next().unwrap_or_default().trim();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_else(|e| {
            panic!(
                "{}: second line is not base64 ({e}): {text:?}",
                path.display()
            )
        })
}

#[test]
fn key_generate_writes_minisign_keys_with_a_private_secret_key() {
    let ctx = TestContext::new();
    let (key, public) = ctx.generate_key("team");
    assert!(key.is_file() && public.is_file());

    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "secret key mode is {mode:o}");

    // minisign's formats. Public: "Ed" + key id (8) + Ed25519 public key (32).
    // Secret: "Ed" + kdf "\0\0" (no password) + "B2" + salt (32) + opslimit (8) +
    // memlimit (8) + key id (8) + Ed25519 secret key (64) + BLAKE2b checksum (32).
    let pk = key_line(&public);
    assert_eq!(pk.len(), 42, "public key blob length");
    assert_eq!(&pk[..2], b"Ed");
    let sk = key_line(&key);
    assert_eq!(sk.len(), 158, "secret key blob length");
    assert_eq!(&sk[..6], b"Ed\0\0B2", "secret key algorithms");
    assert_eq!(&sk[54..62], &pk[2..10], "secret and public key ids differ");

    // The real minisign signs with the secret key and verifies with the public one.
    let msg = ctx.path("message.txt");
    std::fs::write(&msg, b"carried across\n").unwrap();
    let sig = ctx.path("message.txt.minisig");
    let mut sign = Command::new("minisign");
    sign.arg("-S")
        .arg("-s")
        .arg(&key)
        .arg("-m")
        .arg(&msg)
        .arg("-x")
        .arg(&sig);
    run(sign).assert_success();
    let mut verify = Command::new("minisign");
    verify
        .arg("-V")
        .arg("-p")
        .arg(&public)
        .arg("-m")
        .arg(&msg)
        .arg("-x")
        .arg(&sig);
    run(verify).assert_success();
}

#[test]
fn a_secret_key_readable_by_others_is_refused() {
    let ctx = TestContext::new();
    let (key, _) = ctx.generate_key("team");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!(
            "name = \"e2e\"\n[[image]]\nref = \"{}\"\n",
            ctx.images().docker.reference
        ),
    );
    let bundle = ctx.path("out.ferry");
    let out = ctx.ferry([
        "bundle",
        "create",
        p(&spec),
        "-o",
        p(&bundle),
        "--key",
        p(&key),
    ]);
    out.assert_code(1)
        .assert_stderr_contains("error:")
        .assert_stderr_contains("readable by others");
    assert!(!bundle.exists(), "a bundle was written with a refused key");
}
