//! Bundles described structurally: tar entries with names from those a bundle holds
//! and those it must never hold (`../x`, absolute paths, long names), links, devices,
//! sizes in the header that lie, and a manifest that lists them truly or not, signed by
//! a key the reader trusts. So the fuzzer gets past the signature into the entry checks.
//!
//! Beyond "never panic": when the reader accepts a bundle, every entry it was given after
//! the signatures must be a regular file the manifest lists at that place, with that size
//! and sha256.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use ferry::bundle;
use ferry::digest::Digest;
use ferry::sign::{PublicKey, SecretKey};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    /// `false` leaves the manifest out: the first entry is then whatever comes next.
    manifest_first: bool,
    /// Bytes in place of the manifest the entries make.
    raw_manifest: Option<Vec<u8>>,
    sequence: u64,
    signatures: Vec<Sig>,
    entries: Vec<TarEntry>,
    /// Listed in the manifest, absent from the tar.
    missing: Vec<(Name, u16)>,
    /// Rotates the manifest's listing against the tar's order.
    rotate: u8,
    /// Leaves out the two zero blocks that end a tar.
    no_end: bool,
    /// Cuts this many bytes off the compressed bundle.
    cut: Option<u16>,
}

#[derive(Arbitrary, Debug)]
enum Sig {
    Valid,
    /// A co-signature by the same key, named for it.
    Cosign,
    /// A good signature of other bytes.
    OtherMessage(Vec<u8>),
    Garbage(Vec<u8>),
    Oversized,
    Link,
}

#[derive(Arbitrary, Debug)]
struct TarEntry {
    name: Name,
    /// Use a GNU long-name entry for the name, as tar does past 100 bytes.
    long_name: bool,
    kind: Kind,
    content: Content,
    /// A size in the header other than the content's length.
    declared: Option<u64>,
    listing: Listing,
}

#[derive(Arbitrary, Debug, Clone)]
enum Name {
    Manifest,
    Signature,
    OciLayout,
    IndexJson,
    /// `blobs/sha256/<hex of the entry's own content>`.
    OwnBlob,
    Blob([u8; 32]),
    Parent,
    Absolute,
    DotSlash,
    TrailingSlash,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Regular,
    Symlink(Name),
    HardLink(Name),
    Char,
    Block,
    Directory,
    Fifo,
    Raw(u8),
}

#[derive(Arbitrary, Debug)]
enum Content {
    Bytes(Vec<u8>),
    Fill { byte: u8, len: u16 },
}

#[derive(Arbitrary, Debug)]
enum Listing {
    Exact,
    Unlisted,
    Size(u64),
    Digest([u8; 32]),
    Twice,
}

impl Content {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Content::Bytes(b) => b.clone(),
            Content::Fill { byte, len } => vec![*byte; *len as usize],
        }
    }
}

impl Name {
    fn bytes(&self, content: &[u8]) -> Vec<u8> {
        match self {
            Name::Manifest => bundle::MANIFEST_NAME.into(),
            Name::Signature => bundle::SIGNATURE_NAME.into(),
            Name::OciLayout => "oci-layout".into(),
            Name::IndexJson => "index.json".into(),
            Name::OwnBlob => format!("blobs/sha256/{}", Digest::of(content).hex()).into(),
            Name::Blob(b) => format!("blobs/sha256/{}", hex(b)).into(),
            Name::Parent => "../x".into(),
            Name::Absolute => "/etc/x".into(),
            Name::DotSlash => "./index.json".into(),
            Name::TrailingSlash => "index.json/".into(),
            Name::Other(s) => s.as_bytes().to_vec(),
        }
    }
}

/// One listing of the manifest, as the fuzzer wants it (true or not).
#[derive(Clone)]
struct Listed {
    path: String,
    size: u64,
    sha256: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn key() -> &'static (SecretKey, PublicKey) {
    static KEY: OnceLock<(SecretKey, PublicKey)> = OnceLock::new();
    KEY.get_or_init(|| {
        let (secret, public, _) =
            ferry::sign::generate(&ferry_fuzz::scratch().join("key")).expect("generate a key");
        (
            SecretKey::load(&secret).expect("load it"),
            PublicKey::load(&public).expect("load it"),
        )
    })
}

