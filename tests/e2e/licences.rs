//! Licences per artifact, end to end: what each upstream declares (core metadata of
//! wheels from a loopback index, repodata and `info/about.json` of conda packages from a
//! loopback channel, a model card from the hub stand-in, annotations and config labels
//! of an OCI layout) is recorded in the signed manifest, verbatim and, where it is one,
//! as an SPDX expression; hostile declarations are dropped with a warning and the pull
//! goes on; a bundle forged to carry one is refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::context::{Output, TestContext, p, parse_json, repo_root, run};
use super::tamper::Bundle;

/// A licence as the manifest lists it: (declared, spdx, source).
type Lic = (String, Option<String>, String);

fn lic(declared: &str, spdx: Option<&str>, source: &str) -> Lic {
    (declared.into(), spdx.map(String::from), source.into())
}

/// The licences of an artifact of `bundle inspect --json`.
fn licences_of(artifact: &Value) -> Vec<Lic> {
    artifact["licenses"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|l| {
                    (
                        l["declared"].as_str().unwrap().to_string(),
                        l["spdx"].as_str().map(String::from),
                        l["source"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `bundle inspect --json` and the human form, both of which must succeed.
fn inspect(ctx: &TestContext, bundle: &Path) -> (Value, String) {
    let out = ctx.ferry(["bundle", "inspect", p(bundle), "--json"]);
    out.assert_success();
    let json = parse_json(&out);
    let human = ctx.ferry(["bundle", "inspect", p(bundle)]);
    human.assert_success();
    (json, human.stdout.clone())
}

/// The artifact of `kind` whose repository is `repository`.
fn artifact<'a>(manifest: &'a Value, kind: &str, repository: &str) -> &'a Value {
    manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == kind && a["repository"] == repository)
        .unwrap_or_else(|| panic!("no {kind} artifact {repository}: {manifest:#}"))
}

/// `bundle create` with `env` set and variables of `prefixes` removed; must succeed.
fn create(ctx: &TestContext, spec: &Path, key: &Path, prefixes: &[&str]) -> (PathBuf, Output) {
    let bundle = ctx.path("lic.ferry");
    let mut cmd = ctx.ferry_command();
    super::context::isolate(
        &mut cmd,
        ctx.dir.path(),
        prefixes,
        &[("PIP_CONFIG_FILE", "/dev/null")],
    );
    cmd.args([
        "bundle",
        "create",
        p(spec),
        "-o",
        p(&bundle),
        "--key",
        p(key),
    ])
    .arg("--store")
    .arg(ctx.path("store"));
    let out = run(cmd);
    out.assert_success();
    (bundle, out)
}

fn verify(ctx: &TestContext, bundle: &Path, public: &Path) -> Output {
    ctx.ferry(["bundle", "verify", p(bundle), "--trust", p(public)])
}

fn script(name: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("scripts").join(name));
    cmd
}

#[test]
fn licences_of_wheels_come_from_core_metadata() {
    let ctx = TestContext::new();
    let wheels = ctx.path("wheels");
    let long = format!("License: {}", "x".repeat(10 * 1024));
    let made: [&[&str]; 3] = [
        &[
            "--name",
            "licexpr",
            "--header",
            "License-Expression: mit OR Apache-2.0",
            "--header",
            "License: ignored when there is an expression",
            "--header",
            "Classifier: License :: OSI Approved :: MIT License",
        ],
        &[
            "--name",
            "licfree",
            "--header",
            "License: Apache 2.0",
            "--header",
            "Classifier: License :: OSI Approved :: BSD License",
            "--header",
            "Classifier: Programming Language :: Python :: 3",
        ],
        &[
            "--name",
            "lichostile",
            "--header",
            "License: MIT\u{1b}[2J\u{7}",
            "--header",
            &long,
            "--header",
            "License: </script><script>alert(1)</script>",
        ],
    ];
    for args in made {
        let mut cmd = script("mkwheel.py");
        cmd.arg(&wheels).args(args).args(["--version", "1.0"]);
        run(cmd).assert_success();
    }
    let index = super::python::PyIndex::start(&wheels, &["--quiet"]);
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!(
            "name = \"lic\"\n\n[[python]]\nindex-url = \"{}\"\nrequirements = [\"licexpr\", \"licfree\", \"lichostile\"]\npython-version = \"3.11\"\nplatforms = [\"manylinux_2_28_x86_64\"]\n",
            index.url()
        ),
    );
    let (key, public) = ctx.generate_key("lic");
    let (bundle, out) = create(&ctx, &spec, &key, &["PIP_", "UV_"]);
    // The hostile declarations are dropped, each with a warning that does not repeat it.
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: lichostile 1.0: a licence declaration"))
        .collect();
    assert_eq!(warnings.len(), 2, "{}", out.stderr);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("control or invisible characters"))
    );
    assert!(warnings.iter().any(|w| w.contains("10240 characters")));
    assert!(
        !out.stderr
            .contains("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
    );
    assert!(!out.stderr.contains('\u{1b}'));

    let (manifest, human) = inspect(&ctx, &bundle);
    assert_eq!(
        licences_of(artifact(&manifest, "python", "python/licexpr")),
        vec![
            lic(
                "mit OR Apache-2.0",
                Some("MIT OR Apache-2.0"),
                "License-Expression"
            ),
            lic(
                "License :: OSI Approved :: MIT License",
                Some("MIT"),
                "classifier"
            ),
        ]
    );
    assert_eq!(
        licences_of(artifact(&manifest, "python", "python/licfree")),
        vec![
            lic("Apache 2.0", Some("Apache-2.0"), "License"),
            // Which BSD is not said: no SPDX id is guessed for it.
            lic("License :: OSI Approved :: BSD License", None, "classifier"),
        ]
    );
    assert_eq!(
        licences_of(artifact(&manifest, "python", "python/lichostile")),
        vec![lic("</script><script>alert(1)</script>", None, "License")]
    );
    assert!(
        human.contains("licence mit OR Apache-2.0 = MIT OR Apache-2.0 (License-Expression)"),
        "{human}"
    );
    assert!(
        human.contains("licence License :: OSI Approved :: BSD License (not SPDX; classifier)"),
        "{human}"
    );
    verify(&ctx, &bundle, &public).assert_success();
}

