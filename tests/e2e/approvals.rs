//! Approvals: `bundle sign` co-signatures beside the bundle (each verified by the real
//! minisign), trust policies with roles, revoked keys and a maximum age, and the
//! hostile twins of a co-signature file (path-like names, huge files, links, FIFOs,
//! a signature taken from another bundle).

use std::path::{Path, PathBuf};

use super::context::{
    Output, TestContext, p, repo_root, run_piped, run_program, run_shell, snapshot_tree,
};
use super::images::demo_layout;
use super::tamper::Bundle;

/// A test's world: keys `build`, `alice`, `bob`, `carol` and one bundle of the demo
/// layout (`app.ferry`, series `demo`, signed by `build`).
struct World {
    ctx: TestContext,
    bundle: PathBuf,
}

impl World {
    fn new() -> World {
        let ctx = TestContext::new();
        for name in ["build", "alice", "bob", "carol"] {
            ctx.generate_key(name);
        }
        let bundle = make_bundle(&ctx, "app.ferry");
        World { ctx, bundle }
    }

    fn key(&self, name: &str) -> PathBuf {
        self.ctx.path(format!("{name}.key"))
    }

    fn public(&self, name: &str) -> PathBuf {
        self.ctx.path(format!("{name}.pub"))
    }

    /// The key id as `ferry key show --json` prints it.
    fn id(&self, name: &str) -> String {
        let out = self
            .ctx
            .ferry(["key", "show", p(&self.public(name)), "--json"]);
        out.assert_success();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["keyId"].as_str().unwrap().to_string()
    }

    /// `ferry bundle sign BUNDLE --key NAME.key`, which must succeed.
    fn sign(&self, bundle: &Path, name: &str) -> Output {
        let out = self
            .ctx
            .ferry(["bundle", "sign", p(bundle), "--key", p(&self.key(name))]);
        out.assert_success();
        out
    }

    /// The co-signature file `bundle sign` writes for `name`.
    fn cosig(&self, bundle: &Path, name: &str) -> PathBuf {
        PathBuf::from(format!("{}.{}.minisig", bundle.display(), self.id(name)))
    }

    /// Writes `trust.toml`: the four keys (build a builder, the others approvers), then
    /// `extra` (rules, revocations).
    fn policy(&self, extra: &str) -> PathBuf {
        let path = self.ctx.path("trust.toml");
        let text = format!(
            "{extra}\n[keys.build]\nkey = \"build.pub\"\nrole = \"builder\"\n\
             [keys.alice]\nkey = \"alice.pub\"\nrole = \"approver\"\n\
             [keys.bob]\nkey = \"bob.pub\"\nrole = \"approver\"\n\
             [keys.carol]\nkey = \"carol.pub\"\nrole = \"approver\"\n"
        );
        // Revocations must stand before the first table.
        std::fs::write(&path, text).unwrap();
        path
    }

    fn verify(&self, bundle: &Path, policy: &Path) -> Output {
        self.ctx
            .ferry(["bundle", "verify", p(bundle), "--trust-policy", p(policy)])
    }

    fn verify_json(&self, bundle: &Path, policy: &Path) -> serde_json::Value {
        let out = self.ctx.ferry([
            "bundle",
            "verify",
            p(bundle),
            "--trust-policy",
            p(policy),
            "--json",
        ]);
        out.assert_success();
        serde_json::from_str(&out.stdout).unwrap()
    }
}

/// A rule for every series.
fn rule(require: &str) -> String {
    format!("[[rule]]\nseries = \"*\"\nrequire = {{ {require} }}\n")
}

/// `bundle create` of the demo layout into `ctx/store`, signed by `build.key`.
fn make_bundle(ctx: &TestContext, name: &str) -> PathBuf {
    let spec = ctx.write_spec(
        "demo.toml",
        &format!(
            "name = \"demo\"\n[[image]]\nref = \"oci:{}:app/web:1.0\"\nrepository = \"app/web\"\n",
            demo_layout().display()
        ),
    );
    let store = ctx.path("store");
    ctx.create_bundle(&spec, name, &ctx.path("build.key"), &["--store", p(&store)])
}

