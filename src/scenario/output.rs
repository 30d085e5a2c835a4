//! `[output]`: where the figures go besides the run directory — `[output.prometheus]`
//! `listen` (serve `/metrics`) and `remote_write` (push to a receiver). The receiver's
//! host is held to the allow-list and the policy at prepare, as the target is.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::plan::output::{OutputPlan, PrometheusOut, RemoteWrite};
use crate::util::diag::Diagnostics;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutput {
    pub prometheus: Option<Spanned<RawPrometheusOut>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrometheusOut {
    /// `"127.0.0.1:9464"`; port 0 picks a free one (written to `metrics.addr`).
    pub listen: Option<Spanned<String>>,
    /// `"http://127.0.0.1:9090/api/v1/write"`.
    pub remote_write: Option<Spanned<String>>,
    /// How often to push (default 1 s).
    pub push_interval: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
}

/// The longest push interval: a receiver sees a stale series past 5 minutes.
const LONGEST_INTERVAL: Duration = Duration::from_secs(60);

pub(super) fn validate(
    raw: Option<&Spanned<RawOutput>>,
    diagnostics: &mut Diagnostics,
) -> OutputPlan {
    let Some(prometheus) = raw.and_then(|r| r.get_ref().prometheus.as_ref()) else {
        return OutputPlan::default();
    };
    let prometheus = prometheus.get_ref();
    let listen = prometheus.listen.as_ref().and_then(|listen| {
        parse_listen(listen.get_ref())
            .map_err(|e| diagnostics.push(listen.span(), format!("`listen`: {e}")))
            .ok()
    });
    let interval = super::prometheus::duration(
        prometheus.push_interval.as_ref(),
        "push_interval",
        diagnostics,
        |d| {
            (d >= Duration::from_secs(1) && d <= LONGEST_INTERVAL)
                .then_some(())
                .ok_or("from 1s to 60s (a receiver calls a series stale after 5 minutes)")
        },
    )
    .unwrap_or(RemoteWrite::DEFAULT_INTERVAL);
    let remote_write =
        prometheus
            .remote_write
            .as_ref()
            .and_then(|url| match parse_remote_write(url.get_ref()) {
                Ok(url) => Some(RemoteWrite {
                    url,
                    interval,
                    headers: prometheus
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                        .collect(),
                    resolved: None,
                }),
                Err(e) => {
                    diagnostics.push(url.span(), format!("`remote_write`: {e}"));
                    None
                }
            });
    if remote_write.is_none() && prometheus.remote_write.is_none() {
        if let Some(text) = &prometheus.push_interval {
            diagnostics.push(
                text.span(),
                "`push_interval` without `remote_write`: nothing is pushed",
            );
        }
        if let Some((name, value)) = prometheus.headers.iter().next() {
            diagnostics.push(
                value.span(),
                format!("header `{name}` without `remote_write`: nothing is pushed"),
            );
        }
    }
    OutputPlan {
        prometheus: PrometheusOut {
            listen,
            remote_write,
        },
    }
}

/// An address to listen on: `IP:PORT` (`[::1]:9464` for IPv6), or `localhost:PORT` for
/// 127.0.0.1 (no name is resolved: a listener's address is the user's to say); port 0
/// picks a free one.
pub(crate) fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    let loopback = text
        .strip_prefix("localhost:")
        .and_then(|port| port.parse::<u16>().ok())
        .map(|port| std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    loopback.or_else(|| text.parse().ok()).ok_or_else(|| {
        format!("`{text}` is not an address to listen on: write IP:PORT, such as 127.0.0.1:9464 (port 0 picks a free one)")
    })
}

fn parse_remote_write(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(format!("`{text}`: scheme `{other}` (http or https)")),
    }
    if url.host_str().is_none() {
        return Err(format!("`{text}` names no host"));
    }
    // A receiver listens at a path; the server's root answers a push with 404 or 405.
    if url.path() == "/" {
        return Err(format!(
            "`{text}` names no path: Prometheus receives at /api/v1/write (Mimir and Cortex at /api/v1/push)"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_an_ip_and_port_only() {
        assert_eq!(
            parse_listen("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert!(parse_listen("[::1]:9464").is_ok());
        assert_eq!(
            parse_listen("localhost:9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        let error = parse_listen("example.com:9464").unwrap_err();
        assert!(error.contains("IP:PORT"), "{error}");
        assert!(parse_listen("9464").is_err());
    }

    #[test]
    fn remote_write_is_an_http_url() {
        assert!(parse_remote_write("http://127.0.0.1:9090/api/v1/write").is_ok());
        assert!(
            parse_remote_write("ftp://127.0.0.1/")
                .unwrap_err()
                .contains("scheme")
        );
        assert!(parse_remote_write("127.0.0.1:9090").is_err());
        let error = parse_remote_write("http://127.0.0.1:9090").unwrap_err();
        assert!(error.contains("/api/v1/write"), "{error}");
    }
}
