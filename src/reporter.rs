//! Progress reporting. Core code talks to the `Reporter` trait; this is the only module
//! that knows indicatif. Bars on a terminal, plain lines otherwise, nothing with --quiet.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Receives what the work is doing.
pub trait Reporter: Send + Sync {
    /// Starts a byte-counted task (a download, a blob written into a bundle).
    fn task(&self, label: &str, total: Option<u64>) -> Box<dyn Task>;
    /// Starts the overall progress of a long pass (verify, import, export, push): bytes,
    /// rate and time left on a terminal; a line at its start, every
    /// `OVERALL_EVERY` and at its end otherwise.
    fn overall(&self, label: &str, total: Option<u64>) -> Box<dyn Task>;
    /// Starts the overall progress of a pass counted in items rather than bytes
    /// (`unit`, plural: "index entries"); its task advances by items.
    fn counted(&self, label: &str, total: u64, unit: &'static str) -> Box<dyn Task>;
    /// A line worth telling a person (one step done).
    fn line(&self, text: &str);
}

pub trait Task: Send + Sync {
    fn advance(&self, bytes: u64);
    /// Bytes that were already there (a resumed download): they count toward the
    /// position, not the rate.
    fn resume_at(&self, bytes: u64);
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
    fn overall(&self, _: &str, _: Option<u64>) -> Box<dyn Task> {
        Box::new(NoTask)
    }
    fn counted(&self, _: &str, _: u64, _: &'static str) -> Box<dyn Task> {
        Box::new(NoTask)
    }
    fn line(&self, _: &str) {}
}

/// A task that shows nothing.
pub struct NoTask;

impl Task for NoTask {
    fn advance(&self, _: u64) {}
    fn resume_at(&self, _: u64) {}
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
            done: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
        })
    }
    fn overall(&self, label: &str, total: Option<u64>) -> Box<dyn Task> {
        eprintln!(
            "{label}: {}",
            total.map_or_else(|| "started".to_string(), |t| HumanBytes(t).to_string())
        );
        Box::new(OverallLine::new(label, total, None))
    }
    fn counted(&self, label: &str, total: u64, unit: &'static str) -> Box<dyn Task> {
        eprintln!("{label}: {total} {unit}");
        Box::new(OverallLine::new(label, Some(total), Some(unit)))
    }
    fn line(&self, text: &str) {
        eprintln!("{text}");
    }
}

struct LineTask {
    label: String,
    total: Option<u64>,
    started: Instant,
    done: AtomicU64,
    /// Of `done`, the bytes a resumed download already had.
    resumed: AtomicU64,
}

/// The rate of what was transferred (resumed bytes were not).
fn rate(done: u64, resumed: u64, started: Instant) -> HumanBytes {
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    HumanBytes((done.saturating_sub(resumed) as f64 / secs) as u64)
}

impl Task for LineTask {
    fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes, Relaxed);
    }
    fn resume_at(&self, bytes: u64) {
        self.done.fetch_add(bytes, Relaxed);
        self.resumed.fetch_add(bytes, Relaxed);
    }
    fn finish(&self) {
        let done = self.done.load(Relaxed);
        if self.total.unwrap_or(done) >= LINE_THRESHOLD {
            let resumed = self.resumed.load(Relaxed);
            eprintln!(
                "  {} {} ({}/s{})",
                self.label,
                HumanBytes(done),
                rate(done, resumed, self.started),
                if resumed > 0 {
                    format!(", resumed at {}", HumanBytes(resumed))
                } else {
                    String::new()
                }
            );
        }
    }
}

/// How often a pass's overall progress is a line of its own without a terminal.
const OVERALL_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// A long pass's progress as lines: at its start (by `overall`), every
/// `OVERALL_EVERY`, and at its end.
struct OverallLine {
    label: String,
    total: Option<u64>,
    /// What is counted: bytes (None) or items of this name.
    unit: Option<&'static str>,
    started: Instant,
    done: AtomicU64,
    resumed: AtomicU64,
    last: std::sync::Mutex<Instant>,
}

impl OverallLine {
    fn new(label: &str, total: Option<u64>, unit: Option<&'static str>) -> OverallLine {
        OverallLine {
            label: label.to_string(),
            total,
            unit,
            started: Instant::now(),
            done: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            last: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn progress(&self) -> String {
        let done = self.done.load(Relaxed);
        let resumed = self.resumed.load(Relaxed);
        let amount = |n: u64| match self.unit {
            Some(_) => n.to_string(),
            None => HumanBytes(n).to_string(),
        };
        let of = match self.total {
            Some(t) if t > 0 => {
                format!(" of {} ({:.0}%)", amount(t), done as f64 * 100.0 / t as f64)
            }
            _ => String::new(),
        };
        match self.unit {
            Some(unit) => {
                let secs = self.started.elapsed().as_secs_f64().max(1e-3);
                format!("{done}{of} {unit}, {:.0}/s", done as f64 / secs)
            }
            None => format!(
                "{}{of}, {}/s",
                HumanBytes(done),
                rate(done, resumed, self.started)
            ),
        }
    }
}

impl Task for OverallLine {
    fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes, Relaxed);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= OVERALL_EVERY {
            *last = Instant::now();
            eprintln!("{}: {}", self.label, self.progress());
        }
    }
    fn resume_at(&self, bytes: u64) {
        self.done.fetch_add(bytes, Relaxed);
        self.resumed.fetch_add(bytes, Relaxed);
    }
    fn finish(&self) {
        eprintln!(
            "{}: done, {} in {:.1}s",
            self.label,
            self.progress(),
            self.started.elapsed().as_secs_f64()
        );
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
    fn overall(&self, label: &str, total: Option<u64>) -> Box<dyn Task> {
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{prefix:>12.bold} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::no_length().with_style(
                ProgressStyle::with_template("{prefix:>12.bold} {bytes} {binary_bytes_per_sec}")
                    .expect("valid template"),
            ),
        };
        // Above the per-file bars.
        let bar = self.multi.insert(0, bar);
        bar.set_prefix(short(label));
        Box::new(BarTask(bar))
    }
    fn counted(&self, label: &str, total: u64, unit: &'static str) -> Box<dyn Task> {
        let bar = ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{prefix:>12.bold} [{wide_bar}] {human_pos}/{human_len} {msg} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(short(label));
        bar.set_message(unit);
        let bar = self.multi.insert(0, bar);
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
    fn resume_at(&self, bytes: u64) {
        // Start the rate and ETA afresh from here.
        self.0.inc(bytes);
        self.0.reset_eta();
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
