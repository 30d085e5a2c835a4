//! Which cluster a run may touch. A scenario or the operator policy pins the kubeconfig
//! context (`kube_context`) or the API server (`kube_server`); before the first call the
//! pin is checked against where the client would go — an explicit `kube_api`, else the
//! kubeconfig's current context and its cluster's server — so a shell pointed at another
//! cluster is refused, not obeyed.

use kube::config::Kubeconfig;

use crate::chaos::ChaosError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pin {
    pub context: Option<String>,
    pub server: Option<String>,
}

impl Pin {
    /// Where `api` (or, without it, the kubeconfig) leads, checked against the pin.
    pub fn check(&self, api: Option<&str>) -> Result<(), ChaosError> {
        if self.context.is_none() && self.server.is_none() {
            return Ok(());
        }
        match api {
            Some(url) => {
                if let Some(context) = &self.context {
                    return Err(ChaosError::Refused(format!(
                        "kube_context `{context}` is pinned, but kube_api `{url}` bypasses the kubeconfig; pin kube_server instead"
                    )));
                }
                self.check_server(url, "kube_api")
            }
            None => {
                let config = Kubeconfig::read().map_err(|e| {
                    ChaosError::Refused(format!(
                        "the Kubernetes target is pinned but the kubeconfig cannot be read: {e}"
                    ))
                })?;
                self.check_kubeconfig(&config)
            }
        }
    }

    pub fn check_kubeconfig(&self, config: &Kubeconfig) -> Result<(), ChaosError> {
        let current = config.current_context.as_deref().unwrap_or("");
        if let Some(context) = &self.context
            && context != current
        {
            return Err(ChaosError::Refused(format!(
                "the kubeconfig's current context is `{current}`, not the pinned `{context}`: refusing to touch another cluster"
            )));
        }
        if self.server.is_some() {
            let server = config
                .contexts
                .iter()
                .find(|c| c.name == current)
                .and_then(|c| c.context.as_ref())
                .and_then(|c| config.clusters.iter().find(|k| k.name == c.cluster))
                .and_then(|k| k.cluster.as_ref())
                .and_then(|k| k.server.clone())
                .unwrap_or_default();
            self.check_server(&server, &format!("context `{current}`"))?;
        }
        Ok(())
    }

    fn check_server(&self, server: &str, from: &str) -> Result<(), ChaosError> {
        match &self.server {
            Some(pinned) if pinned.trim_end_matches('/') != server.trim_end_matches('/') => {
                Err(ChaosError::Refused(format!(
                    "{from} leads to API server `{server}`, not the pinned `{pinned}`: refusing to touch another cluster"
                )))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(current: &str) -> Kubeconfig {
        Kubeconfig::from_yaml(&format!(
            r#"apiVersion: v1
kind: Config
current-context: {current}
contexts:
- name: staging
  context: {{ cluster: staging, user: u }}
- name: prod
  context: {{ cluster: prod, user: u }}
clusters:
- name: staging
  cluster: {{ server: "https://10.0.0.1:6443" }}
- name: prod
  cluster: {{ server: "https://10.9.9.9:6443" }}
users:
- name: u
  user: {{}}
"#
        ))
        .unwrap()
    }

    #[test]
    fn the_current_context_and_its_server_must_match_the_pin() {
        let staging = Pin {
            context: Some("staging".into()),
            server: None,
        };
        assert!(staging.check_kubeconfig(&config("staging")).is_ok());
        let refused = staging
            .check_kubeconfig(&config("prod"))
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("current context is `prod`, not the pinned `staging`"),
            "{refused}"
        );
        let server = Pin {
            context: None,
            server: Some("https://10.0.0.1:6443/".into()),
        };
        assert!(server.check_kubeconfig(&config("staging")).is_ok());
        assert!(server.check_kubeconfig(&config("prod")).is_err());
        assert!(server.check(Some("https://10.0.0.1:6443")).is_ok());
        assert!(server.check(Some("http://127.0.0.1:8001")).is_err());
        assert!(staging.check(Some("http://127.0.0.1:8001")).is_err());
        assert!(Pin::default().check(Some("http://anything")).is_ok());
    }
}
