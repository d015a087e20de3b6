//! Rebuilding bundles the way an attacker would: decompress, change the tar, recompress.
//! Headers are written field by field, so paths such as `../evil` or `/etc/evil`, links
//! and devices go in exactly as given.

use std::io::{self, Read, Write};
use std::path::Path;

use tar::{EntryType, Header};

/// One tar entry of a bundle, in memory.
#[derive(Clone)]
pub struct Entry {
    pub path: String,
    pub kind: EntryType,
    pub data: Vec<u8>,
    /// Link target for symlinks and hard links.
    pub link: Option<String>,
    /// Device numbers for character and block devices.
    pub device: Option<(u32, u32)>,
    /// Zeros appended after `data` when written (a decompression bomb stays small in
    /// memory and in the compressed file).
    pub extra_zeros: u64,
}

impl Entry {
    pub fn file(path: &str, data: &[u8]) -> Entry {
        Entry {
            path: path.to_string(),
            kind: EntryType::Regular,
            data: data.to_vec(),
            link: None,
            device: None,
            extra_zeros: 0,
        }
    }

    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry {
            kind: EntryType::Symlink,
            link: Some(target.into()),
            ..Entry::file(path, b"")
        }
    }

    pub fn hard_link(path: &str, target: &str) -> Entry {
        Entry {
            kind: EntryType::Link,
            link: Some(target.into()),
            ..Entry::file(path, b"")
        }
    }

    pub fn char_device(path: &str, major: u32, minor: u32) -> Entry {
        Entry {
            kind: EntryType::Char,
            device: Some((major, minor)),
            ..Entry::file(path, b"")
        }
    }

    fn size(&self) -> u64 {
        self.data.len() as u64 + self.extra_zeros
    }

    fn header(&self) -> Header {
        let mut h = Header::new_ustar();
        {
            let old = h.as_old_mut();
            put(&mut old.name, self.path.as_bytes());
            if let Some(link) = &self.link {
                put(&mut old.linkname, link.as_bytes());
            }
        }
        h.set_entry_type(self.kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(if self.kind == EntryType::Regular {
            self.size()
        } else {
            0
        });
        if let Some((major, minor)) = self.device {
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
        }
        h.set_cksum();
        h
    }
}

fn put(field: &mut [u8], value: &[u8]) {
    assert!(
        value.len() <= field.len(),
        "tar name too long for a ustar header"
    );
    field.fill(0);
    field[..value.len()].copy_from_slice(value);
}

/// A bundle taken apart.
#[derive(Clone)]
pub struct Bundle {
    pub entries: Vec<Entry>,
}

impl Bundle {
    pub fn read(path: &Path) -> Bundle {
        let file = std::fs::File::open(path).unwrap();
        let decoder = zstd::stream::read::Decoder::new(file).unwrap();
        let mut archive = tar::Archive::new(decoder);
        let mut entries = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            let kind = entry.header().entry_type();
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned());
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            entries.push(Entry {
                path,
                kind,
                data,
                link,
                device: None,
                extra_zeros: 0,
            });
        }
        Bundle { entries }
    }

    /// Writes the entries as a zstd-compressed tar.
    pub fn write(&self, path: &Path) {
        let file = std::fs::File::create(path).unwrap();
        let mut encoder = zstd::stream::write::Encoder::new(file, 3).unwrap();
        {
            let mut builder = tar::Builder::new(&mut encoder);
            for e in &self.entries {
                let data = io::Cursor::new(&e.data).chain(io::repeat(0).take(e.extra_zeros));
                let data: Box<dyn Read> = if e.kind == EntryType::Regular {
                    Box::new(data)
                } else {
                    Box::new(io::empty())
                };
                builder.append(&e.header(), data).unwrap();
            }
            builder.finish().unwrap();
        }
        encoder.finish().unwrap().flush().unwrap();
    }

    pub fn position(&self, path: &str) -> usize {
        self.entries
            .iter()
            .position(|e| e.path == path)
            .unwrap_or_else(|| panic!("bundle has no entry {path}"))
    }

    pub fn entry_mut(&mut self, path: &str) -> &mut Entry {
        let i = self.position(path);
        &mut self.entries[i]
    }

    /// The signed manifest, parsed.
    pub fn manifest(&self) -> serde_json::Value {
        serde_json::from_slice(&self.entries[self.position("ferry-manifest.json")].data).unwrap()
    }

    pub fn set_manifest(&mut self, manifest: &serde_json::Value) {
        self.entry_mut("ferry-manifest.json").data = serde_json::to_vec_pretty(manifest).unwrap();
    }

    /// The path of the largest blob entry (a layer).
    pub fn largest_blob(&self) -> String {
        self.entries
            .iter()
            .filter(|e| e.path.starts_with("blobs/sha256/"))
            .max_by_key(|e| e.data.len())
            .unwrap()
            .path
            .clone()
    }
}

