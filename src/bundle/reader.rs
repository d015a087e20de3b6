//! Reading a bundle as a stream, trusting nothing until it is checked: the manifest is
//! bounded and its signature checked before it is even parsed; then each entry must be
//! a regular file the manifest lists, once, with the size it states, and is hashed while
//! it streams into the sink. Total decompressed bytes are capped by what the signed
//! manifest declares, so a decompression bomb stops early.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;

use super::cosign::{self, CosignError, Detached};
use super::manifest::{BundleManifest, Entry, safe_path};
pub use super::signers::Trust;
use super::signers::{self, Found, Status};
use super::volumes::{self, VolumeStream};
use super::{MANIFEST_NAME, MAX_MANIFEST_SIZE, MAX_SIGNATURE_SIZE, is_signature_name};
use crate::digest::{Digest, Hasher};
use crate::exit::{Classify, ExitStatus};
use crate::reporter::{Reporter, Task};
use crate::sign::{KeyId, SignatureError, SignatureFile};
use crate::trust::policy::{Approval, Refusal};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The importing site's own policy denied the bundle.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("cannot open bundle {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a ferry bundle: {reason}")]
    NotABundle { path: PathBuf, reason: &'static str },
    #[error("bundle is damaged or truncated{}", at.as_ref().map(|p| format!(" (in entry `{p}`)")).unwrap_or_default())]
    Damaged {
        at: Option<String>,
        #[source]
        source: io::Error,
    },
    #[error("bundle does not start with `{MANIFEST_NAME}` (first entry: `{found}`)")]
    NoManifest { found: String },
    #[error("bundle is not signed: no signature entry follows `{MANIFEST_NAME}`")]
    Unsigned,
    /// A second pass over a bundle (an import that streams its blobs to a registry)
    /// found another signed manifest than the first pass verified.
    #[error(
        "{path} changed while it was being imported (its signed manifest is not the one verified)"
    )]
    Changed { path: PathBuf },
    #[error("{}", match .0 {
        SignatureError::TooFew { .. } => "bundle is not signed by enough trusted keys",
        _ => "bundle signature does not verify",
    })]
    Signature(#[from] SignatureError),
    #[error("bundle is not approved")]
    NotApproved(#[source] Box<Refusal>),
    #[error(transparent)]
    Cosign(#[from] CosignError),
    #[error("signed bundle manifest is not valid: {0}")]
    BadManifest(String),
    #[error("bundle manifest is of a format this ferry ({ours}) cannot read: {detail}")]
    NewerFormat {
        /// The `tool` the manifest names (escaped, at most 100 characters).
        tool: String,
        ours: &'static str,
        detail: String,
    },
    #[error("entry `{path}` is a {kind}; a bundle holds only regular files")]
    NotAFile { path: String, kind: String },
    #[error("entry `{path}` has an unsafe path")]
    UnsafePath { path: String },
    #[error("entry `{path}` is not listed in the signed manifest")]
    Unlisted { path: String },
    #[error("entry `{path}` is out of order: the signed manifest lists `{expected}` here")]
    OutOfOrder { path: String, expected: String },
    #[error("entry `{path}` appears more than once")]
    Duplicate { path: String },
    #[error("entry `{path}` is {actual} bytes, the signed manifest says {expected}")]
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "entry `{path}` does not match the signed manifest: expected sha256:{expected}, got {actual}"
    )]
    DigestMismatch {
        path: String,
        expected: String,
        actual: Digest,
    },
    #[error("entry `{path}` of the signed manifest is missing from the bundle")]
    Missing { path: String },
    #[error("bundle holds more data than its signed manifest declares (a decompression bomb?)")]
    TooLarge,
    #[error(
        "series `{series}`: bundle sequence {sequence} is older than {highest}, already imported here (rollback)"
    )]
    Rollback {
        series: String,
        sequence: u64,
        highest: u64,
    },
    #[error(
        "series `{series}`: sequence {sequence} was already imported here with a different manifest"
    )]
    SequenceReused { series: String, sequence: u64 },
    #[error("artifact {artifact} is refused: {reason}")]
    BadRecord { artifact: String, reason: String },
    #[error("artifact {artifact} is incomplete: {reason}")]
    Incomplete { artifact: String, reason: String },
    #[error(
        "this incremental bundle (series {series} sequence {sequence}) leaves out {} blob(s) that the target does not hold: {}",
        missing.len(),
        list_digests(missing)
    )]
    NotInTarget {
        series: String,
        sequence: u64,
        /// What the bundle was made against: `bundle|manifest|receipt sha256:... (sequence N)`.
        base: String,
        missing: Vec<Digest>,
    },
    #[error(transparent)]
    Volume(#[from] super::volumes::VolumeError),
    /// Too few signatures, from standard input: co-signatures beside a bundle file may
    /// have been left behind.
    #[error(transparent)]
    FromStdin(Box<VerifyError>),
    #[error("cannot stage entry `{path}`")]
    Stage {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl Classify for VerifyError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            VerifyError::Open { .. } | VerifyError::Stage { .. } => ExitStatus::Error,
            VerifyError::NotABundle { .. } => ExitStatus::Usage,
            VerifyError::Cosign(e) => e.exit_status(),
            VerifyError::Policy(e) => e.exit_status(),
            VerifyError::Volume(e) => e.exit_status(),
            VerifyError::FromStdin(e) => e.exit_status(),
            _ => ExitStatus::Verification,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            VerifyError::Signature(e) => e.hint(),
            VerifyError::NotApproved(e) => e.hint(),
            VerifyError::Cosign(e) => e.hint(),
            VerifyError::Policy(e) => e.hint(),
            VerifyError::Volume(e) => e.hint(),
            VerifyError::FromStdin(e) => Some(format!(
                "{}co-signatures (BUNDLE.KEYID.minisig) are read from beside a bundle file, and standard input has no beside: save the stream as a file next to its co-signatures and give that path",
                e.hint().map(|h| format!("{h}; ")).unwrap_or_default()
            )),
            VerifyError::Changed { .. } => Some("nothing was tagged; make sure nothing writes the bundle file while it is imported, then import it again".into()),
            VerifyError::Unsigned => Some("sign bundles with `ferry bundle create --key`; never import an unsigned one".into()),
            VerifyError::Rollback { .. } | VerifyError::SequenceReused { .. } => {
                Some("import the newest bundle of the series; an older one may be a replay".into())
            }
            VerifyError::Open { .. } | VerifyError::Stage { .. } => None,
            VerifyError::NotABundle { .. } => Some(
                "give the OUT.ferry file `ferry bundle create` wrote, or any volume of a split bundle (OUT.ferry.001, ...)".into(),
            ),
            VerifyError::NotInTarget { base, .. } => Some(format!(
                "import its base ({base}) into this target first, or make the bundle again with `--since` the receipt of what this target holds (`ferry import --receipt`); nothing was written"
            )),
            VerifyError::NewerFormat { tool, .. } => Some(format!(
                "it says it was written by {tool}: read it with that ferry or a newer one; this one does not import what it cannot check"
            )),
            VerifyError::BadManifest(_) | VerifyError::BadRecord { .. } | VerifyError::Incomplete { .. } => Some(
                "a trusted key signed a bundle that ferry never writes (unsafe names, absent or absurd content): treat that key as compromised and do not use this bundle".into(),
            ),
            _ => Some("the bundle was altered or damaged in transit: fetch it again from its source and do not use this copy".into()),
        }
    }
}

