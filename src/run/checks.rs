//! Pre-flight: the HTTP client for the target, and the checks made before anything is
//! sent — the target accepts connections, every fault's guardrails allow it.

use std::path::{Path, PathBuf};

use super::{RunError, RunOptions};
use crate::chaos::runner::{Verdict, preflight as preflight_faults};
use crate::engine::ClientConfig;
use crate::engine::http::Origin;
use crate::engine::tls::TlsTarget;
use crate::scenario::Plan;
use crate::scenario::plan::Protocol;

/// The client configuration for the plan's (already resolved) target.
pub fn client(plan: &Plan, options: &RunOptions) -> Result<ClientConfig, RunError> {
    let target = &plan.target;
    let address = target.base.resolved.expect("prepare resolved the target");
    let origin = Origin::new(
        target.base.tls,
        &target.base.host,
        target.base.port,
        address,
    )
    .map_err(RunError::BadInput)?;
    let tls = match target.base.tls {
        false => None,
        true => {
            let ca_file = ca_file(plan, options);
            Some(
                TlsTarget::new(&target.base.host, ca_file.as_deref(), target.protocol)
                    .map_err(RunError::BadInput)?,
            )
        }
    };
    Ok(ClientConfig {
        origin,
        connect_timeout: target.connect_timeout,
        request_timeout: target.request_timeout,
        max_body: target.max_body,
        accept_encoding: target.compression.clone(),
        tls,
        protocol: target.protocol,
        // h2c and h2 are HTTP/2 from the start; `auto` over TLS learns it at pre-flight.
        multiplex: matches!(target.protocol, Protocol::H2 | Protocol::H2c),
    })
}

/// The CA file to trust: `--ca-file` (or `LOADGEN_CA_FILE`), else the scenario's `ca_file`
/// (relative to the scenario file, like data files), else the one the local reference stack
/// made for the very target being run against.
fn ca_file(plan: &Plan, options: &RunOptions) -> Option<PathBuf> {
    if let Some(file) = &options.ca_file {
        return Some(file.clone());
    }
    if let Some(file) = &plan.target.ca_file {
        return Some(
            options
                .scenario
                .parent()
                .unwrap_or(Path::new("."))
                .join(file),
        );
    }
    crate::platform::local::ca_file_for(
        &plan.target.base.to_string(),
        plan.chaos.stack_state.as_deref(),
    )
}

/// Resolves every fault's targets against the live environment before any traffic: a fault
/// its guardrails refuse (e.g. one that would take down every replica) stops the run here.
pub async fn faults(plan: &Plan) -> Result<(), RunError> {
    if plan.chaos.faults.is_empty() {
        return Ok(());
    }
    let refusals: Vec<String> = preflight_faults(&plan.chaos)
        .await
        .into_iter()
        .filter_map(|line| match line.verdict {
            Verdict::Refused(message) => Some(format!("fault `{}`: {message}", line.fault)),
            _ => None,
        })
        .collect();
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(RunError::BadInput(format!(
            "refusing to start: {}\n(nothing was sent; see `loadgen run --dry-run`)",
            refusals.join("\n")
        )))
    }
}

/// Refuses to start against a target that does not accept connections (a run against
/// nothing would only measure refusals) or with a source address that is not this host's.
/// For `protocol = "auto"` over TLS, the handshake's ALPN settles whether the run speaks
/// HTTP/2 (journeys then share connections).
pub async fn target(client: &mut ClientConfig, plan: &Plan) -> Result<(), RunError> {
    let base = &plan.target.base;
    let sources = &plan.target.source_addrs;
    if let Some(source) = sources.iter().find(|ip| !is_local(**ip)) {
        return Err(RunError::BadInput(format!(
            "source address {source} is not an address of this host (source_addrs)"
        )));
    }
    let multiplexed = client.probe(sources.first().copied()).await.map_err(|why| {
        RunError::CouldNotRun(format!(
            "target {base} ({}) is unreachable: {why}; is the platform up{}?",
            client.origin.addr,
            if client.tls.is_some() {
                ", and does its certificate match the host and a trusted CA (ca_file, --ca-file)"
            } else {
                ""
            }
        ))
    })?;
    if client.protocol == Protocol::Auto && multiplexed {
        client.multiplex = true;
    }
    Ok(())
}

/// Whether `ip` is one of this host's addresses: binding to it succeeds.
fn is_local(ip: std::net::IpAddr) -> bool {
    std::net::TcpListener::bind((ip, 0)).is_ok()
}
