//! The connections of `ferry serve`: HTTP/1.1 through hyper, with a deadline for each
//! request head and a cap on open connections, so idle or slow clients cannot hold the
//! server.
//!
//! - A connection has `idle_timeout` to send a complete request head, counted from when
//!   it was accepted or its previous response ended (hyper's header-read timeout, which
//!   starts as soon as hyper waits for a head): a client sending nothing, one keeping an
//!   idle keep-alive connection and one trickling headers byte by byte are all closed.
//! - Open connections are capped below the process's open-file limit, leaving a file
//!   per connection for the blob it streams and a reserve for the store. At the cap a new
//!   connection sheds the one idle longest (never sent a request, or between requests);
//!   if every connection is busy, the new one is closed. Accept errors (`EMFILE` among
//!   them) shed and back off; they never stop the server or make it spin.
//! - With TLS, the handshake must end within `idle_timeout` too.
//! - Every request passes the [`Gate`] before a route sees it: its credentials are
//!   checked (`/healthz` excepted), and once its response has ended it is written to the
//!   access log with the bytes actually sent.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use super::access::{Access, AccessLog, Entry, unauthorized};

/// File descriptors kept free of connections: the listener, the runtime, stdio and the
/// store files a catalog rebuild opens.
const RESERVED_FILES: usize = 32;
/// Connections when the open-file limit cannot be read.
const DEFAULT_CAP: usize = 256;
/// How long connections may take to finish when the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The most connections to hold open: half of what the open-file limit leaves after the
/// reserve (a busy connection also holds the blob it streams).
pub(super) fn connection_cap() -> usize {
    match open_file_limit() {
        Some(limit) => (limit.saturating_sub(RESERVED_FILES) / 2).clamp(1, 1 << 16),
        None => DEFAULT_CAP,
    }
}

/// The soft `RLIMIT_NOFILE`, from `/proc/self/limits` (None when that cannot be read;
/// `unlimited` is a large number).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .strip_prefix("Max open files")?
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(usize::MAX);
    }
    soft.parse().ok()
}

/// One open connection, as the accept loop sees it.
struct Conn {
    /// Requests being answered (a response counts until its body is sent or dropped).
    in_flight: usize,
    /// Since when nothing has been in flight: its accept, or its last response's end.
    idle_since: Instant,
    /// Tells the connection to close (gracefully: a response under way finishes).
    shed: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Conn>,
}

type Shared = Arc<Mutex<Table>>;

fn lock(table: &Shared) -> std::sync::MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

impl Table {
    /// Closes the connection idle longest; false when every connection is busy.
    fn shed_idlest(&mut self) -> bool {
        let idlest = self
            .conns
            .iter()
            .filter(|(_, c)| c.in_flight == 0)
            .min_by_key(|(_, c)| c.idle_since)
            .map(|(id, _)| *id);
        match idlest.and_then(|id| self.conns.remove(&id)) {
            Some(conn) => {
                conn.shed.notify_one();
                true
            }
            None => false,
        }
    }
}

/// What every request passes: who may read, and where what was read is logged.
pub(super) struct Gate {
    pub access: Arc<Access>,
    pub log: Option<AccessLog>,
}

/// How connections are taken: TLS or not, and the limits on them.
pub(super) struct Connections {
    pub tls: Option<TlsAcceptor>,
    pub idle_timeout: Duration,
    pub cap: usize,
}

