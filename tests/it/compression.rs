//! Compressed responses: loadgen offers gzip, br and zstd, decodes what it reads, and bounds
//! the inflated bytes by `max_body` — a bomb fails `body_too_large` without the memory.

use crate::server::TestServer;
use crate::support::{Workspace, options, run_ok};

fn scenario(url: &str, target_lines: &str, journeys: &str) -> String {
    format!(
        r#"name = "encoded"
[target]
base_url = "{url}"
{target_lines}
[load]
model = "open"
[[load.stage]]
duration = "2s"
rate = "10/s"
{journeys}"#
    )
}

#[test]
fn gzip_and_brotli_bodies_are_decoded_before_extraction_and_checks() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let journeys = ["gzip", "br"]
        .iter()
        .map(|e| {
            format!(
                r#"[[journey]]
name = "{e}"
[[journey.step]]
name = "get"
url = "/encoded/{e}"
extract = {{ token = "/token" }}
check = {{ json = {{ "/token" = "{e}-token" }} }}
[[journey.step]]
name = "use"
url = "/hello?t={{{{token}}}}"
"#
            )
        })
        .collect::<String>();
    let file = workspace.write("enc.toml", &scenario(&server.url(), "", &journeys));
    let (_, summary) = run_ok(&options(&file, &workspace.out()));
    assert_eq!(
        summary.totals.errors, 0,
        "{:?}",
        summary.totals.errors_by_class
    );
    assert!(summary.totals.requests >= 20);
    // The extracted tokens (from the decoded JSON) went out on the next step.
    let seen = server.seen();
    for encoding in ["gzip", "br"] {
        let used = seen
            .iter()
            .filter(|s| s.path == format!("/hello?t={encoding}-token"))
            .count() as u64;
        let journey = summary
            .journeys
            .iter()
            .find(|j| j.name == encoding)
            .unwrap();
        assert!(used > 0, "{encoding}");
        assert_eq!(
            used, journey.steps[1].requests,
            "{encoding}: every use carried the token"
        );
        assert_eq!(journey.steps[0].requests, journey.steps[1].requests);
    }

    // With compression off nothing is offered, and the server says so.
    let off = workspace.write(
        "off.toml",
        &scenario(&server.url(), "compression = false", &journeys),
    );
    let (_, summary) = run_ok(&options(&off, &workspace.out()));
    assert_eq!(
        summary.totals.errors_by_class.get("http_4xx"),
        Some(&summary.totals.errors),
        "406 for every encoded request: {:?}",
        summary.totals.errors_by_class
    );

    // An offer of its own: gzip only, so the brotli journey's first step is refused.
    let gzip_only = workspace.write(
        "gzip.toml",
        &scenario(&server.url(), "compression = \"gzip\"", &journeys),
    );
    let (_, summary) = run_ok(&options(&gzip_only, &workspace.out()));
    let by_name = |name: &str| summary.journeys.iter().find(|j| j.name == name).unwrap();
    assert_eq!(by_name("gzip").steps[0].errors, 0, "{:?}", by_name("gzip"));
    let br = &by_name("br").steps[0];
    assert!(br.requests > 0);
    assert_eq!(
        br.errors_by_class.get("http_4xx"),
        Some(&br.requests),
        "{br:?}"
    );
}

/// The loadgen binary's peak resident memory (VmHWM), polled until it exits.
fn run_watching_memory(args: &[&str]) -> (Option<i32>, u64) {
    let mut child = crate::support::loadgen_command()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), peak_kb);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_bomb_that_inflates_past_a_gibibyte_is_body_too_large_in_bounded_memory() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write(
        "bomb.toml",
        &scenario(
            &server.url(),
            "max_body = \"1MiB\"",
            r#"[[journey]]
name = "bomb"
[[journey.step]]
name = "get"
url = "/encoded/bomb"
check = { body_contains = "never" }
"#,
        ),
    );
    let out = workspace.out();
    let (code, peak_kb) = run_watching_memory(&[
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(matches!(code, Some(0 | 1)), "the run completed: {code:?}");
    let run_dir = crate::support::only_entry(&out);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    let totals = &summary["totals"];
    assert!(totals["requests"].as_u64().unwrap() >= 10, "{totals}");
    assert_eq!(
        totals["errors_by_class"]["body_too_large"], totals["requests"],
        "{totals}"
    );
    assert!(peak_kb > 0, "the memory was read");
    assert!(
        peak_kb < 100 * 1024,
        "max RSS {} MB while 2 GiB bombs were read",
        peak_kb / 1024
    );
    eprintln!("bomb: max RSS {} MB", peak_kb / 1024);
}
