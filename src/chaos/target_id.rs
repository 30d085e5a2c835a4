//! A fault target's identity within its backend, typed. Each backend names its targets in
//! one form (a PID, a container id, a Kubernetes object, a proxy link's control address, a
//! TCP port on loopback or in a container); on disk (the ledger, summary.json) the id is
//! the text it always was, read back by the target's backend, so a malformed id is refused
//! where the ledger is read instead of wherever a backend happened to split the string.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Target;
use crate::plan::chaos::BackendKind;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetId {
    /// A local process.
    Pid(i32),
    /// A container, by the engine's id.
    Container(String),
    /// A Kubernetes pod or deployment: `namespace/name`.
    Object { namespace: String, name: String },
    /// A proxied link, by its proxy's control address.
    Link(String),
    /// A TCP port on the host's loopback (`tcp/PORT`) or in a container's network
    /// namespace (`CONTAINER/tcp/PORT`).
    Port {
        container: Option<String>,
        port: u16,
    },
}

impl TargetId {
    /// The id `text` names for a target of `backend`.
    pub(crate) fn parse(backend: BackendKind, text: &str) -> Result<TargetId, String> {
        let bad = |form: &str| format!("`{text}` is not a {backend} target id ({form})");
        match backend {
            BackendKind::Process => text
                .parse()
                .ok()
                .filter(|pid| *pid > 0)
                .map(TargetId::Pid)
                .ok_or_else(|| bad("a PID")),
            BackendKind::Docker if !text.is_empty() && !text.contains('/') => {
                Ok(TargetId::Container(text.to_string()))
            }
            BackendKind::Docker => Err(bad("a container id")),
            BackendKind::Kube => match text.split_once('/') {
                Some((namespace, name))
                    if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
                {
                    Ok(TargetId::Object {
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                    })
                }
                _ => Err(bad("namespace/name")),
            },
            BackendKind::Proxy if !text.is_empty() => Ok(TargetId::Link(text.to_string())),
            BackendKind::Proxy => Err(bad("a proxy's control address")),
            BackendKind::Firewall => {
                let (container, port) = match text.split_once("/tcp/") {
                    Some((container, port))
                        if !container.is_empty() && !container.contains('/') =>
                    {
                        (Some(container.to_string()), port)
                    }
                    Some(_) => return Err(bad("tcp/PORT or CONTAINER/tcp/PORT")),
                    None => match text.strip_prefix("tcp/") {
                        Some(port) => (None, port),
                        None => return Err(bad("tcp/PORT or CONTAINER/tcp/PORT")),
                    },
                };
                let port = port.parse::<u16>().ok().filter(|p| *p != 0);
                port.map(|port| TargetId::Port { container, port })
                    .ok_or_else(|| bad("a TCP port from 1 to 65535"))
            }
        }
    }

    /// The Kubernetes namespace the target is in, if it is an object.
    pub(crate) fn namespace(&self) -> Option<&str> {
        match self {
            TargetId::Object { namespace, .. } => Some(namespace),
            _ => None,
        }
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetId::Pid(pid) => write!(f, "{pid}"),
            TargetId::Container(id) | TargetId::Link(id) => f.write_str(id),
            TargetId::Object { namespace, name } => write!(f, "{namespace}/{name}"),
            TargetId::Port {
                container: None,
                port,
            } => write!(f, "tcp/{port}"),
            TargetId::Port {
                container: Some(container),
                port,
            } => write!(f, "{container}/tcp/{port}"),
        }
    }
}

/// A target as the ledger and summary.json write it: the id as text, read by its backend.
#[derive(Serialize, Deserialize)]
pub(super) struct TargetRecord {
    backend: BackendKind,
    id: String,
    name: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

impl TryFrom<TargetRecord> for Target {
    type Error = String;

    fn try_from(record: TargetRecord) -> Result<Target, String> {
        Ok(Target {
            id: TargetId::parse(record.backend, &record.id)?,
            backend: record.backend,
            name: record.name,
            labels: record.labels,
        })
    }
}

impl From<Target> for TargetRecord {
    fn from(target: Target) -> TargetRecord {
        TargetRecord {
            backend: target.backend,
            id: target.id.to_string(),
            name: target.name,
            labels: target.labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_backends_ids_read_back_as_written() {
        for (backend, text) in [
            (BackendKind::Process, "4242"),
            (BackendKind::Docker, "3f2a9c"),
            (BackendKind::Kube, "shop/api-7d9f8b6c5d-x2x7k"),
            (BackendKind::Proxy, "127.0.0.1:7070"),
            (BackendKind::Firewall, "tcp/8080"),
            (BackendKind::Firewall, "abc123/tcp/5432"),
        ] {
            let id = TargetId::parse(backend, text).unwrap();
            assert_eq!(id.to_string(), text);
        }
        assert_eq!(
            TargetId::parse(BackendKind::Firewall, "abc123/tcp/5432").unwrap(),
            TargetId::Port {
                container: Some("abc123".into()),
                port: 5432
            }
        );
    }

    #[test]
    fn an_id_of_another_form_is_refused() {
        for bad in [
            "10.0.0.1/5432",
            "tcp/0",
            "a/b/tcp/1",
            "/tcp/80",
            "tcp/x",
            "8080",
        ] {
            assert!(
                TargetId::parse(BackendKind::Firewall, bad).is_err(),
                "{bad}"
            );
        }
        for (backend, bad) in [
            (BackendKind::Process, "abc"),
            (BackendKind::Process, "0"),
            (BackendKind::Kube, "api"),
            (BackendKind::Kube, "shop/api/x"),
            (BackendKind::Docker, ""),
            (BackendKind::Proxy, ""),
        ] {
            assert!(TargetId::parse(backend, bad).is_err(), "{backend} {bad}");
        }
    }

    #[test]
    fn a_target_is_written_as_before_and_a_malformed_one_is_refused() {
        let json = r#"{"backend":"kube","id":"shop/api-1","name":"api-1","labels":{}}"#;
        let target: Target = serde_json::from_str(json).unwrap();
        assert_eq!(target.id.namespace(), Some("shop"));
        assert_eq!(serde_json::to_string(&target).unwrap(), json);
        let bad = r#"{"backend":"process","id":"shop/api-1","name":"x"}"#;
        let error = serde_json::from_str::<Target>(bad).unwrap_err().to_string();
        assert!(error.contains("is not a process target id"), "{error}");
    }
}