#[test]
fn approvals_two_and_three_signers_meet_or_miss_the_rule() {
    let w = World::new();
    let policy = w.policy(&rule("builder = 1, approver = 2"));

    // Only the builder signed: refused, naming who signed and who is missing.
    w.verify(&w.bundle, &policy)
        .assert_code(3)
        .assert_stderr_contains("rule 1")
        .assert_stderr_contains("approver needs 2, has 0")
        .assert_stderr_contains("build (builder")
        .assert_stderr_contains("bundle sign");

    // Two signers: still one approver short, and bob/carol are named as not signed.
    let signed = w.sign(&w.bundle, "alice");
    let alice_sig = w.cosig(&w.bundle, "alice");
    assert!(alice_sig.is_file(), "no {}", alice_sig.display());
    assert!(signed.stdout.contains(&w.id("alice")), "{signed:?}");
    w.verify(&w.bundle, &policy)
        .assert_code(3)
        .assert_stderr_contains("approver needs 2, has 1")
        .assert_stderr_contains("not signed by bob, carol")
        .assert_stderr_contains("alice (approver");

    // Three signers: met.
    w.sign(&w.bundle, "bob");
    let v = w.verify_json(&w.bundle, &policy);
    assert_eq!(v["verified"], true);
    assert_eq!(v["trustPolicy"]["rule"], 1);
    let approved: Vec<(String, String)> = v["trustPolicy"]["approvedBy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for who in [
        ("build", "builder"),
        ("alice", "approver"),
        ("bob", "approver"),
    ] {
        assert!(
            approved.contains(&(who.0.to_string(), who.1.to_string())),
            "{who:?} not in {approved:?}"
        );
    }
    let details = v["signatureDetails"].as_array().unwrap();
    assert_eq!(details.len(), 3, "{details:?}");
    let embedded: Vec<_> = details
        .iter()
        .filter(|d| d["source"] == "embedded")
        .collect();
    assert_eq!(embedded.len(), 1);
    assert_eq!(embedded[0]["keyId"], w.id("build").as_str());
    assert!(details.iter().any(|d| {
        d["source"] == "detached"
            && d["keyId"] == w.id("bob").as_str()
            && d["status"] == "valid"
            && d["file"]
                .as_str()
                .unwrap()
                .ends_with(&format!(".{}.minisig", w.id("bob")))
    }));

    // Plain --trust keeps working, and counts the co-signatures too.
    let trust_all = |threshold: &str| {
        w.ctx.ferry([
            "bundle",
            "verify",
            p(&w.bundle),
            "--trust",
            p(&w.public("build")),
            "--trust",
            p(&w.public("alice")),
            "--trust",
            p(&w.public("bob")),
            "--trust",
            p(&w.public("carol")),
            "--threshold",
            threshold,
        ])
    };
    trust_all("3").assert_success();
    trust_all("4")
        .assert_code(3)
        .assert_stderr_contains("3 of 4 required signatures");
    w.ctx
        .ferry([
            "bundle",
            "verify",
            p(&w.bundle),
            "--trust",
            p(&w.public("build")),
        ])
        .assert_success();

    // inspect shows every signature and where it was found.
    let out = w.ctx.ferry(["bundle", "inspect", p(&w.bundle), "--json"]);
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["signatureDetails"].as_array().unwrap().len(), 3);
    assert_eq!(v["signatures"].as_array().unwrap().len(), 3);
    let out = w.ctx.ferry(["bundle", "inspect", p(&w.bundle)]);
    out.assert_success();
    assert!(
        out.stdout
            .contains(&format!("{} (embedded)", w.id("build")))
            && out.stdout.contains(&format!("{}", alice_sig.display())),
        "{out:?}"
    );
}