/// One 512-byte tar header block (GNU), the name and link name cut to fit.
fn header(name: &[u8], typeflag: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_size(size);
    h.set_entry_type(tar::EntryType::new(typeflag));
    let old = h.as_old_mut();
    let n = name.len().min(100);
    old.name[..n].copy_from_slice(&name[..n]);
    let l = link.len().min(100);
    old.linkname[..l].copy_from_slice(&link[..l]);
    h.set_cksum();
    *h.as_bytes()
}

fn push(
    tar: &mut Vec<u8>,
    name: &[u8],
    long: bool,
    typeflag: u8,
    size: u64,
    data: &[u8],
    link: &[u8],
) {
    if long {
        let mut long_name = name.to_vec();
        long_name.push(0);
        push(
            tar,
            b"././@LongLink",
            false,
            b'L',
            long_name.len() as u64,
            &long_name,
            b"",
        );
    }
    tar.extend_from_slice(&header(name, typeflag, size, link));
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

#[derive(Clone)]
struct Built {
    name: String,
    regular: bool,
    size: u64,
    content: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let (secret, public) = key();
    let mut built = Vec::new();
    let mut listed = Vec::new();
    for e in &input.entries {
        let content = e.content.bytes();
        let name = e.name.bytes(&content);
        let entry = Listed {
            path: String::from_utf8_lossy(&name).into_owned(),
            size: content.len() as u64,
            sha256: Digest::of(&content).hex(),
        };
        match e.listing {
            Listing::Exact => listed.push(entry),
            Listing::Unlisted => {}
            Listing::Size(size) => listed.push(Listed { size, ..entry }),
            Listing::Digest(d) => listed.push(Listed {
                sha256: hex(&d),
                ..entry
            }),
            Listing::Twice => listed.extend([entry.clone(), entry]),
        }
        built.push((e, name, content));
    }
    for (name, size) in &input.missing {
        listed.push(Listed {
            path: String::from_utf8_lossy(&name.bytes(b"")).into_owned(),
            size: u64::from(*size),
            sha256: Digest::of(b"").hex(),
        });
    }
    if !listed.is_empty() {
        let n = input.rotate as usize % listed.len();
        listed.rotate_left(n);
    }
    // As JSON, not as ferry's typed manifest: the listing may name paths and digests
    // that ferry's own types refuse to hold.
    let listed: Vec<serde_json::Value> = listed
        .into_iter()
        .map(|l| serde_json::json!({"path": l.path, "size": l.size, "sha256": l.sha256}))
        .collect();
    let manifest = serde_json::json!({
        "format": bundle::FORMAT,
        "series": "fuzz",
        "sequence": input.sequence,
        "created": "2026-01-01T00:00:00Z",
        "tool": "ferry-fuzz",
        "policy": {"verdict": "not-evaluated"},
        "artifacts": [],
        "entries": listed,
    });
    let manifest_bytes = match &input.raw_manifest {
        Some(raw) => raw.clone(),
        None => serde_json::to_vec_pretty(&manifest).expect("serialise"),
    };

    let mut tar = Vec::new();
    // Every tar entry as the reader should see it: (name, regular, size, content), or
    // `None` once the model can no longer say (a lying size, a raw extension header, a
    // name the header cannot hold).
    let mut seen: Vec<Option<Built>> = Vec::new();
    let plain = |name: &[u8], kind: u8, data: &[u8]| Built {
        name: String::from_utf8_lossy(name).into_owned(),
        regular: kind == b'0',
        size: data.len() as u64,
        content: data.to_vec(),
    };
    if input.manifest_first {
        push(
            &mut tar,
            bundle::MANIFEST_NAME.as_bytes(),
            false,
            b'0',
            manifest_bytes.len() as u64,
            &manifest_bytes,
            b"",
        );
        seen.push(Some(plain(
            bundle::MANIFEST_NAME.as_bytes(),
            b'0',
            &manifest_bytes,
        )));
    }
    for s in &input.signatures {
        let (name, kind, text): (String, u8, Vec<u8>) = match s {
            Sig::Valid => (
                bundle::SIGNATURE_NAME.into(),
                b'0',
                secret.sign(&manifest_bytes, "fuzz").into(),
            ),
            Sig::Cosign => (
                format!("ferry-manifest.json.{}.minisig", secret.id),
                b'0',
                secret.sign(&manifest_bytes, "fuzz").into(),
            ),
            Sig::OtherMessage(m) => (
                bundle::SIGNATURE_NAME.into(),
                b'0',
                secret.sign(m, "fuzz").into(),
            ),
            Sig::Garbage(g) => (bundle::SIGNATURE_NAME.into(), b'0', g.clone()),
            Sig::Oversized => (bundle::SIGNATURE_NAME.into(), b'0', vec![b'a'; 5000]),
            Sig::Link => (bundle::SIGNATURE_NAME.into(), b'2', Vec::new()),
        };
        push(
            &mut tar,
            name.as_bytes(),
            false,
            kind,
            text.len() as u64,
            &text,
            b"/etc/passwd",
        );
        seen.push(Some(plain(name.as_bytes(), kind, &text)));
    }
    for (e, name, content) in &built {
        let (typeflag, link) = match &e.kind {
            Kind::Regular => (b'0', Vec::new()),
            Kind::Symlink(to) => (b'2', to.bytes(b"")),
            Kind::HardLink(to) => (b'1', to.bytes(b"")),
            Kind::Char => (b'3', Vec::new()),
            Kind::Block => (b'4', Vec::new()),
            Kind::Directory => (b'5', Vec::new()),
            Kind::Fifo => (b'6', Vec::new()),
            Kind::Raw(t) => (*t, Vec::new()),
        };
        let size = e.declared.unwrap_or(content.len() as u64);
        push(&mut tar, name, e.long_name, typeflag, size, content, &link);
        let modelled = size == content.len() as u64
            && !b"LKxgS".contains(&typeflag)
            && !name.contains(&0)
            && (e.long_name || name.len() <= 100);
        seen.push(modelled.then(|| Built {
            regular: typeflag == b'0' || typeflag == 0,
            ..plain(name, typeflag, content)
        }));
    }
    if !input.no_end {
        tar.extend_from_slice(&[0; 1024]);
    }
    let mut compressed = zstd::bulk::compress(&tar, 1).expect("compress");
    if let Some(cut) = input.cut {
        compressed.truncate(compressed.len().saturating_sub(usize::from(cut)));
    }

    let Ok(verified) = ferry_fuzz::read_bundle_bytes(&compressed, std::slice::from_ref(public))
    else {
        return;
    };
    // Accepted: only what the signed manifest lists, each where and as it lists it.
    let modelled: Vec<&Built> = seen.iter().map_while(Option::as_ref).collect();
    let Some((first, rest)) = modelled.split_first() else {
        return;
    };
    assert_eq!(first.name, bundle::MANIFEST_NAME);
    assert!(first.regular);
    let after_signatures: Vec<&&Built> = rest
        .iter()
        .skip_while(|b| bundle::is_signature_name(&b.name))
        .collect();
    let listed = &verified.manifest.entries;
    if input.cut.is_none() && modelled.len() == seen.len() {
        assert_eq!(
            after_signatures.len(),
            listed.len(),
            "entries and listing differ in number"
        );
    }
    for (b, l) in after_signatures.iter().zip(listed) {
        assert!(b.regular, "accepted a special entry `{}`", b.name);
        assert_eq!(b.name, l.path());
        assert_eq!(b.size, l.size);
        assert_eq!(Digest::of(&b.content), l.sha256);
    }
});
