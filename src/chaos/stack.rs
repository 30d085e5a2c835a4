//! The local stack's state file (written by `docker/local/stack.sh up`): which instances run
//! where, so process faults can find their targets and restart them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct StackState {
    pub state_dir: PathBuf,
    #[serde(default)]
    pub stack_script: Option<PathBuf>,
    #[serde(default)]
    pub backends: Vec<Instance>,
    #[serde(default)]
    pub nginx: Option<Instance>,
    #[serde(default)]
    pub postgres: Option<Instance>,
    #[serde(default)]
    pub redis: Option<Instance>,
    #[serde(default)]
    pub prometheus: Option<Instance>,
    #[serde(default)]
    pub proxies: Vec<ProxyLink>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Instance {
    #[serde(default)]
    pub name: Option<String>,
    pub pid: i32,
    #[serde(default)]
    pub port: Option<u16>,
}

/// A link the stack routes through a loadgen fault proxy.
#[derive(Debug, Clone, Deserialize)]
pub struct ProxyLink {
    pub name: String,
    pub control: String,
}

impl StackState {
    pub fn load(path: &Path) -> Result<StackState, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the stack state file {}: {e} (is the local stack up?)",
                path.display()
            )
        })?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a stack state file: {e}", path.display()))
    }

    /// Every named instance: the backends by their names, the services by theirs.
    pub fn instances(&self) -> Vec<(String, i32)> {
        let mut out: Vec<(String, i32)> = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    b.name
                        .clone()
                        .unwrap_or_else(|| format!("backend-{}", i + 1)),
                    b.pid,
                )
            })
            .collect();
        for (name, instance) in [
            ("nginx", &self.nginx),
            ("postgres", &self.postgres),
            ("redis", &self.redis),
            ("prometheus", &self.prometheus),
        ] {
            if let Some(instance) = instance {
                out.push((name.to_string(), instance.pid));
            }
        }
        out
    }

    /// The PID and port the state file gives instance `name` now.
    pub fn instance(&self, name: &str) -> Option<(i32, Option<u16>)> {
        let named = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let n = b
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("backend-{}", i + 1));
                (n, b)
            })
            .chain(
                [
                    ("nginx", &self.nginx),
                    ("postgres", &self.postgres),
                    ("redis", &self.redis),
                    ("prometheus", &self.prometheus),
                ]
                .into_iter()
                .filter_map(|(n, i)| i.as_ref().map(|i| (n.to_string(), i))),
            )
            .find(|(n, _)| n == name);
        named.map(|(_, i)| (i.pid, i.port))
    }

    /// The stack script that starts instances again: the one the state file names, else
    /// `docker/local/stack.sh` beside the state directory's parent (the repository).
    pub fn script(&self) -> PathBuf {
        self.stack_script.clone().unwrap_or_else(|| {
            self.state_dir
                .parent()
                .unwrap_or(Path::new("."))
                .join("docker/local/stack.sh")
        })
    }
}

/// Where the state file is: the scenario's `[chaos] stack_state`, else `LOADGEN_STACK_STATE`,
/// else `.stack/state.json` under the working directory.
pub fn state_path(configured: Option<&Path>) -> PathBuf {
    configured
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("LOADGEN_STACK_STATE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".stack/state.json"))
}

/// `*` matches any run of characters, `?` one; everything else itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("backend-*", "backend-2"));
        assert!(glob_match("b?ck*", "backend"));
        assert!(!glob_match("backend-*", "postgres"));
        assert!(glob_match("postgres", "postgres"));
    }
}