/// The first few digests of a list, and how many more.
fn list_digests(d: &[Digest]) -> String {
    let shown: Vec<String> = d.iter().take(5).map(|d| d.to_string()).collect();
    match d.len() {
        n if n > 5 => format!("{} and {} more", shown.join(", "), n - 5),
        _ => shown.join(", "),
    }
}

/// The signed part of a bundle, checked.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: BundleManifest,
    /// sha256 of the manifest bytes: the bundle's identity.
    pub manifest_digest: Digest,
    /// The distinct keys that counted.
    pub signers: Vec<KeyId>,
    /// Every signature found (embedded and beside the bundle) and what became of it.
    pub signatures: Vec<Found>,
    /// Under a trust policy: the rule that was met and who counted for it.
    pub approval: Option<Approval>,
}

/// What to do once the signature checked.
pub enum Decision {
    /// Read and check every entry.
    Continue,
    /// Stop here (nothing more to do, e.g. already imported).
    Stop,
}

/// Where verified entries go. `stage` must read `content` to its end; reading fails if the
/// bytes do not match the manifest, and the caller must then discard what it staged.
pub trait EntrySink {
    fn stage(&mut self, entry: &Entry, content: &mut dyn Read) -> io::Result<()>;

    /// Told before `stage` when the entry's tar header is the first byte of a zstd
    /// frame that begins `at` bytes into the bundle file: `entry_at` can read it again
    /// from there, without the bytes before it.
    fn starts_frame(&mut self, _entry: &Entry, _at: u64) {}

    /// Asked right after `starts_frame`: whether the sink checks this entry itself,
    /// reading it again from its frame (`entry_at`) before anything depends on it. The
    /// reader then reads past its bytes without hashing them, so the sink must not keep
    /// the bytes `stage` is handed, and must fail whatever it does with the bundle if its
    /// own check of the entry fails or cannot be made.
    fn checks_itself(&mut self, _entry: &Entry) -> bool {
        false
    }
}

/// Reads, checks and hands over a bundle. `decide` sees the verified manifest before
/// any entry is read; `sink` gets each entry as it streams.
/// A split bundle's volumes must all be there, and its index signed by a trusted key,
/// before anything is read.
pub fn read(
    input: &Input,
    trust: &Trust<'_>,
    decide: &mut dyn FnMut(&Verified) -> Result<Decision, VerifyError>,
    sink: &mut dyn EntrySink,
    progress: Progress<'_>,
) -> Result<Verified, VerifyError> {
    let opened = open(input, true)?;
    if let Some(v) = &opened.volumes {
        v.with_set(|set| set.check_signature(trust))?;
    }
    let volumes = opened.volumes.clone();
    read_opened(opened, trust, decide, sink, progress)
        .map_err(|e| name_the_volume(e, volumes.as_ref()))
}

/// Where a pass over a bundle's entries shows its overall progress (bytes, rate, ETA
/// of the entries once the manifest verified), under what label.
#[derive(Clone, Copy)]
pub struct Progress<'a> {
    pub reporter: &'a dyn Reporter,
    pub label: &'a str,
}

impl Progress<'_> {
    /// No progress shown.
    pub fn none() -> Progress<'static> {
        Progress {
            reporter: &crate::reporter::Quiet,
            label: "",
        }
    }
}

fn read_opened(
    opened: Opened,
    trust: &Trust<'_>,
    decide: &mut dyn FnMut(&Verified) -> Result<Decision, VerifyError>,
    sink: &mut dyn EntrySink,
    progress: Progress<'_>,
) -> Result<Verified, VerifyError> {
    let Opened {
        mut archive,
        budget,
        volumes,
        bundle,
        frames,
    } = opened;
    let mut entries = archive.entries().map_err(|e| damaged(None, e, &budget))?;

    // 1. The manifest, bounded, kept as bytes until its signature checks.
    let manifest_bytes = read_manifest(&mut entries, &budget)?;
    if let Some(v) = &volumes {
        v.with_set(|set| set.check_manifest(&Digest::of(&manifest_bytes)))?;
    }

    // 2. Signatures (embedded, then beside the bundle), then the manifest itself.
    let (embedded, pending) = read_signatures(&mut entries, &budget)?;
    let embedded = strict(embedded)?;
    if embedded.is_empty() {
        return Err(VerifyError::Unsigned);
    }
    let found = signers::check(&manifest_bytes, embedded, cosignatures(&bundle)?, trust)?;
    // Too few signers from standard input: say where the others may have stayed.
    let short = |e: VerifyError| match e {
        VerifyError::Signature(SignatureError::TooFew { .. }) | VerifyError::NotApproved(_)
            if is_stdin(&bundle) =>
        {
            VerifyError::FromStdin(Box::new(e))
        }
        e => e,
    };
    let signers = match trust {
        Trust::Keys { keys, threshold } => {
            signers::meet_threshold(&found, keys, *threshold).map_err(|e| short(e.into()))?
        }
        Trust::Policy(policy) => {
            let valid = signers::valid_ids(&found);
            if valid.is_empty() {
                return Err(short(not_approved(
                    policy.refuse_unsigned(&counted(&found)),
                    &found,
                )));
            }
            valid
        }
    };
    // The bytes are not needed once parsed (a manifest of 10,000 entries is ~2 MiB).
    let manifest_digest = Digest::of(&manifest_bytes);
    let manifest = parse_manifest(&manifest_bytes)?;
    drop(manifest_bytes);
    manifest.validate().map_err(VerifyError::BadManifest)?;
    let approval = match trust {
        Trust::Keys { .. } => None,
        Trust::Policy(policy) => Some(
            policy
                .evaluate(
                    &manifest.series,
                    &manifest.created,
                    time::OffsetDateTime::now_utc(),
                    &counted(&found),
                )
                .map_err(|r| short(not_approved(r, &found)))?,
        ),
    };
    let verified = Verified {
        manifest_digest,
        manifest,
        signers: match &approval {
            Some(a) => a.signers.iter().map(|s| s.id).collect(),
            None => signers,
        },
        signatures: found,
        approval,
    };
    if let Decision::Stop = decide(&verified)? {
        return Ok(verified);
    }

    // 3. Every entry: listed, once, in order, a regular file of the stated size and
    // digest. In order means each must be the next one listed, so no map of the listed
    // paths is needed (nor kept: 10,000 entries would cost ~1 MiB).
    let listed = &verified.manifest.entries;
    let headers = 3 * 512 * (listed.len() as u64 + 4) + 2048;
    budget.set(verified.manifest.total_size().saturating_add(headers));
    let task = progress
        .reporter
        .overall(progress.label, Some(verified.manifest.total_size()));
    let mut position = 0;
    let mut last: Option<String> = None;
    let mut current = pending;
    // What the sink leaves unread is read through here, 256 KiB at a time (`io::copy`
    // would take 8 KiB a call).
    let mut spare = Vec::new();
    loop {
        let mut e = match current.take() {
            Some(e) => e,
            None => match next_entry(&mut entries, last.clone(), &budget)? {
                Some(e) => e,
                None => break,
            },
        };
        let p = entry_path(&e);
        if !is_regular(&e) {
            return Err(VerifyError::NotAFile {
                path: p,
                kind: kind_name(e.header().entry_type()),
            });
        }
        if !safe_path(&p) {
            return Err(VerifyError::UnsafePath { path: p });
        }
        let listed_entry = match listed.get(position) {
            Some(l) if l.is_at(&p) => l,
            _ => return Err(misplaced(listed, position, p)),
        };
        position += 1;
        last = Some(p.clone());
        if e.size() != listed_entry.size {
            return Err(VerifyError::SizeMismatch {
                path: p,
                expected: listed_entry.size,
                actual: e.size(),
            });
        }
        // Only an entry whose own header says all (no extension header before it
        // changed its path or size) can be read again from its frame alone.
        let plain = e.header().path_bytes().as_ref() == p.as_bytes()
            && e.header().entry_size().ok() == Some(listed_entry.size);
        let mut unhashed = false;
        if let Some(at) = frames.as_ref().and_then(|f| f.at(e.raw_header_position()))
            && plain
        {
            sink.starts_frame(listed_entry, at);
            unhashed = sink.checks_itself(listed_entry);
        }
        let mut checking = Checking {
            inner: &mut e,
            hasher: Hasher::default(),
            entry: *listed_entry,
            task: task.as_ref(),
            outcome: None,
            counted: 0,
            unhashed,
        };
        let staged = sink.stage(listed_entry, &mut checking);
        if checking.outcome.is_none() && staged.is_ok() {
            drain(&mut checking, &mut spare)
                .map_err(|err| damaged(Some(p.clone()), err, &budget))?;
        }
        match (checking.outcome.take(), staged) {
            (Some(Ok(())), Ok(())) => {}
            (Some(Err(actual)), _) => {
                return Err(VerifyError::DigestMismatch {
                    path: p,
                    expected: listed_entry.sha256.hex(),
                    actual,
                });
            }
            (None, Err(source))
                if source.kind() == io::ErrorKind::Other
                    && source.get_ref().is_some_and(|e| e.is::<StageFailed>()) =>
            {
                return Err(VerifyError::Stage { path: p, source });
            }
            (_, Err(source)) => return Err(damaged(Some(p), source, &budget)),
            (None, Ok(())) => unreachable!("drained above"),
        }
    }
    if let Some(e) = listed.get(position) {
        return Err(VerifyError::Missing { path: e.path() });
    }
    if let Some(v) = &volumes {
        v.finish()?;
    }
    task.finish();
    Ok(verified)
}

