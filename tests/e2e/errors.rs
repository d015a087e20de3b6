//! Failing closed with a reason: bad specs and bad usage are exit 2, an unreachable
//! registry is exit 1 with an `error:` and a `hint:`.

use super::context::{TestContext, p};

#[test]
fn bad_specs_are_usage_errors() {
    let ctx = TestContext::new();
    let host = ctx.host();
    let (key, _) = ctx.generate_key("team");
    let cases = [
        ("not-toml", "name = \"e2e\"\n[[image]\nref = \n".to_string()),
        (
            "no-name",
            format!("[[image]]\nref = \"{host}/e2e/multi:v1\"\n"),
        ),
        (
            "bad-name",
            format!("name = \"has spaces\"\n[[image]]\nref = \"{host}/e2e/multi:v1\"\n"),
        ),
        (
            "no-ref",
            "name = \"e2e\"\n[[image]]\nplatforms = [\"linux/amd64\"]\n".to_string(),
        ),
        (
            "bad-ref",
            "name = \"e2e\"\n[[image]]\nref = \"UPPER CASE/not a ref\"\n".to_string(),
        ),
        (
            "bad-platform",
            format!(
                "name = \"e2e\"\n[[image]]\nref = \"{host}/e2e/multi:v1\"\nplatforms = [\"linux\"]\n"
            ),
        ),
        (
            "unknown-key",
            format!("name = \"e2e\"\n[[image]]\nref = \"{host}/e2e/multi:v1\"\nplatfroms = []\n"),
        ),
        ("nothing", "name = \"e2e\"\n".to_string()),
    ];
    for (name, text) in cases {
        let spec = ctx.write_spec(&format!("{name}.toml"), &text);
        let store = ctx.path(format!("{name}-store"));
        let out = ctx.ferry(["pull", p(&spec), "--store", p(&store)]);
        out.assert_code(2).assert_stderr_contains("error:");
        let bundle = ctx.path(format!("{name}.ferry"));
        let out = ctx.ferry([
            "bundle",
            "create",
            p(&spec),
            "-o",
            p(&bundle),
            "--key",
            p(&key),
        ]);
        out.assert_code(2).assert_stderr_contains("error:");
        assert!(
            !bundle.exists(),
            "{name}: a bundle was written from a bad spec"
        );
    }
}

/// A mistake in one entry names the file and the line of that entry, and an unknown
/// section names the sections there are.
#[test]
fn spec_errors_name_the_file_and_line() {
    let ctx = TestContext::new();
    let host = ctx.host();
    let text = format!(
        "name = \"e2e\"\n\n[[image]]\nref = \"{host}/e2e/multi:v1\"\n\n[[image]]\nref = \"{host}/e2e/multi:v1\"\nplatforms = [\"linux\"]\n"
    );
    let spec = ctx.write_spec("line.toml", &text);
    let store = ctx.path("line-store");
    ctx.ferry(["pull", p(&spec), "--store", p(&store)])
        .assert_code(2)
        .assert_stderr_contains("line.toml:6: [[image]] #2: platform `linux`");
    let spec = ctx.write_spec("npm.toml", "name = \"e2e\"\n[[npm]]\nname = \"left-pad\"\n");
    ctx.ferry(["pull", p(&spec), "--store", p(&store)])
        .assert_code(2)
        .assert_stderr_contains("npm.toml:2: unknown key `npm`")
        .assert_stderr_contains("[[python]]");
    assert!(!store.exists(), "a bad spec created the store");
}

#[test]
fn bad_usage_is_exit_2() {
    let ctx = TestContext::new();
    ctx.ferry(["frobnicate"]).assert_code(2);
    ctx.ferry(["bundle", "create"]).assert_code(2);
    ctx.ferry(["import", "x.ferry", "--trust", "x.pub"])
        .assert_code(2);
}

