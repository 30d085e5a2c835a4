//! Tests against a running local stack (docker/local/stack.sh): nginx -> 3 backends ->
//! Postgres + Redis, with Prometheus, all real processes on loopback.
//!
//! The stack is started once per test binary (see `fixture`) and stopped at exit, also
//! when tests fail; a watchdog started by stack.sh stops it if this process is killed.
//! Tests that disturb the shared stack (restarts, SIGKILL) or start their own stacks take
//! the exclusive lock, so they never run while another test sends traffic.

mod api;
mod ayni;
mod compose;
mod drill;
mod durability;
mod exported;
mod failover;
mod fixture;
mod lifecycle;
mod nginx;
mod nightly;
mod payments;
mod population;
mod stats;
mod verify;
