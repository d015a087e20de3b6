//! `ferry pull`: fetch what a spec names into a store, or plan it (`--dry-run`).

use super::*;

/// The arguments of `ferry pull`.
pub struct Pull {
    pub spec: PathBuf,
    pub store: StoreArg,
    pub jobs: usize,
    pub plan: PlanArgs,
}

pub fn run(args: Pull, g: &Globals) -> crate::error::Result<()> {
    let Pull {
        spec,
        store,
        jobs,
        plan,
    } = args;
    let registry = g.registry.clone();
    let reporter = g.reporter.clone();

    if plan.dry_run {
        return dry_run(&spec, store.store, registry, jobs, plan.json, &reporter);
    }
    let (_, store, artifacts) = pull_spec(
        &spec,
        store.store,
        PullOptions {
            registry,
            jobs,
            plan: None,
        },
        &reporter,
    )?;
    if !g.quiet {
        println!(
            "{} artifact(s) in {}",
            artifacts.len(),
            store.root().display()
        );
    }
    Ok(())
}
