//! `ferry key`: signing keys.

use super::*;

/// The arguments of `ferry key generate`.
pub struct KeyGenerate {
    pub name: PathBuf,
}

pub fn generate(args: KeyGenerate, g: &Globals) -> crate::error::Result<()> {
    let KeyGenerate { name } = args;

    let (secret, public, id) = sign::generate(&name)?;
    if !g.quiet {
        println!("key id {id}");
        println!(
            "secret key: {} (0600; keep it on the connected side)",
            secret.display()
        );
        println!("public key: {} (give it to importers)", public.display());
    }
    Ok(())
}
