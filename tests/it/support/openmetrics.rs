//! Reading an OpenMetrics page as a second witness would: python-prometheus-client's
//! OpenMetrics parser (Debian's python3-prometheus-client, installed by `.ci/run`, hence
//! Debian's interpreter rather than whichever `python3` is first on PATH). A page it
//! refuses fails the test with the parser's reason. Plus a plain HTTP GET.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One sample as the parser read it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Sample {
    pub family: String,
    pub kind: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        print(json.dumps({'family': f.name, 'kind': f.type, 'name': s.name, 'labels': s.labels, 'value': s.value}))
"#;

/// Every sample of `page`.
pub fn parse(page: &str) -> Vec<Sample> {
    let parsed = std::process::Command::new("/usr/bin/python3")
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(page.as_bytes())?;
            child.wait_with_output()
        })
        .expect("/usr/bin/python3 runs");
    assert!(
        parsed.status.success(),
        "the OpenMetrics parser refused the page: {}\n{page}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    String::from_utf8_lossy(&parsed.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("the parser's line is JSON"))
        .collect()
}

/// The sum of the samples named `name` whose labels include every pair of `having`.
pub fn sum(samples: &[Sample], name: &str, having: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            having
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// `GET path` on `address` over a fresh connection, HTTP/1.0 (so never a chunked body):
/// the status, the head and the body.
pub fn get(address: SocketAddr, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, head.to_string(), body.to_string()))
}
