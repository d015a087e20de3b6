//! The bundle: a zstd-compressed tar. First the signed bundle manifest and its
//! signature(s), then an OCI image layout of everything carried.

pub mod manifest;
pub mod reader;
pub mod writer;

pub use manifest::{BundleManifest, Entry};
pub use reader::{EntrySink, Verified, VerifyError};

/// The first entry of every bundle.
pub const MANIFEST_NAME: &str = "ferry-manifest.json";
/// The signature made by `bundle create`; co-signatures are `ferry-manifest.json.<KEYID>.minisig`.
pub const SIGNATURE_NAME: &str = "ferry-manifest.json.minisig";
/// The `format` of bundles this version writes and reads.
pub const FORMAT: &str = "dev.ferry.bundle.v1";
/// The manifest is read into memory before its signature is checked: bound it.
pub const MAX_MANIFEST_SIZE: u64 = 64 << 20;
pub const MAX_SIGNATURE_SIZE: u64 = 4 << 10;

pub fn is_signature_name(path: &str) -> bool {
    path == SIGNATURE_NAME
        || (path.starts_with("ferry-manifest.json.")
            && path.ends_with(".minisig")
            && !path.contains('/'))
}
