//! Deterministic test images made by `scripts/mkimage.py` and pushed into the shared
//! registry with skopeo (digests preserved), plus the checked-in demo layout.

use std::path::{Path, PathBuf};

use super::context::{digest_of, repo_root, run_program};
use super::registry::Registry;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// `fixtures/demo-layout` (see fixtures/README.md).
pub const DEMO_INDEX: &str =
    "sha256:3ff7cff27af05a65daf4e92fd6b5267aff5abe242d1a4e5946d38b79b086382b";
pub const DEMO_AMD64: &str =
    "sha256:5b54c872ae909119c0a685b23ec543ea9885581fc78dd5b44f2f29c0925d432e";
pub const DEMO_ARM64: &str =
    "sha256:4f1dbfd89e1531712b8e050034cc66e50a9695c350a86f1b58b40725aaa4ca0b";

pub fn demo_layout() -> PathBuf {
    repo_root().join("fixtures/demo-layout")
}

/// One image as it sits in the source registry.
#[derive(Debug, Clone)]
pub struct Image {
    /// Repository path in the registry: `e2e/multi`.
    pub repo: String,
    pub tag: String,
    /// `127.0.0.1:PORT/e2e/multi:v1`.
    pub reference: String,
    /// Digest of the top-level manifest or index.
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// For an index: (`os/arch[/variant]`, manifest digest) per child.
    pub children: Vec<(String, String)>,
    /// Every blob the image references (configs and layers), with sizes.
    pub blobs: Vec<(String, u64)>,
}

impl Image {
    /// The child manifest digest for a platform of an index.
    pub fn child(&self, platform: &str) -> &str {
        self.children
            .iter()
            .find(|(p, _)| p == platform)
            .map(|(_, d)| d.as_str())
            .unwrap_or_else(|| panic!("{} has no {platform} manifest", self.reference))
    }

    /// `repo:tag`, as the store and `ferry serve` name it.
    pub fn name(&self) -> String {
        format!("{}:{}", self.repo, self.tag)
    }

    /// Checks a `skopeo copy --all ... dir:DIR` of this image: the top manifest, every
    /// child manifest and every blob, each with the right digest.
    #[track_caller]
    pub fn assert_copied_to_dir(&self, dir: &Path) {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .unwrap_or_else(|e| panic!("{}: no {name} in the copy: {e}", self.reference))
        };
        assert_eq!(
            digest_of(&read("manifest.json")),
            self.digest,
            "manifest.json of the copy"
        );
        for (platform, child) in &self.children {
            let hex = child.trim_start_matches("sha256:");
            let name = format!("{hex}.manifest.json");
            assert_eq!(
                digest_of(&read(&name)),
                *child,
                "{platform} manifest of the copy"
            );
        }
        for (blob, size) in &self.blobs {
            let bytes = read(blob.trim_start_matches("sha256:"));
            assert_eq!(
                (digest_of(&bytes), bytes.len() as u64),
                (blob.clone(), *size),
                "blob of the copy"
            );
        }
    }

    /// The largest blob (a layer), for blob tests.
    pub fn largest_blob(&self) -> (String, u64) {
        self.blobs.iter().max_by_key(|(_, s)| *s).cloned().unwrap()
    }
}

pub struct Images {
    /// The OCI layout all test images were generated into.
    pub layout: PathBuf,
    /// 2-platform OCI index (linux/amd64, linux/arm64/v8), 3 layers each, shared base.
    pub multi: Image,
    /// Same shape and shared base as `multi`, other content.
    pub other: Image,
    /// Single-platform image with Docker v2 schema 2 media types.
    pub docker: Image,
    /// A cosign-style signature of `multi`: a tiny manifest tagged `sha256-<hex>.sig`
    /// in `e2e/multi`.
    pub sig: Image,
}