#[test]
fn approvals_co_signatures_verify_with_minisign_alone() {
    let w = World::new();
    w.sign(&w.bundle, "alice");
    let sig = w.cosig(&w.bundle, "alice");
    // What the README tells an auditor to do.
    let manifest = w.ctx.path("ferry-manifest.json");
    run_shell(&format!(
        "zstd -q -dc '{}' | tar -xO ferry-manifest.json > '{}'",
        w.bundle.display(),
        manifest.display()
    ))
    .assert_success();
    let minisign = |public: &Path| {
        run_program(
            "minisign",
            ["-V", "-p", p(public), "-m", p(&manifest), "-x", p(&sig)],
        )
    };
    let out = minisign(&w.public("alice"));
    out.assert_success();
    assert!(
        out.stdout.contains("ferry approval series=demo"),
        "the trusted comment names the bundle: {out:?}"
    );
    assert_ne!(
        minisign(&w.public("bob")).code,
        0,
        "bob's key verified alice's signature"
    );
    // The bundle itself was not rewritten (its signed payload is the same file).
    let before = std::fs::read(&w.bundle).unwrap();
    w.sign(&w.bundle, "bob");
    assert_eq!(
        before,
        std::fs::read(&w.bundle).unwrap(),
        "bundle sign rewrote the bundle"
    );
}

#[test]
fn approvals_signing_twice_counts_once() {
    let w = World::new();
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(w.ctx.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("app.ferry"))
            .collect();
        names.sort();
        names
    };
    use std::os::unix::fs::MetadataExt;
    let inode = || {
        std::fs::metadata(w.cosig(&w.bundle, "alice"))
            .unwrap()
            .ino()
    };
    w.sign(&w.bundle, "alice");
    let first = (std::fs::read(w.cosig(&w.bundle, "alice")).unwrap(), inode());
    w.sign(&w.bundle, "alice");
    assert_eq!(
        listing(),
        vec![
            "app.ferry".to_string(),
            format!("app.ferry.{}.minisig", w.id("alice"))
        ],
        "signing again left another file (or a temporary)"
    );
    // Replaced by a rename (Ed25519 is deterministic: the same bytes again).
    assert_eq!(first.0, std::fs::read(w.cosig(&w.bundle, "alice")).unwrap());
    assert_ne!(first.1, inode(), "the signature file was not replaced");

    // The builder's signature is embedded already: a no-op that says so.
    let out = w.sign(&w.bundle, "build");
    assert!(out.stdout.contains("already signed"), "{out:?}");
    assert_eq!(
        listing().len(),
        2,
        "signing with the embedded key wrote a file"
    );

    // Alice listed twice under two names still counts once.
    let policy = w.policy(&rule("approver = 2"));
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str("[keys.alice-again]\nkey = \"alice.pub\"\nrole = \"approver\"\n");
    std::fs::write(&policy, text).unwrap();
    w.verify(&w.bundle, &policy)
        .assert_code(3)
        .assert_stderr_contains("approver needs 2, has 1");
    // The same key twice in --trust is one signer too.
    w.ctx
        .ferry([
            "bundle",
            "verify",
            p(&w.bundle),
            "--trust",
            p(&w.public("alice")),
            "--trust",
            p(&w.public("alice")),
            "--threshold",
            "2",
        ])
        .assert_code(3);
}

#[test]
fn approvals_revoked_keys_never_count() {
    let w = World::new();
    w.sign(&w.bundle, "alice");
    w.sign(&w.bundle, "carol");
    let policy = w.policy(&format!(
        "revoked = [\"carol.pub\"]\n{}",
        rule("builder = 1, approver = 2")
    ));
    w.verify(&w.bundle, &policy)
        .assert_code(3)
        .assert_stderr_contains("approver needs 2, has 1")
        .assert_stderr_contains("revoked, not counted: carol");
    // Enough without carol: accepted, and carol's signature is named in a warning.
    let policy = w.policy(&format!(
        "revoked = [\"{}\"]\n{}",
        w.id("carol"),
        rule("builder = 1, approver = 1")
    ));
    let out = w.verify(&w.bundle, &policy);
    out.assert_success();
    out.assert_stderr_contains("warning:")
        .assert_stderr_contains("revoked");
    // A revoked builder: the bundle has no signature that counts at all.
    let policy = w.ctx.path("builder-revoked.toml");
    std::fs::write(
        &policy,
        format!(
            "revoked = [\"build.pub\"]\n[keys.build]\nkey = \"build.pub\"\nrole = \"builder\"\n\
             [keys.bob]\nkey = \"bob.pub\"\nrole = \"builder\"\n{}",
            rule("builder = 1")
        ),
    )
    .unwrap();
    w.verify(&w.bundle, &policy)
        .assert_code(3)
        .assert_stderr_contains("revoked, not counted: build");
}

