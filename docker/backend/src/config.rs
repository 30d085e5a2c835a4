//! Configuration, read only from environment variables.
//!
//! Every setting is checked at start; a missing or malformed one is reported by name
//! (all of them at once) and the process exits with code 2 before touching anything.

use std::fmt;
use std::net::SocketAddr;
#[cfg(feature = "lossy")]
use std::path::PathBuf;

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
    /// `LOSSY_WRITES` + `LOSSY_LOG`: the test-only lossy mode, when both are set.
    #[cfg(feature = "lossy")]
    pub lossy: Option<Lossy>,
}

/// Test-only: acknowledge a fraction of new enrolments and payments but roll them back,
/// so a drill harness can prove it notices writes that were acknowledged yet lost.
#[cfg(feature = "lossy")]
#[derive(Debug, Clone, PartialEq)]
pub struct Lossy {
    /// `LOSSY_WRITES`: the probability, in (0, 1], that one such write is lost.
    pub fraction: f64,
    /// `LOSSY_LOG`: every lost write is appended here as `<kind> <id>`.
    pub log: PathBuf,
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
        #[cfg(feature = "lossy")]
        let lossy = lossy(&lookup, &mut problems);
        #[cfg(not(feature = "lossy"))]
        refuse_lossy(&lookup, &mut problems);

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
            #[cfg(feature = "lossy")]
            lossy,
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

/// `LOSSY_WRITES` and `LOSSY_LOG`, which go together: losing writes without a record of
/// which ones would leave a drill nothing to check its findings against.
#[cfg(feature = "lossy")]
fn lossy(lookup: &impl Fn(&str) -> Option<String>, problems: &mut Vec<String>) -> Option<Lossy> {
    let log = lookup("LOSSY_LOG");
    let Some(raw) = lookup("LOSSY_WRITES") else {
        if log.is_some() {
            problems.push("LOSSY_LOG is set without LOSSY_WRITES: set both or neither".into());
        }
        return None;
    };
    // Both comparisons are false for NaN, so it is refused along with 0 and infinity.
    let fraction = match raw.trim().parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Some(f),
        _ => {
            problems.push(format!(
                "LOSSY_WRITES={raw:?} must be a fraction above 0 and at most 1 (e.g. 0.01)"
            ));
            None
        }
    };
    let log = match log.as_deref().map(str::trim) {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            problems.push(
                "LOSSY_WRITES needs LOSSY_LOG, the file that lists every write it loses".into(),
            );
            None
        }
    };
    Some(Lossy {
        fraction: fraction?,
        log: log?,
    })
}

/// A build without the `lossy` feature has no lossy mode: asking for one is a mistake
/// (most likely a shipped binary started with a test's environment), not something to
/// ignore silently. Compiled into tests as well: `cargo test` always builds with the
/// feature (see Cargo.toml), so this is the only way its tests can run.
#[cfg(any(test, not(feature = "lossy")))]
fn refuse_lossy(lookup: &impl Fn(&str) -> Option<String>, problems: &mut Vec<String>) {
    for name in ["LOSSY_WRITES", "LOSSY_LOG"] {
        if lookup(name).is_some() {
            problems.push(format!(
                "{name} needs a build with the test-only `lossy` feature"
            ));
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

    /// What a build without the feature says (its wiring into `from_lookup` is checked by
    /// starting a default build with LOSSY_WRITES set: it exits 2 with this message).
    #[test]
    fn without_the_feature_lossy_settings_are_refused() {
        let mut problems = Vec::new();
        refuse_lossy(&lookup(GOOD), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        refuse_lossy(
            &lookup(&[("LOSSY_WRITES", "0.5"), ("LOSSY_LOG", "/tmp/lost.log")]),
            &mut problems,
        );
        assert_eq!(
            problems,
            [
                "LOSSY_WRITES needs a build with the test-only `lossy` feature",
                "LOSSY_LOG needs a build with the test-only `lossy` feature",
            ]
        );
    }

    #[cfg(feature = "lossy")]
    fn with_lossy(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut pairs = GOOD.to_vec();
        pairs.extend_from_slice(extra);
        Config::from_lookup(lookup(&pairs))
    }

    #[cfg(feature = "lossy")]
    #[test]
    fn lossy_is_off_unless_asked_for() {
        assert_eq!(with_lossy(&[]).unwrap().lossy, None);
    }

    #[cfg(feature = "lossy")]
    #[test]
    fn lossy_takes_a_fraction_and_a_log() {
        for (raw, fraction) in [("1", 1.0), ("0.25", 0.25), (" 1e-3 ", 0.001)] {
            let c = with_lossy(&[("LOSSY_WRITES", raw), ("LOSSY_LOG", "/tmp/lost.log")]).unwrap();
            assert_eq!(
                c.lossy,
                Some(Lossy {
                    fraction,
                    log: PathBuf::from("/tmp/lost.log")
                }),
                "{raw}"
            );
        }
    }

    #[cfg(feature = "lossy")]
    #[test]
    fn lossy_fraction_must_be_above_zero_and_at_most_one() {
        for raw in ["0", "-0.5", "1.01", "NaN", "inf", "half", ""] {
            let err =
                with_lossy(&[("LOSSY_WRITES", raw), ("LOSSY_LOG", "/tmp/lost.log")]).unwrap_err();
            assert!(
                err.to_string().contains("LOSSY_WRITES") && err.0.len() == 1,
                "{raw:?}: {err}"
            );
        }
    }

    #[cfg(feature = "lossy")]
    #[test]
    fn lossy_writes_and_log_go_together() {
        let err = with_lossy(&[("LOSSY_WRITES", "0.5")]).unwrap_err();
        assert!(err.to_string().contains("needs LOSSY_LOG"), "{err}");
        let err = with_lossy(&[("LOSSY_WRITES", "0.5"), ("LOSSY_LOG", " ")]).unwrap_err();
        assert!(err.to_string().contains("needs LOSSY_LOG"), "{err}");
        let err = with_lossy(&[("LOSSY_LOG", "/tmp/lost.log")]).unwrap_err();
        assert!(err.to_string().contains("without LOSSY_WRITES"), "{err}");
    }
}