#[test]
fn licences_of_conda_packages_come_from_repodata_and_about_json() {
    let ctx = TestContext::new();
    let channel = ctx.path("channel/lic-forge");
    let make = |args: &[&str]| {
        let mut cmd = script("mkconda.py");
        cmd.arg(&channel).args(args);
        run(cmd).assert_success();
    };
    make(&[
        "--name",
        "licpkg",
        "--version",
        "1.0",
        "--license",
        "BSD License",
        "--about-license",
        "bsd-3-clause",
        "--depends",
        "licbad",
    ]);
    make(&[
        "--name",
        "licbad",
        "--version",
        "1.0",
        "--format",
        "conda",
        "--license",
        "MIT\u{1b}]0;pwned\u{7}",
        "--about-license",
        "Apache-2.0",
    ]);
    let mut cmd = script("mkconda.py");
    cmd.arg("--index").arg(&channel);
    run(cmd).assert_success();
    let server = super::conda::StaticServer::start(&ctx.path("channel"));
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!(
            "name = \"lic\"\n\n[[conda]]\nchannel = \"http://{}/lic-forge\"\nspecs = [\"licpkg\"]\nplatforms = [\"linux-64\"]\n",
            server.addr
        ),
    );
    let (key, public) = ctx.generate_key("lic");
    let (bundle, out) = create(&ctx, &spec, &key, &["CONDA_", "RATTLER_"]);
    assert!(
        out.stderr.contains(
            "warning: licbad-1.0-0.conda: a licence declaration is not recorded: its repodata"
        ),
        "{}",
        out.stderr
    );
    // Quoted escaped, never raw.
    assert!(!out.stderr.contains('\u{1b}'), "{}", out.stderr);
    let (manifest, human) = inspect(&ctx, &bundle);
    let repo = |name: &str| format!("conda/lic-forge/linux-64/{name}");
    assert_eq!(
        licences_of(artifact(&manifest, "conda", &repo("licpkg"))),
        vec![
            lic("BSD License", None, "repodata"),
            lic("bsd-3-clause", Some("BSD-3-Clause"), "about.json"),
        ]
    );
    assert_eq!(
        licences_of(artifact(&manifest, "conda", &repo("licbad"))),
        vec![lic("Apache-2.0", Some("Apache-2.0"), "about.json")]
    );
    assert!(
        human.contains("licence bsd-3-clause = BSD-3-Clause (about.json)"),
        "{human}"
    );
    verify(&ctx, &bundle, &public).assert_success();
}