#[test]
fn unreachable_registry_is_an_error_with_a_hint() {
    let ctx = TestContext::new();
    let spec = ctx.write_spec(
        "ferry.toml",
        "name = \"e2e\"\n\n[[image]]\nref = \"127.0.0.1:1/e2e/multi:v1\"\n",
    );
    let store = ctx.path("store");
    let out = ctx.ferry(["pull", p(&spec), "--store", p(&store)]);
    out.assert_code(1)
        .assert_stderr_contains("error:")
        .assert_stderr_contains("hint:");
    assert!(
        out.stderr.contains("127.0.0.1:1"),
        "the error should name the registry: {out:?}"
    );
    // A loopback registry is spoken to in clear already: --plain-http is no advice.
    assert!(
        !out.stderr.contains("--plain-http"),
        "the hint suggests --plain-http for a loopback registry: {out:?}"
    );
}

/// What a new user gets wrong first, and the error that says how to fix it.
#[test]
fn first_mistakes_get_errors_that_name_the_fix() {
    use super::fixtures::fixtures;
    let ctx = TestContext::new();
    let fx = fixtures();

    // A directory or a file that is no bundle: usage (2), "not a ferry bundle".
    let dir = ctx.path("a-dir");
    std::fs::create_dir(&dir).unwrap();
    let text = ctx.write_spec("notes.ferry", "these are my notes\n");
    let store = ctx.path("store");
    for bundle in [&dir, &text, &fx.public] {
        for args in [
            vec!["bundle", "verify", p(bundle), "--trust", p(&fx.public)],
            vec!["bundle", "inspect", p(bundle)],
            vec![
                "import",
                p(bundle),
                "--trust",
                p(&fx.public),
                "--store",
                p(&store),
            ],
        ] {
            ctx.ferry(&args)
                .assert_code(2)
                .assert_stderr_contains("not a ferry bundle")
                .assert_stderr_contains("hint:");
        }
    }
    assert!(!store.exists(), "a refused import created the store");
    // A bundle cut short is still damage (3), not a usage error.
    let bytes = std::fs::read(&fx.bundle).unwrap();
    let cut = ctx.path("cut.ferry");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    ctx.ferry(["bundle", "verify", p(&cut), "--trust", p(&fx.public)])
        .assert_code(3);

    // import without a target names both kinds.
    let out = ctx.ferry(["import", p(&fx.bundle), "--trust", p(&fx.public)]);
    out.assert_code(2)
        .assert_stderr_contains("--to")
        .assert_stderr_contains("--store");

    // --store at a file names it.
    let file_store = ctx.write_spec("store.txt", "");
    ctx.ferry([
        "import",
        p(&fx.bundle),
        "--trust",
        p(&fx.public),
        "--store",
        p(&file_store),
    ])
    .assert_code(2)
    .assert_stderr_contains("store.txt");
    ctx.ferry(["serve", "--store", p(&file_store)])
        .assert_code(2)
        .assert_stderr_contains("store.txt");

    // A threshold the signatures do not reach says how many there are.
    let (_, other) = ctx.generate_key("other");
    ctx.ferry([
        "bundle",
        "verify",
        p(&fx.bundle),
        "--trust",
        p(&fx.public),
        "--trust",
        p(&other),
        "--threshold",
        "2",
    ])
    .assert_code(3)
    .assert_stderr_contains("1 of 2 required signatures")
    .assert_stderr_contains("ferry bundle sign");

    // `key generate NAME.key` makes NAME.key and NAME.pub.
    ctx.ferry(["key", "generate", "site.key"]).assert_success();
    assert!(ctx.path("site.key").is_file() && ctx.path("site.pub").is_file());
    assert!(!ctx.path("site.key.key").exists());
    let shown = ctx.ferry(["key", "show", "site.pub"]);
    shown.assert_success();
    assert!(shown.stdout.contains("key id"), "{shown:?}");

    // A mistake inside an entry: the hint lists that table's keys.
    let spec = ctx.write_spec(
        "typo.toml",
        "name = \"e2e\"\n[[model]]\nrepo = \"org/x\"\nrevison = \"main\"\n",
    );
    ctx.ferry(["pull", p(&spec), "--store", p(&store)])
        .assert_code(2)
        .assert_stderr_contains("an entry of [[model]] takes the keys `repo`, `revision`");
}