/// The manifest, parsed strictly. One that does not parse, or names another format, and
/// says another ferry wrote it (a newer one, with fields or a format this one lacks) is
/// `NewerFormat`, so that the operator upgrades rather than distrusts the signer.
fn parse_manifest(bytes: &[u8]) -> Result<BundleManifest, VerifyError> {
    const OURS: &str = concat!("ferry ", env!("CARGO_PKG_VERSION"));
    let detail = match serde_json::from_slice::<BundleManifest>(bytes) {
        Ok(m) if m.format == super::FORMAT => return Ok(m),
        Ok(m) => format!(
            "unknown bundle format `{}` (this ferry reads `{}`)",
            m.format.escape_debug(),
            super::FORMAT
        ),
        Err(e) => e.to_string(),
    };
    #[derive(serde::Deserialize)]
    struct Claims {
        format: String,
        tool: String,
    }
    let newer = serde_json::from_slice::<Claims>(bytes).ok().filter(|c| {
        c.tool != OURS && c.tool.starts_with("ferry ") && c.format.starts_with("dev.ferry.bundle.")
    });
    match newer {
        Some(c) => Err(VerifyError::NewerFormat {
            tool: c
                .tool
                .chars()
                .take(100)
                .collect::<String>()
                .escape_debug()
                .to_string(),
            ours: OURS,
            detail,
        }),
        None => Err(VerifyError::BadManifest(detail)),
    }
}

/// Why the tar entry at `path` is not the one listed at `position`: listed nowhere,
/// listed before (so seen already), or listed later.
fn misplaced(listed: &[Entry], position: usize, path: String) -> VerifyError {
    match listed.iter().position(|l| l.is_at(&path)) {
        None => VerifyError::Unlisted { path },
        Some(i) if i < position => VerifyError::Duplicate { path },
        Some(_) => VerifyError::OutOfOrder {
            path,
            expected: listed[position].path(),
        },
    }
}

/// For a split bundle, an error the bytes caused is the damaged volume's, when one is.
fn name_the_volume(e: VerifyError, volumes: Option<&VolumeStream>) -> VerifyError {
    let Some(v) = volumes else { return e };
    match e {
        VerifyError::Policy(_)
        | VerifyError::Open { .. }
        | VerifyError::Volume(_)
        | VerifyError::Stage { .. }
        | VerifyError::NotApproved(_)
        | VerifyError::FromStdin(_)
        | VerifyError::Cosign(_)
        | VerifyError::Rollback { .. }
        | VerifyError::SequenceReused { .. }
        | VerifyError::NotInTarget { .. } => e,
        _ => v.explain().map_or(e, VerifyError::Volume),
    }
}

type Parsed = Vec<(String, Result<SignatureFile, SignatureError>)>;

/// The signature entries right after the manifest, each parsed (unverified), and the
/// first entry after them.
fn read_signatures<'a>(
    entries: &mut Entries<'a>,
    budget: &Rc<Cell<u64>>,
) -> Result<(Parsed, Option<TarEntry<'a>>), VerifyError> {
    let mut signatures = Vec::new();
    while let Some(mut e) = next_entry(entries, None, budget)? {
        let p = entry_path(&e);
        if !is_signature_name(&p) {
            return Ok((signatures, Some(e)));
        }
        if !is_regular(&e) || e.size() > MAX_SIGNATURE_SIZE {
            return Err(VerifyError::NotAFile {
                path: p,
                kind: "oversized or special signature".into(),
            });
        }
        let text = read_small(&mut e, &p, budget)?;
        let parsed = String::from_utf8(text)
            .map_err(|_| SignatureError::Malformed(format!("`{p}` is not text")))
            .and_then(|text| SignatureFile::parse(&text));
        signatures.push((p, parsed));
    }
    Ok((signatures, None))
}

fn strict(parsed: Parsed) -> Result<Vec<(String, SignatureFile)>, VerifyError> {
    parsed.into_iter().map(|(p, s)| Ok((p, s?))).collect()
}

/// The key ids a trust policy weighs: verified signatures and those by revoked keys
/// (which it names, never counts).
fn counted(found: &[Found]) -> Vec<KeyId> {
    found
        .iter()
        .filter(|f| matches!(f.status, Status::Valid | Status::Revoked))
        .map(|f| f.key_id)
        .collect()
}

