//! `ferry key generate|show`: signing keys.

use super::*;

/// The arguments of `ferry key generate`.
pub struct KeyGenerate {
    pub name: PathBuf,
}

pub fn generate(args: KeyGenerate, g: &Globals) -> crate::error::Result<()> {
    let KeyGenerate { name } = args;

    // `key generate team.key` (or team.pub) means the pair named team, not team.key.key.
    let name = match name.extension().and_then(|e| e.to_str()) {
        Some("key" | "pub") => name.with_extension(""),
        _ => name,
    };
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

/// The arguments of `ferry key show`.
pub struct KeyShow {
    pub key: PathBuf,
    pub json: bool,
}

/// Prints the key id and public key line of a `.pub` (or of a `.key`'s public half;
/// nothing secret is printed).
pub fn show(args: KeyShow, _: &Globals) -> crate::error::Result<()> {
    let KeyShow { key, json } = args;

    let (public, kind) = match PublicKey::load(&key) {
        Ok(k) => (k, "public"),
        Err(sign::KeyError::Malformed { .. }) => (SecretKey::load(&key)?.public(), "secret"),
        Err(e) => return Err(e.into()),
    };
    if json {
        let v = serde_json::json!({
            "file": key.display().to_string(),
            "kind": kind,
            "keyId": public.id.to_string(),
            "publicKey": public.key_line(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("key id     {}", public.id);
        println!("public key {}", public.key_line());
        println!("file       {} ({kind} key)", key.display());
    }
    Ok(())
}
