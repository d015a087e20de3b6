//! A spec file (`ferry.toml`): TOML of any shape, every section's entries.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// An empty directory, so relative paths in a spec name nothing.
fn base() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ferry::spec::Spec::parse(Path::new("ferry.toml"), base(), text);
});
