//! One verified download for every ecosystem that fetches over plain HTTP (Python
//! indexes, conda channels, Hugging Face hubs): what it must be (sha256 and size when
//! known, else an md5 or a git blob id), skipped when the store already holds it,
//! resumed with a Range request from what an interrupted run left (a damaged leftover
//! starts again from zero), retried with exponential backoff and jitter on connection
//! errors, 429 and 5xx (honouring `Retry-After`), with timeouts on every request. A
//! mismatch is a `FetchError::Mismatch` (exit 3) naming the file, where it came from,
//! what was expected and what arrived; nothing that did not verify lands in the store.
//!
//! Registry blobs come through oci-client (which speaks the registries' token auth) and
//! are written and checked by the same store writer.

use std::io::Write as _;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{self, HeaderMap};
use reqwest::{StatusCode, Url};
use sha1::Digest as _;

use crate::digest::Digest;
use crate::exit::{Classify, ExitStatus};
use crate::reporter::Reporter;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{file} from {origin} does not match: expected {expected}, got {actual}")]
    Mismatch {
        file: String,
        origin: String,
        expected: String,
        actual: String,
    },
    #[error("cannot download {file} from {origin}")]
    Http {
        file: String,
        origin: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the download of {file} from {origin} was cut short")]
    Cut {
        file: String,
        origin: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{origin} answered {status} for {file}")]
    Status {
        file: String,
        origin: String,
        status: u16,
    },
    #[error("{file} from {origin}: nothing to check it against (no sha256, md5 or git id)")]
    Unverifiable { file: String, origin: String },
    #[error("cannot set up an HTTP client")]
    Client(#[source] reqwest::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for FetchError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            FetchError::Mismatch { .. } | FetchError::Unverifiable { .. } => {
                ExitStatus::Verification
            }
            FetchError::Store(e) => e.exit_status(),
            FetchError::Http { .. }
            | FetchError::Cut { .. }
            | FetchError::Status { .. }
            | FetchError::Client(_) => ExitStatus::Error,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            FetchError::Mismatch { .. } => Some(
                "the source or something between it and ferry served altered bytes; nothing was stored".into(),
            ),
            FetchError::Cut { .. } => Some(
                "run the same command again: what arrived is kept and resumes where it stopped".into(),
            ),
            FetchError::Http { .. } => {
                Some("check that the source is reachable from here (proxy, DNS, firewall)".into())
            }
            _ => None,
        }
    }
}

/// How long a connection may stay silent (no byte of a head or a body) before ferry
/// gives up on that attempt and tries again: 300 s, or `FERRY_READ_TIMEOUT` seconds
/// (for slow links, and for tests of stalled servers).
pub fn read_timeout() -> Duration {
    std::env::var("FERRY_READ_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(Duration::from_secs(300), Duration::from_secs)
}

/// How often and how long to try again.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 4,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl Retry {
    /// The wait before attempt `n` (1-based retries): doubling, with up to 50% jitter,
    /// or what the server's `Retry-After` says (seconds), capped.
    pub fn delay(&self, n: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_delay);
        }
        let base = self.first_delay.saturating_mul(1 << (n - 1).min(16));
        let mut jitter = [0u8; 2];
        let _ = getrandom::fill(&mut jitter);
        let frac = u16::from_le_bytes(jitter) as f64 / u16::MAX as f64;
        base.mul_f64(1.0 + frac / 2.0).min(self.max_delay)
    }
}

/// CA certificates (DER) every HTTP client of the process trusts besides the system's
/// (`--ca-cert`); set once, before any client is built.
static EXTRA_ROOTS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();

/// Makes every HTTP client built after this trust `roots` too (the first call wins).
pub fn trust_also(roots: &[Vec<u8>]) {
    let _ = EXTRA_ROOTS.set(roots.to_vec());
}

/// The certificates of a PEM file, as DER; an error when it holds none or a block is not
/// a certificate.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("it holds no -----BEGIN CERTIFICATE----- block".into());
    }
    for der in &certs {
        reqwest::Certificate::from_der(der).map_err(|e| e.to_string())?;
    }
    Ok(certs)
}

