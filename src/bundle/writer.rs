//! Writing a bundle: collect what the artifacts reach in the store, write and sign the
//! manifest, then stream every blob into the tar (hashed again on the way, so a
//! corrupted store cannot produce a bundle that lies). Already-compressed blobs go into
//! fast zstd frames; the rest at the chosen level. The output appears under its name
//! only when complete.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::bundle::base::Base;
use crate::bundle::manifest::{BaseRef, BundleManifest, Entry, EntryName, PolicyVerdict};
use crate::bundle::volumes::{self, VolumeWriter};
use crate::bundle::{FORMAT, MANIFEST_NAME, SIGNATURE_NAME};
use crate::digest::{Digest, Hasher};
use crate::ecosystems::AnyArtifact as Artifact;
use crate::oci::Desc;
use crate::reporter::Reporter;
use crate::sign::SecretKey;
use crate::store::{self, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write bundle {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "blob {digest} in the store does not match its digest (got {actual}); the store is corrupted"
    )]
    Corrupt { digest: Digest, actual: Digest },
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Volume(#[from] crate::bundle::volumes::VolumeError),
    #[error("another ferry is writing bundle {path} (it holds {lock})")]
    Busy { path: PathBuf, lock: PathBuf },
    #[error("blob {digest} did not arrive in the store: its download stopped")]
    NotArrived { digest: Digest },
}

impl crate::exit::Classify for WriteError {
    fn exit_status(&self) -> crate::exit::ExitStatus {
        match self {
            WriteError::Store(e) => e.exit_status(),
            WriteError::Corrupt { .. } => crate::exit::ExitStatus::Verification,
            WriteError::Io { .. } | WriteError::Busy { .. } | WriteError::NotArrived { .. } => {
                crate::exit::ExitStatus::Error
            }
            WriteError::Policy(e) => e.exit_status(),
            WriteError::Volume(e) => e.exit_status(),
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            WriteError::Corrupt { digest, .. } => Some(format!(
                "remove blobs/sha256/{} from the store and pull again",
                digest.hex()
            )),
            WriteError::Store(e) => e.hint(),
            WriteError::Policy(e) => e.hint(),
            WriteError::Volume(e) => e.hint(),
            WriteError::Busy { .. } => {
                Some("wait for it to finish, or write this bundle under another -o".into())
            }
            _ => None,
        }
    }
}

pub struct WriteOptions {
    /// zstd level for content that is not already compressed.
    pub level: i32,
    /// zstd worker threads.
    pub threads: u32,
    /// `--split SIZE`: volumes `OUT.001`, `.002`, ... of at most SIZE bytes and their
    /// signed index, instead of one file.
    pub split: Option<u64>,
}

/// What to write.
pub struct BundleSpec<'a> {
    pub series: &'a str,
    pub sequence: u64,
    pub artifacts: &'a [Artifact],
    /// Decides the policy verdict from the manifest as it will be signed (its `policy`
    /// still `not-evaluated`), before anything is written; an error stops the write.
    pub gate: &'a dyn Fn(&BundleManifest) -> Result<PolicyVerdict, crate::policy::PolicyError>,
    /// For an incremental bundle: the blobs to leave out.
    pub base: Option<&'a Base>,
    /// Blobs still being downloaded into the store: each is written once it arrives.
    pub arriving: Option<&'a store::Arrivals>,
}

const OCI_LAYOUT: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}";
/// zstd level for blobs that are already compressed: they barely shrink, so go fast
/// (in the writer's thread: zstd's workers would only copy them about; measured: the
/// same wall time from a warm store, 30% less CPU, and faster when a pull shares the
/// cores). A negative level (zstd's `--fast=5`) searches less than level 1: `bundle
/// create` of the bench's 300 MiB of gzip layers 0.78 -> 0.745 s (medians of 4,
/// alternating), the bundle 10 bytes smaller.
const COMPRESSED_LEVEL: i32 = -5;
/// A blob of this size or more starts a zstd frame of its own (its tar header is the
/// frame's first byte), so that a reader can decompress it alone, from where the frame
/// begins: `import --to` streams several layers to a registry at once that way. The
/// small ones (documents) share frames, which compress better together.
const OWN_FRAME: u64 = 256 << 10;