/// The hex part of `blobs/sha256/<hex>`.
pub fn blob_hex(path: &str) -> &str {
    path.strip_prefix("blobs/sha256/").unwrap()
}

/// Forging a bundle as a compromised signer would: change what it carries, keep every
/// digest and size consistent, and sign the new manifest with a key the importer trusts.
impl Bundle {
    /// Signs the current manifest with `key` (a ferry/minisign secret key), replacing
    /// the bundle's signature entries: a validly signed bundle with whatever it says.
    pub fn resign(&mut self, key: &Path) {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("ferry-manifest.json");
        let sig = dir.path().join("ferry-manifest.json.minisig");
        std::fs::write(
            &manifest,
            &self.entries[self.position("ferry-manifest.json")].data,
        )
        .unwrap();
        let out = std::process::Command::new("minisign")
            .args(["-S", "-s"])
            .arg(key)
            .arg("-m")
            .arg(&manifest)
            .arg("-x")
            .arg(&sig)
            .args(["-t", "forged by a test"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "minisign -S failed: {out:?}");
        self.entries.retain(|e| {
            !(e.path.starts_with("ferry-manifest.json.") && e.path.ends_with(".minisig"))
        });
        let at = self.position("ferry-manifest.json") + 1;
        self.entries.insert(
            at,
            Entry::file("ferry-manifest.json.minisig", &std::fs::read(&sig).unwrap()),
        );
    }

    /// The bytes of blob `hex`.
    pub fn blob(&self, hex: &str) -> &[u8] {
        &self.entries[self.position(&format!("blobs/sha256/{hex}"))].data
    }

    /// Adds a blob entry (at the end, listed last in the manifest); returns its hex.
    pub fn add_blob(&mut self, manifest: &mut serde_json::Value, bytes: Vec<u8>) -> String {
        let hex = super::context::sha256_hex(&bytes);
        let path = format!("blobs/sha256/{hex}");
        if !self.entries.iter().any(|e| e.path == path) {
            manifest["entries"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"path": path, "size": bytes.len(), "sha256": hex}));
            self.entries.push(Entry::file(&path, &bytes));
        }
        hex
    }

    /// Rewrites the OCI manifest of every artifact whose digest is `digest_hex` (and, with
    /// `config`, its config blob), then carries the new digests up: `index.json`, the
    /// bundle manifest's artifacts and entries. `record` edits the bundle manifest's
    /// artifact records too. Then signs with `key`.
    pub fn forge_artifact(
        &mut self,
        digest_hex: &str,
        config: Option<&dyn Fn(&mut serde_json::Value)>,
        oci_manifest: &dyn Fn(&mut serde_json::Value),
        record: &dyn Fn(&mut serde_json::Value),
        key: &Path,
    ) {
        let mut manifest = self.manifest();
        let mut oci: serde_json::Value = serde_json::from_slice(self.blob(digest_hex)).unwrap();
        if let Some(edit) = config {
            let old = oci["config"]["digest"].as_str().unwrap().to_string();
            let mut value: serde_json::Value =
                serde_json::from_slice(self.blob(old.strip_prefix("sha256:").unwrap())).unwrap();
            edit(&mut value);
            let bytes = serde_json::to_vec(&value).unwrap();
            let size = bytes.len();
            let hex = self.add_blob(&mut manifest, bytes);
            oci["config"]["digest"] = format!("sha256:{hex}").into();
            oci["config"]["size"] = size.into();
        }
        oci_manifest(&mut oci);
        let bytes = serde_json::to_vec(&oci).unwrap();
        let size = bytes.len();
        let new_hex = self.add_blob(&mut manifest, bytes);
        let (old_digest, new_digest) =
            (format!("sha256:{digest_hex}"), format!("sha256:{new_hex}"));
        // index.json
        let i = self.position("index.json");
        let mut index: serde_json::Value = serde_json::from_slice(&self.entries[i].data).unwrap();
        for m in index["manifests"].as_array_mut().unwrap() {
            if m["digest"] == old_digest.as_str() {
                m["digest"] = new_digest.as_str().into();
                m["size"] = size.into();
            }
        }
        let index_bytes = serde_json::to_vec(&index).unwrap();
        for e in manifest["entries"].as_array_mut().unwrap() {
            if e["path"] == "index.json" {
                e["size"] = index_bytes.len().into();
                e["sha256"] = super::context::sha256_hex(&index_bytes).into();
            }
        }
        self.entries[i].data = index_bytes;
        for a in manifest["artifacts"].as_array_mut().unwrap() {
            if a["digest"] == old_digest.as_str() {
                a["digest"] = new_digest.as_str().into();
                a["size"] = size.into();
                record(a);
            }
        }
        self.set_manifest(&manifest);
        self.resign(key);
    }
}
