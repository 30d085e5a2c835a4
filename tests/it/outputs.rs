//! The run directory: summary.json against its committed schema, series.csv and the
//! histogram logs agreeing with the totals.

use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

use crate::support::schema::assert_matches_schema;
use crate::support::server::TestServer;
use crate::support::{Workspace, options, run_ok};

fn scenario(url: &str) -> String {
    format!(
        r#"name = "outputs"
[target]
base_url = "{url}"
[load]
model = "open"
start_rate = "50/s"
[[load.stage]]
duration = "2s"
rate = "50/s"
[[journey]]
name = "j"
[[journey.step]]
name = "hello"
url = "/hello"
[[journey.step]]
name = "missing"
url = "/nowhere"
expect = [200, 404]
"#
    )
}

#[test]
fn summary_json_matches_its_schema() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write("s.toml", &scenario(&server.url()));
    let (run_dir, _) = run_ok(&options(&file, &workspace.out()));
    let (instance, validator) = assert_matches_schema(&run_dir);
    // And the schema is strict enough to catch a broken summary.
    let mut broken = instance.clone();
    broken["totals"]["requests"] = serde_json::json!("many");
    assert!(!validator.is_valid(&broken));
}

#[test]
fn series_and_histograms_add_up_to_the_totals() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write("s.toml", &scenario(&server.url()));
    let (run_dir, summary) = run_ok(&options(&file, &workspace.out()));
    assert_eq!(summary.totals.requests, 200);
    assert_eq!(server.seen().len(), 200);

    let mut reader = csv::Reader::from_path(run_dir.join("series.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let scope = headers.iter().position(|h| h == "scope").unwrap();
    let requests = headers.iter().position(|h| h == "requests").unwrap();
    let mut per_second_total = 0;
    let mut seconds = 0;
    for record in reader.records() {
        let record = record.unwrap();
        if &record[scope] == "all" {
            per_second_total += record[requests].parse::<u64>().unwrap();
            seconds += 1;
        }
    }
    assert_eq!(per_second_total, 200);
    assert!(seconds >= 2, "one row per second of the run");

    // The interval log holds the same requests, losslessly: decode and add up "all".
    let log = std::fs::read(run_dir.join("histograms/intervals.hlog")).unwrap();
    let mut deserializer = Deserializer::new();
    let mut merged: hdrhistogram::Histogram<u64> = hdrhistogram::Histogram::new(3).unwrap();
    merged.auto(true);
    for entry in IntervalLogIterator::new(&log) {
        if let Ok(LogEntry::Interval(interval)) = entry
            && interval.tag().map(|t| t.as_str()) == Some("all")
        {
            let bytes = base64_decode(interval.encoded_histogram());
            let histogram: hdrhistogram::Histogram<u64> =
                deserializer.deserialize(&mut bytes.as_slice()).unwrap();
            merged.add(&histogram).unwrap();
        }
    }
    assert_eq!(merged.len(), 200);
    assert_eq!(merged.max(), summary.totals.latency_us.max);
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|c| *c == byte).expect("base64") as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}
