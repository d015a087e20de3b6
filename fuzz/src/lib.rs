//! What the fuzz targets share: a scratch directory, the keys they trust, and a bundle
//! read through every entry point of `ferry::bundle::reader`.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ferry::bundle::Entry;
use ferry::bundle::reader::{self, Decision, EntrySink, Trust, Verified, VerifyError};
use ferry::sign::PublicKey;

/// The keys the raw bundle target trusts: the compat fixture's, and the one that signed
/// the seed bundles in `corpus/bundle_reader_raw` (its secret half was thrown away).
/// With them, mutations that keep the signed head reach the checks of the entries.
pub fn trusted_keys() -> &'static [PublicKey] {
    static KEYS: OnceLock<Vec<PublicKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            (
                "main-d96b7ba.pub",
                include_str!("../../fixtures/compat/main-d96b7ba.pub"),
            ),
            ("seed-key.pub", include_str!("../seed-key.pub")),
        ]
        .into_iter()
        .map(|(name, text)| PublicKey::parse(Path::new(name), text).expect("a seed key parses"))
        .collect()
    })
}

/// A directory of this process's own, removed when it ends normally.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

/// A sink that reads every entry to its end and keeps nothing.
struct Discard;

impl EntrySink for Discard {
    fn stage(&mut self, _: &Entry, content: &mut dyn Read) -> io::Result<()> {
        io::copy(content, &mut io::sink()).map(|_| ())
    }
}

/// Writes `bytes` as a bundle file and reads it as `import` (trusting `keys`), `bundle
/// inspect`, `bundle sbom` and `bundle sign` would. Returns what `read` returned.
pub fn read_bundle_bytes(bytes: &[u8], keys: &[PublicKey]) -> Result<Verified, VerifyError> {
    let path: PathBuf = scratch().join("fuzz.ferry");
    std::fs::write(&path, bytes).expect("write the bundle");
    let path = reader::Input::from(path.as_path());
    let trust = Trust::Keys { keys, threshold: 1 };
    let verified = reader::read(
        &path,
        &trust,
        &mut |_| Ok(Decision::Continue),
        &mut Discard,
        reader::Progress::none(),
    );
    if let Ok(peeked) = reader::peek(&path) {
        let _ = reader::peek_entries(&path, &peeked.manifest, &["index.json"], 1 << 20);
    }
    let _ = reader::head(&path);
    verified
}
