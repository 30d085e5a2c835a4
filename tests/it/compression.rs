//! Compressed responses: loadgen offers gzip, br and zstd, decodes what it reads, and bounds
//! the inflated bytes of every compressed body by `max_body`, whether a step reads it or
//! not — a bomb fails `body_too_large` without the memory.

use crate::support::server::{LARGE_JSON, TestServer};
use crate::support::{Workspace, options, run_ok};

fn scenario(url: &str, target_lines: &str, journeys: &str) -> String {
    scenario_at(url, "10/s", target_lines, journeys)
}

fn scenario_at(url: &str, rate: &str, target_lines: &str, journeys: &str) -> String {
    format!(
        r#"name = "encoded"
[target]
base_url = "{url}"
{target_lines}
[load]
model = "open"
[[load.stage]]
duration = "2s"
rate = "{rate}"
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

/// A step with no check and no extraction reads nothing of its body, but `max_body` holds
/// for it all the same: 290,000 bytes of JSON sent in a few hundred compressed ones are
/// `body_too_large` under 256 KiB, in every coding loadgen decodes, and pass under 512 KiB.
#[test]
fn a_compressed_body_no_step_reads_is_bounded_by_max_body_once_inflated() {
    const CODINGS: [&str; 4] = ["gzip", "deflate", "br", "zstd"];
    const { assert!(256 * 1024 < LARGE_JSON && LARGE_JSON < 512 * 1024) };
    let server = TestServer::start();
    let workspace = Workspace::new();
    let journeys = CODINGS
        .iter()
        .map(|c| {
            format!(
                r#"[[journey]]
name = "{c}"
[[journey.step]]
name = "get"
url = "/encoded/large/{c}"
"#
            )
        })
        .collect::<String>();
    let mut served_before = 0;
    for (max_body, too_large) in [("256KiB", true), ("512KiB", false)] {
        let file = workspace.write(
            &format!("large-{max_body}.toml"),
            &scenario_at(
                &server.url(),
                "20/s",
                &format!("max_body = \"{max_body}\"\ncompression = \"gzip, deflate, br, zstd\""),
                &journeys,
            ),
        );
        let mut options = options(&file, &workspace.out());
        options.seed = Some(1);
        let (_, summary) = run_ok(&options);
        for coding in CODINGS {
            let journey = summary.journeys.iter().find(|j| j.name == coding).unwrap();
            let step = &journey.steps[0];
            assert!(step.requests > 0, "{max_body} {coding}: {step:?}");
            let failed = if too_large { step.requests } else { 0 };
            assert_eq!(step.errors, failed, "{max_body} {coding}: {step:?}");
            assert_eq!(
                step.errors_by_class
                    .get("body_too_large")
                    .copied()
                    .unwrap_or(0),
                failed,
                "{max_body} {coding}: {step:?}"
            );
        }
        // Every request loadgen counted reached the server, and nothing more did.
        let served = server
            .seen()
            .iter()
            .filter(|s| s.path.starts_with("/encoded/large/"))
            .count() as u64;
        assert_eq!(
            summary.totals.requests,
            served - served_before,
            "{max_body}: counted against served"
        );
        served_before = served;
    }
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

/// A step that checks the body (it is inflated into memory) and one that does not (it is
/// inflated only to be counted): both stop at the limit.
#[test]
fn a_bomb_that_inflates_past_a_gibibyte_is_body_too_large_in_bounded_memory() {
    for (kept, check) in [
        ("kept", r#"check = { body_contains = "never" }"#),
        ("not kept", ""),
    ] {
        bomb_is_body_too_large_in_bounded_memory(kept, check);
    }
}

fn bomb_is_body_too_large_in_bounded_memory(kept: &str, check: &str) {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write(
        "bomb.toml",
        &scenario(
            &server.url(),
            "max_body = \"1MiB\"",
            &format!(
                r#"[[journey]]
name = "bomb"
[[journey.step]]
name = "get"
url = "/encoded/bomb"
{check}
"#
            ),
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
    assert!(
        totals["requests"].as_u64().unwrap() >= 10,
        "{kept}: {totals}"
    );
    assert_eq!(
        totals["errors_by_class"]["body_too_large"], totals["requests"],
        "{kept}: {totals}"
    );
    let served = server.seen().len() as u64;
    assert_eq!(
        totals["requests"].as_u64(),
        Some(served),
        "{kept}: {totals}"
    );
    assert!(peak_kb > 0, "the memory was read");
    assert!(
        peak_kb < 100 * 1024,
        "{kept}: max RSS {} MB while 2 GiB bombs were read",
        peak_kb / 1024
    );
    eprintln!("bomb, {kept}: max RSS {} MB", peak_kb / 1024);
}
