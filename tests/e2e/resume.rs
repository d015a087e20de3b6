//! Resumable pulls: a second run fetches only what the store lacks, and an interrupted
//! download continues from the bytes it left in `.ferry/partial/` (a damaged leftover is
//! fetched again from zero rather than trusted).

use super::context::{TestContext, p, sha256_hex};
use super::images::read_blob;

#[test]
fn an_interrupted_download_resumes_and_a_damaged_one_restarts() {
    let ctx = TestContext::new();
    let images = ctx.images();
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!(
            "name = \"resume\"\n[[image]]\nref = \"{}\"\n",
            images.multi.reference
        ),
    );
    let store = ctx.path("store");
    ctx.ferry(["pull", p(&spec), "--store", p(&store)])
        .assert_success();

    let (digest, size) = images.multi.largest_blob();
    let hex = &digest[7..];
    let blob = store.join("blobs/sha256").join(hex);
    let partial = store.join(".ferry/partial").join(hex);
    let content = read_blob(&images.layout, &digest);
    assert_eq!(content.len() as u64, size);

    for (case, leftover) in [
        ("first half", content[..content.len() / 2].to_vec()),
        ("damaged half", vec![0x5a; content.len() / 2]),
    ] {
        std::fs::remove_file(&blob).unwrap();
        std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
        std::fs::write(&partial, &leftover).unwrap();
        ctx.ferry(["pull", p(&spec), "--store", p(&store)])
            .assert_success();
        let got = std::fs::read(&blob).unwrap_or_else(|e| panic!("{case}: blob not restored: {e}"));
        assert_eq!(
            sha256_hex(&got),
            hex,
            "{case}: restored blob has the wrong content"
        );
        assert!(
            !partial.exists(),
            "{case}: the partial download was left behind"
        );
    }
}

#[test]
fn quiet_prints_nothing() {
    let ctx = TestContext::new();
    let images = ctx.images();
    let (key, public) = ctx.generate_key("team");
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!(
            "name = \"quiet\"\n[[image]]\nref = \"{}\"\n",
            images.multi.reference
        ),
    );
    let bundle = ctx.path("q.ferry");
    for args in [
        vec![
            "--quiet",
            "bundle",
            "create",
            p(&spec),
            "-o",
            p(&bundle),
            "--key",
            p(&key),
            "--store",
            p(&ctx.path("st")),
        ],
        vec![
            "--quiet",
            "bundle",
            "verify",
            p(&bundle),
            "--trust",
            p(&public),
        ],
        vec![
            "-q",
            "import",
            p(&bundle),
            "--trust",
            p(&public),
            "--store",
            p(&ctx.path("srv")),
        ],
    ] {
        let out = ctx.ferry(args);
        out.assert_success();
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("", ""),
            "{}",
            out.command
        );
    }
}
