//! ferry: carry software across an air gap in signed, verified bundles.

use clap::Parser;

use ferry::exit::ExitStatus;
use ferry::{cli, commands, error, names};

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // Output piped into `head` ends quietly, as with other command-line tools. Not for
    // the commands that talk to peers: a peer that resets a connection while ferry
    // writes to it (a vectored write has no MSG_NOSIGNAL) must be an error it handles,
    // never a SIGPIPE that kills `serve` or a push without a word.
    if !cli.command.talks_to_peers() {
        // SAFETY: restoring a signal's default disposition before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let json = cli.command.wants_json();
    match commands::run(cli) {
        Ok(()) => ExitStatus::Success.into(),
        Err(err) => {
            let (status, hint) = err.classify();
            report(&err, hint.as_deref());
            if json && !err.was_printed() {
                report_json(&err, hint.as_deref(), status);
            }
            status.into()
        }
    }
}

/// With `--json`, the same error on standard output, so a script that parses the
/// output gets an object either way: `{"error", "causes", "hint", "exit"}`.
fn report_json(err: &error::Error, hint: Option<&str>, status: ExitStatus) {
    let clean = |s: String| names::redact_text(&s);
    let v = serde_json::json!({
        "error": clean(err.to_string()),
        "causes": err.chain().skip(1).map(|c| clean(c.to_string())).collect::<Vec<_>>(),
        "hint": hint.map(|h| clean(h.to_string())),
        "exit": status as u8,
    });
    println!("{v:#}");
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
