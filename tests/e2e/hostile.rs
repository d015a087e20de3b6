//! Hostile bundles. Each one must fail verification (exit 3) with a message that names
//! the cause, and an import of it must leave both kinds of target exactly as they were.

use std::path::{Path, PathBuf};

use super::context::{TestContext, copy_tree, p, sha256_hex, snapshot_tree};
use super::fixtures::fixtures;
use super::tamper::{Bundle, Entry, blob_hex};

pub(super) struct Case<'a> {
    ctx: &'a TestContext,
    name: &'a str,
}

impl<'a> Case<'a> {
    pub(super) fn new(ctx: &'a TestContext, name: &'a str) -> Self {
        Case { ctx, name }
    }

    pub(super) fn write(&self, bundle: &Bundle) -> PathBuf {
        let path = self.ctx.path(format!("{}.ferry", self.name));
        bundle.write(&path);
        path
    }

    /// `bundle verify`, `import --store` and `import --to` all refuse `bundle` with exit 3
    /// and a message mentioning every needle; neither target changes.
    pub(super) fn assert_refused(&self, bundle: &Path, trust: &Path, needles: &[&str]) {
        let ctx = self.ctx;
        let check = |what: &str, out: &super::context::Output| {
            // Shown with --nocapture (and on failure): what each refusal says.
            eprintln!(
                "{}: {what}: exit {}\n{}",
                self.name,
                out.code,
                out.stderr.trim_end()
            );
            out.assert_code(3).assert_stderr_contains("error:");
            for needle in needles {
                assert!(
                    out.stderr.to_lowercase().contains(&needle.to_lowercase()),
                    "{}: {what} should name {needle:?}: {out:?}",
                    self.name
                );
            }
        };

        check(
            "bundle verify",
            &ctx.ferry(["bundle", "verify", p(bundle), "--trust", p(trust)]),
        );

        let store = ctx.path(format!("{}-store", self.name));
        copy_tree(&fixtures().seeded_store, &store);
        let before = snapshot_tree(&store, &[".ferry"]);
        check(
            "import --store",
            &ctx.ferry([
                "import",
                p(bundle),
                "--trust",
                p(trust),
                "--store",
                p(&store),
            ]),
        );
        assert_eq!(
            before,
            snapshot_tree(&store, &[".ferry"]),
            "{}: import --store changed the store",
            self.name
        );

        let prefix = format!("mirror-hostile-{}", self.name);
        let registry = ctx.registry();
        let before = registry.snapshot(&prefix);
        let to = format!("{}/{prefix}", ctx.host());
        check(
            "import --to",
            &ctx.ferry(["import", p(bundle), "--trust", p(trust), "--to", &to]),
        );
        assert_eq!(
            before,
            registry.snapshot(&prefix),
            "{}: import --to changed the registry",
            self.name
        );
    }
}

fn standard() -> Bundle {
    Bundle::read(&fixtures().bundle)
}

#[test]
fn hostile_flipped_byte_in_a_blob() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "flipped-blob");
    let mut bundle = standard();
    let path = bundle.largest_blob();
    let entry = bundle.entry_mut(&path);
    let middle = entry.data.len() / 2;
    entry.data[middle] ^= 0x01;
    let file = case.write(&bundle);
    case.assert_refused(&file, &fixtures().public, &[blob_hex(&path)]);
}

#[test]
fn hostile_flipped_byte_in_the_compressed_file() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "flipped-zstd");
    let mut bytes = std::fs::read(&fixtures().bundle).unwrap();
    // A fixed "random" offset in the middle half, so failures reproduce.
    let seed = u64::from_str_radix(&sha256_hex(b"ferry-e2e-flip")[..12], 16).unwrap() as usize;
    let offset = bytes.len() / 4 + seed % (bytes.len() / 2);
    bytes[offset] ^= 0x20;
    let file = ctx.path("flipped-zstd.ferry");
    std::fs::write(&file, bytes).unwrap();
    case.assert_refused(&file, &fixtures().public, &[]);
}