/// The bundle with its `created` time set to `offset` from now, re-signed by the
/// builder (a compromised clock, or a held-back bundle).
fn dated(w: &World, name: &str, offset: time::Duration) -> PathBuf {
    let mut bundle = Bundle::read(&w.bundle);
    let mut manifest = bundle.manifest();
    let created = (time::OffsetDateTime::now_utc() + offset)
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    manifest["created"] = created.into();
    bundle.set_manifest(&manifest);
    bundle.resign(&w.key("build"));
    let path = w.ctx.path(name);
    bundle.write(&path);
    path
}

#[test]
fn approvals_max_age_refuses_old_and_future_bundles() {
    let w = World::new();
    let old = dated(&w, "old.ferry", -time::Duration::days(40));
    let policy = w.policy(&format!("{}max-age = \"30d\"\n", rule("builder = 1")));
    w.verify(&w.bundle, &policy).assert_success();
    w.verify(&old, &policy)
        .assert_code(3)
        .assert_stderr_contains("longer ago than its max-age 30d");
    let policy = w.policy(&format!("{}max-age = \"60d\"\n", rule("builder = 1")));
    w.verify(&old, &policy).assert_success();
    // Without a max-age the time is not weighed.
    let policy = w.policy(&rule("builder = 1"));
    w.verify(&old, &policy).assert_success();

    // Dated a day ahead: refused where the age matters; a minute ahead is clock skew.
    let policy = w.policy(&format!("{}max-age = \"30d\"\n", rule("builder = 1")));
    let future = dated(&w, "future.ferry", time::Duration::days(1));
    w.verify(&future, &policy)
        .assert_code(3)
        .assert_stderr_contains("ahead of this machine's clock");
    let skewed = dated(&w, "skewed.ferry", time::Duration::minutes(1));
    w.verify(&skewed, &policy).assert_success();
}

#[test]
fn approvals_a_co_signature_of_another_bundle_does_not_count() {
    let w = World::new();
    let other = make_bundle(&w.ctx, "other.ferry");
    w.sign(&other, "alice");
    let stolen = w.cosig(&w.bundle, "alice");
    std::fs::copy(w.cosig(&other, "alice"), &stolen).unwrap();
    let name = stolen.file_name().unwrap().to_string_lossy().into_owned();

    // Where it matters: refused, naming the file and why.
    let policy = w.policy(&rule("builder = 1, approver = 1"));
    w.verify(&w.bundle, &policy)
        .assert_code(3)
        .assert_stderr_contains(&name)
        .assert_stderr_contains("another bundle");
    w.ctx
        .ferry([
            "bundle",
            "verify",
            p(&w.bundle),
            "--trust",
            p(&w.public("build")),
            "--trust",
            p(&w.public("alice")),
            "--threshold",
            "2",
        ])
        .assert_code(3)
        .assert_stderr_contains(&name);
    // Where it does not: accepted, with a warning naming it.
    let out = w.ctx.ferry([
        "bundle",
        "verify",
        p(&w.bundle),
        "--trust",
        p(&w.public("build")),
        "--trust",
        p(&w.public("alice")),
    ]);
    out.assert_success();
    out.assert_stderr_contains("warning:")
        .assert_stderr_contains(&name);
    // The other bundle's own signature still counts there.
    w.verify(&other, &policy).assert_success();
}

