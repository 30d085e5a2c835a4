//! Pre-flight: the HTTP client for the target, and the checks made before anything is
//! sent — the target accepts connections, every fault's guardrails allow it.

use std::path::Path;

use super::{RunError, RunOptions};
use crate::chaos::runner::{Verdict, preflight as preflight_faults};
use crate::engine::ClientConfig;
use crate::engine::tls::TlsTarget;
use crate::scenario::Plan;
use crate::scenario::plan::BaseUrl;

/// The client configuration for the plan's (already resolved) target.
pub fn client(plan: &Plan, options: &RunOptions) -> Result<ClientConfig, RunError> {
    let target = &plan.target;
    let address = target.base.resolved.expect("prepare resolved the target");
    Ok(ClientConfig {
        addr: address,
        host: http::HeaderValue::from_str(&target.base.authority()).map_err(|_| {
            RunError::BadInput(format!("`{}` is not a valid host", target.base.host))
        })?,
        connect_timeout: target.connect_timeout,
        request_timeout: target.request_timeout,
        max_body: target.max_body,
        accept_encoding: target
            .compression
            .then(|| http::HeaderValue::from_static(crate::engine::http::ACCEPT_ENCODING)),
        tls: match target.base.tls {
            false => None,
            true => {
                // `ca_file` is written relative to the scenario file, like data files.
                let ca_file = target.ca_file.as_ref().map(|file| {
                    options
                        .scenario
                        .parent()
                        .unwrap_or(Path::new("."))
                        .join(file)
                });
                Some(
                    TlsTarget::new(&target.base.host, ca_file.as_deref())
                        .map_err(RunError::BadInput)?,
                )
            }
        },
    })
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

/// Refuses to start against a target that does not accept connections: a run against
/// nothing would only measure refusals.
pub async fn target(client: &ClientConfig, base: &BaseUrl) -> Result<(), RunError> {
    client.probe().await.map_err(|why| {
        RunError::CouldNotRun(format!(
            "target {base} ({}) is unreachable: {why}; is the platform up{}?",
            client.addr,
            if client.tls.is_some() {
                ", and does its certificate match the host and a trusted CA (ca_file)"
            } else {
                ""
            }
        ))
    })
}
