//! The `[[conda]]` section of a spec.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::CondaSpec;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConda {
    channel: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    specs: Vec<String>,
    #[serde(default)]
    platforms: Vec<String>,
    #[serde(rename = "lock-file")]
    lock_file: Option<PathBuf>,
}

pub fn parse(entry: toml::Table, base: &Path) -> Result<CondaSpec, String> {
    let raw: RawConda = entry.try_into().map_err(|e| e.to_string())?;
    if let Some(file) = &raw.lock_file {
        if !raw.specs.is_empty() {
            return Err("`lock-file` is honoured exactly: leave `specs` out".into());
        }
        let path = if file.is_absolute() {
            file.clone()
        } else {
            base.join(file)
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let lock = super::parse_explicit(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let platforms = super::parse_platforms(&raw.platforms)?;
        return Ok(CondaSpec {
            channels: Vec::new(),
            specs: Vec::new(),
            platforms,
            lock: Some(lock),
        });
    }
    let names: Vec<String> = raw.channel.into_iter().chain(raw.channels).collect();
    if names.is_empty() {
        return Err("`channel` (or `channels`, in priority order) is required".into());
    }
    if raw.specs.is_empty() {
        return Err("`specs` is required, such as [\"python 3.11.*\"]".into());
    }
    if raw.platforms.is_empty() {
        return Err("`platforms` is required: the target's subdirs, such as [\"linux-64\"] (noarch always comes along)".into());
    }
    let channels = names
        .iter()
        .map(|c| super::channel_url(c))
        .collect::<Result<Vec<_>, _>>()?;
    let specs = super::parse_specs(&raw.specs)?;
    let platforms = super::parse_platforms(&raw.platforms)?;
    Ok(CondaSpec {
        channels,
        specs,
        platforms,
        lock: None,
    })
}
