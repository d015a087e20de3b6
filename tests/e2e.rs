//! End-to-end tests: the real `ferry` binary against real peers (Debian's
//! `docker-registry`, `skopeo`, `podman`, `minisign`, `zstd`, `tar`; pip, uv,
//! pypiserver, py-rattler and huggingface_hub from the test venv; a loopback stand-in
//! for the Hugging Face hub) and hostile bundles.
//!
//! One shared registry and one set of deterministic test images serve the whole test
//! process (see `e2e/context.rs`); every test gets its own temporary HOME and state.
//! `bash scripts/setup.sh` installs the peers and makes the venv.

mod e2e {
    // Support.
    pub mod context;
    pub mod fixtures;
    pub mod http;
    pub mod images;
    pub mod pki;
    pub mod registry;
    pub mod tamper;

    // Tests, one file per command or concern.
    mod approvals;
    mod audit;
    mod auth;
    mod bundle;
    mod compat;
    mod conda;
    mod conventions;
    mod errors;
    mod faults;
    mod fetch;
    mod hostile;
    mod import;
    mod increments;
    mod keys;
    mod kill;
    mod licences;
    mod models;
    mod names;
    mod plan;
    mod podman;
    mod policy;
    mod pull;
    mod python;
    mod referrers;
    mod report;
    mod resume;
    mod sbom;
    mod serve;
    mod serve_hostile;
    mod serve_secure;
    mod state;
    mod stdin;
    mod store;
    mod volumes;
}
