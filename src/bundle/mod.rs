//! The bundle: a zstd-compressed tar. First the signed bundle manifest and its
//! signature(s), then an OCI image layout of everything carried.

pub mod base;
pub mod cosign;
pub mod manifest;
pub mod reader;
pub mod signers;
pub mod volumes;
pub mod writer;

pub use manifest::{BundleManifest, Entry, EntryName};
pub use reader::{EntrySink, Verified, VerifyError};

/// The first entry of every bundle.
pub const MANIFEST_NAME: &str = "ferry-manifest.json";
/// The signature made by `bundle create`. Embedded co-signatures may follow as
/// `ferry-manifest.json.<KEYID>.minisig`; `bundle sign` writes them beside the bundle
/// instead (see `cosign`).
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

/// The reader and writer on their own, no peer running: a bundle written from a store
/// verifies and stages byte for byte; altered, reordered, unlisted and oversized
/// entries, and wrong keys, are refused with the error that says so.
#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::path::Path;

    use super::manifest::PolicyVerdict;
    use super::reader::{self, Decision, EntrySink, Trust, VerifyError};
    use super::writer::{self, BundleSpec, WriteOptions};
    use super::{BundleManifest, Entry};
    use crate::artifact::Artifact;
    use crate::digest::Digest;
    use crate::ecosystems::Record;
    use crate::ecosystems::image::ImageRecord;
    use crate::sign::{self, PublicKey, SecretKey};
    use crate::store::{self, Store};

    struct Collect(Vec<(String, Vec<u8>)>);

    impl EntrySink for Collect {
        fn stage(&mut self, entry: &Entry, content: &mut dyn Read) -> std::io::Result<()> {
            let mut bytes = Vec::new();
            content.read_to_end(&mut bytes)?;
            self.0.push((entry.path(), bytes));
            Ok(())
        }
    }

    /// A store with one artifact (a config and a 100 KiB layer), a key, a bundle of it.
    fn fixture(dir: &Path) -> (PublicKey, std::path::PathBuf, Vec<u8>) {
        fixture_of(dir, (0..100 * 1024).map(|i| (i * 7 % 251) as u8).collect())
    }

    /// The same with `layer` as the layer.
    fn fixture_of(dir: &Path, layer: Vec<u8>) -> (PublicKey, std::path::PathBuf, Vec<u8>) {
        let store = Store::open_or_create(&dir.join("store")).unwrap();
        store
            .put_blob(&layer, &Digest::of(&layer), "layer")
            .unwrap();
        let artifact = artifact_of(&store, &layer);
        let (key, out) = write_of(dir, &store, &artifact, None).unwrap();
        (key, out, layer)
    }

    /// An image artifact of `layer` in `store` (the layer itself may be missing).
    fn artifact_of(store: &Store, layer: &[u8]) -> crate::ecosystems::AnyArtifact {
        let layer_digest = Digest::of(layer);
        let (desc, bytes) = store
            .put_artifact(
                "application/vnd.example.test.v1",
                "application/vnd.example.test.config.v1+json",
                b"{}",
                vec![serde_json::json!({"mediaType": "application/octet-stream",
                    "digest": layer_digest.to_string(), "size": layer.len()})],
                serde_json::json!({}),
            )
            .unwrap();
        store
            .update_entries(|e| store::upsert_entry(e, "test/a", Some("v1"), &desc))
            .unwrap();
        Artifact {
            repository: "test/a".into(),
            tag: Some("v1".into()),
            digest: desc.digest,
            media_type: desc.media_type.clone(),
            size: bytes.len() as u64,
            origin: "unit test".into(),
            artifact_type: desc.artifact_type.clone(),
            labels: Default::default(),
            licenses: Vec::new(),
            record: Record::Image(ImageRecord {
                platforms: Vec::new(),
                subject: None,
                source_digest: None,
            }),
        }
    }

    /// A key (made anew) and a bundle of `artifact` written with it, `arriving` as
    /// `bundle create` gives it.
    fn write_of(
        dir: &Path,
        store: &Store,
        artifact: &crate::ecosystems::AnyArtifact,
        arriving: Option<&store::Arrivals>,
    ) -> Result<(PublicKey, std::path::PathBuf), writer::WriteError> {
        let _ = std::fs::remove_file(dir.join("key.key"));
        let _ = std::fs::remove_file(dir.join("key.pub"));
        let (secret, public, _) = sign::generate(&dir.join("key")).unwrap();
        let key = SecretKey::load(&secret).unwrap();
        let out = dir.join("t.ferry");
        writer::write(
            store,
            BundleSpec {
                series: "unit",
                sequence: 7,
                artifacts: std::slice::from_ref(artifact),
                gate: &|_| Ok(PolicyVerdict::not_evaluated()),
                base: None,
                arriving,
            },
            &key,
            &out,
            &WriteOptions {
                level: 3,
                threads: 1,
                split: None,
            },
            &crate::reporter::Quiet,
        )?;
        Ok((PublicKey::load(&public).unwrap(), out))
    }

    fn read(path: &Path, key: &PublicKey) -> Result<Collect, VerifyError> {
        let mut sink = Collect(Vec::new());
        reader::read(
            &reader::Input::from(path),
            &Trust::Keys {
                keys: std::slice::from_ref(key),
                threshold: 1,
            },
            &mut |_| Ok(Decision::Continue),
            &mut sink,
            reader::Progress::none(),
        )?;
        Ok(sink)
    }

    /// The bundle's tar entries, decompressed, as (path, bytes).
    fn entries(path: &Path) -> Vec<(String, Vec<u8>)> {
        let file = std::fs::File::open(path).unwrap();
        let mut archive = tar::Archive::new(zstd::stream::read::Decoder::new(file).unwrap());
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mut bytes = Vec::new();
                e.read_to_end(&mut bytes).unwrap();
                (path, bytes)
            })
            .collect()
    }

    fn rewrite(path: &Path, entries: &[(String, Vec<u8>)]) {
        let file = std::fs::File::create(path).unwrap();
        let mut enc = zstd::stream::write::Encoder::new(file, 1).unwrap();
        {
            let mut tar = tar::Builder::new(&mut enc);
            for (p, bytes) in entries {
                let mut h = tar::Header::new_gnu();
                h.set_size(bytes.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                tar.append_data(&mut h, p, bytes.as_slice()).unwrap();
            }
            tar.finish().unwrap();
        }
        enc.finish().unwrap().flush().unwrap();
    }

    #[test]
    fn a_written_bundle_reads_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (key, path, layer) = fixture(dir.path());
        let got = read(&path, &key).unwrap();
        let manifest: BundleManifest = serde_json::from_slice(&entries(&path)[0].1).unwrap();
        assert_eq!(manifest.series, "unit");
        assert_eq!(manifest.sequence, 7);
        let paths: Vec<&str> = got.0.iter().map(|(p, _)| p.as_str()).collect();
        let listed: Vec<String> = manifest.entries.iter().map(|e| e.path()).collect();
        assert_eq!(paths, listed);
        let layer_path = format!("blobs/sha256/{}", Digest::of(&layer).hex());
        assert!(got.0.iter().any(|(p, b)| *p == layer_path && *b == layer));
    }

    #[test]
    fn a_blob_downloaded_in_this_run_goes_into_the_bundle_as_its_download_checked_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(&dir.path().join("store")).unwrap();
        let layer: Vec<u8> = (0..2 << 20).map(|i| (i * 13 % 241) as u8).collect();
        let digest = Digest::of(&layer);
        let artifact = artifact_of(&store, &layer);
        // The download, through the store's writer as a registry source does it.
        let arrivals = store::Arrivals::default();
        arrivals.promise(digest);
        let mut w = store.blob_writer(&digest, false).unwrap();
        w.write_all(&layer).unwrap();
        let file = w
            .commit_open(&store, &digest, layer.len() as u64, "layer")
            .unwrap()
            .expect("a file of ours, with one link, that only we may write");
        // Hostile: other bytes of the same length renamed over the blob's name once it
        // is there (a store directory others may write to).
        let forged = dir.path().join("forged");
        std::fs::write(&forged, vec![b'x'; layer.len()]).unwrap();
        std::fs::rename(&forged, store.blob_path(&digest)).unwrap();
        arrivals.arrived(&digest, Some(file));
        let (key, out) = write_of(dir.path(), &store, &artifact, Some(&arrivals)).unwrap();
        let got = read(&out, &key).unwrap();
        let path = format!("blobs/sha256/{}", digest.hex());
        assert!(
            got.0.iter().any(|(p, b)| *p == path && *b == layer),
            "the bundle does not carry the bytes the download checked"
        );
        // A blob that did not come by this run's download is read by its name and
        // hashed: the forged bytes are caught.
        let none = store::Arrivals::default();
        let err = write_of(dir.path(), &store, &artifact, Some(&none)).unwrap_err();
        assert!(matches!(err, writer::WriteError::Corrupt { .. }), "{err}");
    }

    /// Records where entries begin a zstd frame of their own.
    struct Frames(Vec<(Entry, u64)>);

    impl EntrySink for Frames {
        fn stage(&mut self, _: &Entry, _: &mut dyn Read) -> std::io::Result<()> {
            Ok(())
        }
        fn starts_frame(&mut self, entry: &Entry, at: u64) {
            self.0.push((*entry, at));
        }
    }

    #[test]
    fn a_large_blob_begins_a_frame_that_reads_back_alone_and_a_changed_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        // 3 MiB that zstd cannot shrink (xorshift), so the frame is as long as the entry.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let layer: Vec<u8> = (0..3 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let (key, path, layer) = fixture_of(dir.path(), layer);
        let mut frames = Frames(Vec::new());
        // Frames are noted for a file opened once to be read again (`Input::pin`).
        reader::read(
            &reader::Input::from(path.as_path()).pin().unwrap(),
            &Trust::Keys {
                keys: std::slice::from_ref(&key),
                threshold: 1,
            },
            &mut |_| Ok(Decision::Continue),
            &mut frames,
            reader::Progress::none(),
        )
        .unwrap();
        // Only the layer is large enough for a frame of its own.
        let layer_digest = Digest::of(&layer);
        assert_eq!(frames.0.len(), 1, "{:?}", frames.0);
        let (entry, at) = frames.0[0];
        assert_eq!(entry.sha256, layer_digest);
        let input = reader::Input::from(path.as_path()).pin().unwrap();
        let mut got = Vec::new();
        reader::entry_at(&input, at, &entry)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert!(got == layer, "the entry read alone differs");

        // Hostile: another offset, another entry, a byte changed inside the frame.
        assert!(reader::entry_at(&input, at + 1, &entry).is_err());
        let other = Entry::blob(Digest::of(b"other"), entry.size);
        assert!(matches!(
            reader::entry_at(&input, at, &other),
            Err(VerifyError::Changed { .. })
        ));
        let mut bytes = std::fs::read(&path).unwrap();
        let inside = at as usize + (1 << 20);
        bytes[inside] ^= 0x5a;
        std::fs::write(&path, &bytes).unwrap();
        let input = reader::Input::from(path.as_path()).pin().unwrap();
        let mut reading = reader::entry_at(&input, at, &entry).unwrap();
        let err = reading.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(
            matches!(
                reading.error(err),
                VerifyError::DigestMismatch { .. } | VerifyError::Damaged { .. }
            ),
            "a changed frame read back"
        );
        // Fed to an upload: what the body got, whether it ended in an error, and whether
        // the feeder said the entry checked.
        let fed = |input: &reader::Input| {
            let (send, mut receive) = tokio::sync::mpsc::channel(1 << 10);
            let checked = std::cell::Cell::new(false);
            let fed = crate::targets::registry::feed(
                input,
                at,
                &entry,
                send,
                &crate::reporter::NoTask,
                || checked.set(true),
            );
            let (mut got, mut ended_in_error) = (Vec::new(), false);
            while let Ok(chunk) = receive.try_recv() {
                match chunk {
                    Ok(bytes) => got.extend_from_slice(&bytes),
                    Err(_) => ended_in_error = true,
                }
            }
            (fed, got, ended_in_error, checked.get())
        };
        // Changed, it never gives the whole entry: the body ends in an error.
        let (result, got, ended_in_error, checked) = fed(&input);
        assert!(result.is_err() && !checked);
        assert!(
            ended_in_error && got.len() < layer.len(),
            "sent {} bytes",
            got.len()
        );

        // Put back, it feeds the whole entry and ends cleanly.
        bytes[inside] ^= 0x5a;
        std::fs::write(&path, &bytes).unwrap();
        let input = reader::Input::from(path.as_path()).pin().unwrap();
        let (result, got, ended_in_error, checked) = fed(&input);
        assert!(result.is_ok() && !ended_in_error && checked);
        assert!(got == layer, "the fed entry differs");
    }

    #[test]
    fn a_stream_asking_for_a_huge_zstd_window_is_refused_before_it_is_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let (key, path, _) = fixture(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        let plain = zstd::stream::decode_all(bytes.as_slice()).unwrap();
        let big = dir.path().join("big-window.ferry");
        let mut enc =
            zstd::stream::write::Encoder::new(std::fs::File::create(&big).unwrap(), 3).unwrap();
        enc.set_parameter(zstd::zstd_safe::CParameter::WindowLog(27))
            .unwrap();
        enc.write_all(&plain).unwrap();
        enc.finish().unwrap();
        assert!(
            matches!(read(&big, &key), Err(VerifyError::Damaged { .. })),
            "a 128 MiB window was accepted"
        );
        // The same bytes in the window ferry writes them with read back.
        assert!(read(&path, &key).is_ok());
    }

    #[test]
    fn altered_reordered_unlisted_and_untrusted_bundles_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (key, path, layer) = fixture(dir.path());
        let original = entries(&path);
        let layer_path = format!("blobs/sha256/{}", Digest::of(&layer).hex());
        let bad = dir.path().join("bad.ferry");

        let mut flipped = original.clone();
        let i = flipped.iter().position(|(p, _)| *p == layer_path).unwrap();
        flipped[i].1[500] ^= 1;
        rewrite(&bad, &flipped);
        assert!(matches!(
            read(&bad, &key),
            Err(VerifyError::DigestMismatch { path, .. }) if path == layer_path
        ));

        let mut reordered = original.clone();
        let last = reordered.pop().unwrap();
        reordered.insert(2, last);
        rewrite(&bad, &reordered);
        assert!(matches!(
            read(&bad, &key),
            Err(VerifyError::OutOfOrder { .. })
        ));

        let mut twice = original.clone();
        twice.insert(i + 1, original[i].clone());
        rewrite(&bad, &twice);
        assert!(matches!(
            read(&bad, &key),
            Err(VerifyError::Duplicate { path }) if path == layer_path
        ));

        let mut short = original.clone();
        let dropped = short.pop().unwrap().0;
        rewrite(&bad, &short);
        assert!(matches!(
            read(&bad, &key),
            Err(VerifyError::Missing { path }) if path == dropped
        ));

        let mut extra = original.clone();
        extra.push(("blobs/sha256/".to_string() + &"0".repeat(64), b"x".to_vec()));
        rewrite(&bad, &extra);
        assert!(matches!(
            read(&bad, &key),
            Err(VerifyError::Unlisted { .. })
        ));

        let mut longer = original.clone();
        longer[i].1.extend_from_slice(&[0; 4096]);
        rewrite(&bad, &longer);
        assert!(matches!(
            read(&bad, &key),
            Err(VerifyError::SizeMismatch { .. })
        ));

        let mut edited = original.clone();
        edited[0].1 = String::from_utf8(edited[0].1.clone())
            .unwrap()
            .replace("\"unit\"", "\"evil\"")
            .into_bytes();
        rewrite(&bad, &edited);
        assert!(matches!(read(&bad, &key), Err(VerifyError::Signature(_))));

        let (_, other, _) = sign::generate(&dir.path().join("other")).unwrap();
        let other = PublicKey::load(&other).unwrap();
        assert!(matches!(
            read(&path, &other),
            Err(VerifyError::Signature(_))
        ));

        let unsigned: Vec<_> = original
            .iter()
            .filter(|(p, _)| !super::is_signature_name(p))
            .cloned()
            .collect();
        rewrite(&bad, &unsigned);
        assert!(matches!(read(&bad, &key), Err(VerifyError::Unsigned)));
    }

    #[test]
    fn a_manifest_listing_a_path_twice_or_missing_an_artifact_blob_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let (_, path, layer) = fixture(dir.path());
        let manifest: BundleManifest = serde_json::from_slice(&entries(&path)[0].1).unwrap();
        manifest.validate().unwrap();
        let layer = Digest::of(&layer);
        let at = manifest
            .entries
            .iter()
            .position(|e| e.blob_digest() == Some(layer));

        let mut twice = manifest.clone();
        twice.entries.push(twice.entries[at.unwrap()]);
        let e = twice.validate().unwrap_err();
        assert!(
            e.contains("listed twice") && e.contains(&layer.hex()),
            "{e}"
        );
        let mut index_twice = manifest.clone();
        index_twice.entries.push(index_twice.entries[1]);
        assert!(
            index_twice
                .validate()
                .unwrap_err()
                .contains("`index.json` is listed twice")
        );

        let root = manifest.artifacts[0].digest;
        let mut no_root = manifest.clone();
        no_root.entries.retain(|e| e.blob_digest() != Some(root));
        assert!(
            no_root
                .validate()
                .unwrap_err()
                .contains("has no blob in the bundle")
        );
        let mut resized = manifest.clone();
        for e in &mut resized.entries {
            if e.blob_digest() == Some(root) {
                e.size += 1;
            }
        }
        assert!(resized.validate().unwrap_err().contains("says it is"));
        let mut no_layout = manifest;
        no_layout
            .entries
            .retain(|e| e.name != super::EntryName::OciLayout);
        assert!(
            no_layout
                .validate()
                .unwrap_err()
                .contains("lacks `oci-layout`")
        );
    }

    #[test]
    fn over_budget_is_recognised_through_wrapping() {
        let inner = std::io::Error::other(reader::test_over_budget());
        let wrapped = std::io::Error::other(Wrapper(inner));
        assert!(reader::test_is_over_budget(&wrapped));
        let other =
            std::io::Error::other("more decompressed data than the signed manifest declares");
        assert!(
            !reader::test_is_over_budget(&other),
            "text alone must not count"
        );
    }

    #[derive(Debug)]
    struct Wrapper(std::io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failed to read entire block")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
