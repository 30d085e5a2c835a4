//! The faults the proxy applies: typed values for the code, and a strict JSON form (whole
//! milliseconds, a `kind` tag) for the control API. Both go through one `validate`, so a
//! fault set from Rust and one PUT over HTTP obey the same rules.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest delay accepted: a fault is a drill, not an outage. A larger value is far more
/// likely a unit slip (seconds typed as milliseconds) than an intent, and a latency this
/// long is a blackhole anyway.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(600);

/// Which way a fault applies, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client → upstream (requests).
    Upstream,
    /// Upstream → client (responses).
    Downstream,
    #[default]
    Both,
}

impl Direction {
    /// Whether a fault set for `self` applies to bytes flowing `way` (`Upstream` or
    /// `Downstream`).
    pub fn includes(self, way: Direction) -> bool {
        self == Direction::Both || self == way
    }
}

/// What the proxy does to the connections it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FaultJson", into = "FaultJson")]
pub enum Fault {
    /// Each chunk leaves `delay` ± uniform `jitter` after it arrived; byte order is kept
    /// (a chunk never overtakes the one before it).
    Latency {
        delay: Duration,
        jitter: Duration,
        direction: Direction,
    },
    /// A token bucket per connection and direction, refilled at `bytes_per_second`.
    Bandwidth {
        bytes_per_second: u64,
        direction: Direction,
    },
    /// Live connections are reset (RST); new ones are reset as soon as they are accepted.
    Reset,
    /// Connections are accepted and read; the bytes are dropped and nothing is answered.
    Blackhole,
    /// A close (FIN) from either side reaches the other side `delay` late.
    SlowClose { delay: Duration },
    /// The listening socket is closed (connects are refused); it is reopened on clear.
    /// Live connections carry on.
    Refuse,
}

/// Why a fault was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultError(String);

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FaultError {}

impl Fault {
    /// Rejects values that cannot mean what they say: zero delays and rates (never read a
    /// bad value as "no fault"), jitter larger than the delay (the delay would have to go
    /// below zero), delays beyond `MAX_DELAY`.
    pub fn validate(&self) -> Result<(), FaultError> {
        let fail = |message: String| Err(FaultError(message));
        match *self {
            Fault::Latency { delay, jitter, .. } => {
                if delay.is_zero() {
                    return fail(
                        "latency: delay_ms must be at least 1 (to remove latency, clear the fault)"
                            .into(),
                    );
                }
                check_max("latency", "delay_ms", delay)?;
                if jitter > delay {
                    return fail(format!(
                        "latency: jitter_ms ({}) must not exceed delay_ms ({}): a delay cannot go below zero",
                        jitter.as_millis(),
                        delay.as_millis()
                    ));
                }
                Ok(())
            }
            Fault::Bandwidth {
                bytes_per_second, ..
            } => {
                if bytes_per_second == 0 {
                    return fail("bandwidth: bytes_per_second must be at least 1 (to stop traffic, use blackhole)".into());
                }
                Ok(())
            }
            Fault::SlowClose { delay } => {
                if delay.is_zero() {
                    return fail("slow_close: delay_ms must be at least 1".into());
                }
                check_max("slow_close", "delay_ms", delay)
            }
            Fault::Reset | Fault::Blackhole | Fault::Refuse => Ok(()),
        }
    }
}

fn check_max(kind: &str, field: &str, value: Duration) -> Result<(), FaultError> {
    if value > MAX_DELAY {
        return Err(FaultError(format!(
            "{kind}: {field} ({}) is above the maximum of {} ms",
            value.as_millis(),
            MAX_DELAY.as_millis()
        )));
    }
    Ok(())
}

/// The wire form: integers in milliseconds, unknown fields refused so a misspelt
/// `jiter_ms` is an error rather than a silent zero.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum FaultJson {
    Latency {
        delay_ms: u64,
        #[serde(default)]
        jitter_ms: u64,
        #[serde(default)]
        direction: Direction,
    },
    Bandwidth {
        bytes_per_second: u64,
        #[serde(default)]
        direction: Direction,
    },
    // Empty braces, not unit variants: serde ignores stray fields next to the tag of a
    // unit variant even with `deny_unknown_fields`.
    Reset {},
    Blackhole {},
    SlowClose {
        delay_ms: u64,
    },
    Refuse {},
}

impl TryFrom<FaultJson> for Fault {
    type Error = FaultError;

    fn try_from(json: FaultJson) -> Result<Fault, FaultError> {
        let fault = match json {
            FaultJson::Latency {
                delay_ms,
                jitter_ms,
                direction,
            } => Fault::Latency {
                delay: Duration::from_millis(delay_ms),
                jitter: Duration::from_millis(jitter_ms),
                direction,
            },
            FaultJson::Bandwidth {
                bytes_per_second,
                direction,
            } => Fault::Bandwidth {
                bytes_per_second,
                direction,
            },
            FaultJson::Reset {} => Fault::Reset,
            FaultJson::Blackhole {} => Fault::Blackhole,
            FaultJson::SlowClose { delay_ms } => Fault::SlowClose {
                delay: Duration::from_millis(delay_ms),
            },
            FaultJson::Refuse {} => Fault::Refuse,
        };
        fault.validate()?;
        Ok(fault)
    }
}

