//! Integration tests: one binary, one module per concern. Every run goes to a real HTTP
//! server on 127.0.0.1:0 and the harness's counts are checked against what it saw.

#![allow(
    clippy::too_many_lines,
    reason = "a test reads top to bottom as its scenario"
)]

mod accounting;
mod binary;
mod chaos_docker;
mod chaos_firewall;
mod chaos_kube;
mod chaos_network;
mod chaos_process;
mod chaos_proxy;
mod chaos_recover;
mod checks;
mod clients;
mod compare;
mod compression;
mod evidence;
mod exporter;
mod failures;
mod latency;
mod layers;
mod no_false_green;
mod observe;
mod outcome;
mod outputs;
mod policy;
mod report;
mod retries;
mod runs;
mod scenario_fuzz;
mod schedule;
mod secrets;
mod stock_scenarios;
mod stop;
mod support;
mod tls;
mod type_errors;
mod validation;
mod verdict_edges;
mod verify;