fn not_approved(mut refusal: Box<Refusal>, found: &[Found]) -> VerifyError {
    refusal.ignored = found
        .iter()
        .filter(|f| !matches!(f.status, Status::Valid | Status::Revoked))
        .filter_map(Found::problem)
        .collect();
    VerifyError::NotApproved(refusal)
}

/// Wraps an I/O error of the staging side, so it is not taken for a damaged bundle.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StageFailed(pub String);

pub fn stage_error(e: io::Error) -> io::Error {
    io::Error::other(StageFailed(e.to_string()))
}

/// The decompressed bytes of a bundle (from its file, or its volumes one after another),
/// capped by the budget.
type Stream = BufReader<Budgeted<Box<dyn Read>>>;
type Archive = tar::Archive<Stream>;

/// What a bundle's compressed bytes come from.
enum Source {
    /// A bundle file, or standard input: decompressed on a thread of its own
    /// (`ReadAhead`).
    File(Box<dyn Read + Send>),
    /// A split bundle's volumes, which share their position with the caller
    /// (`VolumeStream::finish` reads on from where the decoder stopped): decompressed on
    /// the reading thread.
    Volumes(VolumeStream),
}

/// Where a bundle is read from: one file, or a split bundle's volumes, found from `path`
/// (any volume, the index, or the name without a suffix) beside it and in `volume_dirs`.
#[derive(Debug, Clone)]
pub struct Input {
    pub path: PathBuf,
    pub volume_dirs: Vec<PathBuf>,
    /// The bundle file opened once (`Input::pin`): every pass reads it, whatever the
    /// path comes to name meanwhile.
    pinned: Option<std::sync::Arc<File>>,
}

/// The path that names standard input, as tar, zstd and sha256sum take it (a file of
/// that name is `./-`).
pub const STDIN: &str = "-";

impl Input {
    pub fn new(path: &Path, volume_dirs: &[PathBuf]) -> Input {
        Input {
            path: path.to_path_buf(),
            volume_dirs: volume_dirs.to_vec(),
            pinned: None,
        }
    }

    /// Read from standard input (`-`): one pass, no volumes, no co-signatures beside it.
    pub fn is_stdin(&self) -> bool {
        is_stdin(&self.path)
    }

    /// The same input with its file opened once, for a second pass that must read the
    /// file the first one read (a rename over the path meanwhile changes nothing; a
    /// write into the file is caught by the hashes). `None` when it cannot be read
    /// twice: standard input, a pipe or a device, a split bundle (whose volumes may be
    /// on media that change between passes), or a file that does not open.
    pub fn pin(&self) -> Option<Input> {
        if self.is_stdin() || !matches!(volumes::find(&self.path, &self.volume_dirs), Ok(None)) {
            return None;
        }
        let file = File::open(&self.path).ok()?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return None;
        }
        Some(Input {
            pinned: Some(std::sync::Arc::new(file)),
            ..self.clone()
        })
    }

    /// The name the bundle goes by (co-signatures sit beside it): the path given, or
    /// for a split bundle `DIR/NAME.ferry`, DIR being where its index is.
    pub fn bundle_path(&self) -> Result<PathBuf, VerifyError> {
        if self.is_stdin() {
            return Ok(self.path.clone());
        }
        Ok(volumes::find(&self.path, &self.volume_dirs)?
            .map_or_else(|| self.path.clone(), |set| set.bundle))
    }
}

impl From<&Path> for Input {
    fn from(path: &Path) -> Input {
        Input::new(path, &[])
    }
}

struct Opened {
    archive: Archive,
    budget: Rc<Cell<u64>>,
    volumes: Option<VolumeStream>,
    bundle: PathBuf,
    /// Where the file's zstd frames begin (a bundle file, not standard input or volumes).
    frames: Option<FrameStarts>,
}

/// Opens a bundle for reading, with decompressed bytes capped at what the manifest may
/// take until the manifest says more. With `whole`, every volume of a split bundle must
/// be there with its size; otherwise only those reached are needed.
fn open(input: &Input, whole: bool) -> Result<Opened, VerifyError> {
    if input.is_stdin() {
        return open_stdin(input);
    }
    let (source, volumes, bundle) = match volumes::find(&input.path, &input.volume_dirs)? {
        Some(set) => {
            if whole && let Err(e) = set.check_present() {
                return Err(of_another_bundle(&set).unwrap_or(e).into());
            }
            let bundle = set.bundle.clone();
            let stream = VolumeStream::new(set);
            (Source::Volumes(stream.clone()), Some(stream), bundle)
        }
        None => {
            let file: Box<dyn Read + Send> = match &input.pinned {
                Some(file) => {
                    let (_, read) = sniff(
                        &input.path,
                        ReadAt {
                            file: file.clone(),
                            at: 0,
                        },
                    )?;
                    Box::new(ReadAt { at: 0, ..read })
                }
                None => {
                    let file = File::open(&input.path).map_err(|source| VerifyError::Open {
                        path: input.path.clone(),
                        source,
                    })?;
                    Box::new(looks_like_a_bundle(&input.path, file)?)
                }
            };
            (Source::File(file), None, input.path.clone())
        }
    };
    // Only a second reading of the same open file uses where the frames begin.
    let (archive, budget, frames) = archive(source, input.pinned.is_some())
        .map_err(|source| VerifyError::Damaged { at: None, source })?;
    Ok(Opened {
        archive,
        budget,
        volumes,
        bundle,
        frames,
    })
}

/// Whether `path` names standard input.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == STDIN
}

/// Standard input can be read once: a second pass over it would see nothing and call
/// the bundle truncated.
static STDIN_TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Opens standard input as the bundle: checked as a file is (not a directory, a zstd
/// stream from its first bytes), which are then put back in front of the rest.
fn open_stdin(input: &Input) -> Result<Opened, VerifyError> {
    use std::os::fd::AsFd as _;
    let open_err = |source| VerifyError::Open {
        path: input.path.clone(),
        source,
    };
    if !input.volume_dirs.is_empty() {
        return Err(VerifyError::NotABundle {
            path: input.path.clone(),
            reason: "a split bundle cannot come from standard input: give its volumes' paths",
        });
    }
    if STDIN_TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Err(open_err(io::Error::other(
            "standard input was read already; this needs the bundle as a file",
        )));
    }
    let fd = io::stdin().as_fd().try_clone_to_owned().map_err(open_err)?;
    let file = File::from(fd);
    let damaged = |source| VerifyError::Damaged { at: None, source };
    if file.metadata().map_err(damaged)?.is_dir() {
        return Err(VerifyError::NotABundle {
            path: input.path.clone(),
            reason: "standard input is a directory",
        });
    }
    let (head, rest) = sniff(&input.path, file)?;
    let source = Source::File(Box::new(io::Cursor::new(head).chain(rest)));
    let (archive, budget, _) =
        archive(source, false).map_err(|source| VerifyError::Damaged { at: None, source })?;
    Ok(Opened {
        archive,
        budget,
        volumes: None,
        bundle: input.path.clone(),
        frames: None,
    })
}

