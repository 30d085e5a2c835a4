//! The Docker Compose adapter: a project's containers are the ones Compose labels with
//! its name, and its fault proxies are those of them labelled `loadgen.proxy = NAME`, with
//! `loadgen.proxy.control = PORT` naming the container port of the control API, which the
//! project publishes on 127.0.0.1 (docker/docker-compose.yml's `postgres-proxy`).

use std::collections::HashMap;

use bollard::query_parameters::ListContainersOptions;

use super::ProxyLink;

/// The label Compose puts on every container of a project.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
/// A proxy container's link name.
pub const PROXY_LABEL: &str = "loadgen.proxy";
/// A proxy container's control API port, inside the container.
pub const CONTROL_LABEL: &str = "loadgen.proxy.control";

/// The `label=…` filter that keeps a Docker listing to the project's containers.
pub fn project_filter(project: &str) -> String {
    format!("{PROJECT_LABEL}={project}")
}

/// The project's running proxies, sorted by name.
pub async fn proxies(docker_host: Option<&str>, project: &str) -> Result<Vec<ProxyLink>, String> {
    let backend = crate::chaos::docker::DockerBackend::connect(docker_host)
        .await
        .map_err(|e| e.to_string())?;
    let docker = backend.client();
    let filters: HashMap<String, Vec<String>> = [(
        "label".to_string(),
        vec![project_filter(project), PROXY_LABEL.to_string()],
    )]
    .into();
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: false,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| format!("listing the proxies of Compose project {project}: {e}"))?;
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