#[test]
fn hostile_truncated_bundle() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "truncated");
    let bytes = std::fs::read(&fixtures().bundle).unwrap();
    let file = ctx.path("truncated.ferry");
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    case.assert_refused(&file, &fixtures().public, &[]);
}

#[test]
fn hostile_unsigned_bundle() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "unsigned");
    let mut bundle = standard();
    let i = bundle.position("ferry-manifest.json.minisig");
    bundle.entries.remove(i);
    let file = case.write(&bundle);
    case.assert_refused(&file, &fixtures().public, &["signature"]);
}

#[test]
fn hostile_signed_by_an_untrusted_key() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "untrusted-key");
    let fx = fixtures();
    case.assert_refused(&fx.bundle, &fx.other_public, &["signature"]);
}

#[test]
fn hostile_manifest_edited_after_signing() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "edited-manifest");
    let mut bundle = standard();
    let mut manifest = bundle.manifest();
    let sequence = manifest["sequence"].as_u64().expect("sequence is a number");
    manifest["sequence"] = (sequence + 100).into();
    bundle.set_manifest(&manifest);
    let file = case.write(&bundle);
    case.assert_refused(&file, &fixtures().public, &["signature"]);
}

#[test]
fn hostile_extra_entry_not_in_the_manifest() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "extra-entry");
    let mut bundle = standard();
    let data = b"not listed anywhere\n";
    let path = format!("blobs/sha256/{}", sha256_hex(data));
    let at = bundle.position("index.json") + 1;
    bundle.entries.insert(at, Entry::file(&path, data));
    let file = case.write(&bundle);
    case.assert_refused(&file, &fixtures().public, &[blob_hex(&path)]);
}

#[test]
fn hostile_duplicated_entry() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "duplicate");
    let mut bundle = standard();
    let path = bundle.largest_blob();
    let i = bundle.position(&path);
    let copy = bundle.entries[i].clone();
    bundle.entries.insert(i + 1, copy);
    let file = case.write(&bundle);
    case.assert_refused(&file, &fixtures().public, &[blob_hex(&path)]);
}

#[test]
fn hostile_parent_directory_path() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "dotdot");
    let mut bundle = standard();
    let at = bundle.position("index.json") + 1;
    bundle
        .entries
        .insert(at, Entry::file("../evil", b"escaped\n"));
    let file = case.write(&bundle);
    case.assert_refused(&file, &fixtures().public, &["../evil"]);
    let written = snapshot_tree(ctx.dir.path(), &[])
        .into_keys()
        .find(|p| p.file_name().is_some_and(|n| n == "evil"));
    assert_eq!(written, None, "`../evil` was written");
    assert!(
        !std::env::temp_dir().join("evil").exists(),
        "`../evil` was written into the temp dir"
    );
}

#[test]
fn hostile_absolute_path() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "absolute");
    assert!(
        !Path::new("/etc/evil").exists(),
        "/etc/evil exists before the test"
    );
    let mut bundle = standard();
    let at = bundle.position("index.json") + 1;
    bundle
        .entries
        .insert(at, Entry::file("/etc/evil", b"escaped\n"));
    let file = case.write(&bundle);
    case.assert_refused(&file, &fixtures().public, &["/etc/evil"]);
    assert!(!Path::new("/etc/evil").exists(), "/etc/evil was written");
}

#[test]
fn hostile_symlink_entry() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "symlink");
    let mut bundle = standard();
    let path = bundle.largest_blob();
    let i = bundle.position(&path);
    bundle.entries[i] = Entry::symlink(&path, "/etc/passwd");
    let file = case.write(&bundle);
    case.assert_refused(&file, &fixtures().public, &[blob_hex(&path)]);
}

