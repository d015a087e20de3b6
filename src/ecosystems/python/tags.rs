//! Wheel file names and the tags a target interpreter and platform accept, so the
//! closure is resolved for the target, not for the machine ferry runs on.

use std::collections::HashSet;
use std::fmt;

use pep440_rs::Version;
use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder, PackageName};

/// What a file on an index is, from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dist {
    Wheel(WheelName),
    Sdist { name: PackageName, version: Version },
}

impl Dist {
    pub fn version(&self) -> &Version {
        match self {
            Dist::Wheel(w) => &w.version,
            Dist::Sdist { version, .. } => version,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    pub name: PackageName,
    pub version: Version,
    pub python: Vec<String>,
    pub abi: Vec<String>,
    pub platform: Vec<String>,
}

impl WheelName {
    /// Whether any of the wheel's tag triples is one `target` accepts.
    pub fn compatible(&self, target: &Target) -> bool {
        self.python.iter().any(|py| {
            self.abi.iter().any(|abi| {
                self.platform.iter().any(|plat| {
                    target
                        .tags
                        .contains(&(py.clone(), abi.clone(), plat.clone()))
                })
            })
        })
    }
}

/// Parses `{name}-{version}(-{build})?-{py}-{abi}-{plat}.whl`, `.tar.gz` and `.zip` sdists.
pub fn parse_filename(filename: &str) -> Option<Dist> {
    if let Some(stem) = filename.strip_suffix(".whl") {
        let parts: Vec<&str> = stem.split('-').collect();
        let (name, version, tags) = match parts.len() {
            5 => (parts[0], parts[1], &parts[2..]),
            6 => (parts[0], parts[1], &parts[3..]),
            _ => return None,
        };
        let split = |s: &str| s.split('.').map(str::to_string).collect::<Vec<_>>();
        return Some(Dist::Wheel(WheelName {
            name: PackageName::new(name.to_string()).ok()?,
            version: version.parse().ok()?,
            python: split(tags[0]),
            abi: split(tags[1]),
            platform: split(tags[2]),
        }));
    }
    let stem = filename
        .strip_suffix(".tar.gz")
        .or_else(|| filename.strip_suffix(".zip"))?;
    let (name, version) = stem.rsplit_once('-')?;
    Some(Dist::Sdist {
        name: PackageName::new(name.to_string()).ok()?,
        version: version.parse().ok()?,
    })
}

/// A Python version and platform to resolve for.
#[derive(Clone)]
pub struct Target {
    pub python: Version,
    pub platform: String,
    pub tags: HashSet<(String, String, String)>,
    pub markers: MarkerEnvironment,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Python {} on {}", self.python, self.platform)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Target {
    /// `python` is `3.11` or `3.11.4`; `platform` a wheel platform tag such as
    /// `manylinux_2_28_x86_64`, `musllinux_1_2_aarch64`, `macosx_11_0_arm64`, `win_amd64`.
    pub fn new(python: &str, platform: &str) -> Result<Target, String> {
        let parts: Vec<u64> = python
            .split('.')
            .map(|p| {
                p.parse()
                    .map_err(|_| format!("python-version `{python}` is not like 3.11"))
            })
            .collect::<Result<_, _>>()?;
        if parts.len() < 2 || parts.len() > 3 || parts[0] != 3 || parts[1] > MAX_VERSION.into() {
            return Err(format!(
                "python-version `{python}` is not like 3.11 or 3.11.4"
            ));
        }
        let (major, minor) = (parts[0], parts[1]);
        let full = format!("{major}.{minor}.{}", parts.get(2).copied().unwrap_or(0));
        let platforms = expand_platform(platform).ok_or_else(|| {
            format!(
                "platform `{platform}` is not a wheel platform tag (such as manylinux_2_28_x86_64)"
            )
        })?;
        let mut tags = HashSet::new();
        let cp = format!("cp{major}{minor}");
        for plat in platforms.iter().map(String::as_str).chain(["any"]) {
            if plat != "any" {
                for abi in [cp.as_str(), "abi3", "none"] {
                    tags.insert((cp.clone(), abi.to_string(), plat.to_string()));
                }
                for m in (2..minor).rev() {
                    tags.insert((format!("cp{major}{m}"), "abi3".into(), plat.to_string()));
                }
            }
            for py in py_tags(major, minor) {
                tags.insert((py, "none".into(), plat.to_string()));
            }
            tags.insert((cp.clone(), "none".into(), plat.to_string()));
        }
        let (os_name, sys_platform, system, machine) = platform_markers(platform);
        let markers = MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
            implementation_name: "cpython",
            implementation_version: &full,
            os_name,
            platform_machine: &machine,
            platform_python_implementation: "CPython",
            platform_release: "",
            platform_system: system,
            platform_version: "",
            python_full_version: &full,
            python_version: &format!("{major}.{minor}"),
            sys_platform,
        })
        .map_err(|e| e.to_string())?;
        Ok(Target {
            python: full.parse().map_err(|_| "bad python version".to_string())?,
            platform: platform.to_string(),
            tags,
            markers,
        })
    }
}

