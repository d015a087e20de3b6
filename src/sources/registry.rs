//! A registry as a source, through oci-client: manifests by tag or digest, blobs
//! streamed into the store (hashed while they stream, resumed with a Range request
//! after an interruption), tags, and referrers.

use futures_util::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::{ManifestRef, SourceError};
use crate::digest::Digest;
use crate::oci::{self, Desc, Manifest};
use std::collections::HashMap;

use crate::reporter::Task;
use crate::store::{Store, StoreError};

/// How ferry talks to registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Hosts spoken to over plain HTTP besides loopback ones.
    pub plain_http: Vec<String>,
    /// CA certificates (DER) trusted besides the system's (`--ca-cert`). With any, loopback
    /// registries are spoken to over HTTPS too.
    pub ca_certs: Vec<Vec<u8>>,
    /// The one auth file to take credentials from (`--authfile`).
    pub auth_file: Option<std::path::PathBuf>,
    /// The clients made so far, shared by every clone of these options.
    pub clients: Clients,
    /// Whether each registry asked so far asks for credentials (`sign_in`).
    pub challenges: Challenges,
}

/// What `sign_in` found out, per registry, shared by every clone of the options.
#[derive(Clone, Default)]
pub struct Challenges(std::sync::Arc<std::sync::Mutex<HashMap<String, bool>>>);

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Challenges")
    }
}

/// One oci-client per configuration, made once: each `Client::new` reads the system's
/// certificate store (tens of ms), and one client keeps its connections and tokens for
/// the next image of the same registry.
#[derive(Clone, Default)]
pub struct Clients(std::sync::Arc<std::sync::Mutex<Vec<(ClientKey, Client)>>>);

/// What a client is made from: the registries it may speak plain HTTP to and the CAs.
type ClientKey = (Vec<String>, Vec<Vec<u8>>);

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clients")
    }
}

impl RegistryOptions {
    /// The credentials for `registry`.
    pub fn auth(&self, registry: &str) -> RegistryAuth {
        super::auth::for_registry(registry, self.auth_file.as_deref())
    }
}

/// Whether ferry speaks plain HTTP to `registry`: a --plain-http host, or unless a CA was
/// given, a loopback one.
fn plain(registry: &str, options: &RegistryOptions) -> bool {
    options.ca_certs.is_empty() && super::auth::is_loopback(registry)
        || options.plain_http.iter().any(|p| p == registry)
}

/// Gives `client` the credentials for `registry` (`--authfile`, or none) if the registry
/// asks for any: its `/v2/` answers with a challenge (`WWW-Authenticate`), asked once per
/// registry. oci-client holding credentials for a registry asks its `/v2/` again before
/// every request that has no token yet, and a registry that gives no challenge gives no
/// token: it is asked before every request (118 times for one `import --to` of the
/// bench's images, each an extra round trip and ~1 ms of the registry's CPU), to send
/// no credentials in the end. Without credentials stored it sends none and asks nothing,
/// the same requests without the questions. A registry that cannot be asked is given
/// the credentials, as before.
pub async fn sign_in(client: &Client, registry: &str, options: &RegistryOptions) {
    let known = options
        .challenges
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(registry)
        .copied();
    let asks = match known {
        Some(asks) => asks,
        None => {
            let asks = asks_credentials(registry, options).await;
            options
                .challenges
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(registry.to_string(), asks);
            asks
        }
    };
    if asks {
        client
            .store_auth_if_needed(registry, &options.auth(registry))
            .await;
    }
}

