//! `ferry export python|conda|hf`: what a store holds, in the forms other tools read.

use super::*;

/// The arguments of `ferry export python`.
pub struct ExportPython {
    pub store: PathBuf,
    pub to: Option<PathBuf>,
    pub upload: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

pub fn python(args: ExportPython, g: &Globals) -> crate::error::Result<()> {
    let ExportPython {
        store,
        to,
        upload,
        username,
        password,
    } = args;

    let store = Store::open(&store)?;
    match (to, upload) {
        (Some(dir), _) => {
            let n =
                crate::ecosystems::python::export::python_tree(&store, &dir, g.reporter.as_ref())?;
            if !g.quiet {
                println!(
                    "wrote {n} file(s) to {}: serve it, or use --index-url file://{}/simple/",
                    dir.display(),
                    std::path::absolute(&dir)?.display()
                );
            }
        }
        (None, Some(url)) => {
            let upload = crate::ecosystems::python::export::Upload {
                url: &url,
                username: username.as_deref(),
                password: password.as_deref(),
            };
            let (sent, present) = runtime()?.block_on(
                crate::ecosystems::python::export::python_upload(&store, &upload),
            )?;
            if !g.quiet {
                println!("uploaded {sent} file(s) to {url} ({present} already there)");
            }
        }
        (None, None) => unreachable!("clap requires --to or --upload"),
    }
    Ok(())
}

/// The arguments of `ferry export conda`.
pub struct ExportConda {
    pub store: PathBuf,
    pub to: PathBuf,
}

pub fn conda(args: ExportConda, g: &Globals) -> crate::error::Result<()> {
    let ExportConda { store, to } = args;

    let store = Store::open(&store)?;
    let n = crate::ecosystems::conda::export::conda_channels(&store, &to, g.reporter.as_ref())?;
    if !g.quiet {
        println!(
            "wrote {n} package(s) to {}: use the channel file://{}/<channel>",
            to.display(),
            std::path::absolute(&to)?.display()
        );
    }
    Ok(())
}

/// The arguments of `ferry export hf`.
pub struct ExportHf {
    pub store: PathBuf,
    pub to: PathBuf,
}

pub fn hf(args: ExportHf, g: &Globals) -> crate::error::Result<()> {
    let ExportHf { store, to } = args;

    let store = Store::open(&store)?;
    let n = crate::ecosystems::model::export::hf_cache(&store, &to, g.reporter.as_ref())?;
    if !g.quiet {
        println!(
            "wrote {n} file(s) to {}: load with HF_HUB_OFFLINE=1 HF_HUB_CACHE={}",
            to.display(),
            std::path::absolute(&to)?.display()
        );
    }
    Ok(())
}
