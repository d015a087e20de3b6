//! `--dry-run`: resolve, print what would be fetched and what the store holds, fetch
//! nothing but metadata, write nothing.

use super::context::{TestContext, p, parse_json};
use super::python::PyIndex;

fn spec(ctx: &TestContext, index: &PyIndex) -> String {
    format!(
        "name = \"plan\"\n\n[[image]]\nref = \"{}/e2e/docker:v1\"\n\n[[python]]\nindex-url = \"{}\"\nrequirements = [\"six==1.16.0\"]\npython-version = \"3.11\"\nplatforms = [\"manylinux_2_28_x86_64\"]\n\n[[conda]]\nchannel = \"{}\"\nspecs = [\"app\"]\nplatforms = [\"linux-64\"]\n\n[[model]]\nrepo = \"org/tiny-bert\"\nendpoint = \"{}\"\n",
        ctx.host(),
        index.url(),
        super::conda::conda().channel_url(),
        super::models::models().hub.url(),
    )
}

#[test]
fn plan_dry_run_fetches_and_writes_nothing_then_shows_what_the_store_holds() {
    let ctx = TestContext::new();
    let index = PyIndex::start(&super::python::py().wheel_dir, &[]);
    let spec = ctx.write_spec("ferry.toml", &spec(&ctx, &index));
    let store = ctx.path("store");
    let dry = |json: bool| {
        let mut args = vec!["pull", p(&spec), "--store", p(&store), "--dry-run"];
        if json {
            args.push("--json");
        }
        let mut cmd = ctx.ferry_command();
        cmd.env("PIP_CONFIG_FILE", "/dev/null").args(&args);
        let out = super::context::run(cmd);
        out.assert_success();
        out
    };
    let resolves = |log: &str| {
        log.lines()
            .filter(|l| l.contains("\"GET ") && l.contains(".whl HTTP"))
            .count()
    };

    let plan = parse_json(&dry(true));
    assert!(!store.exists(), "a dry run created the store");
    assert_eq!(resolves(&index.log()), 0, "a dry run downloaded a wheel");
    let items = plan["items"].as_array().unwrap();
    for eco in ["image", "python", "conda", "model"] {
        assert!(
            items.iter().any(|i| i["ecosystem"] == eco),
            "no {eco} in the plan: {plan:#}"
        );
    }
    assert!(items.iter().all(|i| i["present"] == false), "{plan:#}");
    assert!(
        items
            .iter()
            .any(|i| i["name"] == "six-1.16.0-py2.py3-none-any.whl")
    );
    assert_eq!(
        plan["fetch"]["count"].as_u64().unwrap() as usize,
        items.len()
    );
    let text = dry(false);
    assert!(text.stdout.contains("to fetch"), "{text:?}");

    // After a real pull the same plan says everything is there.
    let mut cmd = ctx.ferry_command();
    cmd.env("PIP_CONFIG_FILE", "/dev/null")
        .args(["pull", p(&spec), "--store", p(&store)]);
    super::context::run(cmd).assert_success();
    let before = super::context::snapshot_tree(&store, &[]);
    let plan = parse_json(&dry(true));
    assert_eq!(plan["fetch"]["count"], 0, "{plan:#}");
    assert_eq!(
        plan["present"]["count"].as_u64().unwrap() as usize,
        plan["items"].as_array().unwrap().len()
    );
    assert_eq!(
        before,
        super::context::snapshot_tree(&store, &[]),
        "a dry run wrote"
    );

    // bundle create --dry-run needs neither -o nor --key, and writes no bundle.
    let out = ctx.ferry([
        "bundle",
        "create",
        p(&spec),
        "--store",
        p(&store),
        "--dry-run",
    ]);
    out.assert_success();
    assert!(out.stdout.contains("0 to fetch"), "{out:?}");
}