/// The first bytes of `r` (up to the zstd magic's length), refused as no bundle when
/// they cannot start a zstd stream; `r` is left after them.
fn sniff<R: Read>(path: &Path, mut r: R) -> Result<(Vec<u8>, R), VerifyError> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(VerifyError::Damaged {
                    at: None,
                    source: e,
                });
            }
        }
    }
    if got > 0 && head[..got] != ZSTD_MAGIC[..got] {
        return Err(VerifyError::NotABundle {
            path: path.to_path_buf(),
            reason: "it does not start as a zstd stream, as every bundle does",
        });
    }
    Ok((head[..got].to_vec(), r))
}

/// The co-signatures beside `bundle`; none for standard input, which has no "beside".
fn cosignatures(bundle: &Path) -> Result<Vec<Detached>, CosignError> {
    if is_stdin(bundle) {
        Ok(Vec::new())
    } else {
        cosign::find(bundle)
    }
}

/// The zstd frame magic every bundle starts with (little-endian 0xFD2FB528).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Tells a file that is no bundle at all (a directory, a key, a tar, a spec) from one
/// damaged in transit: a bundle is a zstd stream, so anything else given as one is a
/// usage error (exit 2), while a zstd stream that goes wrong later is damage (exit 3).
/// An empty file counts as a truncated bundle.
fn looks_like_a_bundle(path: &Path, file: File) -> Result<File, VerifyError> {
    use std::io::Seek as _;
    let damaged = |source| VerifyError::Damaged { at: None, source };
    if file.metadata().map_err(damaged)?.is_dir() {
        return Err(VerifyError::NotABundle {
            path: path.to_path_buf(),
            reason: "it is a directory",
        });
    }
    let (_, mut file) = sniff(path, file)?;
    file.rewind().map_err(damaged)?;
    Ok(file)
}

/// ferry writes at level 19 at most, whose window is 8 MiB (2^23): a larger one is
/// refused, so a hostile frame header cannot make the decoder take 128 MiB.
const WINDOW_LOG_MAX: u32 = 24;

/// The tar inside the zstd stream, with its decompressed-bytes budget (the manifest's
/// cap until the manifest says more). With `frames`, where a bundle file's frames begin
/// is noted (`FrameStarts`).
fn archive(
    source: Source,
    frames: bool,
) -> io::Result<(Archive, Rc<Cell<u64>>, Option<FrameStarts>)> {
    fn decoder<R: Read>(r: R) -> io::Result<zstd::stream::read::Decoder<'static, BufReader<R>>> {
        let mut decoder = zstd::stream::read::Decoder::new(r)?;
        decoder.window_log_max(WINDOW_LOG_MAX)?;
        Ok(decoder)
    }
    let mut starts = None;
    let decoded: Box<dyn Read> = match source {
        Source::File(file) => {
            starts = frames.then(FrameStarts::default);
            Box::new(ReadAhead::spawn(framed_decoder(file, starts.clone())?))
        }
        Source::Volumes(stream) => Box::new(decoder(stream)?),
    };
    let budget = Rc::new(Cell::new(MAX_MANIFEST_SIZE + 64 * 1024));
    let capped = Budgeted {
        inner: decoded,
        left: budget.clone(),
    };
    Ok((
        tar::Archive::new(BufReader::with_capacity(1 << 20, capped)),
        budget,
        starts,
    ))
}

/// When a volume has the wrong size, the index may be another bundle's: it is if the
/// manifest volume 1 begins with is not the one the index names.
fn of_another_bundle(set: &volumes::Set) -> Option<volumes::VolumeError> {
    let (mut archive, budget, _) =
        archive(Source::Volumes(VolumeStream::new(set.clone())), false).ok()?;
    let mut entries = archive.entries().ok()?;
    let manifest = read_manifest(&mut entries, &budget).ok()?;
    set.check_manifest(&Digest::of(&manifest)).err()
}

/// The first entry, which must be the manifest, bounded in size.
fn read_manifest(
    entries: &mut Entries<'_>,
    budget: &Rc<Cell<u64>>,
) -> Result<Vec<u8>, VerifyError> {
    let mut first = next_entry(entries, None, budget)?.ok_or(VerifyError::NoManifest {
        found: "nothing".into(),
    })?;
    let path = entry_path(&first);
    if path != MANIFEST_NAME || !is_regular(&first) || first.size() > MAX_MANIFEST_SIZE {
        return Err(VerifyError::NoManifest { found: path });
    }
    read_small(&mut first, &path, budget)
}

type Entries<'a> = tar::Entries<'a, Stream>;
type TarEntry<'a> = tar::Entry<'a, Stream>;

fn next_entry<'a>(
    entries: &mut Entries<'a>,
    after: Option<String>,
    budget: &Rc<Cell<u64>>,
) -> Result<Option<TarEntry<'a>>, VerifyError> {
    match entries.next() {
        None => Ok(None),
        Some(Ok(e)) => Ok(Some(e)),
        Some(Err(e)) => Err(damaged(after, e, budget)),
    }
}

fn damaged(at: Option<String>, source: io::Error, budget: &Rc<Cell<u64>>) -> VerifyError {
    if budget.get() == 0 && is_over_budget(&source) {
        VerifyError::TooLarge
    } else {
        VerifyError::Damaged { at, source }
    }
}

fn entry_path(e: &TarEntry<'_>) -> String {
    String::from_utf8_lossy(&e.path_bytes()).into_owned()
}

fn is_regular(e: &TarEntry<'_>) -> bool {
    e.header().entry_type() == tar::EntryType::Regular
}

fn kind_name(t: tar::EntryType) -> String {
    match t {
        tar::EntryType::Symlink => "symbolic link".into(),
        tar::EntryType::Link => "hard link".into(),
        tar::EntryType::Char => "character device".into(),
        tar::EntryType::Block => "block device".into(),
        tar::EntryType::Directory => "directory".into(),
        tar::EntryType::Fifo => "FIFO".into(),
        other => format!("special entry ({other:?})"),
    }
}

fn read_small(
    e: &mut TarEntry<'_>,
    path: &str,
    budget: &Rc<Cell<u64>>,
) -> Result<Vec<u8>, VerifyError> {
    let mut bytes = Vec::with_capacity(e.size() as usize);
    e.read_to_end(&mut bytes)
        .map_err(|err| damaged(Some(path.to_string()), err, budget))?;
    Ok(bytes)
}