/// What a bundle of `artifacts` will hold: its manifest (policy `not-evaluated`), the
/// blobs in order and the layout's `index.json`. Reads the store, writes nothing; a blob
/// that is not a manifest may be missing from the store when `arriving` promises it.
pub struct Layout {
    pub manifest: BundleManifest,
    blobs: Vec<Blob>,
    index: Vec<u8>,
    created: time::OffsetDateTime,
}

/// A blob of the layout: streamed from the store, or made by this write (the SBOMs).
enum Blob {
    Stored(Desc),
    Made(Desc, Vec<u8>),
}

impl Blob {
    fn desc(&self) -> &Desc {
        match self {
            Blob::Stored(d) | Blob::Made(d, _) => d,
        }
    }
}

pub fn layout(
    store: &Store,
    series: &str,
    sequence: u64,
    artifacts: &[Artifact],
    base: Option<&Base>,
    arriving: Option<&store::Arrivals>,
) -> Result<Layout, WriteError> {
    let promised = |d: &Desc| arriving.is_some_and(|a| a.is_promised(&d.digest));
    let created = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond");
    let mut stored: Vec<Desc> = Vec::new();
    let mut layout_entries: Vec<Desc> = Vec::new();
    // Manifests and configs are carried even when the base has them (see `base`).
    let mut always: std::collections::HashSet<Digest> = std::collections::HashSet::new();
    let mut omitted: std::collections::HashSet<Digest> = std::collections::HashSet::new();
    for a in artifacts {
        let root = a.root();
        let mut reached = Vec::new();
        store::reachable_with(
            &[store],
            &root,
            &mut Default::default(),
            &promised,
            &mut |d, m| reached.push((d, m)),
        )?;
        for (desc, manifest) in reached {
            if let Some(m) = &manifest {
                always.insert(desc.digest);
                if !m.is_index()
                    && let Some(config) = m.children.first()
                {
                    always.insert(config.digest);
                }
            }
            if !stored.iter().any(|b| b.digest == desc.digest) {
                stored.push(desc);
            }
        }
        store::upsert_entry(&mut layout_entries, &a.repository, a.tag.as_deref(), &root);
    }
    if let Some(base) = base {
        stored.retain(|d| {
            let leave_out = base.blobs.contains(&d.digest) && !always.contains(&d.digest);
            if leave_out {
                omitted.insert(d.digest);
            }
            !leave_out
        });
    }
    let mut manifest = BundleManifest {
        format: FORMAT.into(),
        series: series.into(),
        sequence,
        created: created
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formats"),
        tool: concat!("ferry ", env!("CARGO_PKG_VERSION")).into(),
        policy: PolicyVerdict::not_evaluated(),
        artifacts: artifacts.to_vec(),
        sbom: None,
        base: base.map(|b| BaseRef {
            omitted: omitted.len() as u64,
            ..b.reference.clone()
        }),
        entries: Vec::new(),
    };

    // The SBOMs come first (small, and found quickly by readers), then the store's blobs.
    let children = |a: &Artifact| platform_manifests(store, a);
    let docs = crate::sbom::build(&manifest, &children, crate::sbom::Provenance::Carried);
    let sbom_manifest = crate::sbom::oci_manifest(&manifest, &docs);
    let made = |media_type: &str, bytes: Vec<u8>| {
        Blob::Made(
            Desc {
                media_type: media_type.into(),
                digest: Digest::of(&bytes),
                size: bytes.len() as u64,
                platform: None,
                artifact_type: None,
                annotations: Default::default(),
            },
            bytes,
        )
    };
    let document = |b: &Blob| crate::bundle::manifest::Document {
        digest: b.desc().digest,
        size: b.desc().size,
    };
    let sbom_blobs = [
        made(crate::sbom::EMPTY_MEDIA_TYPE, crate::sbom::EMPTY.to_vec()),
        made(crate::sbom::CYCLONEDX_MEDIA_TYPE, docs.cyclonedx),
        made(crate::sbom::SPDX_MEDIA_TYPE, docs.spdx),
        made(crate::oci::OCI_MANIFEST, sbom_manifest),
    ];
    let mut sbom_root = sbom_blobs[3].desc().clone();
    sbom_root.artifact_type = Some(crate::sbom::ARTIFACT_TYPE.into());
    manifest.sbom = Some(crate::bundle::manifest::SbomRef {
        digest: sbom_root.digest,
        size: sbom_root.size,
        cyclonedx: document(&sbom_blobs[1]),
        spdx: document(&sbom_blobs[2]),
    });
    store::upsert_entry(
        &mut layout_entries,
        crate::sbom::REPOSITORY,
        Some(&crate::sbom::tag(series, sequence)),
        &sbom_root,
    );
    // Manifests and configs before the layers: an importer pushing to a registry knows,
    // by the time a layer arrives, which repositories it goes to (see
    // `targets::registry::Early`). The walk's order is kept within each group.
    stored.sort_by_key(|d| !always.contains(&d.digest));
    let mut blobs: Vec<Blob> = Vec::new();
    for b in sbom_blobs {
        if !blobs.iter().any(|x| x.desc().digest == b.desc().digest) {
            blobs.push(b);
        }
    }
    for d in stored {
        if !blobs.iter().any(|x| x.desc().digest == d.digest) {
            blobs.push(Blob::Stored(d));
        }
    }
    let index = store::index_json(&layout_entries);
    let mut entries = Vec::with_capacity(blobs.len() + 2);
    entries.push(Entry::file(EntryName::OciLayout, OCI_LAYOUT));
    entries.push(Entry::file(EntryName::IndexJson, &index));
    entries.extend(
        blobs
            .iter()
            .map(|b| Entry::blob(b.desc().digest, b.desc().size)),
    );
    manifest.entries = entries;
    Ok(Layout {
        manifest,
        blobs,
        index,
        created,
    })
}