/// Accepts and serves connections until `shutdown` completes, then lets open ones finish
/// (for at most `SHUTDOWN_GRACE`).
pub(super) async fn run(
    listener: TcpListener,
    router: Router,
    gate: Arc<Gate>,
    connections: Connections,
    shutdown: impl Future<Output = ()>,
) {
    let Connections {
        tls,
        idle_timeout,
        cap,
    } = connections;
    let table: Shared = Arc::default();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, client) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if out_of_files(&e) {
                    // Free a file for the client waiting in the backlog; retry shortly.
                    lock(&table).shed_idlest();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                } else {
                    // A connection that went away before it was accepted, say.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                continue;
            }
        };
        let (id, shed) = {
            let mut t = lock(&table);
            if t.conns.len() >= cap && !t.shed_idlest() {
                // Every connection is busy answering: refuse rather than run out of files.
                drop(stream);
                continue;
            }
            let id = t.next_id;
            t.next_id += 1;
            let shed = Arc::new(Notify::new());
            t.conns.insert(
                id,
                Conn {
                    in_flight: 0,
                    idle_since: Instant::now(),
                    shed: shed.clone(),
                },
            );
            (id, shed)
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            router: router.clone(),
            http: http.clone(),
            gate: gate.clone(),
            table: table.clone(),
            id,
            shed,
            client,
        };
        match &tls {
            None => {
                tokio::spawn(conn.serve(stream));
            }
            Some(tls) => {
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(idle_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => conn.serve(stream).await,
                        // A failed or too slow handshake (plain HTTP sent to the TLS
                        // port, a client that does not trust the certificate).
                        _ => conn.close(),
                    }
                });
            }
        }
    }
    drop(listener);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    let open: Vec<Arc<Notify>> = lock(&table)
        .conns
        .values()
        .map(|c| c.shed.clone())
        .collect();
    for shed in open {
        shed.notify_one();
    }
    while !lock(&table).conns.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn out_of_files(e: &io::Error) -> bool {
    // EMFILE and ENFILE (the same numbers on Linux, the BSDs and macOS).
    matches!(e.raw_os_error(), Some(23 | 24)) || e.kind() == io::ErrorKind::OutOfMemory
}

/// One accepted connection and what serving it needs.
struct Connection {
    router: Router,
    http: Arc<hyper::server::conn::http1::Builder>,
    gate: Arc<Gate>,
    table: Shared,
    id: u64,
    shed: Arc<Notify>,
    client: std::net::SocketAddr,
}

impl Connection {
    fn close(self) {
        lock(&self.table).conns.remove(&self.id);
    }

    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let routes = TowerToHyperService::new(self.router.clone());
        let requests = self.table.clone();
        let (id, gate, client) = (self.id, self.gate.clone(), self.client);
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = Busy::start(&requests, id);
            let gate = gate.clone();
            let routes = routes.clone();
            async move {
                let started = Instant::now();
                let mut entry = gate.log.as_ref().map(|_| Entry {
                    client,
                    reader: None,
                    method: request.method().to_string(),
                    path: request.uri().path().to_string(),
                    status: 0,
                    started: time::OffsetDateTime::now_utc(),
                });
                let path = request.uri().path().to_string();
                let reader = if path == "/healthz" {
                    Some(super::access::Reader::Anonymous)
                } else {
                    gate.access.check(request.headers()).await
                };
                let response = match &reader {
                    Some(_) => routes.call(request).await?,
                    None => unauthorized(&path),
                };
                if let Some(entry) = &mut entry {
                    entry.reader = reader;
                    entry.status = response.status().as_u16();
                }
                let logged = entry.map(|entry| Logged {
                    gate: gate.clone(),
                    entry,
                    started,
                    bytes: 0,
                });
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(TrackedBody {
                        body,
                        _busy: busy,
                        logged,
                    })
                }))
            }
        });
        let conn = self.http.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = self.shed.notified() => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
            }
        }
        self.close();
    }
}

/// A response on its way to the access log: written when its body has ended or was
/// dropped (the client went away), with the bytes that were handed to the connection.
struct Logged {
    gate: Arc<Gate>,
    entry: Entry,
    started: Instant,
    bytes: u64,
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(log) = &self.gate.log {
            log.write(&self.entry, self.bytes, self.started.elapsed());
        }
    }
}

/// A request in flight on connection `id`; when dropped (its response body sent or
/// abandoned), the connection counts as idle again if nothing else is in flight.
struct Busy {
    table: Shared,
    id: u64,
}

impl Busy {
    fn start(table: &Shared, id: u64) -> Busy {
        if let Some(c) = lock(table).conns.get_mut(&id) {
            c.in_flight += 1;
        }
        Busy {
            table: table.clone(),
            id,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(c) = lock(&self.table).conns.get_mut(&self.id) {
            c.in_flight = c.in_flight.saturating_sub(1);
            if c.in_flight == 0 {
                c.idle_since = Instant::now();
            }
        }
    }
}

/// A response body that keeps its request counted as in flight until it is done, and
/// counts what it sent for the access log.
struct TrackedBody {
    body: Body,
    _busy: Busy,
    logged: Option<Logged>,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(logged)) = (&polled, &mut self.logged)
            && let Some(data) = frame.data_ref()
        {
            logged.bytes += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
