//! A real Prometheus (Debian's 2.42, installed by `.ci/run`) for the test that needs one:
//! its own config and data directory, the remote-write receiver on, on a port found free
//! (Prometheus cannot report a port 0 it bound: the port is taken, freed, and given, and a
//! clash starts it again on another). Killed when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::eventually;
use crate::support::openmetrics::get;

pub struct Prometheus {
    pub address: std::net::SocketAddr,
    child: Child,
    /// Whether it has scrape targets (a receiver alone has none to wait for).
    scrapes: bool,
}

impl Prometheus {
    /// Starts Prometheus in `dir` with `scrape_configs` (YAML, may be empty) and waits until
    /// it is ready.
    pub fn start(dir: &Path, scrape_configs: &str) -> Prometheus {
        let prometheus = Self::start_unwaited(dir, scrape_configs);
        prometheus.wait_scraping();
        prometheus
    }

    /// `start` without waiting for the first scrape (a sparse scrape may not come soon).
    pub fn start_unwaited(dir: &Path, scrape_configs: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global:\n  scrape_interval: 1s\nscrape_configs:\n{scrape_configs}"),
        )
        .unwrap();
        for _ in 0..5 {
            let address = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let mut child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={address}"))
                .arg("--web.enable-remote-write-receiver")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("prometheus runs (Debian's package)");
            let ready = eventually(Duration::from_secs(30), || {
                matches!(child.try_wait(), Ok(Some(_)))
                    || get(address, "/-/ready").is_ok_and(|(status, _, _)| status == 200)
            });
            if ready && matches!(child.try_wait(), Ok(None)) {
                return Prometheus {
                    address,
                    child,
                    scrapes: !scrape_configs.trim().is_empty(),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("prometheus did not start");
    }

    /// Until every configured target has been tried once: Prometheus applies its targets
    /// some seconds after it is ready (its scrape manager reloads at most every 5 s), and a
    /// test's window must not fall before the first scrape.
    fn wait_scraping(&self) {
        if !self.scrapes {
            return;
        }
        let tried = eventually(Duration::from_secs(30), || {
            let Ok((200, _, body)) = get(self.address, "/api/v1/targets") else {
                return false;
            };
            let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            json["data"]["activeTargets"]
                .as_array()
                .is_some_and(|targets| {
                    !targets.is_empty() && targets.iter().all(|t| t["health"] != "unknown")
                })
        });
        assert!(tried, "prometheus never scraped its targets");
    }

    /// An instant query's result vector, `(labels, value)` per series.
    pub fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let path = format!(
            "/api/v1/query?query={}",
            percent_encoding::utf8_percent_encode(promql, percent_encoding::NON_ALPHANUMERIC)
        );
        let (status, head, body) = get(self.address, &path).expect("prometheus answers");
        assert_eq!(status, 200, "{head}\n{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"].clone(),
                    r["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }

    /// The one value of `promql`, when it has one series.
    pub fn value(&self, promql: &str) -> Option<f64> {
        match self.query(promql).as_slice() {
            [(_, value)] => Some(*value),
            _ => None,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
