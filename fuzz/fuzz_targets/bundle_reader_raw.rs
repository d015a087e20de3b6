//! Hostile bytes as a bundle file: every reader entry point must refuse them with an
//! error, never panic, hang or allocate without bound. The bytes are read twice: as the
//! file itself, and as the tar inside a zstd frame, so that mutations reach tar headers
//! and entries and not only a zstd stream that then fails to decode. The seeds are real
//! bundles (and their tars) signed by a key the reader trusts here, so mutations that
//! keep the signed head reach the checks of the entries.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = ferry_fuzz::trusted_keys();
    let _ = ferry_fuzz::read_bundle_bytes(data, keys);
    let compressed = zstd::bulk::compress(data, 1).expect("compress");
    let _ = ferry_fuzz::read_bundle_bytes(&compressed, keys);
});
