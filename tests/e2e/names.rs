//! Hostile names. A compromised signer (a key the importer trusts) or a compromised
//! upstream names files, projects, channels, subdirs, commits, revisions, types and
//! oids that would escape the export folder or forge a header. Each must be refused with
//! exit 3, naming the field and value, before anything is written anywhere.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::context::{TestContext, p, snapshot_tree};
use super::hostile::Case;
use super::tamper::Bundle;

/// The digest (hex) of the first artifact whose record has `key`.
fn artifact_with(bundle: &Bundle, key: &str) -> String {
    bundle.manifest()["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a.get(key).is_some())
        .unwrap_or_else(|| panic!("no artifact with a `{key}` record"))["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap()
        .to_string()
}

/// A victim folder beside the test's exports: nothing may ever appear in it.
fn victim(ctx: &TestContext) -> PathBuf {
    ctx.path("victim")
}

fn assert_untouched(ctx: &TestContext) {
    assert!(
        !victim(ctx).exists(),
        "something was written outside the target"
    );
}

// Python: file names and project names, in the signed record and in the stored config.

fn python_forged(
    ctx: &TestContext,
    name: &str,
    in_record: bool,
    edit: &dyn Fn(&mut Value),
) -> PathBuf {
    let fx = super::python::py();
    let mut bundle = Bundle::read(&super::python::main_bundle().bundle);
    let digest = artifact_with(&bundle, "python");
    let record = |a: &mut Value| {
        if in_record {
            edit(&mut a["python"]);
        }
    };
    bundle.forge_artifact(&digest, Some(&|c| edit(c)), &|_| {}, &record, &fx.key);
    let case = Case::new(ctx, name);
    case.write(&bundle)
}

#[test]
fn names_python_file_name_with_dot_dot_is_refused() {
    let ctx = TestContext::new();
    let evil = format!("{}/../../x.whl", p(&victim(&ctx)));
    for in_record in [true, false] {
        let name = format!("py-file-{in_record}");
        let bundle = python_forged(&ctx, &name, in_record, &|v| {
            v["files"][0]["filename"] = evil.as_str().into()
        });
        Case::new(&ctx, &name).assert_refused(
            &bundle,
            &super::python::py().public,
            &["python file name", "x.whl"],
        );
    }
    assert_untouched(&ctx);
}

#[test]
fn names_python_project_with_a_path_is_refused() {
    let ctx = TestContext::new();
    let bundle = python_forged(&ctx, "py-project", false, &|v| {
        v["project"] = "../../victim".into()
    });
    Case::new(&ctx, "py-project").assert_refused(
        &bundle,
        &super::python::py().public,
        &["python project name", "../../victim"],
    );
    assert_untouched(&ctx);
}

// Conda: channel, subdir and file name.

#[test]
fn names_conda_channel_subdir_and_file_are_refused() {
    let ctx = TestContext::new();
    let fx = super::conda::conda();
    let cases: [(&str, &str, &str, &str); 3] = [
        (
            "conda-channel",
            "channel",
            "../../victim",
            "conda channel name",
        ),
        (
            "conda-subdir",
            "subdir",
            "linux-64/../../../victim",
            "conda subdir",
        ),
        (
            "conda-file",
            "fileName",
            "/tmp/victim/pkg-1.0-0.tar.bz2",
            "conda file name",
        ),
    ];
    for (name, field, value, what) in cases {
        let mut bundle = Bundle::read(&super::conda::main_bundle().bundle);
        let digest = artifact_with(&bundle, "conda");
        let edit = |v: &mut Value| v[field] = value.into();
        bundle.forge_artifact(
            &digest,
            Some(&edit),
            &|_| {},
            &|a| edit(&mut a["conda"]),
            &fx.key,
        );
        let case = Case::new(&ctx, name);
        let file = case.write(&bundle);
        case.assert_refused(&file, &fx.public, &[what, value]);
    }
    assert_untouched(&ctx);
}

// Models: commit, revision, type, oid and path, in the manifest annotations and record.

#[test]
fn names_model_commit_revision_type_oid_and_path_are_refused() {
    let ctx = TestContext::new();
    let fx = super::models::models();
    // (case, annotation on the manifest or its first layer, record field, value, what)
    let cases: [(&str, &str, bool, &str, &str, &str); 5] = [
        (
            "hf-commit",
            "dev.ferry.hf.commit",
            false,
            "commit",
            "abc\r\nX-Injected: 1",
            "commit",
        ),
        (
            "hf-revision",
            "dev.ferry.hf.revision",
            false,
            "revision",
            "../../../victim",
            "hub revision",
        ),
        (
            "hf-type",
            "dev.ferry.hf.type",
            false,
            "type",
            "../../victim/x",
            "hub repository type",
        ),
        (
            "hf-oid",
            "dev.ferry.hf.oid",
            true,
            "oid",
            "bad\netag",
            "git oid",
        ),
        (
            "hf-path",
            "org.cncf.model.filepath",
            true,
            "path",
            "../../../../victim/x",
            "file path",
        ),
    ];
    for (name, annotation, on_layer, field, value, what) in cases {
        let mut bundle = Bundle::read(&super::models::main_bundle().bundle);
        let digest = artifact_with(&bundle, "model");
        bundle.forge_artifact(
            &digest,
            None,
            &|m| {
                if on_layer {
                    m["layers"][0]["annotations"][annotation] = value.into();
                } else {
                    m["annotations"][annotation] = value.into();
                }
            },
            &|a| {
                if on_layer {
                    a["model"]["files"][0][field] = value.into();
                } else {
                    a["model"][field] = value.into();
                }
            },
            &fx.key,
        );
        let case = Case::new(&ctx, name);
        let file = case.write(&bundle);
        // The value is shown escaped (`\r\n`), never raw.
        let shown = format!("{value:?}");
        let shown = shown.trim_matches('"');
        case.assert_refused(&file, &fx.public, &[what, shown]);
    }
    assert_untouched(&ctx);
}

// A store edited on disk (by hand, or by an older ferry): exports refuse it whole,
// before writing a single file.

/// Rewrites the config blob of the first artifact of `artifact_type` in a store.
fn edit_store_config(store: &Path, artifact_type: &str, edit: &dyn Fn(&mut Value)) {
    let index_path = store.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let blob = |hex: &str| store.join("blobs/sha256").join(hex);
    let entry = index["manifests"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["artifactType"] == artifact_type)
        .expect("an artifact of that type");
    let old = entry["digest"].as_str().unwrap().to_string();
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(&old[7..])).unwrap()).unwrap();
    let config_hex = manifest["config"]["digest"].as_str().unwrap()[7..].to_string();
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(blob(&config_hex)).unwrap()).unwrap();
    edit(&mut config);
    let config = serde_json::to_vec(&config).unwrap();
    let config_hex = super::context::sha256_hex(&config);
    std::fs::write(blob(&config_hex), &config).unwrap();
    manifest["config"]["digest"] = format!("sha256:{config_hex}").into();
    manifest["config"]["size"] = config.len().into();
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let hex = super::context::sha256_hex(&manifest);
    std::fs::write(blob(&hex), &manifest).unwrap();
    for m in index["manifests"].as_array_mut().unwrap() {
        if m["digest"] == old.as_str() {
            m["digest"] = format!("sha256:{hex}").into();
            m["size"] = manifest.len().into();
        }
    }
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn names_exports_refuse_a_hostile_store_before_writing() {
    let ctx = TestContext::new();
    let py_store = ctx.path("py-store");
    super::context::run({
        let mut cmd = super::context::ferry_command_in(ctx.dir.path());
        cmd.args(["import", p(&super::python::main_bundle().bundle), "--trust"])
            .arg(&super::python::py().public)
            .arg("--store")
            .arg(&py_store);
        cmd
    })
    .assert_success();
    let evil = format!("{}/../x.whl", p(&victim(&ctx)));
    edit_store_config(&py_store, "application/vnd.ferry.python.release.v1", &|c| {
        c["files"][0]["filename"] = evil.as_str().into()
    });
    let out_dir = ctx.path("py-out");
    ctx.ferry([
        "export",
        "python",
        "--store",
        p(&py_store),
        "--to",
        p(&out_dir),
    ])
    .assert_code(3)
    .assert_stderr_contains("python file name");
    assert!(!out_dir.exists(), "export wrote {}", p(&out_dir));

    let conda_store = ctx.path("conda-store");
    super::context::run({
        let mut cmd = super::context::ferry_command_in(ctx.dir.path());
        cmd.args(["import", p(&super::conda::main_bundle().bundle), "--trust"])
            .arg(&super::conda::conda().public)
            .arg("--store")
            .arg(&conda_store);
        cmd
    })
    .assert_success();
    edit_store_config(
        &conda_store,
        "application/vnd.ferry.conda.package.v1",
        &|c| c["subdir"] = "linux-64/../../../victim".into(),
    );
    let before = snapshot_tree(&conda_store, &[]);
    let out_dir = ctx.path("conda-out");
    ctx.ferry([
        "export",
        "conda",
        "--store",
        p(&conda_store),
        "--to",
        p(&out_dir),
    ])
    .assert_code(3)
    .assert_stderr_contains("conda subdir");
    assert!(!out_dir.exists(), "export wrote {}", p(&out_dir));
    assert_eq!(before, snapshot_tree(&conda_store, &[]));
    assert_untouched(&ctx);
}

/// A signed manifest whose artifact's kind and record disagree (a python release
/// dressed as a conda package, a release with an image's subject) is refused while it
/// is parsed, before anything is written.
#[test]
fn names_kind_and_record_must_agree() {
    let ctx = TestContext::new();
    let fx = super::python::py();
    let subject = format!("sha256:{}", "b".repeat(64));
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: [(&str, Edit, &str); 3] = [
        (
            "kind-conda",
            Box::new(|a| a["kind"] = "conda".into()),
            "a `conda` artifact needs its `conda` record",
        ),
        (
            "kind-referrer",
            Box::new(|a| a["kind"] = "referrer".into()),
            "a `referrer` artifact cannot have `python`",
        ),
        (
            "python-subject",
            Box::new(move |a| a["subject"] = subject.as_str().into()),
            "a `python` artifact cannot have",
        ),
    ];
    for (name, edit, message) in cases {
        let mut bundle = Bundle::read(&super::python::main_bundle().bundle);
        let digest = artifact_with(&bundle, "python");
        bundle.forge_artifact(&digest, None, &|_| {}, &|a| edit(a), &fx.key);
        let case = Case::new(&ctx, name);
        let file = case.write(&bundle);
        case.assert_refused(&file, &fx.public, &[message]);
    }
}
