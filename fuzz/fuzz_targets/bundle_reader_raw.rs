//! Hostile bytes as a bundle file: every reader entry point must refuse them with an
//! error, never panic, hang or allocate without bound. The seeds are real bundles signed
//! by a key the reader trusts here, so mutations past the signed head reach the entry
//! checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ferry_fuzz::read_bundle_bytes(data, ferry_fuzz::trusted_keys());
});