impl Images {
    pub fn build_and_push(layout: &Path, registry: &Registry) -> Images {
        let common = [
            "--layers",
            "3",
            "--layer-size",
            "262144",
            "--shared-base",
            "262144",
        ];
        let plats = ["--platforms", "linux/amd64,linux/arm64/v8"];
        let multi = mkimage(
            layout,
            "e2e/multi:v1",
            &[&plats[..], &common, &["--seed", "multi"]].concat(),
        );
        let other = mkimage(
            layout,
            "e2e/other:v1",
            &[&plats[..], &common, &["--seed", "other"]].concat(),
        );
        let docker = mkimage(
            layout,
            "e2e/docker:v1",
            &[
                "--docker",
                "--skopeo-compat",
                "--layers",
                "2",
                "--layer-size",
                "262144",
                "--seed",
                "docker",
            ],
        );
        let sig_tag = format!("sha256-{}.sig", multi.trim_start_matches("sha256:"));
        let sig_name = format!("e2e/multi:{sig_tag}");
        let sig = mkimage(
            layout,
            &sig_name,
            &[
                "--layers",
                "1",
                "--layer-size",
                "512",
                "--seed",
                "multi-signature",
            ],
        );

        let image = |name: &str, digest: &str| {
            let (repo, tag) = name.rsplit_once(':').unwrap();
            let img = describe(layout, repo, tag, digest, &registry.host);
            push(layout, name, &registry.host);
            img
        };
        Images {
            layout: layout.to_path_buf(),
            multi: image("e2e/multi:v1", &multi),
            other: image("e2e/other:v1", &other),
            docker: image("e2e/docker:v1", &docker),
            sig: image(&sig_name, &sig),
        }
    }
}

/// Runs `scripts/mkimage.py LAYOUT --tag TAG ARGS`; returns the digest it prints.
pub(super) fn mkimage(layout: &Path, tag: &str, args: &[&str]) -> String {
    let script = repo_root().join("scripts/mkimage.py");
    let mut all: Vec<&std::ffi::OsStr> = vec![
        script.as_os_str(),
        layout.as_os_str(),
        "--tag".as_ref(),
        tag.as_ref(),
    ];
    all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
    let out = run_program("python3", all);
    out.assert_success();
    let digest = out.stdout.trim().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "mkimage printed {digest:?}"
    );
    digest
}

/// `skopeo copy --all --preserve-digests oci:LAYOUT:NAME docker://HOST/NAME`.
fn push(layout: &Path, name: &str, host: &str) {
    run_program(
        "skopeo",
        [
            "copy".to_string(),
            "--quiet".into(),
            "--all".into(),
            "--preserve-digests".into(),
            "--dest-tls-verify=false".into(),
            format!("oci:{}:{name}", layout.display()),
            format!("docker://{host}/{name}"),
        ],
    )
    .assert_success();
}

/// Reads an image's manifests from the layout to learn its children and blobs.
fn describe(layout: &Path, repo: &str, tag: &str, digest: &str, host: &str) -> Image {
    let bytes = read_blob(layout, digest);
    assert_eq!(digest_of(&bytes), digest);
    let top: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let media_type = top["mediaType"].as_str().unwrap().to_string();
    let mut children = Vec::new();
    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    if let Some(list) = top["manifests"].as_array() {
        for m in list {
            let p = &m["platform"];
            let mut platform = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                platform = format!("{platform}/{v}");
            }
            let d = m["digest"].as_str().unwrap().to_string();
            children.push((platform, d.clone()));
            manifests
                .push(serde_json::from_slice::<serde_json::Value>(&read_blob(layout, &d)).unwrap());
        }
    } else {
        manifests.push(top.clone());
    }
    for m in &manifests {
        let config = &m["config"];
        let layers = m["layers"].as_array().unwrap();
        for d in std::iter::once(config).chain(layers) {
            let entry = (
                d["digest"].as_str().unwrap().to_string(),
                d["size"].as_u64().unwrap(),
            );
            if !blobs.contains(&entry) {
                blobs.push(entry);
            }
        }
    }
    Image {
        repo: repo.to_string(),
        tag: tag.to_string(),
        reference: format!("{host}/{repo}:{tag}"),
        digest: digest.to_string(),
        media_type,
        size: bytes.len() as u64,
        children,
        blobs,
    }
}

/// The bytes of a blob in the generated layout.
pub fn read_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}
