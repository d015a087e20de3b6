//! Export of conda packages as channel directories.

use std::fs;
use std::path::Path;

use crate::error::Context as _;

use super::record::{self, CondaPackage};
use crate::export::{copy_blob, write_atomic};
use crate::names::{self, ChannelName, Subdir};
use crate::store::Store;

/// Writes every conda channel of the store as a directory any web server or `file://`
/// serves: `out/<channel>/<subdir>/repodata.json` and the packages, `noarch` always.
pub fn conda_channels(
    store: &Store,
    out: &Path,
    reporter: &dyn crate::reporter::Reporter,
) -> crate::error::Result<usize> {
    let mut channels: std::collections::BTreeMap<
        ChannelName,
        std::collections::BTreeMap<Subdir, Vec<CondaPackage>>,
    > = Default::default();
    for p in record::packages(store)? {
        let subdirs = channels.entry(p.channel.clone()).or_default();
        subdirs
            .entry(Subdir::new("noarch").expect("a subdir"))
            .or_default();
        subdirs.entry(p.subdir.clone()).or_default().push(p);
    }
    let progress = crate::export::progress(
        store,
        channels
            .values()
            .flat_map(|s| s.values().flatten().map(|p| &p.sha256)),
        reporter,
    );
    let mut count = 0;
    for (channel, subdirs) in &channels {
        for (subdir, packages) in subdirs {
            let dir = names::join(&names::join(out, channel), subdir);
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            for p in packages {
                copy_blob(
                    store,
                    &p.sha256,
                    &names::join(&dir, &p.file_name),
                    progress.as_ref(),
                )?;
                count += 1;
            }
            let refs: Vec<&CondaPackage> = packages.iter().collect();
            let repodata = serde_json::to_vec(&record::repodata(subdir, &refs))?;
            write_atomic(&dir.join("repodata.json"), &repodata)?;
        }
    }
    Ok(count)
}
