//! The command line's conventions: JSON on error too, what `import --json` names,
//! `FERRY_STORE`, `docker://` targets, and completions and man pages installed by
//! `scripts/install.sh`.

use super::context::{TestContext, p, parse_json, repo_root, run, run_program};
use super::fixtures::fixtures;

#[test]
fn json_output_names_the_target_and_errors_come_as_json_too() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let store = ctx.path("store");
    let out = ctx.ferry([
        "import",
        p(&fx.bundle),
        "--trust",
        p(&fx.public),
        "--store",
        p(&store),
        "--json",
    ]);
    out.assert_success();
    let v = parse_json(&out);
    assert_eq!(
        v["target"].as_str().unwrap(),
        format!("store:{}", store.display())
    );
    let refs: Vec<&str> = v["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let multi = &ctx.images().multi;
    assert!(
        refs.contains(&format!("e2e/multi:v1@{}", multi.digest).as_str()),
        "{refs:?}"
    );

    // Into a registry named as specs name it (docker://): the references carry the host.
    let host = ctx.host();
    let out = ctx.ferry([
        "import",
        p(&fx.bundle),
        "--trust",
        p(&fx.public),
        "--to",
        &format!("docker://{host}/conventions"),
        "--json",
    ]);
    out.assert_success();
    let v = parse_json(&out);
    assert_eq!(
        v["target"].as_str().unwrap(),
        format!("registry:{host}/conventions")
    );
    let wanted = format!("{host}/conventions/e2e/multi:v1@{}", multi.digest);
    assert!(
        v["references"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == &wanted),
        "{v:#}"
    );
    run_program(
        "skopeo",
        [
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{host}/conventions/e2e/multi:v1"),
        ],
    )
    .assert_success();

    // An error with --json: the human one on stderr, an object on stdout.
    let (_, other) = ctx.generate_key("other");
    for args in [
        vec![
            "bundle",
            "verify",
            p(&fx.bundle),
            "--trust",
            p(&other),
            "--json",
        ],
        vec![
            "import",
            p(&fx.bundle),
            "--trust",
            p(&other),
            "--store",
            p(&store),
            "--json",
        ],
        vec!["key", "show", "missing.pub", "--json"],
    ] {
        let out = ctx.ferry(&args);
        assert_ne!(out.code, 0, "{out:?}");
        out.assert_stderr_contains("error:");
        let v = parse_json(&out);
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v:#}");
        assert_eq!(v["exit"], out.code, "{v:#}");
        assert!(v["causes"].is_array() && v.get("hint").is_some(), "{v:#}");
    }
}

#[test]
fn ferry_store_sets_the_default_store() {
    let ctx = TestContext::new();
    let store = super::fixtures::import_fixture(&ctx, "from-env");
    let spec = ctx.write_spec(
        "demo.toml",
        &format!(
            "name = \"demo\"\n[[image]]\nref = \"oci:{}:app/web:1.0\"\n",
            super::images::demo_layout().display()
        ),
    );
    let with_env = |args: &[&str]| {
        let mut cmd = ctx.ferry_command();
        cmd.args(args).env("FERRY_STORE", &store);
        run(cmd)
    };
    with_env(&["pull", p(&spec)]).assert_success();
    // The pull went into FERRY_STORE, not the user's cache.
    assert!(!ctx.path(".cache/ferry/store").exists());
    let out = with_env(&["export", "hf", "--to", p(&ctx.path("hf"))]);
    out.assert_success();
    // --store still wins over the variable.
    let other = ctx.path("other");
    let out = with_env(&["pull", p(&spec), "--store", p(&other)]);
    out.assert_success();
    assert!(other.join("oci-layout").is_file());
}

#[test]
fn install_puts_completions_and_man_pages_where_shells_and_man_find_them() {
    let ctx = TestContext::new();
    let prefix = ctx.path("prefix");
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(repo_root().join("scripts/install.sh"))
        .arg(&prefix)
        .env("FERRY_BIN", super::context::FERRY);
    run(cmd).assert_success();
    assert!(prefix.join("bin/ferry").is_file());
    let man1 = prefix.join("share/man/man1");
    for page in [
        "ferry.1",
        "ferry-bundle-create.1",
        "ferry-serve.1",
        "ferry-import.1",
    ] {
        let text = std::fs::read_to_string(man1.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page} is not a man page");
    }
    let serve = std::fs::read_to_string(man1.join("ferry-serve.1")).unwrap();
    assert!(
        serve.contains("tls\\-cert"),
        "the serve page lacks --tls-cert"
    );
    // bash completes a command and an option from the installed script (called as
    // bash calls it: command, word, previous word).
    let completion = prefix.join("share/bash-completion/completions/ferry");
    let script = format!(
        "source {}; COMP_WORDS=(ferry bundle cr); COMP_CWORD=2; _ferry ferry cr bundle; echo \"${{COMPREPLY[@]}}\"; \
         COMP_WORDS=(ferry serve --tls-c); COMP_CWORD=2; _ferry ferry --tls-c serve; echo \"${{COMPREPLY[@]}}\"",
        p(&completion)
    );
    let out = run_program("bash", ["-c", &script]);
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("create"), "{out:?}");
    assert_eq!(lines.get(1).copied(), Some("--tls-cert"), "{out:?}");
    for shell in [
        "share/zsh/site-functions/_ferry",
        "share/fish/vendor_completions.d/ferry.fish",
    ] {
        let text = std::fs::read_to_string(prefix.join(shell)).unwrap();
        assert!(text.contains("tls-cert"), "{shell}");
    }
}

