//! The SBOMs a bundle carries: a CycloneDX 1.5 and an SPDX 2.3 JSON document, both made
//! from the manifest's artifacts at `bundle create` and signed with it (the manifest
//! names their digests). Every artifact is a component with its purl (`pkg:oci`,
//! `pkg:pypi`, `pkg:conda`, `pkg:huggingface`), version, sha256, licences and origin; an
//! image index lists its platform manifests, a Python release its wheels, a model its
//! files. SBOMs that an upstream attached to an image (OCI referrers, cosign's `.sbom`
//! tags) are carried as artifacts of their own and linked from the image they describe.
//!
//! In the bundle (and in every target an import fills) the two documents are the layers
//! of one OCI artifact, `ferry/sbom:<series>-<sequence>` (see [`tag`]). For a bundle
//! written before ferry carried SBOMs, [`build`] derives the same documents from the
//! signed manifest alone, marked as derived.

use std::collections::BTreeMap;

use cyclonedx_bom::external_models::normalized_string::NormalizedString;
use cyclonedx_bom::external_models::spdx::SpdxExpression;
use cyclonedx_bom::external_models::uri::{Purl, Uri};
use cyclonedx_bom::models::bom::{Bom, SpecVersion, UrnUuid};
use cyclonedx_bom::models::component::{Classification, Component, Components};
use cyclonedx_bom::models::external_reference::{
    ExternalReference, ExternalReferenceType, ExternalReferences,
};
use cyclonedx_bom::models::hash::{Hash, HashAlgorithm, HashValue, Hashes};
use cyclonedx_bom::models::license::{License, LicenseChoice, Licenses};
use cyclonedx_bom::models::metadata::Metadata;
use cyclonedx_bom::models::property::{Properties, Property};
use cyclonedx_bom::models::tool::Tools;
use serde::Serialize;

use crate::artifact::Licence;
use crate::bundle::BundleManifest;
use crate::digest::Digest;
use crate::ecosystems::{AnyArtifact, Record};
use crate::oci::Desc;

/// The repository importers keep every bundle's SBOMs under.
pub const REPOSITORY: &str = "ferry/sbom";
/// The `artifactType` of the OCI manifest that holds the two documents.
pub const ARTIFACT_TYPE: &str = "application/vnd.dev.ferry.sbom.v1";
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
/// The OCI empty descriptor's media type and content, the config of artifacts without one.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY: &[u8] = b"{}";
/// The SBOM of even a very large bundle is a few MiB; a document beyond this is refused
/// when read back.
pub const MAX_DOCUMENT: u64 = 64 << 20;

/// Which documents `bundle sbom` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    CycloneDx,
    Spdx,
}

/// The tag a bundle's SBOM artifact gets: `<series>-<sequence>`, or, for a series name
/// that cannot start a tag or is too long for one, a hash of the series in its place.
pub fn tag(series: &str, sequence: u64) -> String {
    let plain = format!("{series}-{sequence}");
    if crate::oci::valid_tag(&plain) {
        return plain;
    }
    let hash = Digest::of(series.as_bytes()).hex();
    format!("series-{}-{sequence}", &hash[..16])
}

/// Whether the documents were written with the bundle or derived afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Made at `bundle create`, signed with the manifest.
    Carried,
    /// Made later from the signed manifest of a bundle that carried none.
    Derived,
}

/// Both documents, as JSON bytes.
pub struct Documents {
    pub cyclonedx: Vec<u8>,
    pub spdx: Vec<u8>,
}

impl Documents {
    pub fn get(&self, format: Format) -> &[u8] {
        match format {
            Format::CycloneDx => &self.cyclonedx,
            Format::Spdx => &self.spdx,
        }
    }
}

/// The platform manifests of an image index, when the store can tell (`bundle create`);
/// a derived SBOM has only the platform names the manifest records.
pub type Children<'a> = dyn Fn(&AnyArtifact) -> Vec<Desc> + 'a;

/// The SBOMs of `manifest`'s artifacts (its `sbom`, `entries` and `policy` are not read:
/// the policy decides on the manifest with its SBOM, so the SBOM cannot hold the verdict).
pub fn build(manifest: &BundleManifest, children: &Children<'_>, made: Provenance) -> Documents {
    let items = items(manifest, children);
    Documents {
        cyclonedx: cyclonedx(manifest, &items, made),
        spdx: spdx_document(manifest, &items, made),
    }
}