fn py_tags(major: u64, minor: u64) -> Vec<String> {
    let mut out = vec![format!("py{major}{minor}"), format!("py{major}")];
    out.extend((0..minor).rev().map(|m| format!("py{major}{m}")));
    out
}

/// The largest Python minor, glibc or musl minor, or macOS version a target may name:
/// every lower one is a compatible tag, so `manylinux_2_2833333_x86_64` would make
/// millions of them (found by the `spec` fuzz target: it ran out of memory).
const MAX_VERSION: u32 = 99;

/// One numeric part of a platform tag's version, at most `MAX_VERSION`.
fn version_part(part: Option<&str>) -> Option<u32> {
    part?.parse::<u32>().ok().filter(|v| *v <= MAX_VERSION)
}

/// Every platform tag a wheel may carry and still run on `platform`.
fn expand_platform(platform: &str) -> Option<Vec<String>> {
    let legacy = |p: &str| match p {
        p if p.starts_with("manylinux2014_") => Some(format!("manylinux_2_17_{}", &p[14..])),
        p if p.starts_with("manylinux2010_") => Some(format!("manylinux_2_12_{}", &p[14..])),
        p if p.starts_with("manylinux1_") => Some(format!("manylinux_2_5_{}", &p[11..])),
        _ => None,
    };
    let platform = legacy(platform).unwrap_or_else(|| platform.to_string());
    if let Some(rest) = platform.strip_prefix("manylinux_") {
        let mut it = rest.splitn(3, '_');
        let (glibc_major, glibc_minor, arch) = (
            version_part(it.next())?,
            version_part(it.next())?,
            it.next()?,
        );
        if glibc_major != 2 {
            return None;
        }
        let mut out = Vec::new();
        for m in (0..=glibc_minor).rev() {
            out.push(format!("manylinux_2_{m}_{arch}"));
            match m {
                17 => out.push(format!("manylinux2014_{arch}")),
                12 if matches!(arch, "x86_64" | "i686") => {
                    out.push(format!("manylinux2010_{arch}"))
                }
                5 if matches!(arch, "x86_64" | "i686") => out.push(format!("manylinux1_{arch}")),
                _ => {}
            }
        }
        out.push(format!("linux_{arch}"));
        return Some(out);
    }
    if let Some(rest) = platform.strip_prefix("musllinux_") {
        let mut it = rest.splitn(3, '_');
        let (major, minor, arch) = (
            version_part(it.next())?,
            version_part(it.next())?,
            it.next()?,
        );
        return Some(
            (0..=minor)
                .rev()
                .map(|m| format!("musllinux_{major}_{m}_{arch}"))
                .chain([format!("linux_{arch}")])
                .collect(),
        );
    }
    if let Some(rest) = platform.strip_prefix("macosx_") {
        let mut it = rest.splitn(3, '_');
        let (major, minor, arch) = (
            version_part(it.next())?,
            version_part(it.next())?,
            it.next()?,
        );
        let formats: &[&str] = match arch {
            "arm64" => &["arm64", "universal2"],
            "x86_64" => &["x86_64", "intel", "universal2", "universal"],
            _ => return Some(vec![platform.clone()]),
        };
        let mut versions = Vec::new();
        if major >= 11 {
            versions.extend((11..=major).rev().map(|m| (m, 0)));
            if arch == "x86_64" {
                versions.extend((4..=16).rev().map(|m| (10, m)));
            }
        } else {
            versions.extend((4..=minor).rev().map(|m| (10, m)));
        }
        return Some(
            versions
                .iter()
                .flat_map(|(a, b)| formats.iter().map(move |f| format!("macosx_{a}_{b}_{f}")))
                .collect(),
        );
    }
    if platform.starts_with("win") || platform.starts_with("linux_") {
        return Some(vec![platform]);
    }
    None
}

