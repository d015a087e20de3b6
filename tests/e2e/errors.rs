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
}