/// The OCI manifest that holds the two documents, as `bundle create` writes it.
pub fn oci_manifest(manifest: &BundleManifest, docs: &Documents) -> Vec<u8> {
    let layer = |media_type: &str, bytes: &[u8]| {
        serde_json::json!({
            "mediaType": media_type,
            "digest": Digest::of(bytes).to_string(),
            "size": bytes.len(),
        })
    };
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::oci::OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": layer(EMPTY_MEDIA_TYPE, EMPTY),
        "layers": [
            layer(CYCLONEDX_MEDIA_TYPE, &docs.cyclonedx),
            layer(SPDX_MEDIA_TYPE, &docs.spdx),
        ],
        "annotations": {
            "org.opencontainers.image.created": manifest.created,
            "dev.ferry.series": manifest.series,
            "dev.ferry.sequence": manifest.sequence.to_string(),
        },
    });
    serde_json::to_vec(&v).expect("a manifest serialises")
}

/// Checks that the OCI manifest an import is about to name is the SBOM artifact the
/// signed manifest describes: the empty config and exactly the two documents, nothing
/// else a hostile bundle could make a target reference.
pub fn check_oci_manifest(
    bytes: &[u8],
    sbom: &crate::bundle::manifest::SbomRef,
) -> Result<(), String> {
    let m = crate::oci::Manifest::parse(bytes, Some(crate::oci::OCI_MANIFEST))
        .map_err(|e| e.to_string())?;
    let expect = [
        (EMPTY_MEDIA_TYPE, Digest::of(EMPTY), EMPTY.len() as u64),
        (
            CYCLONEDX_MEDIA_TYPE,
            sbom.cyclonedx.digest,
            sbom.cyclonedx.size,
        ),
        (SPDX_MEDIA_TYPE, sbom.spdx.digest, sbom.spdx.size),
    ];
    let matches = m.media_type == crate::oci::OCI_MANIFEST
        && m.artifact_type.as_deref() == Some(ARTIFACT_TYPE)
        && m.subject.is_none()
        && m.children.len() == expect.len()
        && m.children
            .iter()
            .zip(expect)
            .all(|(c, (t, d, s))| c.media_type == t && c.digest == d && c.size == s);
    if matches {
        Ok(())
    } else {
        Err("its manifest is not the SBOM artifact the signed manifest describes".into())
    }
}

