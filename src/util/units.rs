//! Typed quantities written as strings in scenarios: durations, rates, sizes, percentages.
//!
//! Every parser rejects what it does not understand: a malformed value is an error, never
//! zero (Goose's `parse_timespan("foo") == 0` is the anti-pattern this module exists to avoid).

use std::time::Duration;

/// Parses `"250ms"`, `"2s"`, `"1.5m"`, `"1h"`, `"500us"`, and compounds like `"2m30s"`.
/// A bare number is refused because its unit would be a guess.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let mut rest = text;
    let mut seconds = 0.0;
    while !rest.is_empty() {
        let (number, unit, tail) = split_part(rest).ok_or_else(|| {
            format!(
                "`{text}` is not a duration (expected e.g. \"250ms\", \"2s\", \"1.5m\", \"2m30s\")"
            )
        })?;
        let seconds_per_unit = match unit {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "`{text}` has no unit (write \"{text}s\" or \"{text}ms\")"
                ));
            }
            other => {
                return Err(format!(
                    "unknown duration unit `{other}` in `{text}` (expected us, ms, s, m or h)"
                ));
            }
        };
        seconds += number * seconds_per_unit;
        rest = tail;
    }
    if text.is_empty() {
        return Err("an empty string is not a duration".to_string());
    }
    if !seconds.is_finite() || seconds > 1e9 {
        return Err(format!("duration `{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Splits `"2m30s"` into `(2, "m", "30s")`: a number, the letters after it, the rest.
fn split_part(text: &str) -> Option<(f64, &str, &str)> {
    let (number, after) = split_number(text)?;
    let unit_len = after
        .find(|c: char| c.is_ascii_digit() || c == '.')
        .unwrap_or(after.len());
    Some((number, after[..unit_len].trim(), &after[unit_len..]))
}

/// A rate of events per second, parsed from `"50/s"`, `"3000/m"`, `"2/h"`.
pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, per) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not a rate (expected e.g. \"50/s\" or \"3000/m\")"))?;
    let count: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{number}` in rate `{text}` is not a number"))?;
    if !(count.is_finite() && count >= 0.0) {
        return Err(format!("rate `{text}` must be zero or positive"));
    }
    let seconds = match per.trim() {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown rate unit `/{other}` in `{text}` (expected /s, /m or /h)"
            ));
        }
    };
    Ok(count / seconds)
}

/// A byte size: `"512KiB"`, `"4MiB"`, `"1000B"`, `"1GiB"`; decimal `KB`/`MB` are accepted too.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = split_number(text)
        .ok_or_else(|| format!("`{text}` is not a size (expected e.g. \"512KiB\" or \"4MiB\")"))?;
    let multiplier: f64 = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "" => {
            return Err(format!(
                "`{text}` has no unit (write \"{text}B\" or \"{text}KiB\")"
            ));
        }
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (expected B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    let bytes = number * multiplier;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("size `{text}` is out of range"));
    }
    Ok(bytes.round() as u64)
}

/// A percentage between 0 and 100 inclusive, written with its `%` sign: `"99.9%"`.
pub(crate) fn parse_percent(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let number = text.strip_suffix('%').ok_or_else(|| {
        format!("`{text}` is not a percentage (write it with a % sign, e.g. \"1.5%\")")
    })?;
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage"))?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("percentage `{text}` must be between 0% and 100%"));
    }
    Ok(value)
}

/// Splits `"1.5ms"` into `(1.5, "ms")`. `None` when there is no leading non-negative number.
fn split_number(text: &str) -> Option<(f64, &str)> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    if end == 0 {
        return None;
    }
    let number: f64 = text[..end].parse().ok()?;
    Some((number, text[end..].trim()))
}

/// Formats a duration the way scenarios write them, for `loadgen plan` and reports.
pub(crate) fn format_duration(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{}ms", trim_float(ms))
    } else if ms < 120_000.0 {
        format!("{}s", trim_float(ms / 1000.0))
    } else {
        format!("{}m", trim_float(ms / 60_000.0))
    }
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("500us").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_duration("2m30s").unwrap(), Duration::from_secs(150));
        assert_eq!(parse_duration("1h1m1s").unwrap(), Duration::from_secs(3661));
    }

    #[test]
    fn bad_durations_are_errors_not_zero() {
        for bad in ["", "5", "foo", "-1s", "3sx", "s", "1..2s", "2m30"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rates_sizes_percents() {
        assert_eq!(parse_rate("50/s").unwrap(), 50.0);
        assert_eq!(parse_rate("3000/m").unwrap(), 50.0);
        assert!(parse_rate("50").is_err());
        assert!(parse_rate("-1/s").is_err());
        assert!(parse_rate("5/d").is_err());
        assert_eq!(parse_size("4MiB").unwrap(), 4 * 1024 * 1024);
        assert_eq!(parse_size("1000B").unwrap(), 1000);
        assert!(parse_size("4").is_err());
        assert!(parse_size("4MB?").is_err());
        assert_eq!(parse_percent("99.9%").unwrap(), 99.9);
        assert!(parse_percent("101%").is_err());
        assert!(parse_percent("1.5").is_err());
    }

    #[test]
    fn durations_format_back() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
    }
}