/// Writes the bundle; returns its manifest and the sha256 of the manifest's bytes.
pub fn write(
    store: &Store,
    spec: BundleSpec<'_>,
    key: &SecretKey,
    out: &Path,
    options: &WriteOptions,
    reporter: &dyn Reporter,
) -> Result<(BundleManifest, Digest), WriteError> {
    let Layout {
        mut manifest,
        blobs,
        index,
        created,
    } = layout(
        store,
        spec.series,
        spec.sequence,
        spec.artifacts,
        spec.base,
        spec.arriving,
    )?;
    manifest.policy = (spec.gate)(&manifest)?;
    manifest.validate().expect("ferry writes valid manifests");
    let mut manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    manifest_bytes.push(b'\n');
    let manifest_digest = Digest::of(&manifest_bytes);
    let comment = format!(
        "ferry bundle series={} sequence={} created={} manifest-sha256={}",
        manifest.series,
        manifest.sequence,
        manifest.created,
        manifest_digest.hex()
    );
    let signature = key.sign(&manifest_bytes, &comment);

    let io_err = |source| WriteError::Io {
        path: out.to_path_buf(),
        source,
    };
    let _lock = lock_output(out)?;
    let output = Output::create(out, options.split).map_err(io_err)?;
    let result = (|| {
        let frames = FrameWriter::new(
            BufWriter::with_capacity(1 << 20, output),
            options.level,
            options.threads,
        )
        .map_err(io_err)?;
        let mut tar = tar::Builder::new(frames);
        let mtime = created.unix_timestamp().max(0) as u64;
        append(&mut tar, MANIFEST_NAME, &manifest_bytes, mtime).map_err(io_err)?;
        append(&mut tar, SIGNATURE_NAME, signature.as_bytes(), mtime).map_err(io_err)?;
        append(&mut tar, "oci-layout", OCI_LAYOUT, mtime).map_err(io_err)?;
        append(&mut tar, "index.json", &index, mtime).map_err(io_err)?;
        let task = reporter.task("bundle", Some(manifest.total_size()));
        for b in &blobs {
            let b = match b {
                Blob::Made(desc, bytes) => {
                    tar.get_mut()
                        .set(options.level, options.threads)
                        .map_err(io_err)?;
                    let path = format!("blobs/sha256/{}", desc.digest.hex());
                    append(&mut tar, &path, bytes, mtime).map_err(io_err)?;
                    task.advance(desc.size);
                    continue;
                }
                Blob::Stored(desc) => desc,
            };
            if let Some(arriving) = spec.arriving
                && !arriving.wait(&b.digest)
            {
                return Err(WriteError::NotArrived { digest: b.digest });
            }
            // A blob this process just downloaded is read from the file its download
            // hashed, still open: the same bytes, hashed once. Any other is read from
            // the store by its name and hashed on its way into the bundle.
            let checked = spec
                .arriving
                .and_then(|a| a.take_checked(&b.digest))
                .filter(|f| f.metadata().is_ok_and(|m| m.len() == b.size));
            let (mut file, hash) = match checked {
                Some(file) => (file, false),
                None => (store.open_blob(&b.digest)?, true),
            };
            let frames = tar.get_mut();
            let level = if is_compressed(&mut file).map_err(io_err)? {
                (COMPRESSED_LEVEL, 1)
            } else {
                (options.level, options.threads)
            };
            if b.size >= OWN_FRAME {
                frames.start(level.0, level.1)
            } else {
                frames.set(level.0, level.1)
            }
            .map_err(io_err)?;
            let mut reader = Counted {
                inner: Progress {
                    inner: file.take(b.size),
                    task: task.as_ref(),
                },
                hasher: hash.then(Hasher::default),
                len: 0,
            };
            let mut header = header(b.size, mtime);
            tar.append_data(
                &mut header,
                format!("blobs/sha256/{}", b.digest.hex()),
                &mut reader,
            )
            .map_err(io_err)?;
            if reader.len != b.size {
                return Err(io_err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "blob {} in the store ended after {} of its {} bytes",
                        b.digest, reader.len, b.size
                    ),
                )));
            }
            if let Some(actual) = reader.hasher.map(|h| h.finish().0)
                && actual != b.digest
            {
                return Err(WriteError::Corrupt {
                    digest: b.digest,
                    actual,
                });
            }
        }
        task.finish();
        let frames = tar.into_inner().map_err(io_err)?;
        let output = frames
            .finish()
            .map_err(io_err)?
            .into_inner()
            .map_err(|e| io_err(e.into_error()))?;
        output.commit(&manifest_digest, &manifest.series, manifest.sequence, key)
    })();
    if result.is_err() {
        Output::discard_at(out, options.split);
    }
    result.map(|()| (manifest, manifest_digest))
}

