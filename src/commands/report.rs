//! `ferry report (BUNDLE | --store DIR | --log FILE) -o DIR`.

use super::*;
use crate::cli::ReportArgs;

/// What to report on.
pub enum Subject {
    Bundle(PathBuf),
    Store(PathBuf),
    Log(PathBuf),
}

/// The settings of `ferry report`.
pub struct Report {
    pub subject: Subject,
    pub output: PathBuf,
    /// With a bundle: the trust to verify it against (none: signatures are listed only).
    pub trust: Option<TrustArgs>,
}

impl Report {
    pub fn from_args(a: ReportArgs) -> Report {
        let subject = match (a.bundle, a.store, a.log) {
            (Some(b), _, _) => Subject::Bundle(b),
            (None, Some(s), _) => Subject::Store(s),
            (None, None, Some(l)) => Subject::Log(l),
            (None, None, None) => unreachable!("clap requires a bundle, --store or --log"),
        };
        let trust = (!a.keys.is_empty() || a.trust_policy.is_some()).then(|| TrustArgs {
            threshold: a.threshold.unwrap_or(1),
            keys: a.keys,
            trust_policy: a.trust_policy,
        });
        Report {
            subject,
            output: a.output,
            trust,
        }
    }
}

/// Writes the report; a bundle that does not verify against the trust given, or a broken
/// audit chain, is exit 3 after the report (which shows it) is written.
pub fn run(args: Report, g: &Globals) -> crate::error::Result<()> {
    let Report {
        subject,
        output,
        trust,
    } = args;
    if output.exists() && !output.is_dir() {
        return Err(UsageError {
            message: format!("{} exists and is not a directory", output.display()),
            hint: Some(
                "-o names a directory to write report.html, report.json and report.md into".into(),
            ),
        }
        .into());
    }
    let (report, failure) = match subject {
        Subject::Bundle(bundle) => {
            bundle_file(
                &bundle,
                "a report of a bundle that does not verify reads it again for what it claims",
            )?;
            let loaded = trust
                .as_ref()
                .map(super::bundle::LoadedTrust::load)
                .transpose()?;
            let trust = loaded.as_ref().map(|l| crate::report::BundleTrust {
                trust: l.as_trust(),
                description: describe(trust.as_ref().expect("loaded from it")),
            });
            crate::report::from_bundle(&bundle, trust)?
        }
        Subject::Store(dir) => crate::report::from_store(&dir)?,
        Subject::Log(log) => crate::report::from_log(&log)?,
    };
    let written = crate::report::write(&output, &report)?;
    if !g.quiet {
        for path in &written {
            println!("wrote {}", path.display());
        }
        let clean = crate::report::visible(&report.summary.verdict);
        println!("{clean}");
    }
    // The report is written and shows it; the exit code tells scripts.
    failure.map_or(Ok(()), Err)
}

/// `--trust build.pub, alice.pub (2 of 2)` or `trust policy TRUST.toml`.
fn describe(t: &TrustArgs) -> String {
    match &t.trust_policy {
        Some(p) => format!("trust policy {}", p.display()),
        None => format!(
            "--trust {} ({} of {} key(s) required)",
            t.keys
                .iter()
                .map(|k| k.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            t.threshold,
            t.keys.len()
        ),
    }
}