/// Whether `registry` may want credentials: false only when its `/v2/` answers 2xx
/// without a challenge.
async fn asks_credentials(registry: &str, options: &RegistryOptions) -> bool {
    let builder = crate::fetch::client_builder().redirect(reqwest::redirect::Policy::none());
    let (scheme, builder) = if plain(registry, options) {
        // No TLS: the system's certificates need not be read.
        ("http", builder.tls_certs_only([]))
    } else {
        let extra = options
            .ca_certs
            .iter()
            .filter_map(|der| reqwest::Certificate::from_der(der).ok());
        ("https", builder.tls_certs_merge(extra))
    };
    let Ok(client) = builder.build() else {
        return true;
    };
    match client
        .get(format!("{scheme}://{registry}/v2/"))
        .send()
        .await
    {
        // Only a success without a challenge says "none": a redirect, an error or a
        // proxy's 503 says nothing, and the credentials are kept as before.
        Ok(answer) => {
            !answer.status().is_success()
                || answer
                    .headers()
                    .contains_key(reqwest::header::WWW_AUTHENTICATE)
        }
        Err(_) => true,
    }
}

/// An oci-client for the given registries: HTTPS except for --plain-http hosts and, unless
/// a CA was given, loopback ones.
pub fn client_for(registries: &[String], options: &RegistryOptions) -> Client {
    let mut plain: Vec<String> = registries
        .iter()
        .filter(|r| options.ca_certs.is_empty() && super::auth::is_loopback(r))
        .cloned()
        .collect();
    plain.extend(options.plain_http.iter().cloned());
    let key = (plain.clone(), options.ca_certs.clone());
    let mut clients = options.clients.0.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, client)) = clients.iter().find(|(k, _)| *k == key) {
        return client.clone();
    }
    let extra_root_certificates = options
        .ca_certs
        .iter()
        .map(|der| oci_client::client::Certificate {
            encoding: oci_client::client::CertificateEncoding::Der,
            data: der.clone(),
        })
        .collect();
    let client = Client::new(ClientConfig {
        extra_root_certificates,
        protocol: ClientProtocol::HttpsExcept(plain),
        use_monolithic_push: true,
        platform_resolver: None,
        max_concurrent_download: 4,
        max_concurrent_upload: 4,
        connect_timeout: Some(std::time::Duration::from_secs(30)),
        read_timeout: Some(crate::fetch::read_timeout()),
        user_agent: concat!("ferry/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    });
    clients.push((key, client.clone()));
    client
}

/// Whether an oci-client error is worth another try: the connection failed, broke or
/// went silent, or the registry answered 429 or 5xx. Anything else (a refusal, a
/// missing manifest, a bad digest) is returned at once.
pub fn transient(e: &OciDistributionError) -> bool {
    use oci_client::errors::OciErrorCode;
    match e {
        OciDistributionError::RequestError(e) => {
            e.is_connect()
                || e.is_timeout()
                || e.is_request()
                || e.is_body()
                || e.is_decode()
                || e.status()
                    .is_some_and(|s| s.as_u16() == 429 || s.is_server_error())
        }
        OciDistributionError::ServerError { code, .. } => *code == 429 || (500..600).contains(code),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| e.code == OciErrorCode::Toomanyrequests),
        _ => false,
    }
}

/// Runs one registry operation, again with backoff (see [`crate::fetch::Retry`]) while
/// it fails with a [`transient`] error. oci-client does not hand back the answer's
/// headers, so a `Retry-After` cannot be read here; the backoff stands in for it.
pub async fn retrying<T, F, Fut>(op: F) -> Result<T, OciDistributionError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
{
    let retry = crate::fetch::Retry::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Err(e) if attempt < retry.attempts && transient(&e) => {
                tokio::time::sleep(retry.delay(attempt, None)).await;
            }
            other => return other,
        }
    }
}

pub struct RegistrySource {
    client: Client,
    /// The reference as the spec gave it (registry + repository).
    base: Reference,
    auth: RegistryAuth,
}

impl RegistrySource {
    pub fn new(reference: &str, options: &RegistryOptions) -> Result<Self, SourceError> {
        let base = Reference::try_from(reference).map_err(|e| SourceError::Fetch {
            what: "the reference".into(),
            origin: reference.to_string(),
            source: e.into(),
        })?;
        let client = client_for(&[base.registry().to_string()], options);
        let auth = options.auth(base.registry());
        Ok(RegistrySource { client, base, auth })
    }

