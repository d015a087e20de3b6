//! What an importer remembers per target: the highest sequence imported per series
//! (rollback protection) and an append-only audit log of every import.

pub mod policy;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::{Verified, VerifyError};
use crate::digest::Digest;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesRecord {
    pub highest: u64,
    /// The manifest of the bundle with that sequence (absent while a create that
    /// reserved it is still writing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Digest>,
    pub imported: String,
}

/// The per-target state directory: `series.json` (and the audit log, see `audit`).
pub struct TargetState {
    dir: PathBuf,
    series: BTreeMap<String, SeriesRecord>,
}

pub enum Freshness {
    /// Newer than anything imported from the series.
    New,
    /// This very bundle was the last one imported.
    AlreadyImported,
}

impl TargetState {
    pub fn load(dir: &Path) -> crate::error::Result<TargetState> {
        let path = dir.join("series.json");
        let series = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                crate::error::Error::msg(format!("{} is damaged: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(
                    crate::error::Error::from(e).context(format!("cannot read {}", path.display()))
                );
            }
        };
        Ok(TargetState {
            dir: dir.to_path_buf(),
            series,
        })
    }

    /// Refuses a bundle older than one already imported, or a reused sequence.
    pub fn check(&self, v: &Verified) -> Result<Freshness, VerifyError> {
        let m = &v.manifest;
        match self.series.get(&m.series) {
            None => Ok(Freshness::New),
            Some(r) if m.sequence > r.highest => Ok(Freshness::New),
            Some(r) if m.sequence == r.highest && r.manifest == Some(v.manifest_digest) => {
                Ok(Freshness::AlreadyImported)
            }
            Some(r) if m.sequence == r.highest => Err(VerifyError::SequenceReused {
                series: m.series.clone(),
                sequence: m.sequence,
            }),
            Some(r) => Err(VerifyError::Rollback {
                series: m.series.clone(),
                sequence: m.sequence,
                highest: r.highest,
            }),
        }
    }

    /// Records a completed import: the series' new highest sequence. (What was imported,
    /// by whom and under which policy goes to the target's audit log.)
    pub fn record(&mut self, v: &Verified) -> crate::error::Result<()> {
        fs::create_dir_all(&self.dir)?;
        self.series.insert(
            v.manifest.series.clone(),
            SeriesRecord {
                highest: v.manifest.sequence,
                manifest: Some(v.manifest_digest),
                imported: now_rfc3339(),
            },
        );
        self.save()
    }

    /// Takes the sequence for the next bundle of `series` written from the state in
    /// `dir`: one past the last, and never below the current time in seconds, so that
    /// bundles from different machines still increase. Reserved under a lock and
    /// recorded at once, so two creates running together never get the same number (a
    /// create that fails leaves a gap, which importers accept).
    pub fn reserve_sequence(dir: &Path, series: &str) -> crate::error::Result<u64> {
        let _lock = lock(dir)?;
        let mut state = TargetState::load(dir)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let last = state.series.get(series).map_or(0, |r| r.highest);
        let sequence = now.max(last + 1);
        state.series.insert(
            series.to_string(),
            SeriesRecord {
                highest: sequence,
                manifest: None,
                imported: now_rfc3339(),
            },
        );
        state.save()?;
        Ok(sequence)
    }

    /// Records the bundle written with `sequence` (never lowering the highest).
    pub fn record_created(
        dir: &Path,
        series: &str,
        sequence: u64,
        manifest: Digest,
    ) -> crate::error::Result<()> {
        let _lock = lock(dir)?;
        let mut state = TargetState::load(dir)?;
        let highest = state.series.get(series).map_or(0, |r| r.highest);
        if sequence >= highest {
            state.series.insert(
                series.to_string(),
                SeriesRecord {
                    highest: sequence,
                    manifest: Some(manifest),
                    imported: now_rfc3339(),
                },
            );
            state.save()?;
        }
        Ok(())
    }

    fn save(&self) -> crate::error::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        serde_json::to_writer_pretty(&mut tmp, &self.series)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.dir.join("series.json"))?;
        Ok(())
    }
}

/// The lock every writer of the state in `dir` takes.
fn lock(dir: &Path) -> crate::error::Result<fs::File> {
    fs::create_dir_all(dir)?;
    let path = dir.join("state.lock");
    let file = fs::File::create(&path).map_err(|e| {
        crate::error::Error::from(e).context(format!("cannot create {}", path.display()))
    })?;
    file.lock().map_err(|e| {
        crate::error::Error::from(e).context(format!("cannot lock {}", path.display()))
    })?;
    Ok(file)
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}
