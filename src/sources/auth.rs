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

/// Credentials for `registry` (as written in an image reference), or anonymous.
pub fn for_registry(registry: &str) -> RegistryAuth {
    for file in auth_files() {
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

fn decode(auth: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
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
