//! `ferry serve`: one store, read-only, to unmodified clients. Each ecosystem answers
//! the paths it claims (the OCI distribution API under `/v2/`, the Python simple API,
//! conda channels, the Hugging Face API; see `ecosystems`). What is served is what the store's `index.json` reaches; the catalogs are rebuilt
//! when `index.json` changes. Store content is not trusted: a record that cannot be
//! served safely is left out of the catalog with a warning, never a panic.

pub mod access;
mod listener;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

use crate::ecosystems;
use crate::respond::{Request, text};
use crate::store::Store;

/// What the store holds, indexed for serving.
#[derive(Default)]
struct Catalog {
    stamp: Option<(SystemTime, u64)>,
    ecosystems: ecosystems::Catalogs,
}

struct App {
    store: Store,
    catalog: RwLock<Arc<Catalog>>,
    /// Held while a catalog is rebuilt, so concurrent requests rebuild it once.
    rebuild: Mutex<()>,
}

/// How `ferry serve` runs.
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// How long a connection may take to send a complete request head (or finish its
    /// TLS handshake), from its accept or from its previous response.
    pub idle_timeout: Duration,
    /// `--tls-cert` and `--tls-key`.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub htpasswd: Option<PathBuf>,
    pub tokens: Option<PathBuf>,
    /// The access log (`-`: standard output).
    pub access_log: Option<PathBuf>,
    pub quiet: bool,
    /// Shows the catalog's first build (rebuilds while serving are silent).
    pub reporter: std::sync::Arc<dyn crate::reporter::Reporter>,
}

pub async fn serve(store: Store, options: ServeOptions) -> crate::error::Result<()> {
    let app = Arc::new(App {
        store,
        catalog: RwLock::new(Arc::new(Catalog::default())),
        rebuild: Mutex::new(()),
    });
    let tls = match &options.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    let access = Arc::new(access::Access::load(
        options.htpasswd.as_deref(),
        options.tokens.as_deref(),
    )?);
    let log = match &options.access_log {
        Some(path) => Some(access::AccessLog::open(path)?),
        None => None,
    };
    app.catalog(options.reporter.as_ref())?;
    let listen = options.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| crate::error::Error::msg(format!("cannot listen on {listen}: {e}")))?;
    let cap = listener::connection_cap();
    if !options.quiet {
        if !listen.ip().is_loopback() && tls.is_none() {
            if access.is_open() {
                eprintln!(
                    "warning: serving {listen} beyond this machine over plain HTTP to anyone:                      give --tls-cert/--tls-key and --htpasswd or --tokens"
                );
            } else {
                eprintln!(
                    "warning: passwords and tokens cross the network in clear on {listen}:                      give --tls-cert and --tls-key"
                );
            }
        }
        eprintln!(
            "listening on {}://{} (at most {cap} connections, idle timeout {}s, {})",
            if tls.is_some() { "https" } else { "http" },
            listener.local_addr()?,
            options.idle_timeout.as_secs_f64(),
            if access.is_open() {
                "anonymous read"
            } else {
                "credentials required"
            },
        );
    }
    let router = Router::new().fallback(handle).with_state(app);
    let gate = Arc::new(listener::Gate { access, log });
    let connections = listener::Connections {
        tls,
        idle_timeout: options.idle_timeout,
        cap,
    };
    listener::run(listener, router, gate, connections, shutdown()).await;
    Ok(())
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

impl App {
    /// The catalog of the store as `index.json` is now; rebuilding it reads every
    /// manifest, so it runs off the async workers.
    async fn current_catalog(self: &Arc<App>) -> crate::error::Result<Arc<Catalog>> {
        let app = self.clone();
        tokio::task::spawn_blocking(move || app.catalog(&crate::reporter::Quiet))
            .await
            .map_err(|e| crate::error::Error::msg(format!("catalog rebuild failed: {e}")))?
    }

    fn catalog(
        &self,
        reporter: &dyn crate::reporter::Reporter,
    ) -> crate::error::Result<Arc<Catalog>> {
        let stamp = || -> crate::error::Result<_> {
            let meta = std::fs::metadata(self.store.root().join("index.json"))?;
            Ok((Some((meta.modified()?, meta.len())), meta.modified()?))
        };
        let unchanged = |stamp| {
            let current = self.catalog.read().unwrap_or_else(|e| e.into_inner());
            (current.stamp == stamp).then(|| current.clone())
        };
        if let Some(current) = unchanged(stamp()?.0) {
            return Ok(current);
        }
        let _rebuilding = self.rebuild.lock().unwrap_or_else(|e| e.into_inner());
        let (stamp, modified) = stamp()?;
        if let Some(current) = unchanged(stamp) {
            return Ok(current);
        }
        let catalog = Arc::new(Catalog {
            stamp,
            ecosystems: ecosystems::Catalogs::build(&self.store, modified, reporter)?,
        });
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = catalog.clone();
        Ok(catalog)
    }
}

async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path();
    if method != Method::GET && method != Method::HEAD {
        return ecosystems::read_only(path);
    }
    if path == "/healthz" {
        // For load balancers: the store can be read and its catalog built.
        return match app.current_catalog().await {
            Ok(_) => text(StatusCode::OK, "ok\n"),
            Err(e) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot read the store: {e}\n"),
            ),
        };
    }
    let catalog = match app.current_catalog().await {
        Ok(catalog) => catalog,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot read the store: {e}\n"),
            );
        }
    };
    let request = Request {
        method: &method,
        path,
        query: uri.query(),
        headers: &headers,
    };
    match ecosystems::route(&app.store, &catalog.ecosystems, &request).await {
        Some(response) => response,
        None => text(
            StatusCode::NOT_FOUND,
            "not found: this server answers /v2/ (OCI), /simple/ (Python), /conda/ (conda) and the Hugging Face API\n",
        ),
    }
}
