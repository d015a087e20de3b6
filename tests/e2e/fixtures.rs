//! Things several tests start from, made once per test process with `ferry` itself:
//! a signing key, a second (untrusted) key, the standard bundle, and a store that
//! already holds an import (the "before" of every hostile import).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::context::{ferry_command_in, run, shared};

/// The series of the standard bundle.
pub const SERIES: &str = "e2e";

pub struct Fixtures {
    /// Where the fixtures were made (HOME of the ferry runs that made them).
    pub dir: PathBuf,
    pub key: PathBuf,
    pub public: PathBuf,
    /// A key nobody trusts.
    pub other_public: PathBuf,
    /// `e2e/multi:v1` (+ its `.sig`), `e2e/docker:v1`, and `e2e/other:v1` renamed to
    /// `renamed/other:v1`; series `e2e`, sequence 1.
    pub bundle: PathBuf,
    /// A store holding `e2e/docker:v1`, imported from a bundle of series `seed`.
    pub seeded_store: PathBuf,
}

/// The standard spec for a registry at `host`.
pub fn standard_spec(host: &str) -> String {
    format!(
        r#"name = "{SERIES}"

[[image]]
ref = "{host}/e2e/multi:v1"

[[image]]
ref = "{host}/e2e/docker:v1"

[[image]]
ref = "{host}/e2e/other:v1"
repository = "renamed/other"
"#
    )
}

/// The fixture bundle imported into a fresh store `ctx/NAME`; returns the store.
pub fn import_fixture(ctx: &super::context::TestContext, name: &str) -> std::path::PathBuf {
    let fx = fixtures();
    let store = ctx.path(name);
    ctx.ferry([
        "import",
        super::context::p(&fx.bundle),
        "--trust",
        super::context::p(&fx.public),
        "--store",
        super::context::p(&store),
    ])
    .assert_success();
    store
}

static FIXTURES: OnceLock<Fixtures> = OnceLock::new();

pub fn fixtures() -> &'static Fixtures {
    FIXTURES.get_or_init(make)
}

fn make() -> Fixtures {
    let shared = shared();
    let dir = shared.root.join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let ferry = |args: &[&str]| {
        let mut cmd = ferry_command_in(&dir);
        cmd.args(args);
        let out = run(cmd);
        out.assert_success();
    };
    ferry(&["key", "generate", "team"]);
    ferry(&["key", "generate", "other"]);

    let spec = dir.join("ferry.toml");
    std::fs::write(&spec, standard_spec(&shared.registry.host)).unwrap();
    let bundle = dir.join("standard.ferry");
    ferry(&[
        "bundle",
        "create",
        s(&spec),
        "-o",
        s(&bundle),
        "--key",
        "team.key",
        "--sequence",
        "1",
    ]);

    let seed_spec = dir.join("seed.toml");
    std::fs::write(
        &seed_spec,
        format!(
            "name = \"seed\"\n\n[[image]]\nref = \"{}/e2e/docker:v1\"\n",
            shared.registry.host
        ),
    )
    .unwrap();
    let seed_bundle = dir.join("seed.ferry");
    ferry(&[
        "bundle",
        "create",
        s(&seed_spec),
        "-o",
        s(&seed_bundle),
        "--key",
        "team.key",
    ]);
    let seeded_store = dir.join("seeded-store");
    ferry(&[
        "import",
        s(&seed_bundle),
        "--trust",
        "team.pub",
        "--store",
        s(&seeded_store),
    ]);

    Fixtures {
        key: dir.join("team.key"),
        public: dir.join("team.pub"),
        other_public: dir.join("other.pub"),
        bundle,
        seeded_store,
        dir,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
