//! Exports for what sites already run: a static PEP 503 tree that any web server or
//! `file://` serves, and uploads to an existing PyPI-compatible server through the
//! legacy upload API. Both read releases from a store (already verified on import).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::names::{self, ProjectName, Sha256Hex};
use crate::python::release::{self, PythonFile, PythonRelease};
use crate::store::Store;

/// Writes `out/simple/...` and `out/files/...`. Files are copied (never linked: the
/// store's blobs must not be writable through the export) and written atomically;
/// index pages are written last, so a reader never sees a link to a missing file.
pub fn python_tree(store: &Store, out: &Path) -> anyhow::Result<usize> {
    let releases = by_project(release::releases(store)?);
    let files_dir = out.join("files");
    let simple = out.join("simple");
    fs::create_dir_all(&files_dir)
        .with_context(|| format!("cannot create {}", files_dir.display()))?;
    let mut count = 0;
    for rels in releases.values() {
        for f in rels.iter().flat_map(|r| &r.files) {
            let wheel = names::join(&files_dir, &f.filename);
            copy_blob(store, &f.sha256, &wheel)?;
            let mut metadata = wheel.into_os_string();
            metadata.push(".metadata");
            copy_blob(store, &f.metadata_sha256, Path::new(&metadata))?;
            count += 1;
        }
    }
    let mut root = page_head("Simple index");
    for (name, rels) in &releases {
        let mut page = page_head(&format!("Links for {}", escape(name)));
        for f in rels.iter().flat_map(|r| &r.files) {
            page.push_str(&anchor(f, &format!("../../files/{}", f.filename)));
        }
        page.push_str("</body>\n</html>\n");
        write_atomic(
            &names::join(&simple, name).join("index.html"),
            page.as_bytes(),
        )?;
        root.push_str(&format!(
            "<a href=\"{n}/\">{n}</a><br/>\n",
            n = escape(name)
        ));
    }
    root.push_str("</body>\n</html>\n");
    write_atomic(&simple.join("index.html"), root.as_bytes())?;
    Ok(count)
}

fn by_project(
    releases: Vec<PythonRelease>,
) -> std::collections::BTreeMap<ProjectName, Vec<PythonRelease>> {
    let mut map: std::collections::BTreeMap<ProjectName, Vec<PythonRelease>> = Default::default();
    for r in releases {
        map.entry(r.project.clone()).or_default().push(r);
    }
    map
}

fn page_head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head><meta name=\"pypi:repository-version\" content=\"1.0\"><title>{title}</title></head>\n<body>\n"
    )
}

use crate::escape::html as escape;

/// A PEP 503 link with its hash, Requires-Python and PEP 658/714 metadata hash.
fn anchor(f: &PythonFile, href: &str) -> String {
    let requires = f
        .requires_python
        .as_deref()
        .map(|r| format!(" data-requires-python=\"{}\"", escape(r)))
        .unwrap_or_default();
    format!(
        "<a href=\"{}#sha256={}\"{requires} data-core-metadata=\"sha256={m}\" data-dist-info-metadata=\"sha256={m}\">{}</a><br/>\n",
        escape(href),
        f.sha256,
        escape(&f.filename),
        m = f.metadata_sha256
    )
}

fn copy_blob(store: &Store, hex: &Sha256Hex, dest: &Path) -> anyhow::Result<()> {
    let digest = hex.digest();
    let src = store.blob_path(&digest);
    if fs::metadata(dest).ok().map(|m| m.len()) == fs::metadata(&src).ok().map(|m| m.len()) {
        let same = crate::digest::Digest::of(&fs::read(dest)?) == digest;
        if same {
            return Ok(());
        }
    }
    let mut from =
        fs::File::open(&src).with_context(|| format!("cannot read {}", src.display()))?;
    let mut tmp = new_temp(dest)?;
    std::io::copy(&mut from, tmp.as_file_mut())
        .with_context(|| format!("cannot copy {} next to {}", src.display(), dest.display()))?;
    persist(tmp, dest)
}

/// A new file beside `dest`, created exclusively under a random name (never through a
/// link someone left there), readable as an export should be.
fn new_temp(dest: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".ferry-tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    Ok(tmp)
}

fn persist(tmp: tempfile::NamedTempFile, dest: &Path) -> anyhow::Result<()> {
    tmp.as_file().sync_all()?;
    tmp.persist(dest)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(())
}

fn tmp_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".ferry-tmp");
    PathBuf::from(s)
}

fn write_atomic(dest: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut tmp = new_temp(dest)?;
    tmp.write_all(bytes)?;
    persist(tmp, dest)
}

/// Credentials for an upload server.
pub struct Upload<'a> {
    pub url: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
}