#[test]
fn approvals_import_under_a_trust_policy() {
    let w = World::new();
    let store = w.ctx.path("target-store");
    let policy = w.policy(&rule("builder = 1, approver = 1"));
    let import = |bundle: &Path| {
        w.ctx.ferry([
            "import",
            p(bundle),
            "--trust-policy",
            p(&policy),
            "--store",
            p(&store),
        ])
    };
    // Refused into a store that does not exist yet: nothing is created.
    import(&w.bundle)
        .assert_code(3)
        .assert_stderr_contains("approver needs 1, has 0");
    assert!(!store.exists(), "a refused import created the store");
    let leftovers: Vec<_> = std::fs::read_dir(w.ctx.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("target-store"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Approved: imported.
    w.sign(&w.bundle, "alice");
    // Through a pipe the co-signature beside the file stays behind: refused, saying so.
    let mut cmd = w.ctx.ferry_command();
    cmd.args([
        "import",
        "-",
        "--trust-policy",
        p(&policy),
        "--store",
        p(&store),
    ]);
    run_piped(cmd, std::fs::read(&w.bundle).unwrap())
        .assert_code(3)
        .assert_stderr_contains("approver needs 1, has 0")
        .assert_stderr_contains("standard input has no beside");
    assert!(!store.exists(), "a refused import created the store");
    let out = import(&w.bundle);
    out.assert_success();
    assert!(out.stdout.contains("alice (approver"), "{out:?}");

    // A newer bundle of the series, unapproved: refused, the store exactly as it was
    // (its state and audit log too).
    let newer = make_bundle(&w.ctx, "newer.ferry");
    let state = |name: &str| std::fs::read(store.join(".ferry").join(name)).unwrap();
    let before = snapshot_tree(&store, &[".ferry"]);
    let (series, log) = (state("series.json"), state("audit.jsonl"));
    import(&newer)
        .assert_code(3)
        .assert_stderr_contains("approver needs 1, has 0");
    assert_eq!(
        before,
        snapshot_tree(&store, &[".ferry"]),
        "a refused import changed the store"
    );
    assert_eq!(
        series,
        state("series.json"),
        "a refused import changed the series record"
    );
    // The audit log gained one record, of the refusal.
    let after = state("audit.jsonl");
    assert!(
        after.starts_with(&log),
        "a refused import rewrote the audit log"
    );
    let added: serde_json::Value = serde_json::from_slice(&after[log.len()..]).unwrap();
    assert_eq!(added["outcome"], "refused", "{added:#}");
    w.sign(&newer, "bob");
    let out = w.ctx.ferry([
        "import",
        p(&newer),
        "--trust-policy",
        p(&policy),
        "--store",
        p(&store),
        "--json",
    ]);
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["trustPolicy"]["approvedBy"].as_array().unwrap().len(), 2);
    // The audit log says who approved each import, by name and role.
    let log = String::from_utf8(state("audit.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["trustRule"], 1);
    let names: Vec<&str> = last["approvedBy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"bob") && names.contains(&"build"), "{last}");
}

#[test]
fn approvals_a_public_key_given_as_the_secret_key_says_so() {
    let w = World::new();
    let (alice, build) = (w.public("alice"), w.public("build"));
    let sign = ["bundle", "sign", p(&w.bundle), "--key", p(&alice)];
    let output = w.ctx.path("x.ferry");
    let spec = w.ctx.path("demo.toml");
    let create = [
        "bundle",
        "create",
        p(&spec),
        "-o",
        p(&output),
        "--key",
        p(&build),
    ];
    for (args, fix) in [(&sign[..], "alice.key"), (&create[..], "build.key")] {
        let out = w.ctx.ferry(args);
        out.assert_code(2)
            .assert_stderr_contains("is a public key")
            .assert_stderr_contains(fix);
        assert!(
            !out.stderr.contains("readable by others"),
            "blamed the mode of a public key: {out:?}"
        );
    }
    assert!(!output.exists());
    assert!(!w.cosig(&w.bundle, "alice").exists());
}

#[test]
fn approvals_bad_trust_policies_are_usage_errors() {
    let w = World::new();
    let good_keys = "[keys.build]\nkey = \"build.pub\"\nrole = \"builder\"\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown-role",
            format!("{good_keys}{}", rule("aprover = 1")),
            "aprover",
        ),
        (
            "missing-key",
            format!(
                "[keys.x]\nkey = \"nowhere.pub\"\nrole = \"builder\"\n{}",
                rule("builder = 1")
            ),
            "nowhere.pub",
        ),
        (
            "bad-glob",
            format!("{good_keys}[[rule]]\nseries = \"[\"\nrequire = {{ builder = 1 }}\n"),
            "not a glob",
        ),
        (
            "bad-age",
            format!("{good_keys}{}max-age = \"a month\"\n", rule("builder = 1")),
            "max-age",
        ),
        (
            "unknown-field",
            format!("{good_keys}{}threshold = 2\n", rule("builder = 1")),
            "threshold",
        ),
        ("syntax", "[keys.build\n".to_string(), "line 1"),
        ("no-rule", good_keys.to_string(), "no [[rule]]"),
    ];
    for (name, text, needle) in cases {
        let path = w.ctx.path(format!("{name}.toml"));
        std::fs::write(&path, &text).unwrap();
        for command in ["verify", "import"] {
            let mut args = vec!["bundle", "verify", p(&w.bundle), "--trust-policy", p(&path)];
            let store = w.ctx.path("never");
            if command == "import" {
                args = vec![
                    "import",
                    p(&w.bundle),
                    "--trust-policy",
                    p(&path),
                    "--store",
                    p(&store),
                ];
            }
            let out = w.ctx.ferry(&args);
            out.assert_code(2)
                .assert_stderr_contains(&format!("{name}.toml"))
                .assert_stderr_contains(needle);
            assert!(!store.exists(), "{name}: import wrote a store");
        }
    }
    // --trust and --trust-policy together: a usage error.
    let path = w.ctx.path("ok.toml");
    std::fs::write(&path, format!("{good_keys}{}", rule("builder = 1"))).unwrap();
    w.ctx
        .ferry([
            "bundle",
            "verify",
            p(&w.bundle),
            "--trust-policy",
            p(&path),
            "--trust",
            p(&w.public("build")),
        ])
        .assert_code(2);
    w.verify(&w.bundle, &path).assert_success();
}

#[test]
fn approvals_key_show_prints_the_id_and_no_secret() {
    let ctx = TestContext::new();
    let out = ctx.ferry(["key", "generate", "team"]);
    out.assert_success();
    let generated = out
        .stdout
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("key id ")
        .to_string();
    let pub_text = std::fs::read_to_string(ctx.path("team.pub")).unwrap();
    let key_line = pub_text.lines().nth(1).unwrap();
    let secret_text = std::fs::read_to_string(ctx.path("team.key")).unwrap();
    let secret_line = secret_text.lines().nth(1).unwrap();
    for file in ["team.pub", "team.key"] {
        let out = ctx.ferry(["key", "show", file]);
        out.assert_success();
        assert!(out.stdout.contains(&generated), "{out:?}");
        assert!(out.stdout.contains(key_line), "{out:?}");
        assert!(
            !out.stdout.contains(secret_line),
            "printed the secret key: {out:?}"
        );
        let out = ctx.ferry(["key", "show", file, "--json"]);
        out.assert_success();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["keyId"], generated.as_str());
        assert_eq!(v["publicKey"], key_line);
    }
    // minisign's own public key line names the same key.
    assert!(pub_text.contains(&generated));
    ctx.ferry(["key", "show", "nothing.pub"]).assert_code(1);
}

#[test]
fn approvals_hostile_co_signature_files_are_not_trusted() {
    let w = World::new();
    w.sign(&w.bundle, "alice");
    let alice = w.cosig(&w.bundle, "alice");
    let valid = std::fs::read(&alice).unwrap();
    let dir = w.ctx.dir.path();

    // Names that do not match `app.ferry.<16 upper-case hex>.minisig`: ignored, even
    // holding a valid signature (path-like, lower-case, short, with a suffix).
    let lower = format!("app.ferry.{}.minisig", w.id("bob").to_lowercase());
    for name in [
        "app.ferry.....minisig",
        "app.ferry.%2e%2e%2fbob.minisig",
        "app.ferry.0123.minisig",
        lower.as_str(),
        &format!("app.ferry.{}.minisig.tmp", w.id("bob")),
    ] {
        std::fs::write(dir.join(name), &valid).unwrap();
    }
    // A directory under a matching name is not a signature either.
    std::fs::create_dir(dir.join(format!("app.ferry.{}.minisig", w.id("carol")))).unwrap();
    let policy = w.policy(&rule("builder = 1, approver = 1"));
    let out = w.verify(&w.bundle, &policy);
    out.assert_success();
    let v = w.verify_json(&w.bundle, &policy);
    let files: Vec<&str> = v["signatureDetails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["file"].as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| !f.contains("..") && !f.contains("%2e")),
        "{files:?}"
    );
    std::fs::remove_dir(dir.join(format!("app.ferry.{}.minisig", w.id("carol")))).unwrap();

    let needs_bob = w.ctx.path("needs-bob.toml");
    std::fs::write(
        &needs_bob,
        format!(
            "[keys.build]\nkey = \"build.pub\"\nrole = \"builder\"\n[keys.bob]\nkey = \"bob.pub\"\nrole = \"reviewer\"\n{}",
            rule("builder = 1, reviewer = 1")
        ),
    )
    .unwrap();
    let bob = w.cosig(&w.bundle, "bob");
    let refused = |what: &str| {
        let out = w.verify(&w.bundle, &needs_bob);
        out.assert_code(3)
            .assert_stderr_contains(bob.file_name().unwrap().to_str().unwrap())
            .assert_stderr_contains(what);
        // Where bob is not needed, the same file is only a warning.
        let out = w.verify(&w.bundle, &policy);
        out.assert_success();
        out.assert_stderr_contains("warning:")
            .assert_stderr_contains(what);
    };

    // A huge file under bob's name: not read beyond the bound.
    let huge = std::fs::File::create(&bob).unwrap();
    huge.set_len(64 << 20).unwrap();
    drop(huge);
    refused("more than a signature");

    // A symbolic link to bob's real signature: not followed.
    let real = w.ctx.path("elsewhere.minisig");
    std::fs::remove_file(&bob).unwrap();
    w.sign(&w.bundle, "bob");
    std::fs::rename(&bob, &real).unwrap();
    std::os::unix::fs::symlink(&real, &bob).unwrap();
    refused("symbolic link");

    // A FIFO: not opened for a blocking read.
    std::fs::remove_file(&bob).unwrap();
    run_program("mkfifo", [p(&bob)]).assert_success();
    refused("not a regular file");

    // Alice's signature under bob's name.
    std::fs::remove_file(&bob).unwrap();
    std::fs::write(&bob, &valid).unwrap();
    refused("named for key");

    // Garbage.
    std::fs::write(&bob, b"untrusted comment: x\nnot base64!\n").unwrap();
    refused("malformed");

    // The real one counts.
    std::fs::rename(&real, &bob).unwrap();
    w.verify(&w.bundle, &needs_bob).assert_success();
}

#[test]
fn approvals_compat_bundle_verifies_under_a_trust_policy() {
    let ctx = TestContext::new();
    let fixture = repo_root().join("fixtures/compat");
    let policy = ctx.path("trust.toml");
    std::fs::write(
        &policy,
        format!(
            "[keys.old-builder]\nkey = \"{}\"\nrole = \"builder\"\n{}",
            fixture.join("main-d96b7ba.pub").display(),
            rule("builder = 1")
        ),
    )
    .unwrap();
    let bundle = fixture.join("main-d96b7ba.ferry");
    let out = ctx.ferry([
        "bundle",
        "verify",
        p(&bundle),
        "--trust-policy",
        p(&policy),
        "--json",
    ]);
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["trustPolicy"]["approvedBy"][0]["name"], "old-builder");
    assert_eq!(v["trustPolicy"]["approvedBy"][0]["role"], "builder");
    // And not under a rule that wants an approval it never had.
    ctx.generate_key("alice");
    std::fs::write(
        &policy,
        format!(
            "[keys.old-builder]\nkey = \"{}\"\nrole = \"builder\"\n\
             [keys.alice]\nkey = \"alice.pub\"\nrole = \"approver\"\n{}",
            fixture.join("main-d96b7ba.pub").display(),
            rule("builder = 1, approver = 1")
        ),
    )
    .unwrap();
    ctx.ferry(["bundle", "verify", p(&bundle), "--trust-policy", p(&policy)])
        .assert_code(3)
        .assert_stderr_contains("approver needs 1, has 0")
        .assert_stderr_contains("old-builder (builder");
}
