//! The `[[model]]` section of a spec.

use serde::Deserialize;

use super::ModelSpec;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    repo: String,
    #[serde(default = "main")]
    revision: String,
    endpoint: Option<String>,
    #[serde(default)]
    files: Vec<String>,
    #[serde(rename = "type", default = "model")]
    kind: String,
}

fn main() -> String {
    "main".into()
}

fn model() -> String {
    "model".into()
}

pub fn parse(entry: toml::Table) -> Result<ModelSpec, String> {
    let raw: RawModel = entry.try_into().map_err(|e| e.to_string())?;
    let repo = crate::names::HubRepoId::new(raw.repo.as_str()).map_err(|e| {
        format!(
            "repo `{}` is not a hub repository id such as org/name ({})",
            raw.repo, e.reason
        )
    })?;
    let revision = crate::names::Revision::new(raw.revision.as_str()).map_err(|e| {
        format!(
            "revision `{}` is not a branch, tag or commit ({})",
            raw.revision, e.reason
        )
    })?;
    let dataset = match raw.kind.as_str() {
        "model" => false,
        "dataset" => true,
        other => return Err(format!("type `{other}` is not `model` or `dataset`")),
    };
    let files = raw
        .files
        .iter()
        .map(|f| glob::Pattern::new(f).map_err(|e| format!("files pattern `{f}`: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(e) = &raw.endpoint {
        super::hub::Hub::new(e, dataset)?;
    }
    Ok(ModelSpec {
        repo,
        revision,
        endpoint: raw.endpoint,
        files,
        dataset,
    })
}