    pub fn reference(&self) -> &Reference {
        &self.base
    }

    pub fn origin(&self) -> String {
        format!("{}/{}", self.base.registry(), self.base.repository())
    }

    fn at_tag(&self, tag: &str) -> Reference {
        Reference::with_tag(
            self.base.registry().into(),
            self.base.repository().into(),
            tag.into(),
        )
    }

    fn at_digest(&self, digest: &Digest) -> Reference {
        Reference::with_digest(
            self.base.registry().into(),
            self.base.repository().into(),
            digest.to_string(),
        )
    }

    fn fetch_err(
        &self,
        what: String,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> SourceError {
        SourceError::Fetch {
            what,
            origin: self.origin(),
            source: e.into(),
        }
    }

    pub async fn manifest(&self, reference: &ManifestRef) -> Result<Vec<u8>, SourceError> {
        let r = match reference {
            ManifestRef::Tag(t) => self.at_tag(t),
            ManifestRef::Digest(d) => self.at_digest(d),
        };
        match retrying(|| {
            self.client
                .pull_manifest_raw(&r, &self.auth, oci::MANIFEST_MEDIA_TYPES)
        })
        .await
        {
            Ok((bytes, _)) => Ok(bytes.to_vec()),
            Err(e) if is_not_found(&e) => Err(SourceError::NotFound {
                origin: self.origin(),
                reference: reference.to_string(),
            }),
            Err(e) => Err(self.fetch_err(format!("manifest {reference}"), e)),
        }
    }

    /// Fetches a blob, resuming bytes an interrupted run left. If the resumed result does
    /// not verify (the leftover was damaged), it starts once more from zero.
    pub async fn blob(
        &self,
        desc: &Desc,
        store: &Store,
        task: &dyn Task,
    ) -> Result<Option<std::fs::File>, SourceError> {
        let retry = crate::fetch::Retry::default();
        let mut attempt = 0;
        let mut from_zero = false;
        loop {
            attempt += 1;
            let resumed = !from_zero && store.has_partial(&desc.digest);
            match self.fetch_blob(desc, store, task, !from_zero).await {
                // What an earlier run left did not verify: once more, from zero.
                Err(SourceError::Store(StoreError::DigestMismatch { .. })) if resumed => {
                    from_zero = true;
                }
                // Refused, cut or unreachable: again after a while, resuming what came.
                Err(SourceError::Fetch { .. }) if attempt < retry.attempts => {
                    tokio::time::sleep(retry.delay(attempt, None)).await;
                }
                other => return other,
            }
        }
    }

    async fn fetch_blob(
        &self,
        desc: &Desc,
        store: &Store,
        task: &dyn Task,
        resume: bool,
    ) -> Result<Option<std::fs::File>, SourceError> {
        let what = format!("blob {}", desc.digest);
        let r = self.at_digest(&desc.digest);
        let digest = desc.digest.to_string();
        let mut writer = store.blob_writer_when_free(&desc.digest, resume).await?;
        let mut offset = writer.len();
        if offset >= desc.size {
            // A leftover longer than the blob cannot be right.
            writer.restart()?;
            offset = 0;
        }
        // Always a range request (from byte 0 for a fresh blob): oci-client then leaves
        // the digest check to us, and each byte is hashed once, by the store's writer,
        // whose commit refuses a blob that does not match its name. A registry that
        // ignores ranges answers in full, and oci-client checks that stream too.
        let mut stream = match self
            .client
            .pull_blob_stream_partial(&r, digest.as_str(), offset, None)
            .await
            .map_err(|e| self.fetch_err(what.clone(), e))?
        {
            BlobResponse::Partial(s) => {
                task.resume_at(offset);
                s
            }
            BlobResponse::Full(s) => {
                if offset > 0 {
                    writer.restart()?;
                }
                s
            }
        };
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                // oci-client checks the digest itself and says so as a stream error
                // after the last byte: every byte is here, so our own check below
                // decides, as a digest mismatch (exit 3) naming both digests.
                Err(_) if writer.len() == desc.size => break,
                Err(e) => return Err(self.fetch_err(what.clone(), e)),
            };
            if writer.len() + chunk.len() as u64 > desc.size {
                return Err(SourceError::Fetch {
                    what,
                    origin: self.origin(),
                    source: format!(
                        "the registry sent more than the {} bytes the manifest declares",
                        desc.size
                    )
                    .into(),
                });
            }
            std::io::Write::write_all(&mut writer, &chunk)
                .map_err(|e| self.fetch_err(what.clone(), e))?;
            task.advance(chunk.len() as u64);
        }
        let label = format!("{what} from {}", self.origin());
        Ok(tokio::task::block_in_place(|| {
            writer.commit_open(store, &desc.digest, desc.size, &label)
        })?)
    }

    pub async fn tags(&self) -> Result<Vec<String>, SourceError> {
        let mut tags = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = retrying(|| {
                self.client
                    .list_tags(&self.base, &self.auth, Some(1000), last.as_deref())
            })
            .await
            .map_err(|e| self.fetch_err("the tag list".into(), e))?;
            let n = page.tags.len();
            last = page.tags.last().cloned();
            tags.extend(page.tags);
            if n < 1000 {
                break;
            }
        }
        Ok(tags)
    }

    pub async fn referrers(&self, digest: &Digest) -> Result<Vec<Desc>, SourceError> {
        let r = self.at_digest(digest);
        if let Ok(index) = retrying(|| self.client.pull_referrers(&r, None)).await {
            let bytes = serde_json::to_vec(&index)
                .map_err(|e| self.fetch_err("the referrers list".into(), e))?;
            if let Ok(m) = Manifest::parse(&bytes, Some(oci::OCI_INDEX))
                && !m.children.is_empty()
            {
                return Ok(m.children);
            }
        }
        // The referrers tag schema: an index tagged `sha256-<hex>`.
        match self.manifest(&ManifestRef::Tag(digest.tag_form())).await {
            Ok(bytes) => {
                let m = Manifest::parse(&bytes, Some(oci::OCI_INDEX))
                    .map_err(|e| self.fetch_err("the referrers index".into(), e))?;
                Ok(if m.is_index() { m.children } else { Vec::new() })
            }
            Err(SourceError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

fn is_not_found(e: &OciDistributionError) -> bool {
    use OciDistributionError as E;
    match e {
        E::ImageManifestNotFoundError(_) => true,
        E::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                format!("{:?}", e.code).as_str(),
                "ManifestUnknown" | "NameUnknown"
            )
        }),
        E::ServerError { code, .. } => *code == 404,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "http://127.0.0.1:1/v2/".into(),
            message: String::new(),
        }
    }

    #[test]
    fn only_429_5xx_and_broken_connections_are_tried_again() {
        assert!(transient(&server(503)));
        assert!(transient(&server(500)));
        assert!(transient(&server(429)));
        assert!(!transient(&server(404)));
        assert!(!transient(&server(400)));
        assert!(!transient(&OciDistributionError::UnauthorizedError {
            url: "http://127.0.0.1:1/v2/".into()
        }));
        assert!(!transient(
            &OciDistributionError::ImageManifestNotFoundError("x".into())
        ));
    }

    #[tokio::test]
    async fn retrying_gives_up_after_the_last_attempt_and_stops_at_a_refusal() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let result: Result<(), _> = retrying(|| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Err(server(503)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            crate::fetch::Retry::default().attempts
        );
        calls.store(0, std::sync::atomic::Ordering::SeqCst);
        let _ = retrying(|| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Err::<(), _>(server(404)) }
        })
        .await;
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