/// Uploads every wheel of the store through the legacy upload API (`:action=file_upload`),
/// as twine does. A file the server already has (409) is left as it is.
pub async fn python_upload(store: &Store, upload: &Upload<'_>) -> anyhow::Result<(usize, usize)> {
    let http = reqwest::Client::builder()
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let (mut sent, mut present) = (0, 0);
    for r in release::releases(store)? {
        for f in &r.files {
            let digest = f.digest();
            let file = tokio::fs::File::open(store.blob_path(&digest))
                .await
                .with_context(|| format!("cannot open {}", f.filename))?;
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
            let part = reqwest::multipart::Part::stream_with_length(body, f.size)
                .file_name(f.filename.to_string())
                .mime_str("application/octet-stream")?;
            let pyversion = f
                .filename
                .trim_end_matches(".whl")
                .rsplit('-')
                .nth(2)
                .unwrap_or("py3")
                .to_string();
            let form = reqwest::multipart::Form::new()
                .text(":action", "file_upload")
                .text("protocol_version", "1")
                .text("metadata_version", "2.1")
                .text("name", r.project.to_string())
                .text("version", r.version.to_string())
                .text("filetype", "bdist_wheel")
                .text("pyversion", pyversion)
                .text("sha256_digest", f.sha256.to_string())
                .part("content", part);
            let mut request = http.post(upload.url).multipart(form);
            if let Some(user) = upload.username {
                request = request.basic_auth(user, upload.password);
            }
            let response = request.send().await.with_context(|| {
                format!(
                    "cannot upload {} to {}",
                    f.filename,
                    crate::names::redact_url(upload.url)
                )
            })?;
            match response.status().as_u16() {
                200..=299 => sent += 1,
                409 => present += 1,
                status => {
                    let text = response.text().await.unwrap_or_default();
                    anyhow::bail!(
                        "{} refused {} with {status}: {}",
                        crate::names::redact_url(upload.url),
                        f.filename,
                        text.lines().next().unwrap_or("")
                    );
                }
            }
        }
    }
    Ok((sent, present))
}

/// Writes a Hugging Face hub cache (what `HF_HUB_CACHE` points at) from which
/// huggingface_hub loads with `HF_HUB_OFFLINE=1`: `models--org--name/blobs/<etag>`,
/// `snapshots/<commit>/<path>` as relative links into blobs, and `refs/<revision>`.
pub fn hf_cache(store: &Store, out: &Path) -> anyhow::Result<usize> {
    let mut count = 0;
    // Every record is read and checked before the first file is written.
    let snapshots = crate::models::artifact::snapshots(store)?;
    for info in snapshots {
        let folder = out.join(format!("{}s--{}", info.kind, info.repo.replace('/', "--")));
        let blobs = folder.join("blobs");
        let snapshot = names::join(&folder.join("snapshots"), &info.commit);
        fs::create_dir_all(&blobs).with_context(|| format!("cannot create {}", blobs.display()))?;
        for f in &info.files {
            let blob = blob_name(f)?;
            copy_blob(store, &f.sha256, &names::join(&blobs, &blob))?;
            let link = names::join_rel(&snapshot, &f.path);
            let target = PathBuf::from(format!(
                "{}../../blobs/{}",
                "../".repeat(f.path.depth()),
                blob.as_str()
            ));
            if let Some(dir) = link.parent() {
                fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
                let tmp = tmp_path(&link);
                let _ = fs::remove_file(&tmp);
                std::os::unix::fs::symlink(&target, &tmp)
                    .with_context(|| format!("cannot link {}", link.display()))?;
                fs::rename(&tmp, &link)
                    .with_context(|| format!("cannot write {}", link.display()))?;
            }
            count += 1;
        }
        if info.revision != info.commit.as_str() {
            write_atomic(
                &names::join_rel(&folder.join("refs"), &info.revision.as_rel_path()),
                info.commit.as_bytes(),
            )?;
        }
    }
    Ok(count)
}

/// The name of a file's blob in a hub cache: its etag (the LFS sha256 or git oid).
fn blob_name(f: &crate::models::artifact::ModelFile) -> anyhow::Result<names::GitOid> {
    Ok(names::GitOid::new(f.etag())?)
}

/// Writes every conda channel of the store as a directory any web server or `file://`
/// serves: `out/<channel>/<subdir>/repodata.json` and the packages, `noarch` always.
pub fn conda_channels(store: &Store, out: &Path) -> anyhow::Result<usize> {
    use crate::conda::artifact::{self, CondaPackage};
    use crate::names::{ChannelName, Subdir};
    let mut channels: std::collections::BTreeMap<
        ChannelName,
        std::collections::BTreeMap<Subdir, Vec<CondaPackage>>,
    > = Default::default();
    for p in artifact::packages(store)? {
        let subdirs = channels.entry(p.channel.clone()).or_default();
        subdirs
            .entry(Subdir::new("noarch").expect("a subdir"))
            .or_default();
        subdirs.entry(p.subdir.clone()).or_default().push(p);
    }
    let mut count = 0;
    for (channel, subdirs) in &channels {
        for (subdir, packages) in subdirs {
            let dir = names::join(&names::join(out, channel), subdir);
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            for p in packages {
                copy_blob(store, &p.sha256, &names::join(&dir, &p.file_name))?;
                count += 1;
            }
            let refs: Vec<&CondaPackage> = packages.iter().collect();
            let repodata = serde_json::to_vec(&artifact::repodata(subdir, &refs))?;
            write_atomic(&dir.join("repodata.json"), &repodata)?;
        }
    }
    Ok(count)
}
