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