/// `bundle create` does not replace a bundle without --force, and says so before it
/// pulls anything.
#[test]
fn bundle_create_keeps_an_existing_bundle_unless_forced() {
    use super::images::demo_layout;
    let ctx = TestContext::new();
    let (key, public) = ctx.generate_key("team");
    let spec = ctx.write_spec(
        "demo.toml",
        &format!(
            "name = \"demo\"\n[[image]]\nref = \"oci:{}:app/web:1.0\"\n",
            demo_layout().display()
        ),
    );
    let bundle = ctx.create_bundle(&spec, "demo.ferry", &key, &[]);
    let before = std::fs::read(&bundle).unwrap();
    let store = ctx.path("fresh-store");
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "bundle".to_string(),
            "create".into(),
            p(&spec).into(),
            "-o".into(),
            p(&bundle).into(),
            "--key".into(),
            p(&key).into(),
            "--store".into(),
            p(&store).into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    ctx.ferry(args(&[]))
        .assert_code(2)
        .assert_stderr_contains("already exists")
        .assert_stderr_contains("--force");
    assert_eq!(
        std::fs::read(&bundle).unwrap(),
        before,
        "the bundle changed"
    );
    assert!(!store.exists(), "it pulled before refusing");
    ctx.ferry(args(&["--force"])).assert_success();
    ctx.ferry(["bundle", "verify", p(&bundle), "--trust", p(&public)])
        .assert_success();
    // A split bundle of that name counts too.
    let split = ctx.path("split.ferry");
    let mut a = args(&["--split", "1MB"]);
    a[4] = p(&split).into();
    ctx.ferry(&a).assert_success();
    ctx.ferry(&a)
        .assert_code(2)
        .assert_stderr_contains("split.ferry.");
}

/// `bundle create` downloads an image's layers as soon as that image is resolved, while
/// the next ones still are. A later image that cannot be resolved stops those
/// downloads: the create fails naming it, writes no bundle (nor a partial one), and the
/// layers that did arrive serve the next create from the same store.
#[test]
fn bundle_create_stops_its_downloads_when_a_later_image_fails() {
    let ctx = TestContext::new();
    let layout = ctx.path("layout");
    super::images::mkimage(
        &layout,
        "v1",
        &[
            "--layers",
            "12",
            "--layer-size",
            "2097152",
            "--seed",
            "overlap",
        ],
    );
    let (key, public) = ctx.generate_key("overlap");
    let image = |tag: &str| {
        format!(
            "[[image]]\nref = \"oci:{}:{tag}\"\nrepository = \"overlap/app\"\n",
            layout.display()
        )
    };
    let bad = ctx.write_spec(
        "bad.toml",
        &format!(
            "name = \"overlap\"\n{}{}",
            image("v1"),
            image("no-such-tag")
        ),
    );
    let good = ctx.write_spec("good.toml", &format!("name = \"overlap\"\n{}", image("v1")));
    let bundle = ctx.path("overlap.ferry");
    let store = ctx.path("store");
    let create = |spec: &std::path::Path| {
        ctx.ferry([
            "bundle",
            "create",
            p(spec),
            "-o",
            p(&bundle),
            "--key",
            p(&key),
            "--store",
            p(&store),
        ])
    };
    let out = create(&bad);
    assert!(out.code != 0, "{out:?}");
    out.assert_stderr_contains("no-such-tag");
    let left: Vec<_> = std::fs::read_dir(ctx.path(""))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("overlap.ferry"))
        .collect();
    assert!(left.is_empty(), "a failed create left {left:?}");

    create(&good).assert_success();
    ctx.ferry(["bundle", "verify", p(&bundle), "--trust", p(&public)])
        .assert_success();
}
