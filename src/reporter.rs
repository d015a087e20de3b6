//! Progress reporting. Core code talks to the `Reporter` trait; this is the only module
//! that knows indicatif. Bars on a terminal, plain lines otherwise, nothing with --quiet.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Receives what the work is doing.
pub trait Reporter: Send + Sync {
    /// Starts a byte-counted task (a download, a blob written into a bundle).
    fn task(&self, label: &str, total: Option<u64>) -> Box<dyn Task>;
    /// A line worth telling a person (one step done).
    fn line(&self, text: &str);
}

pub trait Task: Send + Sync {
    fn advance(&self, bytes: u64);
    fn finish(&self);
}

pub fn for_stderr(quiet: bool) -> Arc<dyn Reporter> {
    if quiet {
        Arc::new(Quiet)
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars::new())
    } else {
        Arc::new(Lines)
    }
}

pub struct Quiet;

impl Reporter for Quiet {
    fn task(&self, _: &str, _: Option<u64>) -> Box<dyn Task> {
        Box::new(NoTask)
    }
    fn line(&self, _: &str) {}
}

struct NoTask;

impl Task for NoTask {
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// Plain lines on stderr, one when a large task ends: for logs and CI.
pub struct Lines;

/// Tasks smaller than this are not worth a line of their own.
const LINE_THRESHOLD: u64 = 8 << 20;

impl Reporter for Lines {
    fn task(&self, label: &str, total: Option<u64>) -> Box<dyn Task> {
        Box::new(LineTask {
            label: label.to_string(),
            total,
            started: Instant::now(),
            done: std::sync::atomic::AtomicU64::new(0),
        })
    }
    fn line(&self, text: &str) {
        eprintln!("{text}");
    }
}

struct LineTask {
    label: String,
    total: Option<u64>,
    started: Instant,
    done: std::sync::atomic::AtomicU64,
}

impl Task for LineTask {
    fn advance(&self, bytes: u64) {
        self.done
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }
    fn finish(&self) {
        let done = self.done.load(std::sync::atomic::Ordering::Relaxed);
        if self.total.unwrap_or(done) >= LINE_THRESHOLD {
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "  {} {} ({}/s)",
                self.label,
                HumanBytes(done),
                HumanBytes((done as f64 / secs) as u64)
            );
        }
    }
}

/// indicatif bars for a terminal.
pub struct Bars {
    multi: MultiProgress,
}

impl Bars {
    fn new() -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        }
    }
}

impl Reporter for Bars {
    fn task(&self, label: &str, total: Option<u64>) -> Box<dyn Task> {
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{prefix:>12.cyan} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::no_length().with_style(
                ProgressStyle::with_template("{prefix:>12.cyan} {bytes} {bytes_per_sec} {msg}")
                    .expect("valid template"),
            ),
        };
        let bar = self.multi.add(bar);
        bar.set_prefix(short(label));
        Box::new(BarTask(bar))
    }
    fn line(&self, text: &str) {
        let _ = self.multi.println(text);
    }
}

fn short(label: &str) -> String {
    if label.chars().count() > 24 {
        format!("{}…", label.chars().take(23).collect::<String>())
    } else {
        label.to_string()
    }
}

struct BarTask(ProgressBar);

impl Task for BarTask {
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