/// A reqwest client builder with ferry's user agent, timeouts and trusted roots (the
/// system's, and `--ca-cert`'s).
pub fn client_builder() -> reqwest::ClientBuilder {
    let roots = EXTRA_ROOTS
        .get()
        .into_iter()
        .flatten()
        .filter_map(|der| reqwest::Certificate::from_der(der).ok());
    reqwest::Client::builder()
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(read_timeout())
        .tls_certs_merge(roots)
}

/// Runs `work` as a task of its own on the runtime: downloads awaited together then hash
/// and write on all the runtime's threads, where as futures of one task they took turns
/// on one (`ferry pull` of 300 MB of layers was bound by that thread). Dropping what
/// awaits it stops it, as dropping the future itself did (a failed download stops the
/// others); a panic in it is passed on.
pub async fn in_own_task<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    struct AbortOnDrop(tokio::task::AbortHandle);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let task = tokio::spawn(work);
    let _abort = AbortOnDrop(task.abort_handle());
    match task.await {
        Ok(t) => t,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("a download's task stopped: {e}"),
        },
    }
}

/// An HTTP client with ferry's timeouts and retry policy.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    retry: Retry,
}

impl Http {
    pub fn new() -> Result<Http, FetchError> {
        let client = client_builder().build().map_err(FetchError::Client)?;
        Ok(Http::with_client(client))
    }

    pub fn with_client(client: reqwest::Client) -> Http {
        Http {
            client,
            retry: Retry::default(),
        }
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// `GET url` with `headers` (and `Range: bytes=OFFSET-` past 0), tried again on
    /// connection errors, 429 and 5xx. Any other refusal is returned at once.
    pub async fn get(
        &self,
        url: &Url,
        headers: &HeaderMap,
        offset: u64,
        file: &str,
    ) -> Result<reqwest::Response, FetchError> {
        let origin = crate::names::redact_url(url.as_str());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.client.get(url.clone()).headers(headers.clone());
            if offset > 0 {
                request = request.header(header::RANGE, format!("bytes={offset}-"));
            }
            let last = attempt >= self.retry.attempts;
            match request.send().await {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r) if !last && retryable(r.status()) => {
                    let after = retry_after(r.headers());
                    tokio::time::sleep(self.retry.delay(attempt, after)).await;
                }
                Ok(r) => {
                    return Err(FetchError::Status {
                        file: file.to_string(),
                        origin,
                        status: r.status().as_u16(),
                    });
                }
                Err(e) if !last && (e.is_connect() || e.is_timeout() || e.is_request()) => {
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                }
                Err(e) => {
                    return Err(FetchError::Http {
                        file: file.to_string(),
                        origin,
                        source: e.without_url(),
                    });
                }
            }
        }
    }
}

