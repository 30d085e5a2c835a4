//! The Docker Compose adapter: a project's containers are the ones Compose labels with
//! its name, and its fault proxies are those of them labelled `loadgen.proxy = NAME`, with
//! `loadgen.proxy.control = PORT` naming the container port of the control API, which the
//! project publishes on 127.0.0.1 (docker/docker-compose.yml's `postgres-proxy`). The
//! container labelled `loadgen.ca = PATH` holds, at PATH, the CA that signed the platform's
//! TLS certificate (its nginx makes both at start): a drill against the project trusts it
//! without being told.

use std::collections::HashMap;

use bollard::query_parameters::ListContainersOptions;

use super::ProxyLink;

/// The label Compose puts on every container of a project.
pub(crate) const PROJECT_LABEL: &str = "com.docker.compose.project";
/// A proxy container's link name.
pub(crate) const PROXY_LABEL: &str = "loadgen.proxy";
/// A proxy container's control API port, inside the container.
pub(crate) const CONTROL_LABEL: &str = "loadgen.proxy.control";

/// The label naming, inside its container, the PEM file of the platform's CA.
pub(crate) const CA_LABEL: &str = "loadgen.ca";

/// The project's CA (PEM), read out of the running container labelled `loadgen.ca`;
/// `None` when no container carries the label.
pub(crate) async fn ca_pem(
    docker_host: Option<&str>,
    project: &str,
) -> Result<Option<String>, String> {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    use futures::StreamExt;
    let backend = crate::chaos::docker::DockerBackend::connect(docker_host)
        .await
        .map_err(|e| e.to_string())?;
    let docker = backend.client();
    let containers = labelled(docker, project, CA_LABEL).await?;
    let Some(container) = containers.into_iter().next() else {
        return Ok(None);
    };
    let id = container.id.unwrap_or_default();
    let path = container
        .labels
        .unwrap_or_default()
        .get(CA_LABEL)
        .cloned()
        .unwrap_or_default();
    let exec = docker
        .create_exec(
            &id,
            CreateExecOptions {
                cmd: Some(vec!["cat".to_string(), path.clone()]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("reading {path} in {id:.12}: {e}"))?;
    let StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&exec.id, None)
        .await
        .map_err(|e| format!("reading {path} in {id:.12}: {e}"))?
    else {
        return Err(format!("reading {path} in {id:.12}: no output attached"));
    };
    let mut pem = String::new();
    while let Some(chunk) = output.next().await {
        if let bollard::container::LogOutput::StdOut { message } =
            chunk.map_err(|e| format!("reading {path} in {id:.12}: {e}"))?
        {
            pem.push_str(&String::from_utf8_lossy(&message));
        }
    }
    if !pem.contains("BEGIN CERTIFICATE") {
        return Err(format!(
            "{path} in container {id:.12} ({CA_LABEL}) holds no PEM certificate"
        ));
    }
    Ok(Some(pem))
}

/// The project's running containers that carry `label`.
async fn labelled(
    docker: &bollard::Docker,
    project: &str,
    label: &str,
) -> Result<Vec<bollard::models::ContainerSummary>, String> {
    let filters: HashMap<String, Vec<String>> = [(
        "label".to_string(),
        vec![project_filter(project), label.to_string()],
    )]
    .into();
    docker
        .list_containers(Some(ListContainersOptions {
            all: false,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| {
            format!("listing Compose project {project}'s containers labelled {label}: {e}")
        })
}

/// The `label=…` filter that keeps a Docker listing to the project's containers.
pub(crate) fn project_filter(project: &str) -> String {
    format!("{PROJECT_LABEL}={project}")
}

/// The project's running proxies, sorted by name.
pub(crate) async fn proxies(
    docker_host: Option<&str>,
    project: &str,
) -> Result<Vec<ProxyLink>, String> {
    let backend = crate::chaos::docker::DockerBackend::connect(docker_host)
        .await
        .map_err(|e| e.to_string())?;
    let docker = backend.client();
    let containers = labelled(docker, project, PROXY_LABEL).await?;
    let mut links = Vec::new();
    for container in containers {
        let labels = container.labels.unwrap_or_default();
        let (Some(name), Some(control)) = (labels.get(PROXY_LABEL), labels.get(CONTROL_LABEL))
        else {
            continue;
        };
        let control: u16 = control
            .parse()
            .map_err(|_| format!("{CONTROL_LABEL} = {control:?} is not a port"))?;
        // Only a loopback publication: the control API has no authentication.
        let published = container.ports.unwrap_or_default().into_iter().find(|p| {
            p.private_port == control
                && p.ip.as_deref() == Some("127.0.0.1")
                && p.public_port.is_some()
        });
        let Some(port) = published.and_then(|p| p.public_port) else {
            return Err(format!(
                "proxy {name} of Compose project {project} does not publish its control port {control} on 127.0.0.1"
            ));
        };
        links.push(ProxyLink {
            name: name.clone(),
            control: format!("http://127.0.0.1:{port}"),
        });
    }
    links.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(links)
}
