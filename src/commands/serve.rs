//! `ferry serve`: a store, read-only, to unmodified clients.

use super::*;

pub fn run(args: crate::cli::ServeArgs, g: &Globals) -> crate::error::Result<()> {
    let crate::cli::ServeArgs {
        store,
        listen,
        idle_timeout,
        tls_cert,
        tls_key,
        htpasswd,
        tokens,
        access_log,
    } = args;

    let store = Store::open(&store)?;
    let options = crate::serve::ServeOptions {
        listen,
        idle_timeout: std::time::Duration::from_secs(idle_timeout),
        tls: tls_cert.zip(tls_key),
        htpasswd,
        tokens,
        access_log,
        quiet: g.quiet,
        reporter: g.reporter.clone(),
    };
    runtime()?.block_on(crate::serve::serve(store, options))
}
