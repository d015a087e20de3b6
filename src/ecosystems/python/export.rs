//! Exports of Python releases for what sites already run: a static PEP 503 tree that
//! any web server or `file://` serves, and uploads to an existing PyPI-compatible server
//! through the legacy upload API. Both read releases from a store (already verified on
//! import).

use std::fs;
use std::path::Path;

use crate::error::Context as _;

use super::record::{self, PythonFile, PythonRelease};
use crate::export::{copy_blob, write_atomic};
use crate::names::{self, ProjectName};
use crate::store::Store;

/// Writes `out/simple/...` and `out/files/...`. Files are copied (never linked: the
/// store's blobs must not be writable through the export) and written atomically;
/// index pages are written last, so a reader never sees a link to a missing file.
pub fn python_tree(
    store: &Store,
    out: &Path,
    reporter: &dyn crate::reporter::Reporter,
) -> crate::error::Result<usize> {
    let releases = by_project(record::releases(store)?);
    let progress = crate::export::progress(
        store,
        releases
            .values()
            .flat_map(|rels| rels.iter().flat_map(|r| &r.files))
            .flat_map(|f| [&f.sha256, &f.metadata_sha256]),
        reporter,
    );
    let files_dir = out.join("files");
    let simple = out.join("simple");
    fs::create_dir_all(&files_dir)
        .with_context(|| format!("cannot create {}", files_dir.display()))?;
    let mut count = 0;
    for rels in releases.values() {
        for f in rels.iter().flat_map(|r| &r.files) {
            let wheel = names::join(&files_dir, &f.filename);
            copy_blob(store, &f.sha256, &wheel, progress.as_ref())?;
            let mut metadata = wheel.into_os_string();
            metadata.push(".metadata");
            copy_blob(
                store,
                &f.metadata_sha256,
                Path::new(&metadata),
                progress.as_ref(),
            )?;
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

/// Credentials for an upload server.
pub struct Upload<'a> {
    pub url: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
}

/// Uploads every wheel of the store through the legacy upload API (`:action=file_upload`),
/// as twine does. A file the server already has (409) is left as it is.
pub async fn python_upload(
    store: &Store,
    upload: &Upload<'_>,
) -> crate::error::Result<(usize, usize)> {
    let http = reqwest::Client::builder()
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let (mut sent, mut present) = (0, 0);
    for r in record::releases(store)? {
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
                    crate::error::bail!(
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
