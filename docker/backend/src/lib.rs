//! platform-backend's library: the API (`app`, `routes`), its configuration, Postgres
//! schema and metrics. `main.rs` starts it; a library target also lets the crate's tests
//! depend on it with the test-only `lossy` feature (see Cargo.toml).

pub mod app;
pub mod config;
pub mod db;
pub mod error;
#[cfg(feature = "lossy")]
pub mod lossy;
pub mod metrics;
pub mod routes;