/// One component of either document: an artifact, or a file or platform manifest in it.
struct Item {
    /// `bom-ref` in CycloneDX; the tail of the `SPDXRef-` id in SPDX.
    id: String,
    kind: ItemKind,
    name: String,
    version: String,
    purl: Option<String>,
    sha256: Option<Digest>,
    licences: Vec<Licence>,
    /// Where it came from, when that is a URL.
    download: Option<String>,
    properties: Vec<(String, String)>,
    parts: Vec<Item>,
    /// Ids of SBOMs attached upstream that describe this item.
    described_by: Vec<(String, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ItemKind {
    Container,
    Library,
    Model,
    Dataset,
    File,
    /// A wheel or a conda package file: something an installer takes.
    Install,
}

fn items(manifest: &BundleManifest, children: &Children<'_>) -> Vec<Item> {
    let mut items: Vec<Item> = manifest
        .artifacts
        .iter()
        .enumerate()
        .map(|(i, a)| item(i + 1, a, children))
        .collect();
    link_attached_sboms(manifest, &mut items);
    items
}

fn item(n: usize, a: &AnyArtifact, children: &Children<'_>) -> Item {
    let id = format!("artifact-{n}");
    let mut properties = vec![
        ("ferry:repository".to_string(), a.repository.clone()),
        ("ferry:origin".to_string(), a.origin.clone()),
        ("ferry:mediaType".to_string(), a.media_type.clone()),
    ];
    if let Some(t) = &a.artifact_type {
        properties.push(("ferry:artifactType".into(), t.clone()));
    }
    for (k, v) in &a.labels {
        properties.push((format!("ferry:label:{k}"), v.clone()));
    }
    let base = |kind, name: String, version: String, purl, sha256, download| Item {
        id: id.clone(),
        kind,
        name,
        version,
        purl,
        sha256,
        licences: a.licenses.clone(),
        download,
        properties: properties.clone(),
        parts: Vec::new(),
        described_by: Vec::new(),
    };
    match &a.record {
        Record::Image(r) => {
            let (purl_name, repository_url) = oci_location(a);
            let version = a.tag.clone().unwrap_or_else(|| a.digest.to_string());
            let mut it = base(
                ItemKind::Container,
                a.repository.clone(),
                version,
                oci_purl(
                    &purl_name,
                    &a.digest,
                    repository_url.as_deref(),
                    a.tag.as_deref(),
                    None,
                ),
                Some(a.digest),
                None,
            );
            if let Some(s) = &r.subject {
                it.properties.push(("ferry:subject".into(), s.to_string()));
            }
            for p in &r.platforms {
                it.properties.push(("ferry:platform".into(), p.clone()));
            }
            it.parts = children(a)
                .into_iter()
                .enumerate()
                .map(|(j, c)| {
                    let platform = c.platform.as_ref().map(|p| {
                        let mut s = format!("{}/{}", p.os, p.architecture);
                        if let Some(v) = &p.variant {
                            s.push('/');
                            s.push_str(v);
                        }
                        s
                    });
                    let mut properties = vec![("ferry:mediaType".into(), c.media_type.clone())];
                    if let Some(p) = &platform {
                        properties.push(("ferry:platform".into(), p.clone()));
                    }
                    Item {
                        id: format!("{id}-manifest-{}", j + 1),
                        kind: ItemKind::Container,
                        name: a.repository.clone(),
                        version: c.digest.to_string(),
                        purl: oci_purl(
                            &purl_name,
                            &c.digest,
                            repository_url.as_deref(),
                            None,
                            c.platform.as_ref(),
                        ),
                        sha256: Some(c.digest),
                        licences: Vec::new(),
                        download: None,
                        properties,
                        parts: Vec::new(),
                        described_by: Vec::new(),
                    }
                })
                .collect();
            it
        }
        Record::Python(r) => {
            let release = purl("pypi", None, &r.project, &r.version, &[]);
            let index = format!("{}/{}/", r.index.trim_end_matches('/'), r.project.as_str());
            let mut it = base(
                ItemKind::Library,
                r.project.to_string(),
                r.version.to_string(),
                release,
                None,
                url(&index),
            );
            it.properties.push(("ferry:index".into(), r.index.clone()));
            it.parts = r
                .files
                .iter()
                .enumerate()
                .map(|(j, f)| Item {
                    id: format!("{id}-file-{}", j + 1),
                    kind: ItemKind::Install,
                    name: f.filename.to_string(),
                    version: r.version.to_string(),
                    purl: purl(
                        "pypi",
                        None,
                        &r.project,
                        &r.version,
                        &[("file_name", f.filename.as_str())],
                    ),
                    sha256: Some(f.digest()),
                    licences: Vec::new(),
                    download: None,
                    properties: f
                        .requires_python
                        .iter()
                        .map(|p| ("ferry:requiresPython".to_string(), p.clone()))
                        .collect(),
                    parts: Vec::new(),
                    described_by: Vec::new(),
                })
                .collect();
            it
        }
        Record::Conda(r) => {
            let kind = if r.file_name.ends_with(".conda") {
                "conda"
            } else {
                "tar.bz2"
            };
            let purl = purl(
                "conda",
                None,
                &r.name,
                &r.version,
                &[
                    ("build", r.build.as_str()),
                    ("channel", r.channel_url.as_str()),
                    ("subdir", r.subdir.as_str()),
                    ("type", kind),
                ],
            );
            let mut it = base(
                ItemKind::Library,
                r.name.to_string(),
                r.version.to_string(),
                purl,
                Some(r.sha256.digest()),
                url(&r.url),
            );
            it.properties
                .push(("ferry:build".into(), r.build.to_string()));
            it.properties
                .push(("ferry:subdir".into(), r.subdir.to_string()));
            it.properties
                .push(("ferry:fileName".into(), r.file_name.to_string()));
            it
        }
        Record::Model(r) => {
            let (namespace, name) = match r.repo.split_once('/') {
                Some((ns, n)) => (Some(ns), n),
                None => (None, &*r.repo),
            };
            let endpoint = r.endpoint.trim_end_matches('/');
            let mut qualifiers = Vec::new();
            if endpoint != "https://huggingface.co" {
                qualifiers.push(("repository_url", endpoint));
            }
            let dataset = r.kind.as_str() == "dataset";
            if dataset {
                qualifiers.push(("repository_type", "dataset"));
            }
            let purl = purl("huggingface", namespace, name, &r.commit, &qualifiers);
            let page = if dataset {
                format!("{endpoint}/datasets/{}", &*r.repo)
            } else {
                format!("{endpoint}/{}", &*r.repo)
            };
            let mut it = base(
                if dataset {
                    ItemKind::Dataset
                } else {
                    ItemKind::Model
                },
                r.repo.to_string(),
                r.commit.to_string(),
                purl,
                None,
                url(&page),
            );
            it.properties
                .push(("ferry:revision".into(), r.revision.to_string()));
            it.parts = r
                .files
                .iter()
                .enumerate()
                .map(|(j, f)| Item {
                    id: format!("{id}-file-{}", j + 1),
                    kind: ItemKind::File,
                    name: f.path.to_string(),
                    version: r.commit.to_string(),
                    purl: None,
                    sha256: Some(f.sha256.digest()),
                    licences: Vec::new(),
                    download: None,
                    properties: vec![("ferry:gitOid".into(), f.oid.to_string())],
                    parts: Vec::new(),
                    described_by: Vec::new(),
                })
                .collect();
            it
        }
    }
}

/// Media types of SBOM documents an upstream may attach to an image.
fn is_sbom_type(t: &str) -> bool {
    let t = t.to_ascii_lowercase();
    t.contains("spdx") || t.contains("cyclonedx") || t.contains("syft") || t.contains("sbom")
}

/// An attached SBOM (a referrer with an SBOM type, or a cosign `sha256-<hex>.sbom` tag)
/// is linked from the image (or platform manifest) it describes.
fn link_attached_sboms(manifest: &BundleManifest, items: &mut [Item]) {
    let mut links: Vec<(Digest, String, String)> = Vec::new();
    for (a, it) in manifest.artifacts.iter().zip(items.iter()) {
        let Record::Image(r) = &a.record else {
            continue;
        };
        let subject = r.subject.or_else(|| {
            let hex = a
                .tag
                .as_deref()?
                .strip_prefix("sha256-")?
                .strip_suffix(".sbom")?;
            Digest::from_hex(hex).ok()
        });
        let typed = a.artifact_type.as_deref().is_some_and(is_sbom_type)
            || a.tag.as_deref().is_some_and(|t| t.ends_with(".sbom"));
        if let (Some(subject), true) = (subject, typed) {
            links.push((subject, it.id.clone(), it.purl.clone().unwrap_or_default()));
        }
    }
    for (subject, id, purl) in links {
        for it in items.iter_mut() {
            if it.sha256 == Some(subject) {
                it.described_by.push((id.clone(), purl.clone()));
            }
            for part in &mut it.parts {
                if part.sha256 == Some(subject) {
                    part.described_by.push((id.clone(), purl.clone()));
                }
            }
        }
    }
}

/// The purl's name (the repository's last segment) and `repository_url` of an image,
/// from where it was pulled (the spec's reference) when that parses.
fn oci_location(a: &AnyArtifact) -> (String, Option<String>) {
    let last = |repo: &str| repo.rsplit('/').next().unwrap_or(repo).to_ascii_lowercase();
    match oci_client::Reference::try_from(a.origin.as_str()) {
        Ok(r) => (
            last(r.repository()),
            Some(format!("{}/{}", r.registry(), r.repository())),
        ),
        Err(_) => (last(&a.repository), None),
    }
}

fn oci_purl(
    name: &str,
    digest: &Digest,
    repository_url: Option<&str>,
    tag: Option<&str>,
    platform: Option<&crate::oci::Platform>,
) -> Option<String> {
    let digest = digest.to_string();
    let mut q: Vec<(&str, &str)> = Vec::new();
    if let Some(p) = platform {
        q.push(("arch", &p.architecture));
        q.push(("os", &p.os));
        if let Some(v) = &p.variant {
            q.push(("variant", v));
        }
    }
    if let Some(u) = repository_url {
        q.push(("repository_url", u));
    }
    if let Some(t) = tag {
        q.push(("tag", t));
    }
    purl("oci", None, name, &digest, &q)
}

fn purl(
    ty: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, &str)],
) -> Option<String> {
    let mut p = packageurl::PackageUrl::new(ty, name).ok()?;
    if let Some(ns) = namespace {
        p.with_namespace(ns).ok()?;
    }
    p.with_version(version).ok()?;
    for (k, v) in qualifiers {
        p.add_qualifier(*k, *v).ok()?;
    }
    Some(p.to_string())
}