#[test]
fn licences_of_models_come_from_the_card() {
    let ctx = TestContext::new();
    let repo = ctx.path("repos/tiny");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("README.md"),
        "---\nlanguage: en\nlicense:\n- apache-2.0\n- other\nlicense_name: tiny-licence\ntags:\n- test\n---\n# Tiny\n\nlicense: not-this-one\n",
    )
    .unwrap();
    std::fs::write(repo.join("config.json"), "{\"hidden_size\": 4}\n").unwrap();
    let hostile = ctx.path("repos/hostile");
    std::fs::create_dir_all(&hostile).unwrap();
    std::fs::write(
        hostile.join("README.md"),
        "---\nlicense: [mit, \"gpl\u{7}\u{1b}[8m\"]\n---\n",
    )
    .unwrap();
    let hub = super::models::FakeHub::start(&[
        "--repo".into(),
        format!("org/tiny={}", p(&repo)),
        "--repo".into(),
        format!("org/hostile={}", p(&hostile)),
        "--quiet".into(),
    ]);
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!(
            "name = \"lic\"\n\n[[model]]\nrepo = \"org/tiny\"\nendpoint = \"http://{0}\"\n\n[[model]]\nrepo = \"org/hostile\"\nendpoint = \"http://{0}\"\n",
            hub.addr
        ),
    );
    let (key, public) = ctx.generate_key("lic");
    let (bundle, out) = create(&ctx, &spec, &key, &["HF_"]);
    assert!(
        out.stderr
            .contains("warning: org/hostile: a licence declaration is not recorded"),
        "{}",
        out.stderr
    );
    let (manifest, human) = inspect(&ctx, &bundle);
    assert_eq!(
        licences_of(artifact(&manifest, "model", "hf/models/org/tiny")),
        vec![
            lic("apache-2.0", Some("Apache-2.0"), "model card"),
            lic("other", None, "model card"),
            lic("tiny-licence", None, "model card license_name"),
        ]
    );
    assert_eq!(
        licences_of(artifact(&manifest, "model", "hf/models/org/hostile")),
        vec![lic("mit", Some("MIT"), "model card")]
    );
    assert!(
        human.contains("licence apache-2.0 = Apache-2.0 (model card)"),
        "{human}"
    );
    verify(&ctx, &bundle, &public).assert_success();
}

/// An OCI layout with one two-platform image whose index and configs declare licences.
fn licensed_image(ctx: &TestContext) -> PathBuf {
    let layout = ctx.path("layout");
    let mut cmd = script("mkimage.py");
    cmd.arg(&layout).args([
        "--tag",
        "v1",
        "--platforms",
        "linux/amd64,linux/arm64/v8",
        "--layers",
        "1",
        "--layer-size",
        "1024",
        "--seed",
        "licences",
        "--annotation",
        "org.opencontainers.image.licenses=MIT OR Apache-2.0",
        "--label",
        "org.opencontainers.image.licenses=GPL-2.0+",
        "--label",
        "org.label-schema.license=Proprietary, ask legal",
    ]);
    run(cmd).assert_success();
    layout
}

#[test]
fn licences_of_images_come_from_annotations_and_labels() {
    let ctx = TestContext::new();
    let layout = licensed_image(&ctx);
    let spec = ctx.write_spec(
        "ferry.toml",
        &format!(
            "name = \"lic\"\n\n[[image]]\nref = \"oci:{}:v1\"\nrepository = \"lic/app\"\n",
            p(&layout)
        ),
    );
    let (key, public) = ctx.generate_key("lic");
    let (bundle, _) = create(&ctx, &spec, &key, &[]);
    let (manifest, human) = inspect(&ctx, &bundle);
    // Both platforms' configs say the same: listed once.
    assert_eq!(
        licences_of(artifact(&manifest, "image", "lic/app")),
        vec![
            lic(
                "MIT OR Apache-2.0",
                Some("MIT OR Apache-2.0"),
                "annotation org.opencontainers.image.licenses"
            ),
            lic(
                "GPL-2.0+",
                Some("GPL-2.0-or-later"),
                "label org.opencontainers.image.licenses"
            ),
            lic(
                "Proprietary, ask legal",
                None,
                "label org.label-schema.license"
            ),
        ]
    );
    assert!(
        human.contains(
            "licence GPL-2.0+ = GPL-2.0-or-later (label org.opencontainers.image.licenses)"
        ),
        "{human}"
    );
    verify(&ctx, &bundle, &public).assert_success();

    // A bundle re-signed to carry a licence with control characters, or an over-long
    // one, is refused before anything is trusted.
    for (name, forged) in [
        (
            "control",
            json!({"declared": "MIT\u{1b}[2J", "source": "label"}),
        ),
        (
            "long",
            json!({"declared": "x".repeat(2000), "source": "label"}),
        ),
        (
            "spdx",
            json!({"declared": "MIT", "spdx": "MIT\n", "source": "label"}),
        ),
    ] {
        let mut b = Bundle::read(&bundle);
        let mut m = b.manifest();
        m["artifacts"][0]["licenses"] = json!([forged]);
        b.set_manifest(&m);
        b.resign(&key);
        let file = ctx.path(format!("forged-{name}.ferry"));
        b.write(&file);
        let out = verify(&ctx, &file, &public);
        out.assert_code(3).assert_stderr_contains("licence");
    }
}
