//! minisign signature files (embedded in bundles, or beside them) and public keys.
#![no_main]

use std::path::Path;

use ferry::sign::{KeyId, PublicKey, SignatureFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(sig) = SignatureFile::parse(&text) {
        // Checking it against keys and a message it (almost surely) never signed.
        for key in ferry_fuzz::trusted_keys() {
            let _ = key.verify(data, &sig);
        }
    }
    if let Ok(key) = PublicKey::parse(Path::new("fuzz.pub"), &text) {
        let again = PublicKey::parse(Path::new("fuzz.pub"), &key.to_file_text())
            .expect("a parsed key's own text parses");
        assert_eq!(key, again);
    }
    for line in text.lines() {
        if let Some(id) = KeyId::parse(line.trim()) {
            assert_eq!(KeyId::parse(&id.to_string()), Some(id));
        }
    }
});
