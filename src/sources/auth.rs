//! Registry credentials from the files Docker and the containers tools write:
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `~/.config/containers/auth.json`, `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`.
//! Without an entry, access is anonymous (oci-client then fetches an anonymous bearer
//! token when the registry asks for one, as Docker Hub does).

use std::path::PathBuf;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;

fn auth_files() -> Vec<PathBuf> {
    let env = |k: &str| std::env::var_os(k).map(PathBuf::from);
    let home = env("HOME");
    let mut files = Vec::new();
    files.extend(env("REGISTRY_AUTH_FILE"));
    files.extend(env("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
    files.extend(
        home.as_ref()
            .map(|h| h.join(".config/containers/auth.json")),
    );
    files.extend(env("DOCKER_CONFIG").map(|d| d.join("config.json")));
    files.extend(home.as_ref().map(|h| h.join(".docker/config.json")));
    files
}

/// The keys a registry may be filed under in an auth file.
fn keys_for(registry: &str) -> Vec<String> {
    let mut keys = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    if matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        keys.push("https://index.docker.io/v1/".into());
        keys.push("docker.io".into());
        keys.push("index.docker.io".into());
    }
    keys
}

/// Credentials for `registry` (as written in an image reference), or anonymous: from
/// `only` when given (`--authfile`), else from the first of the usual files that has them.
pub fn for_registry(registry: &str, only: Option<&std::path::Path>) -> RegistryAuth {
    let files = match only {
        Some(file) => vec![file.to_path_buf()],
        None => auth_files(),
    };
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else {
            continue;
        };
        for key in keys_for(registry) {
            let entry = auths
                .get(&key)
                .or_else(|| auths.get(key.trim_end_matches('/')));
            if let Some(auth) = entry.and_then(|e| e.get("auth")).and_then(|a| a.as_str())
                && let Some((user, pass)) = decode(auth)
            {
                return RegistryAuth::Basic(user, pass);
            }
        }
    }
    RegistryAuth::Anonymous
}

/// Whether `path` is an auth file ferry can take credentials from: readable JSON with an
/// `auths` object (a typo'd `--authfile` must not mean anonymous access).
pub fn check_file(path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    if !doc.get("auths").is_some_and(|a| a.is_object()) {
        return Err("it has no `auths` object".into());
    }
    Ok(())
}

fn decode(auth: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// What to check when `registry` (or `registry/repository`) could not be reached or
/// refused: where credentials come from, and the TLS switch that may fit (a loopback
/// registry is already spoken to over plain HTTP, so `--plain-http` is no advice there).
pub fn connection_hint(registry: &str) -> String {
    let host = registry.split('/').next().unwrap_or(registry);
    let credentials =
        "credentials come from --authfile FILE, else the Docker/containers auth files";
    if is_loopback(host) {
        format!(
            "{credentials}; loopback registries are spoken to over plain HTTP unless --ca-cert is given"
        )
    } else {
        format!(
            "{credentials}; --plain-http {host} for a registry without TLS, --ca-cert CA.pem for one whose certificate a private CA signed"
        )
    }
}

/// Loopback registries are spoken to over plain HTTP, as Docker does.
pub fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            registry
        }
    });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.invalid:5000"));
    }

    #[test]
    fn decodes_basic() {
        assert_eq!(
            decode("dXNlcjpwYTpzcw=="),
            Some(("user".into(), "pa:ss".into()))
        );
    }
}
