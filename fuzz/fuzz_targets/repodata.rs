//! conda repodata: a channel's `repodata.json` as the gateway reads it, a package record
//! as a bundle carries it, and an `@EXPLICIT` lock.
#![no_main]

use ferry::ecosystems::conda::{parse_explicit, record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            // Parsed as the gateway parses it. Not `into_repo_data_records`, which ferry
            // never calls: it panics on a record whose `subdir` holds a `:` (rattler's
            // `compute_package_url`; regressions/repodata-subdir-with-colon).
            let _ = serde_json::from_slice::<rattler_conda_types::RepoData>(body);
        }
        1 => {
            if let Ok(package) = record::read(body) {
                let _ = (package.repository(), package.tag(), package.digest());
                let _ = record::repodata(&package.subdir, &[&package]);
            }
        }
        _ => {
            let _ = parse_explicit(&String::from_utf8_lossy(body));
        }
    }
});
