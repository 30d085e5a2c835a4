//! Configuration, read only from environment variables.
//!
//! Every setting is checked at start; a missing or malformed one is reported by name
//! (all of them at once) and the process exits with code 2 before touching anything.

use std::fmt;
use std::net::SocketAddr;

/// Validated settings of one backend instance.
#[derive(Debug, Clone)]
pub struct Config {
    /// `BACKEND_LISTEN`: address to bind, e.g. `127.0.0.1:8081` or `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// `DATABASE_URL`: `postgres://user[:password]@host:port/db`.
    pub database_url: String,
    /// `REDIS_URL`: `redis://host:port[/db]`.
    pub redis_url: String,
    /// `INSTANCE_NAME`: sent back in `X-Instance` on every response.
    pub instance_name: String,
    /// `SEGMENT_BYTES`: size of each video segment (default 65536).
    pub segment_bytes: usize,
    /// `DB_POOL_SIZE`: Postgres connections per instance (default 16).
    pub db_pool_size: usize,
}

/// All the problems found in the environment, one per line.
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

const MAX_SEGMENT_BYTES: usize = 16 * 1024 * 1024;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut required = |name: &str| match lookup(name) {
            Some(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
            Some(_) => {
                problems.push(format!("{name} is empty"));
                None
            }
            None => {
                problems.push(format!("{name} is not set"));
                None
            }
        };
        let listen = required("BACKEND_LISTEN");
        let database_url = required("DATABASE_URL");
        let redis_url = required("REDIS_URL");
        let instance_name = required("INSTANCE_NAME");

        let listen = listen.and_then(|v| match v.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                problems.push(format!(
                    "BACKEND_LISTEN={v:?} is not an IP:port address (e.g. 127.0.0.1:8081)"
                ));
                None
            }
        });
        if let Some(url) = &database_url
            && url.parse::<tokio_postgres::Config>().is_err()
        {
            problems.push(format!(
                "DATABASE_URL={url:?} is not a Postgres URL (postgres://user@host:port/db)"
            ));
        }
        if let Some(url) = &redis_url
            && redis::Client::open(url.as_str()).is_err()
        {
            problems.push(format!(
                "REDIS_URL={url:?} is not a Redis URL (redis://host:port)"
            ));
        }
        if let Some(name) = &instance_name
            && !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            problems.push(format!(
                "INSTANCE_NAME={name:?} may only hold letters, digits, '-', '_' and '.'"
            ));
        }
        let segment_bytes = optional_number(
            &lookup,
            "SEGMENT_BYTES",
            65536,
            1..=MAX_SEGMENT_BYTES,
            &mut problems,
        );
        let db_pool_size = optional_number(&lookup, "DB_POOL_SIZE", 16, 1..=512, &mut problems);

        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(Config {
            listen: listen.expect("checked"),
            database_url: database_url.expect("checked"),
            redis_url: redis_url.expect("checked"),
            instance_name: instance_name.expect("checked"),
            segment_bytes,
            db_pool_size,
        })
    }
}

fn optional_number(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
    problems: &mut Vec<String>,
) -> usize {
    let Some(raw) = lookup(name) else {
        return default;
    };
    match raw.trim().parse::<usize>() {
        Ok(n) if range.contains(&n) => n,
        _ => {
            problems.push(format!(
                "{name}={raw:?} must be a whole number between {} and {}",
                range.start(),
                range.end()
            ));
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const GOOD: &[(&str, &str)] = &[
        ("BACKEND_LISTEN", "127.0.0.1:0"),
        (
            "DATABASE_URL",
            "postgres://platform@127.0.0.1:5432/platform",
        ),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("INSTANCE_NAME", "backend-1"),
    ];

    #[test]
    fn defaults_apply() {
        let c = Config::from_lookup(lookup(GOOD)).unwrap();
        assert_eq!(c.segment_bytes, 65536);
        assert_eq!(c.db_pool_size, 16);
        assert_eq!(c.instance_name, "backend-1");
    }

    #[test]
    fn every_problem_is_reported() {
        let err = Config::from_lookup(lookup(&[
            ("BACKEND_LISTEN", "nowhere"),
            ("SEGMENT_BYTES", "lots"),
            ("REDIS_URL", "http://x"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "BACKEND_LISTEN",
            "DATABASE_URL is not set",
            "INSTANCE_NAME is not set",
            "SEGMENT_BYTES",
            "REDIS_URL",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn zero_segment_is_rejected() {
        let mut pairs = GOOD.to_vec();
        pairs.push(("SEGMENT_BYTES", "0"));
        assert!(Config::from_lookup(lookup(&pairs)).is_err());
    }
}
