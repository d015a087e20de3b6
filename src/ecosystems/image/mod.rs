//! Container images (and the signatures, attestations and SBOMs attached to them) from
//! a registry or an OCI image layout on disk: `[[image]]`.

mod pull;
mod serve;

pub use pull::Deferred;

use std::fmt;
use std::path::{Path, PathBuf};

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{Ecosystem, PullContext};
use crate::artifact::{Artifact, Head, ReadBlob};
use crate::digest::Digest;
use crate::oci::Platform;
use crate::respond::Request;
use crate::store::Store;

/// One `[[image]]` entry of a spec, checked.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub source: ImageSource,
    /// Empty: every platform of an index.
    pub platforms: Vec<Platform>,
    /// The repository path the image is carried as (default: the source's path).
    pub repository: Option<String>,
    /// Bring signatures, attestations and SBOMs attached to the image.
    pub referrers: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// `registry/path:tag` or `registry/path@sha256:...`, as Docker names them.
    Registry(String),
    /// `oci:DIR:REF`: an OCI image layout on disk, `REF` its `ref.name` annotation.
    Layout { dir: PathBuf, reference: String },
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSource::Registry(r) => f.write_str(r),
            ImageSource::Layout { dir, reference } => {
                write!(f, "oci:{}:{}", dir.display(), reference)
            }
        }
    }
}

/// What the bundle manifest records of an image or a referrer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// Platforms of an index, or the one platform of a manifest, when known.
    pub platforms: Vec<String>,
    /// For a referrer: the image it is attached to.
    pub subject: Option<Digest>,
    /// When only some platforms of an index were kept: the digest of the source index.
    pub source_digest: Option<Digest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    platforms: Vec<String>,
    repository: Option<String>,
    #[serde(default = "yes")]
    referrers: bool,
}

fn yes() -> bool {
    true
}

pub struct Image;

impl Ecosystem for Image {
    const SECTION: &'static str = "image";
    const KEYS: &'static [&'static str] = &["ref", "platforms", "repository", "referrers"];
    type Spec = ImageSpec;
    type Record = ImageRecord;
    type Catalog = serve::OciCatalog;

    fn parse(entry: toml::Table, base: &Path) -> Result<ImageSpec, String> {
        let raw: RawImage = entry.try_into().map_err(|e| e.to_string())?;
        let source = parse_source(&raw.reference, base)
            .ok_or_else(|| format!("`{}` is not an image reference", raw.reference))?;
        let platforms = raw
            .platforms
            .iter()
            .map(|p| {
                Platform::parse(p).ok_or_else(|| format!("platform `{p}` is not os/arch[/variant]"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(repo) = &raw.repository
            && !crate::oci::valid_repository(repo)
        {
            return Err(format!(
                "repository `{repo}` is not a valid repository path"
            ));
        }
        Ok(ImageSpec {
            source,
            platforms,
            repository: raw.repository,
            referrers: raw.referrers,
        })
    }

    async fn pull(
        spec: &ImageSpec,
        n: usize,
        cx: &PullContext<'_>,
    ) -> crate::error::Result<Vec<Artifact<ImageRecord>>> {
        use crate::error::Context as _;
        pull::pull_image(spec, n, cx)
            .await
            .with_context(|| format!("cannot pull {}", spec.source))
    }

    /// Images carry no record of ferry's own in the store: their manifests and blobs
    /// are checked by digest like everything else.
    fn check(_: &Head, _: Option<&ImageRecord>, _: &ReadBlob) -> Result<(), String> {
        Ok(())
    }

    fn describe(_: &Head, record: &ImageRecord) -> Vec<String> {
        let mut lines = Vec::new();
        if !record.platforms.is_empty() {
            lines.push(format!("platforms {}", record.platforms.join(", ")));
        }
        if let Some(s) = &record.subject {
            lines.push(format!("attached to {s}"));
        }
        lines
    }

    fn catalog(catalog: &mut serve::OciCatalog, store: &Store, entry: &crate::oci::Desc) {
        catalog.add(store, entry);
    }

    fn claims(path: &str) -> bool {
        path == "/v2" || path.starts_with("/v2/")
    }

    async fn route(store: &Store, catalog: &serve::OciCatalog, request: &Request<'_>) -> Response {
        let mut response = serve::route(
            store,
            catalog,
            request.method,
            request.path,
            request.query,
            request.headers,
        )
        .await;
        distribution_header(&mut response);
        response
    }

    fn read_only(_path: &str) -> Response {
        let mut r = serve::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "this registry is read-only",
        );
        crate::respond::allow_get_head(&mut r);
        distribution_header(&mut r);
        r
    }
}

/// Every answer under `/v2/` says which API it speaks, as registries do.
fn distribution_header(r: &mut Response) {
    r.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
}

fn parse_source(reference: &str, base: &Path) -> Option<ImageSource> {
    if let Some(rest) = reference.strip_prefix("oci:") {
        let (dir, r) = rest.split_once(':')?;
        if dir.is_empty() || r.is_empty() {
            return None;
        }
        let dir = Path::new(dir);
        let dir = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            base.join(dir)
        };
        return Some(ImageSource::Layout {
            dir,
            reference: r.to_string(),
        });
    }
    let reference = reference.strip_prefix("docker://").unwrap_or(reference);
    let parsed = oci_client::Reference::try_from(reference).ok()?;
    if let Some(d) = parsed.digest() {
        d.parse::<Digest>().ok()?;
    }
    Some(ImageSource::Registry(reference.to_string()))
}