/// Reads `r` to its end into `buffer` (sized on first use), discarding the bytes.
fn drain(r: &mut impl Read, buffer: &mut Vec<u8>) -> io::Result<()> {
    buffer.resize(256 << 10, 0);
    loop {
        match r.read(buffer) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Hashes an entry as it is read and settles, at its end, whether it matched.
struct Checking<'a, R> {
    inner: R,
    hasher: Hasher,
    entry: Entry,
    /// The pass's overall progress, advanced by every byte read.
    task: &'a dyn Task,
    /// `Some(Ok)` once the whole entry was read and matched; `Some(Err(actual))` if not.
    outcome: Option<Result<(), Digest>>,
    /// Bytes read so far, when `unhashed`.
    counted: u64,
    /// Only counted, not hashed: the sink checks the entry itself
    /// (`EntrySink::checks_itself`); `outcome` says only that its size matched.
    unhashed: bool,
}

impl<R: Read> Read for Checking<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(done) = &self.outcome {
            return match done {
                Ok(()) => Ok(0),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "digest mismatch",
                )),
            };
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            if self.unhashed {
                self.counted += n as u64;
            } else {
                self.hasher.update(&buf[..n]);
            }
            self.task.advance(n as u64);
            return Ok(n);
        }
        if self.unhashed {
            if self.counted != self.entry.size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "entry ends early",
                ));
            }
            self.outcome = Some(Ok(()));
            return Ok(0);
        }
        if self.hasher.len() != self.entry.size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "entry ends early",
            ));
        }
        let (actual, _) = std::mem::take(&mut self.hasher).finish();
        if actual == self.entry.sha256 {
            self.outcome = Some(Ok(()));
            Ok(0)
        } else {
            self.outcome = Some(Err(actual));
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("`{}` does not match its digest", self.entry.path()),
            ))
        }
    }
}

/// The error `Budgeted` reads with once the budget is spent.
#[derive(Debug, thiserror::Error)]
#[error("more decompressed data than the signed manifest declares")]
struct OverBudget;

/// Whether `e` is, or was caused by, `OverBudget` (tar wraps the reader's errors).
fn is_over_budget(e: &io::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|i| i as _);
    while let Some(err) = cur {
        if err.is::<OverBudget>() {
            return true;
        }
        cur = match err.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|i| i as _),
            None => err.source(),
        };
    }
    false
}

/// A file read from its start by position, so that passes over one open file do not
/// share an offset.
struct ReadAt {
    file: std::sync::Arc<File>,
    at: u64,
}