impl From<Fault> for FaultJson {
    fn from(fault: Fault) -> FaultJson {
        // Sub-millisecond parts (possible only from Rust) are dropped: the wire speaks ms.
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        match fault {
            Fault::Latency {
                delay,
                jitter,
                direction,
            } => FaultJson::Latency {
                delay_ms: ms(delay),
                jitter_ms: ms(jitter),
                direction,
            },
            Fault::Bandwidth {
                bytes_per_second,
                direction,
            } => FaultJson::Bandwidth {
                bytes_per_second,
                direction,
            },
            Fault::Reset => FaultJson::Reset {},
            Fault::Blackhole => FaultJson::Blackhole {},
            Fault::SlowClose { delay } => FaultJson::SlowClose {
                delay_ms: ms(delay),
            },
            Fault::Refuse => FaultJson::Refuse {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Fault, String> {
        serde_json::from_str::<Fault>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn every_kind_parses_and_round_trips() {
        let cases = [
            (
                r#"{"kind":"latency","delay_ms":200,"jitter_ms":20,"direction":"both"}"#,
                Fault::Latency {
                    delay: Duration::from_millis(200),
                    jitter: Duration::from_millis(20),
                    direction: Direction::Both,
                },
            ),
            (
                r#"{"kind":"bandwidth","bytes_per_second":65536,"direction":"downstream"}"#,
                Fault::Bandwidth {
                    bytes_per_second: 65536,
                    direction: Direction::Downstream,
                },
            ),
            (r#"{"kind":"reset"}"#, Fault::Reset),
            (r#"{"kind":"blackhole"}"#, Fault::Blackhole),
            (
                r#"{"kind":"slow_close","delay_ms":500}"#,
                Fault::SlowClose {
                    delay: Duration::from_millis(500),
                },
            ),
            (r#"{"kind":"refuse"}"#, Fault::Refuse),
        ];
        for (json, fault) in cases {
            assert_eq!(parse(json), Ok(fault), "{json}");
            let written = serde_json::to_string(&fault).unwrap();
            assert_eq!(parse(&written), Ok(fault), "{written}");
        }
    }

    #[test]
    fn optional_fields_default_to_no_jitter_both_ways() {
        assert_eq!(
            parse(r#"{"kind":"latency","delay_ms":50}"#),
            Ok(Fault::Latency {
                delay: Duration::from_millis(50),
                jitter: Duration::ZERO,
                direction: Direction::Both,
            })
        );
    }

    #[test]
    fn bad_values_are_rejected_with_a_clear_message() {
        let cases = [
            (
                r#"{"kind":"latency","delay_ms":100,"jitter_ms":150}"#,
                "jitter_ms (150) must not exceed delay_ms (100)",
            ),
            (
                r#"{"kind":"latency","delay_ms":0}"#,
                "delay_ms must be at least 1",
            ),
            (r#"{"kind":"latency","delay_ms":-5}"#, "invalid value"),
            (r#"{"kind":"latency","delay_ms":1.5}"#, "invalid type"),
            (r#"{"kind":"latency","delay_ms":"100ms"}"#, "invalid type"),
            (r#"{"kind":"latency"}"#, "missing field `delay_ms`"),
            (
                r#"{"kind":"latency","delay_ms":100,"jiter_ms":5}"#,
                "unknown field `jiter_ms`",
            ),
            (
                r#"{"kind":"latency","delay_ms":100,"direction":"sideways"}"#,
                "unknown variant `sideways`",
            ),
            (
                r#"{"kind":"latency","delay_ms":600001}"#,
                "above the maximum of 600000 ms",
            ),
            (
                r#"{"kind":"bandwidth","bytes_per_second":0}"#,
                "bytes_per_second must be at least 1",
            ),
            (
                r#"{"kind":"slow_close","delay_ms":0}"#,
                "delay_ms must be at least 1",
            ),
            (
                r#"{"kind":"reset","delay_ms":5}"#,
                "unknown field `delay_ms`",
            ),
            (r#"{"kind":"jitter"}"#, "unknown variant `jitter`"),
            (r#"{"delay_ms":100}"#, "missing field `kind`"),
        ];
        for (json, expected) in cases {
            let error = parse(json).expect_err(json);
            assert!(error.contains(expected), "{json}: {error}");
        }
    }

    #[test]
    fn faults_built_in_rust_obey_the_same_rules() {
        let bad = Fault::Latency {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(11),
            direction: Direction::Upstream,
        };
        assert!(bad.validate().is_err());
        assert!(Fault::Reset.validate().is_ok());
    }
}
