//! ferry: carry software across an air gap in signed, verified bundles.

mod artifact;
mod bundle;
mod cli;
mod commands;
mod conda;
mod digest;
mod escape;
mod exit;
mod export;
mod fetch;
mod import;
mod models;
mod names;
mod oci;
mod plan;
mod pull;
mod python;
mod reporter;
mod serve;
mod sign;
mod sources;
mod spec;
mod store;
mod targets;
mod trust;

use clap::Parser;

use crate::exit::{Classify, ExitStatus};

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitStatus::Success.into(),
        Err(err) => {
            let (status, hint) = classify(&err);
            report(&err, hint.as_deref());
            status.into()
        }
    }
}

/// The exit code and hint of the first cause in the chain that knows them.
fn classify(err: &anyhow::Error) -> (ExitStatus, Option<String>) {
    for cause in err.chain() {
        macro_rules! try_as {
            ($($t:ty),*) => {$(
                if let Some(e) = cause.downcast_ref::<$t>() {
                    return (e.exit_status(), e.hint());
                }
            )*};
        }
        try_as!(
            spec::SpecError,
            sign::KeyError,
            sign::SignatureError,
            bundle::VerifyError,
            bundle::writer::WriteError,
            store::StoreError,
            sources::SourceError,
            targets::registry::PushError,
            commands::UsageError,
            python::PythonError,
            models::ModelError,
            conda::CondaError,
            names::NameError,
            fetch::FetchError,
            trust::policy::PolicyError
        );
    }
    (ExitStatus::Error, None)
}

/// `error:` with the top message, `Caused by:` with the chain, `hint:` with the fix.
fn report(err: &anyhow::Error, hint: Option<&str>) {
    // Whatever a cause quotes, credentials in a URL are never printed.
    let clean = |s: String| names::redact_text(&s);
    eprintln!("error: {}", clean(err.to_string()));
    let causes: Vec<String> = err.chain().skip(1).map(|c| clean(c.to_string())).collect();
    if !causes.is_empty() {
        eprintln!("Caused by:");
        for (i, c) in causes.iter().enumerate() {
            eprintln!("  {i}: {c}");
        }
    }
    if let Some(h) = hint {
        eprintln!("hint: {}", clean(h.to_string()));
    }
}