/// A whole answer to a small request (an index page, an API document), body read to
/// the end.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    /// Where it came from, after redirects.
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Http {
    /// Sends what `build` makes and reads the whole body, with a new request (with
    /// backoff) on connection errors, timeouts, a body cut short, 429 and 5xx
    /// (honouring `Retry-After`). Any other answer, a refusal too, is the caller's to
    /// judge; so is a 429 or 5xx that lasted past the last attempt.
    pub async fn page(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Page, reqwest::Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.retry.attempts;
            let answer = async {
                let r = build(&self.client).send().await?;
                let (status, url, headers) = (r.status(), r.url().clone(), r.headers().clone());
                let body = r.bytes().await?.to_vec();
                Ok::<_, reqwest::Error>(Page {
                    status,
                    url,
                    headers,
                    body,
                })
            }
            .await;
            match answer {
                Ok(page) if !last && retryable(page.status) => {
                    let after = retry_after(&page.headers);
                    tokio::time::sleep(self.retry.delay(attempt, after)).await;
                }
                Ok(page) => return Ok(page),
                Err(e) if !last && transient(&e) => {
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Http {
    /// This client for libraries that take a middleware client (the conda repodata
    /// gateway): the same timeouts, and each request sent again, with the same backoff,
    /// when it fails to connect, times out before the answer's head, or is answered
    /// with 429 or 5xx (honouring `Retry-After`). A body cut short after the head is
    /// the library's to notice.
    pub fn middleware_client(&self) -> reqwest_middleware::ClientWithMiddleware {
        reqwest_middleware::ClientBuilder::new(self.client.clone())
            .with(retry_middleware)
            .build()
    }
}

fn retry_middleware<'a>(
    request: reqwest::Request,
    extensions: &'a mut http::Extensions,
    next: reqwest_middleware::Next<'a>,
) -> futures_util::future::BoxFuture<'a, reqwest_middleware::Result<reqwest::Response>> {
    Box::pin(async move {
        let retry = Retry::default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let copy = match request.try_clone() {
                Some(copy) if attempt < retry.attempts => copy,
                _ => return next.run(request, extensions).await,
            };
            match next.clone().run(copy, extensions).await {
                Ok(r) if retryable(r.status()) => {
                    let after = retry_after(r.headers());
                    tokio::time::sleep(retry.delay(attempt, after)).await;
                }
                Err(reqwest_middleware::Error::Reqwest(e)) if transient(&e) => {
                    tokio::time::sleep(retry.delay(attempt, None)).await;
                }
                other => return other,
            }
        }
    })
}

/// A failure of the connection (or a 429 or 5xx turned into an error) rather than an
/// answer: worth another try.
pub fn transient(e: &reqwest::Error) -> bool {
    e.is_connect()
        || e.is_timeout()
        || e.is_request()
        || e.is_body()
        || e.is_decode()
        || e.status().is_some_and(retryable)
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// What a download must be.
#[derive(Debug, Clone)]
pub struct Want {
    pub url: Url,
    /// What to call it in progress and errors (a file name).
    pub file: String,
    pub sha256: Option<Digest>,
    pub size: Option<u64>,
    /// Lowercase hex; checked when no sha256 is known.
    pub md5: Option<String>,
    /// The git blob id (sha1 of `blob <size>\0` and the bytes); checked too when given.
    pub git_oid: Option<String>,
    /// The caller needs the bytes' md5 (a conda record carries one): computed as they
    /// stream, only then (it cost a quarter of a conda pull's CPU).
    pub with_md5: bool,
    /// Sent with every request (a bearer token, say).
    pub headers: HeaderMap,
}

impl Want {
    pub fn new(url: Url, file: impl Into<String>) -> Want {
        Want {
            url,
            file: file.into(),
            sha256: None,
            size: None,
            md5: None,
            git_oid: None,
            with_md5: false,
            headers: HeaderMap::new(),
        }
    }
}

/// A verified blob in the store.
#[derive(Debug, Clone)]
pub struct Got {
    pub digest: Digest,
    pub size: u64,
    /// Lowercase hex md5 of the bytes, when they were downloaded this time.
    pub md5: Option<String>,
}

/// Makes sure the store holds what `want` names, verified. See the module docs.
pub async fn fetch(
    http: &Http,
    want: &Want,
    store: &Store,
    reporter: &dyn Reporter,
) -> Result<Got, FetchError> {
    if want.sha256.is_none() && want.md5.is_none() && want.git_oid.is_none() {
        return Err(FetchError::Unverifiable {
            file: want.file.clone(),
            origin: crate::names::redact_url(want.url.as_str()),
        });
    }
    if let Some(sha) = want.sha256
        && store.has_verified_blob(&sha, want.size)
    {
        let size = want
            .size
            .unwrap_or_else(|| store.blob_size(&sha).unwrap_or(0));
        return Ok(Got {
            digest: sha,
            size,
            md5: None,
        });
    }
    let mut restarted = false;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fetch_once(http, want, store, reporter, restarted).await {
            Ok(got) => return Ok(got),
            // What an earlier run left did not verify: once more, from zero.
            Err((FetchError::Mismatch { .. }, true)) if !restarted => restarted = true,
            // Cut short: resume from what arrived.
            Err((FetchError::Cut { .. }, _)) if attempt < http.retry.attempts => {
                tokio::time::sleep(http.retry.delay(attempt, None)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// One GET. The error's flag says whether the bytes checked included resumed ones.
async fn fetch_once(
    http: &Http,
    want: &Want,
    store: &Store,
    reporter: &dyn Reporter,
    from_zero: bool,
) -> Result<Got, (FetchError, bool)> {
    let origin = crate::names::redact_url(want.url.as_str());
    let file = want.file.as_str();
    let mismatch = |expected: String, actual: String| FetchError::Mismatch {
        file: file.to_string(),
        origin: origin.clone(),
        expected,
        actual,
    };
    let plain = |e: FetchError| (e, false);
    // With a sha256 the partial file is keyed by it and survives an interruption; with
    // only an md5 or a git id the bytes go to a private scratch file.
    let resumable = want.sha256.is_some() && want.md5.is_none() && want.git_oid.is_none();
    let mut writer = match want.sha256 {
        Some(sha) if resumable => store.blob_writer_when_free(&sha, !from_zero).await,
        _ => store.scratch_writer(),
    }
    .map_err(|e| plain(e.into()))?;
    if want.size.is_some_and(|s| writer.len() >= s) && !writer.is_empty() {
        writer.restart().map_err(|e| plain(e.into()))?;
    }
    let offset = writer.len();
    let response = http
        .get(&want.url, &want.headers, offset, file)
        .await
        .map_err(plain)?;
    if offset > 0 && response.status() != StatusCode::PARTIAL_CONTENT {
        // The server ignored the Range: take the whole body.
        writer.restart().map_err(|e| plain(e.into()))?;
    }
    let resumed = !writer.is_empty();
    let task = reporter.task(file, want.size);
    task.resume_at(writer.len());
    let mut md5 = (want.with_md5 || want.md5.is_some()).then(<md5::Md5 as md5::Digest>::new);
    let mut git = want.git_oid.as_ref().map(|_| {
        let mut h = sha1::Sha1::new();
        h.update(format!("blob {}\0", want.size.unwrap_or(0)).as_bytes());
        h
    });
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| {
            (
                FetchError::Cut {
                    file: file.to_string(),
                    origin: origin.clone(),
                    source: source.without_url(),
                },
                resumed,
            )
        })?;
        if let Some(size) = want.size.filter(|s| writer.len() + chunk.len() as u64 > *s) {
            return Err((
                mismatch(format!("{size} bytes"), "more bytes".into()),
                resumed,
            ));
        }
        if let Some(m) = md5.as_mut() {
            md5::Digest::update(m, &chunk);
        }
        if let Some(g) = git.as_mut() {
            g.update(&chunk);
        }
        writer
            .write_all(&chunk)
            .map_err(|e| plain(StoreError::from_io("cannot write into", store.root(), e).into()))?;
        task.advance(chunk.len() as u64);
    }
    task.finish();
    let md5 = md5.map(|m| hex::encode(md5::Digest::finalize(m)));
    let size = writer.len();
    if let Some(want_size) = want.size.filter(|s| *s != size) {
        return Err((
            mismatch(format!("{want_size} bytes"), format!("{size} bytes")),
            resumed,
        ));
    }
    if let (Some(expected), Some(g)) = (&want.git_oid, git) {
        let actual = hex::encode(g.finalize());
        if actual != expected.to_ascii_lowercase() {
            return Err((mismatch(format!("git blob id {expected}"), actual), resumed));
        }
    }
    if want.sha256.is_none()
        && let (Some(expected), Some(actual)) = (&want.md5, &md5)
        && expected != actual
    {
        return Err((
            mismatch(format!("md5 {expected}"), format!("md5 {actual}")),
            resumed,
        ));
    }
    let label = format!("{file} from {origin}");
    let committed = tokio::task::block_in_place(|| match want.sha256 {
        Some(sha) => writer.commit(store, &sha, size, &label).map(|()| sha),
        None => writer.commit_as_is(store).map(|(d, _)| d),
    });
    match committed {
        Ok(digest) => Ok(Got {
            digest,
            size,
            md5: md5.filter(|_| !resumed),
        }),
        Err(StoreError::DigestMismatch {
            expected, actual, ..
        }) => Err((mismatch(expected.to_string(), actual.to_string()), resumed)),
        Err(e) => Err(plain(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let r = Retry::default();
        let d1 = r.delay(1, None);
        let d3 = r.delay(3, None);
        assert!(d1 >= r.first_delay && d1 <= r.first_delay.mul_f64(1.5));
        assert!(d3 >= r.first_delay * 4 && d3 <= r.first_delay.mul_f64(6.0));
        assert_eq!(
            r.delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(r.delay(1, Some(Duration::from_secs(999))), r.max_delay);
        assert_eq!(r.delay(30, None), r.max_delay);
    }
}