/// `os_name`, `sys_platform`, `platform_system`, `platform_machine` of a platform tag.
fn platform_markers(platform: &str) -> (&'static str, &'static str, &'static str, String) {
    let arch = |p: &str| p.rsplit('_').next().unwrap_or("").to_string();
    if platform.starts_with("macosx") {
        ("posix", "darwin", "Darwin", arch(platform))
    } else if platform.starts_with("win") {
        let machine = match platform {
            "win_amd64" => "AMD64",
            "win_arm64" => "ARM64",
            _ => "x86",
        };
        ("nt", "win32", "Windows", machine.to_string())
    } else {
        let machine = platform
            .split('_')
            .skip_while(|p| {
                !matches!(
                    *p,
                    "x86"
                        | "aarch64"
                        | "i686"
                        | "ppc64le"
                        | "s390x"
                        | "armv7l"
                        | "ppc64"
                        | "riscv64"
                )
            })
            .collect::<Vec<_>>()
            .join("_");
        ("posix", "linux", "Linux", machine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_names() {
        let Some(Dist::Wheel(w)) = parse_filename("six-1.16.0-py2.py3-none-any.whl") else {
            panic!()
        };
        assert_eq!(w.python, ["py2", "py3"]);
        let Some(Dist::Sdist { version, .. }) = parse_filename("python-dateutil-2.9.0.tar.gz")
        else {
            panic!()
        };
        assert_eq!(version.to_string(), "2.9.0");
        assert!(parse_filename("x.exe").is_none());
    }

    #[test]
    fn compatibility_is_for_the_target() {
        let linux = Target::new("3.11", "manylinux_2_28_x86_64").unwrap();
        let wheel = |f: &str| match parse_filename(f) {
            Some(Dist::Wheel(w)) => w,
            _ => panic!("{f}"),
        };
        assert!(wheel("six-1.16.0-py2.py3-none-any.whl").compatible(&linux));
        assert!(
            wheel("a-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
                .compatible(&linux)
        );
        assert!(wheel("a-1-cp38-abi3-manylinux2014_x86_64.whl").compatible(&linux));
        assert!(!wheel("a-1-cp311-cp311-manylinux_2_34_x86_64.whl").compatible(&linux));
        assert!(!wheel("a-1-cp312-cp312-manylinux_2_17_x86_64.whl").compatible(&linux));
        assert!(!wheel("a-1-cp311-cp311-macosx_11_0_arm64.whl").compatible(&linux));
        let mac = Target::new("3.11", "macosx_14_0_arm64").unwrap();
        assert!(wheel("a-1-cp311-cp311-macosx_11_0_arm64.whl").compatible(&mac));
        assert!(
            wheel("a-1-cp311-cp311-macosx_10_9_universal2.whl")
                .compatible(&Target::new("3.11", "macosx_11_0_x86_64").unwrap())
        );
        assert!(Target::new("3.11", "freebsd").is_err());
    }

    #[test]
    fn markers_follow_the_target() {
        let env = Target::new("3.11", "manylinux_2_28_x86_64")
            .unwrap()
            .markers;
        let req: pep508_rs::Requirement = "windep; sys_platform == 'win32'".parse().unwrap();
        assert!(!req.evaluate_markers(&env, &[]));
        let req: pep508_rs::Requirement =
            "dep; platform_machine == 'x86_64' and python_version >= '3.11'"
                .parse()
                .unwrap();
        assert!(req.evaluate_markers(&env, &[]));
    }

    /// Found by the `spec` fuzz target: absurd versions made millions of tags.
    #[test]
    fn absurd_versions_are_refused_not_expanded() {
        for p in [
            "manylinux_2_2833333_x86_64",
            "musllinux_1_4000000000_x86_64",
            "macosx_4000000000_0_arm64",
            "macosx_10_4000000000_x86_64",
        ] {
            assert!(super::Target::new("3.11", p).is_err(), "{p}");
        }
        assert!(super::Target::new("3.4000000000", "manylinux_2_28_x86_64").is_err());
        assert!(super::Target::new("3.13", "manylinux_2_99_x86_64").is_ok());
    }
}