#[test]
fn hostile_hard_link_entry() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "hardlink");
    let mut bundle = standard();
    let path = bundle.largest_blob();
    let i = bundle.position(&path);
    bundle.entries[i] = Entry::hard_link(&path, "/etc/passwd");
    let file = case.write(&bundle);
    case.assert_refused(&file, &fixtures().public, &[blob_hex(&path)]);
}

#[test]
fn hostile_character_device_entry() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "chardev");
    let mut bundle = standard();
    let path = bundle.largest_blob();
    let i = bundle.position(&path);
    // 1:5 is /dev/zero: reading it through would never end.
    bundle.entries[i] = Entry::char_device(&path, 1, 5);
    let file = case.write(&bundle);
    case.assert_refused(&file, &fixtures().public, &[blob_hex(&path)]);
}

#[test]
fn hostile_entry_larger_than_the_manifest_says() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "bomb");
    let mut bundle = standard();
    let path = bundle.largest_blob();
    let signed_size = bundle.entry_mut(&path).data.len().to_string();
    // 512 MiB of zeros after the real bytes: a few hundred KiB once compressed.
    bundle.entry_mut(&path).extra_zeros = 512 << 20;
    let file = case.write(&bundle);
    assert!(
        std::fs::metadata(&file).unwrap().len()
            < 2 * std::fs::metadata(&fixtures().bundle).unwrap().len(),
        "the bomb should be small"
    );
    case.assert_refused(&file, &fixtures().public, &[blob_hex(&path), &signed_size]);
}

#[test]
fn hostile_entries_reordered() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "reordered");
    let mut bundle = standard();
    // The manifest lists entries in order; move `index.json` to the end.
    let i = bundle.position("index.json");
    let entry = bundle.entries.remove(i);
    bundle.entries.push(entry);
    let file = case.write(&bundle);
    case.assert_refused(&file, &fixtures().public, &["index.json"]);
}

#[test]
fn hostile_signature_before_manifest() {
    let ctx = TestContext::new();
    let case = Case::new(&ctx, "signature-first");
    let mut bundle = standard();
    bundle.entries.swap(0, 1);
    let file = case.write(&bundle);
    case.assert_refused(&file, &fixtures().public, &["ferry-manifest.json"]);
}

/// A bundle that a newer ferry wrote (a field or a format this one lacks), signed by a
/// trusted key, is refused (exit 3, targets unchanged) with a hint to read it with that
/// ferry, not to distrust the signer. Its hostile twin: the same unknown field under this
/// ferry's own name is a manifest ferry never writes, and the hint says so.
#[test]
fn hostile_manifest_of_a_newer_ferry_asks_for_an_upgrade_not_distrust() {
    let ctx = TestContext::new();
    let fx = fixtures();
    let ours = standard().manifest()["tool"].as_str().unwrap().to_string();
    let cases = [
        (
            "newer-field",
            "ferry 9.9.9",
            None,
            "written by ferry 9.9.9: read it with that ferry",
        ),
        (
            "newer-format",
            "ferry 9.9.9",
            Some("dev.ferry.bundle.v2"),
            "written by ferry 9.9.9: read it with that ferry",
        ),
        ("same-tool-field", ours.as_str(), None, "compromised"),
    ];
    for (name, tool, format, needle) in cases {
        let case = Case::new(&ctx, name);
        let mut bundle = standard();
        let mut manifest = bundle.manifest();
        manifest["tool"] = tool.into();
        match format {
            Some(f) => manifest["format"] = f.into(),
            None => manifest["retention"] = serde_json::json!({"days": 30}),
        }
        bundle.set_manifest(&manifest);
        bundle.resign(&fx.key);
        let file = case.write(&bundle);
        case.assert_refused(&file, &fx.public, &[needle]);
        let out = ctx.ferry(["bundle", "verify", p(&file), "--trust", p(&fx.public)]);
        let distrust = out.stderr.contains("compromised");
        assert_eq!(distrust, needle == "compromised", "{name}: {}", out.stderr);
    }
}