/// Where the compressed stream goes: `OUT.partial`, renamed to `OUT` at the end, or
/// volumes (`OUT.NNN.partial`, renamed with their signed index written last).
enum Output {
    File {
        file: store::WritebackFile,
        out: PathBuf,
    },
    Volumes(VolumeWriter),
}

impl Output {
    fn create(out: &Path, split: Option<u64>) -> io::Result<Output> {
        Ok(match split {
            Some(size) => {
                // What a killed earlier write of this name left.
                volumes::remove_partials(out);
                Output::Volumes(VolumeWriter::new(out, size))
            }
            None => Output::File {
                file: store::WritebackFile::new(File::create(partial_path(out))?),
                out: out.to_path_buf(),
            },
        })
    }

    fn commit(
        self,
        manifest_digest: &Digest,
        series: &str,
        sequence: u64,
        key: &SecretKey,
    ) -> Result<(), WriteError> {
        match self {
            Output::File { file, out } => {
                let io_err = |source| WriteError::Io {
                    path: out.clone(),
                    source,
                };
                file.file().sync_all().map_err(io_err)?;
                std::fs::rename(partial_path(&out), &out).map_err(io_err)?;
                // What an earlier split bundle of this name left would be read instead.
                volumes::remove_set(&out)?;
                Ok(())
            }
            Output::Volumes(v) => {
                v.commit(manifest_digest, series, sequence, key)?;
                Ok(())
            }
        }
    }

    /// After a failure: every partial file the output made.
    fn discard_at(out: &Path, split: Option<u64>) {
        match split {
            None => {
                let _ = std::fs::remove_file(partial_path(out));
            }
            Some(_) => volumes::remove_partials(out),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::File { file, .. } => file.write(buf),
            Output::Volumes(v) => v.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::File { file, .. } => file.flush(),
            Output::Volumes(v) => v.flush(),
        }
    }
}