/// `s` when it is an http(s) URL without credentials.
fn url(s: &str) -> Option<String> {
    let u = reqwest::Url::parse(s).ok()?;
    (matches!(u.scheme(), "http" | "https") && u.username().is_empty() && u.password().is_none())
        .then(|| u.to_string())
}

/// The distinct licences, each once (by its SPDX form when it has one).
fn distinct(licences: &[Licence]) -> Vec<&Licence> {
    let mut seen = std::collections::HashSet::new();
    licences
        .iter()
        .filter(|l| seen.insert(l.spdx.clone().unwrap_or_else(|| l.declared.clone())))
        .collect()
}

/// A serial number that is the same for the same bundle: a UUID (version 8, RFC 9562)
/// from the sha256 of the series, sequence, time and artifact digests.
fn serial(manifest: &BundleManifest) -> String {
    let mut text = format!(
        "{}\n{}\n{}\n",
        manifest.series, manifest.sequence, manifest.created
    );
    for a in &manifest.artifacts {
        text.push_str(&a.digest.to_string());
        text.push('\n');
    }
    let h = Digest::of(text.as_bytes()).hex();
    let mut b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

fn provenance_note(made: Provenance) -> &'static str {
    match made {
        Provenance::Carried => {
            "written by ferry at bundle create and signed with the bundle manifest"
        }
        Provenance::Derived => {
            "derived by ferry from the signed bundle manifest: the bundle carried no SBOM"
        }
    }
}

