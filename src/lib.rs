//! ferry's code, as a library: the `ferry` binary (`src/main.rs`) is a thin `main` over
//! it, and the fuzz targets under `fuzz/` call its parsers directly. It is not a stable
//! API for anyone else.

pub mod artifact;
pub mod audit;
pub mod bundle;
pub mod cli;
pub mod commands;
pub mod digest;
pub mod ecosystems;
pub mod error;
pub mod escape;
pub mod exit;
pub mod export;
pub mod fetch;
pub mod import;
pub mod inventory;
pub mod licence;
pub mod names;
pub mod oci;
pub mod plan;
pub mod policy;
pub mod report;
pub mod reporter;
pub mod respond;
pub mod sbom;
pub mod serve;
pub mod sign;
pub mod sources;
pub mod spec;
pub mod store;
pub mod targets;
pub mod trust;
