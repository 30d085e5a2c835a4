//! Pre-flight: the HTTP client for the target, and the checks made before anything is
//! sent — the target accepts connections, every fault's guardrails allow it.

use std::path::Path;

use super::{RunError, RunOptions};
use crate::chaos::runner::{Verdict, preflight as preflight_faults};
use crate::engine::ClientConfig;
use crate::engine::http::{Origin, ProbeError};
use crate::engine::tls::{Check, TlsTarget, Trust};
use crate::plan::Plan;
use crate::plan::Protocol;
use crate::plan::chaos::PlatformKind;
use crate::platform::{compose, local};

/// The client configuration for the plan's (already resolved) target.
pub(super) async fn client(plan: &Plan, options: &RunOptions) -> Result<ClientConfig, RunError> {
    let target = &plan.target;
    let address = target.base.resolved.expect("prepare resolved the target");
    let origin = Origin::new(
        target.base.tls,
        &target.base.host,
        target.base.port,
        address,
    )
    .map_err(RunError::BadInput)?;
    let tls = match (target.base.tls, target.tls_verify) {
        (false, _) => None,
        // Nothing to trust: the platform's CA is not even looked for.
        (true, false) => Some(
            TlsTarget::new(&target.base.host, Check::Off, target.protocol)
                .map_err(RunError::BadInput)?,
        ),
        (true, true) => {
            let trust = trust(plan, options).await?;
            Some(
                TlsTarget::new(
                    &target.base.host,
                    Check::Verify(trust.as_ref()),
                    target.protocol,
                )
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

/// The certificates to trust besides the public roots: `--ca-file` (or `LOADGEN_CA_FILE`),
/// else the scenario's `ca_file` (relative to the scenario file, like data files), else
/// what the platform adapter knows: the local stack's CA for the very URL it serves, the
/// Compose project's CA read out of its container.
async fn trust(plan: &Plan, options: &RunOptions) -> Result<Option<Trust>, RunError> {
    if let Some(file) = &options.ca_file {
        return Ok(Some(Trust::File(file.clone())));
    }
    if let Some(file) = &plan.target.ca_file {
        let base = options.scenario.parent().unwrap_or(Path::new("."));
        return Ok(Some(Trust::File(base.join(file))));
    }
    let chaos = &plan.chaos;
    match chaos.platform {
        PlatformKind::Compose => {
            let project = chaos.compose_project.as_deref().unwrap_or_default();
            let pem = compose::ca_pem(chaos.docker_host.as_deref(), project)
                .await
                .map_err(|e| RunError::CouldNotRun(format!("the platform's CA: {e}")))?;
            Ok(pem.map(|pem| Trust::Pem {
                pem,
                from: format!("Compose project {project}"),
            }))
        }
        // A Kubernetes platform's CA is the operator's to give (`--ca-file`): the adapter
        // knows only the API server's.
        PlatformKind::Kubernetes => Ok(None),
        PlatformKind::Local => Ok(local::ca_file_for(
            &plan.target.base.to_string(),
            chaos.stack_state.as_deref(),
        )
        .map(Trust::File)),
    }
}

/// Resolves every fault's targets against the live environment before any traffic: a fault
/// its guardrails refuse (e.g. one that would take down every replica) stops the run here.
pub(super) async fn faults(plan: &Plan) -> Result<(), RunError> {
    if plan.chaos.faults.is_empty() {
        return Ok(());
    }
    let refusals: Vec<String> =
        preflight_faults(&plan.chaos, &mut super::fault_backends(&plan.chaos))
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
pub(super) async fn target(client: &mut ClientConfig, plan: &Plan) -> Result<(), RunError> {
    let base = &plan.target.base;
    let sources = &plan.target.source_addrs;
    if let Some(source) = sources.iter().find(|ip| !is_local(**ip)) {
        return Err(RunError::BadInput(format!(
            "source address {source} is not an address of this host (source_addrs)"
        )));
    }
    let addr = client.origin.addr;
    let multiplexed = client
        .probe(sources.first().copied())
        .await
        .map_err(|why| match why {
            // It answered: "is the platform up" would send the reader the wrong way.
            ProbeError::Certificate(refusal) => RunError::CouldNotRun(format!(
                "target {base} ({addr}) answered with a certificate loadgen refuses: {refusal}"
            )),
            ProbeError::NotH2c(why) => RunError::CouldNotRun(format!(
                "target {base} ({addr}) is not an h2c server: {why}"
            )),
            ProbeError::Unreachable(why) => RunError::CouldNotRun(format!(
                "target {base} ({addr}) is unreachable: {why}; is the platform up?"
            )),
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