impl Read for ReadAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(&*self.file, buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Where the zstd frames of a bundle file begin, as its decoder finds them: (offset in
/// the file, offset in the decompressed stream) of each frame after the first. The
/// decoder runs ahead of the reader of the tar (`ReadAhead`), so a frame is known before
/// the bytes it starts with are read; the reader forgets the frames it has passed.
#[derive(Clone, Default)]
struct FrameStarts(std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<(u64, u64)>>>);

impl FrameStarts {
    /// How far behind the decoder the reader of the tar may be: `ReadAhead`'s chunks and
    /// the archive's buffer, with room to spare. Frames further back are forgotten.
    const LAG: u64 = 16 << 20;

    fn push(&self, compressed: u64, decompressed: u64) {
        // The framing is not signed: a bundle re-encoded into tiny frames must not make
        // this grow. Only where a tar header can begin counts, and only so far back.
        if !decompressed.is_multiple_of(512) {
            return;
        }
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // An empty frame (or the end of a frame noted twice) leaves the next one to
        // begin where it did: that one is where the bytes are.
        if q.back().is_some_and(|&(_, d)| d == decompressed) {
            q.pop_back();
        }
        q.push_back((compressed, decompressed));
        while q
            .front()
            .is_some_and(|&(_, d)| d + Self::LAG < decompressed)
        {
            q.pop_front();
        }
    }

    /// The offset in the file of the frame that begins at decompressed offset `at`, if
    /// one does.
    fn at(&self, at: u64) -> Option<u64> {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(&(compressed, decompressed)) = q.front() {
            if decompressed > at {
                return None;
            }
            q.pop_front();
            if decompressed == at {
                return Some(compressed);
            }
        }
        None
    }
}

/// zstd's streaming decoder, counting what it takes and gives so as to note where each
/// frame ends (the next one begins there).
struct Tracking {
    inner: zstd::stream::raw::Decoder<'static>,
    consumed: u64,
    produced: u64,
    starts: Option<FrameStarts>,
}

impl zstd::stream::raw::Operation for Tracking {
    fn run<C: zstd::stream::raw::WriteBuf + ?Sized>(
        &mut self,
        input: &mut zstd::stream::raw::InBuffer<'_>,
        output: &mut zstd::stream::raw::OutBuffer<'_, C>,
    ) -> io::Result<usize> {
        let (i, o) = (input.pos(), output.pos());
        let hint = self.inner.run(input, output)?;
        self.consumed += (input.pos() - i) as u64;
        self.produced += (output.pos() - o) as u64;
        // 0: the frame is whole and all of it given out.
        if hint == 0
            && let Some(s) = &self.starts
        {
            s.push(self.consumed, self.produced);
        }
        Ok(hint)
    }

    fn flush<C: zstd::stream::raw::WriteBuf + ?Sized>(
        &mut self,
        output: &mut zstd::stream::raw::OutBuffer<'_, C>,
    ) -> io::Result<usize> {
        self.inner.flush(output)
    }

    fn reinit(&mut self) -> io::Result<()> {
        self.inner.reinit()
    }

    fn finish<C: zstd::stream::raw::WriteBuf + ?Sized>(
        &mut self,
        output: &mut zstd::stream::raw::OutBuffer<'_, C>,
        finished_frame: bool,
    ) -> io::Result<usize> {
        self.inner.finish(output, finished_frame)
    }
}

type FramedDecoder<R> = zstd::stream::zio::Reader<BufReader<R>, Tracking>;

/// A decoder of a bundle's zstd stream (frames one after another, windows bounded)
/// that notes in `starts` where each frame begins.
fn framed_decoder<R: Read>(r: R, starts: Option<FrameStarts>) -> io::Result<FramedDecoder<R>> {
    let mut inner = zstd::stream::raw::Decoder::new()?;
    inner.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(WINDOW_LOG_MAX))?;
    Ok(zstd::stream::zio::Reader::new(
        BufReader::with_capacity(zstd::zstd_safe::DCtx::in_size(), r),
        Tracking {
            inner,
            consumed: 0,
            produced: 0,
            starts,
        },
    ))
}

/// One entry of a bundle file read again on its own, from the zstd frame that a first
/// pass found it begins (`EntrySink::starts_frame`, `at` bytes into the file): its tar
/// header must name it as a regular file of its size, and its bytes are hashed as they
/// are read. The read that would end them fails if they do not match the entry, so a
/// reader that passes each chunk on only once it has the next never passes on the whole
/// of an entry that does not match. Nothing but the entry is decompressed: the frame
/// may be damaged or hostile (the file changed since the first pass), and then the
/// reading fails.
pub fn entry_at(input: &Input, at: u64, entry: &Entry) -> Result<EntryAt, VerifyError> {
    let damaged = |source| VerifyError::Damaged {
        at: Some(entry.path()),
        source,
    };
    let file = match &input.pinned {
        Some(file) => file.clone(),
        None => {
            std::sync::Arc::new(File::open(&input.path).map_err(|source| VerifyError::Open {
                path: input.path.clone(),
                source,
            })?)
        }
    };
    let mut decoder = framed_decoder(ReadAt { file, at }, None).map_err(damaged)?;
    decoder.set_single_frame();
    let mut header = tar::Header::new_old();
    decoder.read_exact(header.as_mut_bytes()).map_err(damaged)?;
    let path = entry.path();
    let listed = header.path_bytes().as_ref() == path.as_bytes()
        && header.entry_type() == tar::EntryType::Regular
        && header.entry_size().ok() == Some(entry.size)
        && header.cksum().ok() == Some(header_checksum(&header));
    if !listed {
        return Err(VerifyError::Changed {
            path: input.path.clone(),
        });
    }
    Ok(EntryAt(Checking {
        inner: decoder.take(entry.size),
        hasher: Hasher::default(),
        entry: *entry,
        task: &crate::reporter::NoTask,
        outcome: None,
        counted: 0,
        unhashed: false,
    }))
}

/// The checksum a tar header should carry: the sum of its bytes, the checksum field
/// counted as spaces.
fn header_checksum(header: &tar::Header) -> u32 {
    let bytes = header.as_bytes();
    bytes[..148]
        .iter()
        .chain(&[b' '; 8])
        .chain(&bytes[156..])
        .map(|&b| u32::from(b))
        .sum()
}

/// An entry read on its own (`entry_at`).
pub struct EntryAt(Checking<'static, io::Take<FramedDecoder<ReadAt>>>);

impl EntryAt {
    /// Why the reading failed, as an import reports it.
    pub fn error(&self, source: io::Error) -> VerifyError {
        let entry = &self.0.entry;
        match &self.0.outcome {
            Some(Err(actual)) => VerifyError::DigestMismatch {
                path: entry.path(),
                expected: entry.sha256.hex(),
                actual: *actual,
            },
            _ => VerifyError::Damaged {
                at: Some(entry.path()),
                source,
            },
        }
    }
}

impl Read for EntryAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

/// Caps the decompressed bytes read through it.
struct Budgeted<R> {
    inner: R,
    left: Rc<Cell<u64>>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left.get();
        if left == 0 {
            return Err(io::Error::other(OverBudget));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left.set(left - n as u64);
        Ok(n)
    }
}

/// Reads `inner` on a thread of its own, up to `AHEAD` chunks before the caller: the
/// decompression of a bundle then runs beside the hashing of what it yields (each takes
/// about one core at full speed). What waits is bounded (`AHEAD` x `CHUNK` bytes), so a
/// decompression bomb costs no more than that before the caller's budget stops it; the
/// thread ends at the end of the stream, at its first error (passed on after the bytes
/// before it), or when the caller drops its end.
struct ReadAhead {
    chunks: mpsc::Receiver<io::Result<Vec<u8>>>,
    /// Emptied chunks go back to the thread, so that it does not allocate per chunk.
    spent: mpsc::SyncSender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    /// The stream has ended: cleanly (`true`), or with an error already passed on or a
    /// thread that stopped (`false`, and every later read fails).
    ended: Option<bool>,
}

impl ReadAhead {
    const CHUNK: usize = 1 << 20;
    const AHEAD: usize = 4;

    fn spawn<R: Read + Send + 'static>(mut inner: R) -> ReadAhead {
        let (send, chunks) = mpsc::sync_channel(Self::AHEAD);
        let (spent, reuse) = mpsc::sync_channel::<Vec<u8>>(Self::AHEAD + 1);
        std::thread::spawn(move || {
            loop {
                let mut chunk = reuse.try_recv().unwrap_or_default();
                chunk.resize(Self::CHUNK, 0);
                let mut filled = 0;
                let error = loop {
                    match inner.read(&mut chunk[filled..]) {
                        Ok(0) => break None,
                        Ok(n) => {
                            filled += n;
                            if filled == chunk.len() {
                                break None;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Some(e),
                    }
                };
                chunk.truncate(filled);
                let full = filled == Self::CHUNK;
                if filled > 0 && send.send(Ok(chunk)).is_err() {
                    return;
                }
                // The end is an empty chunk, so that a thread that stopped otherwise
                // (a panic) is not taken for the end of the stream.
                match error {
                    Some(e) => {
                        let _ = send.send(Err(e));
                        return;
                    }
                    None if !full => {
                        let _ = send.send(Ok(Vec::new()));
                        return;
                    }
                    None => {}
                }
            }
        });
        ReadAhead {
            chunks,
            spent,
            current: Vec::new(),
            at: 0,
            ended: None,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            if let Some(clean) = self.ended {
                return if clean {
                    Ok(0)
                } else {
                    Err(io::Error::other("the bundle's decompression stopped"))
                };
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => self.ended = Some(true),
                Ok(Ok(chunk)) => {
                    let spent = std::mem::replace(&mut self.current, chunk);
                    let _ = self.spent.try_send(spent);
                    self.at = 0;
                }
                Ok(Err(e)) => {
                    self.ended = Some(false);
                    return Err(e);
                }
                Err(mpsc::RecvError) => self.ended = Some(false),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// What `bundle inspect` shows, read without checking anything. Never act on it.
pub struct Peeked {
    pub manifest: BundleManifest,
    /// Embedded signature entries and the key ids they claim.
    pub embedded: Vec<(String, KeyId)>,
    /// Co-signature files beside the bundle.
    pub detached: Vec<Detached>,
}

/// The manifest and the signatures found, for `bundle inspect` (an embedded signature
/// that does not parse is left out).
pub fn peek(input: &Input) -> Result<Peeked, VerifyError> {
    let (manifest, signatures, bundle) = read_head(input)?;
    let manifest = parse_manifest(&manifest)?;
    Ok(Peeked {
        manifest,
        embedded: signatures
            .into_iter()
            .filter_map(|(p, s)| Some((p, s.ok()?.key_id)))
            .collect(),
        detached: cosignatures(&bundle)?,
    })
}

/// The bytes of the (small) entries `wanted`, read without checking any signature: each
/// is checked against the sha256 that `peeked`'s unverified manifest gives it, and the
/// read stops once all were found. For `bundle sbom` without trust; never act on it.
pub fn peek_entries(
    input: &Input,
    manifest: &BundleManifest,
    wanted: &[&str],
    max_size: u64,
) -> Result<Vec<Vec<u8>>, VerifyError> {
    let opened = open(input, false)?;
    let volumes = opened.volumes.clone();
    peek_opened(opened, manifest, wanted, max_size)
        .map_err(|e| name_the_volume(e, volumes.as_ref()))
}

fn peek_opened(
    opened: Opened,
    manifest: &BundleManifest,
    wanted: &[&str],
    max_size: u64,
) -> Result<Vec<Vec<u8>>, VerifyError> {
    let Opened {
        mut archive,
        budget,
        ..
    } = opened;
    let mut entries = archive.entries().map_err(|e| damaged(None, e, &budget))?;
    read_manifest(&mut entries, &budget)?;
    let (_, mut current) = read_signatures(&mut entries, &budget)?;
    let headers = 3 * 512 * (manifest.entries.len() as u64 + 4) + 2048;
    budget.set(manifest.total_size().saturating_add(headers));
    let mut found: Vec<Option<Vec<u8>>> = vec![None; wanted.len()];
    let mut last = None;
    while found.iter().any(Option::is_none) {
        let mut e = match current.take() {
            Some(e) => e,
            None => match next_entry(&mut entries, last.clone(), &budget)? {
                Some(e) => e,
                None => break,
            },
        };
        let p = entry_path(&e);
        last = Some(p.clone());
        let Some(i) = wanted.iter().position(|w| *w == p) else {
            continue;
        };
        let Some(entry) = manifest.entries.iter().find(|l| l.is_at(&p)) else {
            return Err(VerifyError::Unlisted { path: p });
        };
        if !is_regular(&e) || e.size() != entry.size || entry.size > max_size {
            return Err(VerifyError::SizeMismatch {
                path: p,
                expected: entry.size,
                actual: e.size(),
            });
        }
        let bytes = read_small(&mut e, &p, &budget)?;
        let actual = Digest::of(&bytes);
        if actual != entry.sha256 {
            return Err(VerifyError::DigestMismatch {
                path: p,
                expected: entry.sha256.hex(),
                actual,
            });
        }
        found[i] = Some(bytes);
    }
    found
        .into_iter()
        .zip(wanted)
        .map(|(f, w)| {
            f.ok_or_else(|| VerifyError::Missing {
                path: w.to_string(),
            })
        })
        .collect()
}

/// The start of a bundle, unverified: the manifest's bytes and the embedded signatures.
pub struct Head {
    pub manifest: Vec<u8>,
    pub signatures: Vec<(String, SignatureFile)>,
}

/// Reads the manifest (bounded) and the signatures after it, and nothing more: what
/// `bundle sign` signs. Verifies nothing.
pub fn head(input: &Input) -> Result<Head, VerifyError> {
    let (manifest, signatures, _) = read_head(input)?;
    Ok(Head {
        manifest,
        signatures: strict(signatures)?,
    })
}

/// The manifest's bytes, the embedded signatures, and the name the bundle goes by.
fn read_head(input: &Input) -> Result<(Vec<u8>, Parsed, PathBuf), VerifyError> {
    let Opened {
        mut archive,
        budget,
        volumes,
        bundle,
        ..
    } = open(input, false)?;
    let result = (|| {
        let mut entries = archive.entries().map_err(|e| damaged(None, e, &budget))?;
        let manifest = read_manifest(&mut entries, &budget)?;
        let (signatures, _) = read_signatures(&mut entries, &budget)?;
        Ok((manifest, signatures))
    })();
    let (manifest, signatures) = result.map_err(|e| name_the_volume(e, volumes.as_ref()))?;
    Ok((manifest, signatures, bundle))
}

#[cfg(test)]
pub(super) fn test_over_budget() -> impl std::error::Error + Send + Sync + 'static {
    OverBudget
}

#[cfg(test)]
pub(super) fn test_is_over_budget(e: &io::Error) -> bool {
    is_over_budget(e)
}

#[cfg(test)]
mod tests {
    use super::ReadAhead;
    use std::io::{self, Read};

    /// Yields `data` in odd-sized pieces, then `then` (an error, or the end).
    struct Pieces {
        data: Vec<u8>,
        at: usize,
        then: Option<io::ErrorKind>,
        panic: bool,
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                if self.panic {
                    panic!("a decoder that fails in the worst way");
                }
                return match self.then.take() {
                    Some(kind) => Err(io::Error::new(kind, "damaged")),
                    None => Ok(0),
                };
            }
            let n = buf.len().min(7919).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn pieces(len: usize, then: Option<io::ErrorKind>, panic: bool) -> (Vec<u8>, Pieces) {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let p = Pieces {
            data: data.clone(),
            at: 0,
            then,
            panic,
        };
        (data, p)
    }

    /// The framing is not signed: a bundle re-encoded into a frame per byte must not
    /// make the notes of where frames begin grow with it.
    #[test]
    fn hostile_tiny_frames_keep_the_frame_notes_small() {
        use super::FrameStarts;
        let starts = FrameStarts::default();
        for i in 1..200_000u64 {
            starts.push(i * 3, i); // a frame per byte
        }
        // Only where a tar header may begin, and only so far behind the decoder.
        let len = starts.0.lock().unwrap().len() as u64;
        assert!(len <= FrameStarts::LAG / 512 + 1, "{len} notes");
        assert_eq!(starts.at(199_680), Some(199_680 * 3));
        assert_eq!(starts.at(199_681), None);
        for i in 1..100_000u64 {
            starts.push(i, 200_000 + i * 512);
        }
        let len = starts.0.lock().unwrap().len() as u64;
        assert!(len <= FrameStarts::LAG / 512 + 1, "{len} notes");
    }

    #[test]
    fn read_ahead_yields_every_byte_in_order_then_the_end() {
        for len in [
            0,
            1,
            ReadAhead::CHUNK - 1,
            ReadAhead::CHUNK,
            5 * ReadAhead::CHUNK + 3,
        ] {
            let (data, inner) = pieces(len, None, false);
            let mut got = Vec::new();
            ReadAhead::spawn(inner).read_to_end(&mut got).unwrap();
            assert_eq!(got.len(), data.len());
            assert!(got == data, "bytes differ at length {len}");
        }
    }

    #[test]
    fn hostile_read_ahead_passes_an_error_after_the_bytes_before_it_and_never_an_end() {
        let (data, inner) = pieces(
            2 * ReadAhead::CHUNK + 10,
            Some(io::ErrorKind::InvalidData),
            false,
        );
        let mut r = ReadAhead::spawn(inner);
        let mut got = vec![0u8; data.len()];
        r.read_exact(&mut got).unwrap();
        assert!(got == data);
        let e = r.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // A reader that asks again is not told the stream ended cleanly.
        assert!(r.read(&mut [0u8; 16]).is_err());
    }

    #[test]
    fn hostile_read_ahead_whose_thread_dies_is_an_error_not_the_end_of_the_stream() {
        let (_, inner) = pieces(100, None, true);
        let mut got = Vec::new();
        let e = ReadAhead::spawn(inner).read_to_end(&mut got).unwrap_err();
        assert!(e.to_string().contains("decompression stopped"), "{e}");
    }

    #[test]
    fn read_ahead_stops_its_thread_when_the_reader_goes() {
        // An endless source: dropping the reader must end the thread (it blocks at most
        // AHEAD chunks ahead, then its send fails).
        struct Endless(std::sync::Arc<std::sync::atomic::AtomicUsize>);
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0
                    .fetch_add(buf.len(), std::sync::atomic::Ordering::SeqCst);
                Ok(buf.len())
            }
        }
        let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut r = ReadAhead::spawn(Endless(read.clone()));
        r.read_exact(&mut [0u8; 10]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let ahead = read.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            ahead <= (ReadAhead::AHEAD + 3) * ReadAhead::CHUNK,
            "read {ahead} bytes ahead"
        );
        drop(r);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let after = read.load(std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(
            read.load(std::sync::atomic::Ordering::SeqCst),
            after,
            "the thread went on"
        );
    }
}