// ---- CycloneDX 1.5 ----

fn cyclonedx(manifest: &BundleManifest, items: &[Item], made: Provenance) -> Vec<u8> {
    let tool = {
        let mut c = Component::new(
            Classification::Application,
            "ferry",
            env!("CARGO_PKG_VERSION"),
            None,
        );
        c.description = Some(NormalizedString::new("carries software across an air gap"));
        c
    };
    let mut subject = Component::new(
        Classification::Data,
        &format!("ferry bundle {}", manifest.series),
        &manifest.sequence.to_string(),
        Some("bundle".into()),
    );
    subject.description = Some(NormalizedString::new(&format!(
        "series {} sequence {}",
        manifest.series, manifest.sequence
    )));
    let props = vec![
        ("ferry:series", manifest.series.clone()),
        ("ferry:sequence", manifest.sequence.to_string()),
        ("ferry:created", manifest.created.clone()),
        ("ferry:tool", manifest.tool.clone()),
        (
            "ferry:sbom",
            match made {
                Provenance::Carried => "carried".to_string(),
                Provenance::Derived => "derived-from-manifest".to_string(),
            },
        ),
        ("ferry:note", provenance_note(made).to_string()),
    ];
    let bom = Bom {
        version: 1,
        serial_number: UrnUuid::new(format!("urn:uuid:{}", serial(manifest))).ok(),
        metadata: Some(Metadata {
            timestamp: cyclonedx_bom::external_models::date_time::DateTime::try_from(
                manifest.created.clone(),
            )
            .ok(),
            tools: Some(Tools::Object {
                services: None,
                components: Some(Components(vec![tool])),
            }),
            component: Some(subject),
            properties: Some(Properties(
                props
                    .into_iter()
                    .map(|(k, v)| Property::new(k, &v))
                    .collect(),
            )),
            ..Default::default()
        }),
        components: Some(Components(items.iter().map(component).collect())),
        spec_version: SpecVersion::V1_5,
        ..Default::default()
    };
    let mut out = Vec::new();
    bom.output_as_json_v1_5(&mut out)
        .expect("an SBOM of checked names serialises");
    out.push(b'\n');
    out
}

fn component(it: &Item) -> Component {
    let class = match it.kind {
        ItemKind::Container => Classification::Container,
        ItemKind::Library => Classification::Library,
        ItemKind::Model => Classification::MachineLearningModel,
        ItemKind::Dataset => Classification::Data,
        ItemKind::File | ItemKind::Install => Classification::File,
    };
    let mut c = Component::new(class, &it.name, &it.version, Some(it.id.clone()));
    c.purl = it.purl.as_deref().and_then(|p| p.parse::<Purl>().ok());
    c.hashes = it.sha256.map(|d| {
        Hashes(vec![Hash {
            alg: HashAlgorithm::SHA_256,
            content: HashValue(d.hex()),
        }])
    });
    c.licenses = cyclonedx_licences(&it.licences);
    let mut refs = Vec::new();
    if let Some(u) = &it.download {
        refs.push(ExternalReference::new(
            ExternalReferenceType::Distribution,
            Uri::new(u),
        ));
    }
    for (_, purl) in &it.described_by {
        if !purl.is_empty() {
            let mut r = ExternalReference::new(ExternalReferenceType::Bom, Uri::new(purl));
            r.comment =
                Some("an SBOM attached upstream (OCI referrer), carried in this bundle".into());
            refs.push(r);
        }
    }
    if !refs.is_empty() {
        c.external_references = Some(ExternalReferences(refs));
    }
    if !it.properties.is_empty() {
        c.properties = Some(Properties(
            it.properties
                .iter()
                .map(|(k, v)| Property::new(k, v))
                .collect(),
        ));
    }
    if !it.parts.is_empty() {
        c.components = Some(Components(it.parts.iter().map(component).collect()));
    }
    c
}