/// The platform manifests of an image index in the store, for the SBOM.
fn platform_manifests(store: &Store, a: &Artifact) -> Vec<Desc> {
    if !crate::oci::is_index_type(&a.media_type) {
        return Vec::new();
    }
    store
        .read_blob(&a.digest)
        .ok()
        .and_then(|bytes| crate::oci::Manifest::parse(&bytes, Some(&a.media_type)).ok())
        .map(|m| m.children)
        .unwrap_or_default()
}

fn partial_path(out: &Path) -> PathBuf {
    append_to_name(out, ".partial")
}

/// Two writers of one name would share its partial files (`OUT.partial`,
/// `OUT.NNN.partial`): the second one refuses while the first holds `OUT.lock`.
fn lock_output(out: &Path) -> Result<store::PartialLock, WriteError> {
    let lock = append_to_name(out, ".lock");
    store::PartialLock::try_acquire(lock.clone())?.ok_or_else(|| WriteError::Busy {
        path: out.to_path_buf(),
        lock,
    })
}

/// Fails at once if another ferry is writing `out` now (before a long pull); the lock
/// that protects the write is taken again by `write`.
pub fn check_output_free(out: &Path) -> Result<(), WriteError> {
    lock_output(out).map(drop)
}

/// A bundle already at `out`: the file itself, or the index or first volume of a split
/// bundle of that name.
pub fn existing_output(out: &Path) -> Option<PathBuf> {
    [
        out.to_path_buf(),
        append_to_name(out, ".volumes.json"),
        append_to_name(out, ".001"),
    ]
    .into_iter()
    .find(|p| p.symlink_metadata().is_ok())
}

fn append_to_name(out: &Path, suffix: &str) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
    mtime: u64,
) -> io::Result<()> {
    let mut h = header(bytes.len() as u64, mtime);
    tar.append_data(&mut h, path, bytes)
}

/// gzip, zstd, bzip2, xz and zip content gains nothing from a slow zstd level.
fn is_compressed(file: &mut File) -> io::Result<bool> {
    use std::io::Seek;
    let mut magic = [0u8; 6];
    let n = file.read(&mut magic)?;
    file.seek(io::SeekFrom::Start(0))?;
    let m = &magic[..n];
    Ok(m.starts_with(&[0x1f, 0x8b])
        || m.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || m.starts_with(b"BZh")
        || m.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || m.starts_with(b"PK\x03\x04"))
}

/// Counts the bytes read through it, and hashes them when it has a hasher.
struct Counted<R> {
    inner: R,
    hasher: Option<Hasher>,
    len: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.len += n as u64;
        Ok(n)
    }
}

struct Progress<'a, R> {
    inner: R,
    task: &'a dyn crate::reporter::Task,
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.task.advance(n as u64);
        Ok(n)
    }
}

/// A zstd stream made of frames, each at its own level and with its own number of
/// workers; `zstd -d` reads them as one.
struct FrameWriter<W: Write> {
    encoder: Option<zstd::stream::write::Encoder<'static, W>>,
    level: i32,
    threads: u32,
}

impl<W: Write> FrameWriter<W> {
    fn new(inner: W, level: i32, threads: u32) -> io::Result<Self> {
        Ok(FrameWriter {
            encoder: Some(Self::encoder(inner, level, threads)?),
            level,
            threads,
        })
    }

    fn encoder(
        inner: W,
        level: i32,
        threads: u32,
    ) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
        let mut e = zstd::stream::write::Encoder::new(inner, level)?;
        e.include_checksum(true)?;
        if threads > 1 {
            e.multithread(threads)?;
        }
        Ok(e)
    }

    /// Ends the current frame and starts one at `level` with `threads` workers, if
    /// either differs.
    fn set(&mut self, level: i32, threads: u32) -> io::Result<()> {
        if (level, threads) == (self.level, self.threads) {
            return Ok(());
        }
        self.start(level, threads)
    }

    /// Ends the current frame and starts one at `level` with `threads` workers.
    fn start(&mut self, level: i32, threads: u32) -> io::Result<()> {
        let inner = self.encoder.take().expect("encoder present").finish()?;
        self.encoder = Some(Self::encoder(inner, level, threads)?);
        (self.level, self.threads) = (level, threads);
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        self.encoder.take().expect("encoder present").finish()
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.encoder.as_mut().expect("encoder present").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.encoder.as_mut().expect("encoder present").flush()
    }
}
