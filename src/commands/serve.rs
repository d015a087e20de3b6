//! `ferry serve`: a store, read-only, to unmodified clients.

use super::*;

/// The arguments of `ferry serve`.
pub struct Serve {
    pub store: PathBuf,
    pub listen: std::net::SocketAddr,
    pub idle_timeout: u64,
}

pub fn run(args: Serve, g: &Globals) -> crate::error::Result<()> {
    let Serve {
        store,
        listen,
        idle_timeout,
    } = args;

    let store = Store::open(&store)?;
    let options = crate::serve::ServeOptions {
        listen,
        idle_timeout: std::time::Duration::from_secs(idle_timeout),
        quiet: g.quiet,
    };
    runtime()?.block_on(crate::serve::serve(store, options))
}
