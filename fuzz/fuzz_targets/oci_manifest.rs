//! OCI image manifests and indexes, as a registry or an OCI layout serves them, under
//! each media type a referrer may declare; and the names and platforms beside them.
#![no_main]

use ferry::oci::{self, Manifest};
use libfuzzer_sys::fuzz_target;

const DECLARED: [Option<&str>; 5] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let declared = DECLARED[kind as usize % DECLARED.len()];
    if let Ok(m) = Manifest::parse(body, declared) {
        let _ = m.is_index();
        for c in &m.children {
            let _ = c.to_json();
        }
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = oci::valid_repository(text);
        let _ = oci::valid_tag(text);
        let _ = oci::Platform::parse(text);
    }
});
