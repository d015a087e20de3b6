//! An OCI image layout on disk as a source (`oci:DIR:REF` in a spec).

use std::io;
use std::path::{Path, PathBuf};

use super::{ManifestRef, SourceError};
use crate::digest::Digest;
use crate::oci::{self, Desc, Manifest};
use crate::reporter::Task;
use crate::store::Store;

pub struct LayoutSource {
    layout: Store,
    /// Only entries of this repository are visible (for layouts that hold several).
    repository: Option<String>,
}

impl LayoutSource {
    pub fn open(dir: &Path, repository: Option<String>) -> Result<Self, SourceError> {
        Ok(LayoutSource {
            layout: Store::open(dir)?,
            repository,
        })
    }

    pub fn origin(&self) -> String {
        format!("oci:{}", self.layout.root().display())
    }

    fn fetch_err(
        &self,
        what: String,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> SourceError {
        SourceError::Fetch {
            what,
            origin: self.origin(),
            source: source.into(),
        }
    }

    /// The ref name a tag has in this layout: `repo:tag` in a ferry store, else the tag.
    fn find_tag(&self, tag: &str) -> Result<Option<Desc>, SourceError> {
        let entries = self.layout.entries()?;
        let wanted: Vec<String> = match &self.repository {
            Some(repo) => vec![format!("{repo}:{tag}"), tag.to_string()],
            None => vec![tag.to_string()],
        };
        Ok(wanted.iter().find_map(|w| {
            entries
                .iter()
                .find(|e| e.annotations.get(oci::REF_NAME) == Some(w))
                .cloned()
        }))
    }

    pub fn manifest(&self, reference: &ManifestRef) -> Result<Vec<u8>, SourceError> {
        let digest = match reference {
            ManifestRef::Digest(d) => *d,
            ManifestRef::Tag(t) => match self.find_tag(t)? {
                Some(desc) => desc.digest,
                None => {
                    return Err(SourceError::NotFound {
                        origin: self.origin(),
                        reference: t.clone(),
                    });
                }
            },
        };
        Ok(self.layout.read_blob(&digest)?)
    }

    pub fn blob(
        &self,
        desc: &Desc,
        store: &Store,
        task: &dyn Task,
    ) -> Result<Option<std::fs::File>, SourceError> {
        let what = format!("blob {}", desc.digest);
        let mut file = self.layout.open_blob(&desc.digest)?;
        let mut writer = store.blob_writer(&desc.digest, false)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n =
                io::Read::read(&mut file, &mut buf).map_err(|e| self.fetch_err(what.clone(), e))?;
            if n == 0 {
                break;
            }
            io::Write::write_all(&mut writer, &buf[..n])
                .map_err(|e| self.fetch_err(what.clone(), e))?;
            task.advance(n as u64);
        }
        Ok(writer.commit_open(
            store,
            &desc.digest,
            desc.size,
            &format!("{what} from {}", self.origin()),
        )?)
    }

    pub fn tags(&self) -> Vec<String> {
        let entries = self.layout.entries().unwrap_or_default();
        entries
            .iter()
            .filter_map(|e| e.annotations.get(oci::REF_NAME))
            .filter_map(|name| match (&self.repository, name.rsplit_once(':')) {
                (Some(repo), Some((r, tag))) if r == repo => Some(tag.to_string()),
                (_, None) => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    /// Entries of the layout whose manifest names `digest` as its subject.
    pub fn referrers(&self, digest: &Digest) -> Result<Vec<Desc>, SourceError> {
        let mut out = Vec::new();
        for entry in self.layout.entries()? {
            if !oci::is_manifest_type(&entry.media_type) || entry.digest == *digest {
                continue;
            }
            let bytes = self.layout.read_blob(&entry.digest)?;
            if let Ok(m) = Manifest::parse(&bytes, Some(&entry.media_type))
                && m.subject.as_ref().is_some_and(|s| s.digest == *digest)
            {
                out.push(entry);
            }
        }
        Ok(out)
    }
}

/// Splits the REF of `oci:DIR:REF` into repository and tag: `app/web:1.0` names both;
/// a bare tag takes the repository from the directory's name.
pub fn split_layout_ref(dir: &Path, reference: &str) -> (String, String) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if oci::valid_repository(repo) => (repo.to_string(), tag.to_string()),
        _ => {
            let base: PathBuf = dir
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| "image".into());
            let name: String = base
                .to_string_lossy()
                .to_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            let name = name.trim_matches('-').to_string();
            (
                if name.is_empty() {
                    "image".into()
                } else {
                    name
                },
                reference.to_string(),
            )
        }
    }
}
