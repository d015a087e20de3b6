//! ferry: carry software across an air gap in signed, verified bundles.

use clap::Parser;

use ferry::exit::ExitStatus;
use ferry::{cli, commands, error, names};

fn main() -> std::process::ExitCode {
    // Output piped into `head` ends quietly, as with other command-line tools.
    // SAFETY: restoring a signal's default disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitStatus::Success.into(),
        Err(err) => {
            let (status, hint) = err.classify();
            report(&err, hint.as_deref());
            status.into()
        }
    }
}

/// `error:` with the top message, `Caused by:` with the chain, `hint:` with the fix.
fn report(err: &error::Error, hint: Option<&str>) {
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