/// Without a terminal every long pass says when it starts and ends, with the bytes and
/// the rate; with --quiet nothing is said; bundle create names the store it uses.
#[test]
fn long_passes_report_progress_as_lines_and_quiet_silences_them() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let verify = ctx.ferry(["bundle", "verify", p(&fx.bundle), "--trust", p(&fx.public)]);
    verify.assert_success();
    assert!(
        verify.stderr.lines().any(|l| l.starts_with("verify: ")),
        "{verify:?}"
    );
    assert!(
        verify
            .stderr
            .lines()
            .any(|l| l.starts_with("verify: done, ") && l.contains("(100%)") && l.contains("/s")),
        "{verify:?}"
    );
    let store = ctx.path("store");
    let import = ctx.ferry([
        "import",
        p(&fx.bundle),
        "--trust",
        p(&fx.public),
        "--store",
        p(&store),
    ]);
    import.assert_success();
    assert!(import.stderr.contains("import: done, "), "{import:?}");
    // serve's startup: the catalog's pass over the index, counted, before it listens.
    let entries = std::fs::read_to_string(store.join("index.json")).unwrap();
    let n = serde_json::from_str::<serde_json::Value>(&entries).unwrap()["manifests"]
        .as_array()
        .unwrap()
        .len();
    let server = ctx.serve(&store);
    let said = server.stderr();
    let start = said.find(&format!("catalog: {n} index entries\n"));
    let done = said.find(&format!("catalog: done, {n} of {n} (100%) index entries, "));
    let listening = said.find("listening on");
    assert!(
        start.is_some() && start < done && done < listening,
        "{said}"
    );
    drop(server);
    let push = ctx.ferry([
        "import",
        p(&fx.bundle),
        "--trust",
        p(&fx.public),
        "--to",
        &format!("{}/progress", ctx.host()),
    ]);
    push.assert_success();
    assert!(push.stderr.contains("push: done, "), "{push:?}");
    let quiet = ctx.ferry([
        "bundle",
        "verify",
        p(&fx.bundle),
        "--trust",
        p(&fx.public),
        "--quiet",
    ]);
    quiet.assert_success();
    assert_eq!(quiet.stderr, "", "{quiet:?}");

    let spec = ctx.write_spec(
        "demo.toml",
        &format!(
            "name = \"demo\"\n[[image]]\nref = \"oci:{}:app/web:1.0\"\n",
            super::images::demo_layout().display()
        ),
    );
    let (key, _) = ctx.generate_key("team");
    let made = ctx.path("made-store");
    let create = ctx.ferry([
        "bundle",
        "create",
        p(&spec),
        "-o",
        p(&ctx.path("demo.ferry")),
        "--key",
        p(&key),
        "--store",
        p(&made),
    ]);
    create.assert_success();
    assert!(
        create.stderr.contains(&format!("store {}", made.display())),
        "{create:?}"
    );
}

/// On a terminal (a pty that util-linux's `script` makes) a long pass draws an indicatif
/// bar with bytes, rate and ETA, in place of the lines it prints without one.
#[test]
fn long_passes_draw_a_bar_on_a_terminal() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let ferry = ctx.ferry_command();
    let mut cmd = std::process::Command::new("script");
    for (k, v) in ferry.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let line = format!(
        "'{}' bundle verify '{}' --trust '{}'",
        ferry.get_program().to_string_lossy(),
        fx.bundle.display(),
        fx.public.display()
    );
    cmd.current_dir(ctx.path("."))
        .args(["-qec", &line, "/dev/null"]);
    let out = run(cmd);
    out.assert_success();
    // What the pty showed (stdout and stderr of ferry both) is script's stdout.
    let shown = out.stdout.replace('\r', "\n");
    assert!(shown.contains("verified "), "{out:?}");
    assert!(
        shown
            .lines()
            .any(|l| l.contains("verify") && l.contains("B/") && l.contains("ETA")),
        "no bar was drawn: {out:?}"
    );
    assert!(
        !shown.contains("verify: done,"),
        "lines on a terminal: {out:?}"
    );
}
