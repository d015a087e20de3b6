//! A bundle manifest as the reader parses it once its signature checked: JSON of any
//! shape, then `validate`, then what import and inspect derive from it.
#![no_main]

use ferry::bundle::BundleManifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = serde_json::from_slice::<BundleManifest>(data) else {
        return;
    };
    let _ = manifest.total_size();
    for e in &manifest.entries {
        let _ = (e.path(), e.blob_digest());
    }
    if manifest.validate().is_ok() {
        let _ = manifest.placements();
        for a in &manifest.artifacts {
            let _ = a.name();
            let _ = ferry::ecosystems::describe(a);
        }
        // What the writer would put back must read back the same.
        let again = serde_json::to_vec(&manifest).expect("a manifest serialises");
        let back: BundleManifest = serde_json::from_slice(&again).expect("and parses back");
        back.validate().expect("and still validates");
    }
});