/// CycloneDX allows either licence objects or a single expression: one SPDX expression
/// alone is written as such; otherwise each licence is an object, by SPDX id when it is
/// a single id and by its declared name when not.
fn cyclonedx_licences(licences: &[Licence]) -> Option<Licenses> {
    let ls = distinct(licences);
    if ls.is_empty() {
        return None;
    }
    let single_id = |s: &str| spdx::license_id(s).is_some();
    if let [only] = ls.as_slice()
        && let Some(expr) = &only.spdx
        && !single_id(expr)
    {
        return Some(Licenses(vec![LicenseChoice::Expression(
            SpdxExpression::new(expr),
        )]));
    }
    Some(Licenses(
        ls.iter()
            .map(|l| {
                let licence = match &l.spdx {
                    Some(id) if single_id(id) => License::license_id(id),
                    _ => License::named_license(&l.declared),
                };
                LicenseChoice::License(licence)
            })
            .collect(),
    ))
}

// ---- SPDX 2.3 ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxDocument {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    document_namespace: String,
    creation_info: CreationInfo,
    comment: String,
    packages: Vec<SpdxPackage>,
    relationships: Vec<Relationship>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    has_extracted_licensing_infos: Vec<ExtractedLicence>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreationInfo {
    created: String,
    creators: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxPackage {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    name: String,
    version_info: String,
    download_location: String,
    files_analyzed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checksums: Vec<Checksum>,
    license_concluded: &'static str,
    license_declared: String,
    copyright_text: &'static str,
    primary_package_purpose: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<ExternalRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_info: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

#[derive(Serialize)]
struct Checksum {
    algorithm: &'static str,
    #[serde(rename = "checksumValue")]
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExtractedLicence {
    license_id: String,
    extracted_text: String,
    name: String,
}

/// Licence declarations that are not SPDX become `LicenseRef-`s, one per distinct text.
#[derive(Default)]
struct LicenceRefs {
    by_text: BTreeMap<String, String>,
    infos: Vec<ExtractedLicence>,
}

impl LicenceRefs {
    fn declared(&mut self, licences: &[Licence]) -> String {
        let parts: Vec<String> = distinct(licences)
            .into_iter()
            .map(|l| match &l.spdx {
                Some(expr) => expr.clone(),
                None => {
                    let next = format!("LicenseRef-ferry-{}", self.by_text.len() + 1);
                    let id = self.by_text.entry(l.declared.clone()).or_insert_with(|| {
                        self.infos.push(ExtractedLicence {
                            license_id: next.clone(),
                            extracted_text: l.declared.clone(),
                            name: l.declared.clone(),
                        });
                        next
                    });
                    id.clone()
                }
            })
            .collect();
        match parts.as_slice() {
            [] => "NOASSERTION".into(),
            [one] => one.clone(),
            many => many
                .iter()
                .map(|p| format!("({p})"))
                .collect::<Vec<_>>()
                .join(" AND "),
        }
    }
}

fn spdx_document(manifest: &BundleManifest, items: &[Item], made: Provenance) -> Vec<u8> {
    let mut packages = Vec::new();
    let mut relationships = Vec::new();
    let mut refs = LicenceRefs::default();
    for it in items {
        relationships.push(Relationship {
            spdx_element_id: "SPDXRef-DOCUMENT".into(),
            relationship_type: "DESCRIBES",
            related_spdx_element: spdx_ref(&it.id),
            comment: None,
        });
        spdx_packages(it, &mut packages, &mut relationships, &mut refs);
    }
    let doc = SpdxDocument {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: format!(
            "ferry bundle {} sequence {}",
            manifest.series, manifest.sequence
        ),
        document_namespace: format!("urn:uuid:{}", serial(manifest)),
        creation_info: CreationInfo {
            created: manifest.created.clone(),
            creators: vec![format!("Tool: ferry-{}", env!("CARGO_PKG_VERSION"))],
        },
        comment: format!(
            "{}; series {}, sequence {}",
            provenance_note(made),
            manifest.series,
            manifest.sequence,
        ),
        packages,
        relationships,
        has_extracted_licensing_infos: refs.infos,
    };
    let mut out = serde_json::to_vec_pretty(&doc).expect("an SBOM serialises");
    out.push(b'\n');
    out
}

/// Whether a URL's host is a domain name: SPDX validators take only those as a
/// `downloadLocation` (an address such as a loopback mirror's goes to `sourceInfo`).
fn named_host(u: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(u) else {
        return false;
    };
    u.domain().is_some_and(|d| {
        d.rsplit_once('.')
            .is_some_and(|(_, tld)| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
    })
}

fn spdx_ref(id: &str) -> String {
    format!("SPDXRef-{id}")
}

fn spdx_packages(
    it: &Item,
    packages: &mut Vec<SpdxPackage>,
    relationships: &mut Vec<Relationship>,
    refs: &mut LicenceRefs,
) {
    let comment = it
        .properties
        .iter()
        .find(|(k, _)| k == "ferry:origin")
        .map(|(_, v)| format!("origin: {v}"));
    packages.push(SpdxPackage {
        spdx_id: spdx_ref(&it.id),
        name: it.name.clone(),
        version_info: it.version.clone(),
        download_location: it
            .download
            .clone()
            .filter(|u| named_host(u))
            .unwrap_or_else(|| "NOASSERTION".into()),
        source_info: it.download.as_ref().map(|u| format!("downloaded from {u}")),
        files_analyzed: false,
        checksums: it
            .sha256
            .iter()
            .map(|d| Checksum {
                algorithm: "SHA256",
                value: d.hex(),
            })
            .collect(),
        license_concluded: "NOASSERTION",
        license_declared: refs.declared(&it.licences),
        copyright_text: "NOASSERTION",
        primary_package_purpose: match it.kind {
            ItemKind::Container => "CONTAINER",
            ItemKind::Library => "LIBRARY",
            ItemKind::Install => "INSTALL",
            ItemKind::File => "FILE",
            ItemKind::Model | ItemKind::Dataset => "OTHER",
        },
        external_refs: it
            .purl
            .iter()
            .map(|p| ExternalRef {
                reference_category: "PACKAGE-MANAGER",
                reference_type: "purl",
                reference_locator: p.clone(),
            })
            .collect(),
        comment,
    });
    for (sbom, _) in &it.described_by {
        relationships.push(Relationship {
            spdx_element_id: spdx_ref(&it.id),
            relationship_type: "OTHER",
            related_spdx_element: spdx_ref(sbom),
            comment: Some("described by an SBOM attached upstream (OCI referrer)".into()),
        });
    }
    for part in &it.parts {
        relationships.push(Relationship {
            spdx_element_id: spdx_ref(&it.id),
            relationship_type: "CONTAINS",
            related_spdx_element: spdx_ref(&part.id),
            comment: None,
        });
        spdx_packages(part, packages, relationships, refs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::Artifact;
    use crate::bundle::manifest::PolicyVerdict;
    use crate::ecosystems::image::ImageRecord;

    fn image(repo: &str, tag: &str, digest: Digest, artifact_type: Option<&str>) -> AnyArtifact {
        Artifact {
            repository: repo.into(),
            tag: Some(tag.into()),
            digest,
            media_type: crate::oci::OCI_MANIFEST.into(),
            size: 10,
            origin: format!("registry.example.org/{repo}:{tag}"),
            artifact_type: artifact_type.map(String::from),
            labels: Default::default(),
            licenses: Vec::new(),
            record: Record::Image(ImageRecord {
                platforms: Vec::new(),
                subject: None,
                source_digest: None,
            }),
        }
    }

    fn manifest(artifacts: Vec<AnyArtifact>) -> BundleManifest {
        BundleManifest {
            format: crate::bundle::FORMAT.into(),
            series: "unit".into(),
            sequence: 3,
            created: "2026-12-01T00:00:00Z".into(),
            tool: "ferry test".into(),
            policy: PolicyVerdict::not_evaluated(),
            artifacts,
            sbom: None,
            base: None,
            entries: Vec::new(),
        }
    }

    fn lic(declared: &str, spdx: Option<&str>) -> Licence {
        Licence {
            declared: declared.into(),
            spdx: spdx.map(String::from),
            source: "test".into(),
        }
    }

    #[test]
    fn tags_are_valid_for_every_series() {
        assert_eq!(tag("demo", 7), "demo-7");
        for series in ["-leading", ".dot", &"x".repeat(128)] {
            let t = tag(series, 12);
            assert!(crate::oci::valid_tag(&t), "{t}");
            assert!(t.ends_with("-12"));
        }
        assert_ne!(tag("-a", 1), tag(".a", 1));
    }

    #[test]
    fn a_cosign_sbom_tag_is_linked_from_the_image_it_names() {
        let img = Digest::of(b"image");
        let sbom = image(
            "app/web",
            &format!("sha256-{}.sbom", img.hex()),
            Digest::of(b"sbom"),
            None,
        );
        let m = manifest(vec![image("app/web", "1.0", img, None), sbom]);
        let docs = build(&m, &|_| Vec::new(), Provenance::Carried);
        let cdx: serde_json::Value = serde_json::from_slice(&docs.cyclonedx).unwrap();
        let refs = &cdx["components"][0]["externalReferences"];
        assert_eq!(refs[0]["type"], "bom", "{cdx:#}");
        assert!(refs[0]["url"].as_str().unwrap().starts_with("pkg:oci/web@"));
        let spdx: serde_json::Value = serde_json::from_slice(&docs.spdx).unwrap();
        assert!(
            spdx["relationships"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["relationshipType"] == "OTHER"),
            "{spdx:#}"
        );
    }

    #[test]
    fn licences_are_ids_an_expression_or_names() {
        let one = cyclonedx_licences(&[lic("MIT OR Apache-2.0", Some("MIT OR Apache-2.0"))]);
        assert!(
            matches!(one.unwrap().0.as_slice(), [LicenseChoice::Expression(_)]),
            "a compound SPDX expression is written as one"
        );
        let many = cyclonedx_licences(&[
            lic("MIT", Some("MIT")),
            lic("MIT License", Some("MIT")),
            lic("BSD License", None),
        ])
        .unwrap();
        assert_eq!(many.0.len(), 2, "the same licence twice counts once");

        let mut refs = LicenceRefs::default();
        assert_eq!(refs.declared(&[]), "NOASSERTION");
        assert_eq!(
            refs.declared(&[lic("MIT", Some("MIT")), lic("BSD License", None)]),
            "(MIT) AND (LicenseRef-ferry-1)"
        );
        assert_eq!(
            refs.declared(&[lic("BSD License", None)]),
            "LicenseRef-ferry-1"
        );
        assert_eq!(refs.infos.len(), 1);
    }

    #[test]
    fn the_sbom_artifact_must_hold_exactly_its_documents() {
        let m = manifest(vec![image("a/b", "1", Digest::of(b"x"), None)]);
        let docs = build(&m, &|_| Vec::new(), Provenance::Carried);
        let bytes = oci_manifest(&m, &docs);
        let sref = crate::bundle::manifest::SbomRef {
            digest: Digest::of(&bytes),
            size: bytes.len() as u64,
            cyclonedx: crate::bundle::manifest::Document {
                digest: Digest::of(&docs.cyclonedx),
                size: docs.cyclonedx.len() as u64,
            },
            spdx: crate::bundle::manifest::Document {
                digest: Digest::of(&docs.spdx),
                size: docs.spdx.len() as u64,
            },
        };
        check_oci_manifest(&bytes, &sref).unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let config = v["config"].clone();
        v["layers"].as_array_mut().unwrap().push(config);
        assert!(check_oci_manifest(&serde_json::to_vec(&v).unwrap(), &sref).is_err());
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["subject"] = v["config"].clone();
        assert!(check_oci_manifest(&serde_json::to_vec(&v).unwrap(), &sref).is_err());
        let mut other = sref.clone();
        other.spdx.size += 1;
        assert!(check_oci_manifest(&bytes, &other).is_err());
    }

    #[test]
    fn only_named_hosts_are_spdx_download_locations() {
        assert!(named_host("https://files.example.org/a.whl"));
        assert!(!named_host("http://127.0.0.1:8080/simple/six/"));
        assert!(!named_host("http://localhost/x"));
        assert!(!named_host("not a url"));
    }

    #[test]
    fn the_same_bundle_gets_the_same_documents() {
        let m = manifest(vec![image("a/b", "1", Digest::of(b"x"), None)]);
        let a = build(&m, &|_| Vec::new(), Provenance::Carried);
        let b = build(&m, &|_| Vec::new(), Provenance::Carried);
        assert_eq!(a.cyclonedx, b.cyclonedx);
        assert_eq!(a.spdx, b.spdx);
        let derived = build(&m, &|_| Vec::new(), Provenance::Derived);
        assert!(String::from_utf8_lossy(&derived.cyclonedx).contains("derived-from-manifest"));
    }
}
