//! The baseline gate: two runs of an unchanged target compare clean (exit 0); a target made
//! slower fails the gate (exit 1) with the regression named in comparison.json.
//!
//! 400 requests a run, so a p99 is not one stray request on a shared machine (the gate does
//! not weigh sample counts yet: issue 26).

use std::path::PathBuf;

use crate::support::Workspace;
use crate::support::server::TestServer;

fn scenario(url: &str, path: &str) -> String {
    format!(
        r#"name = "gate"
[target]
base_url = "{url}"
[load]
model = "open"
start_rate = "200/s"
[[load.stage]]
duration = "2s"
rate = "200/s"
[[journey]]
name = "j"
[[journey.step]]
name = "get"
url = "{path}"
"#
    )
}

fn run(workspace: &Workspace, file: &str, extra: &[&str]) -> (Option<i32>, PathBuf) {
    let out = workspace.out();
    let mut args = vec!["run", file, "--out", out.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    let output = crate::support::loadgen_command()
        .args(&args)
        .output()
        .unwrap();
    let dir = PathBuf::from(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim(),
    );
    (output.status.code(), dir)
}

#[test]
fn an_unchanged_target_passes_and_a_slower_one_fails_the_gate() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let fast = workspace.write("fast.toml", &scenario(&server.url(), "/hello"));
    let slow = workspace.write("slow.toml", &scenario(&server.url(), "/slow/40"));

    let (code, base) = run(&workspace, fast.to_str().unwrap(), &[]);
    assert_eq!(code, Some(0));
    let (code, again) = run(&workspace, fast.to_str().unwrap(), &[]);
    assert_eq!(code, Some(0));
    let output = crate::support::loadgen_command()
        .args(["compare", base.to_str().unwrap(), again.to_str().unwrap()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{table}");
    assert!(table.contains("no regression beyond tolerance"), "{table}");
    assert!(again.join("comparison.html").exists());

    // The nightly gate: the same scenario against a target now 40 ms slower.
    let (code, slower) = run(
        &workspace,
        slow.to_str().unwrap(),
        &["--baseline", base.to_str().unwrap()],
    );
    assert_eq!(code, Some(1), "a 40 ms slowdown must fail the gate");
    let comparison: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(slower.join("comparison.json")).unwrap())
            .unwrap();
    assert_eq!(comparison["regressed"], true);
    let regressed: Vec<String> = comparison["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["regressed"] == true)
        .map(|r| {
            format!(
                "{} {}",
                r["scope"].as_str().unwrap(),
                r["metric"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        regressed.contains(&"j/get p50_us".to_string()),
        "{regressed:?}"
    );
    assert!(
        regressed.contains(&"all p95_us".to_string()),
        "{regressed:?}"
    );
    // 400 successful responses cannot bound a p99 at 99 % confidence (that takes 528):
    // not compared, and said so — neither a pass nor a regression.
    let p99 = comparison["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["scope"] == "all" && r["metric"] == "p99_us")
        .unwrap();
    assert_eq!(p99["status"], "not_compared", "{p99}");
    assert_eq!(p99["regressed"], false, "{p99}");
    // The terminal speaks in units, with intervals and evidence, and marks what moved
    // beyond tolerance and what was not compared.
    let output = crate::support::loadgen_command()
        .args(["compare", base.to_str().unwrap(), slower.to_str().unwrap()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{table}");
    let p95 = table
        .lines()
        .find(|l| l.contains(" all ") && l.contains(" p95 "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        p95.starts_with('✗') && p95.contains(" ms [") && p95.contains("beyond tolerance ("),
        "{p95}"
    );
    let p99 = table
        .lines()
        .find(|l| l.contains(" all ") && l.contains(" p99 "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        p99.starts_with('·') && p99.contains("not compared: 400 and 400"),
        "{p99}"
    );
    assert!(
        table.contains(" pts"),
        "the error rate's change is in points: {table}"
    );
    assert!(table.contains("per planned"), "{table}");
    // comparison.html draws both runs' spectra on one chart, with the numbers behind it.
    let html = std::fs::read_to_string(slower.join("comparison.html")).unwrap();
    assert!(html.contains(r#"<figure id="chart-spectrum">"#));
    let spectra = crate::support::json_block(&html, "spectrum-data");
    for (side, dir) in [("base", &base), ("current", &slower)] {
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
                .unwrap();
        let p99 = spectra[side]["points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["percentile"] == 99.0)
            .map(|p| p["latency_us"].clone());
        assert_eq!(
            p99,
            Some(summary["totals"]["latency_us"]["p99"].clone()),
            "{side}"
        );
    }
    assert!(!table.contains("_us"), "no raw metric names: {table}");
}

#[test]
fn a_baseline_of_another_schema_version_is_refused_before_anything_is_sent() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let fast = workspace.write("fast.toml", &scenario(&server.url(), "/hello"));
    let (code, base) = run(&workspace, fast.to_str().unwrap(), &[]);
    assert_eq!(code, Some(0));
    // The run directory as an older loadgen wrote it: summary schema version 2.
    let path = base.join("summary.json");
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    summary["schema_version"] = 2.into();
    std::fs::write(&path, summary.to_string()).unwrap();

    let output = crate::support::loadgen_command()
        .args(["compare", base.to_str().unwrap(), base.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("schema version 2"), "{stderr}");
    assert!(stderr.contains("Re-baseline"), "{stderr}");

    let sent = server.seen().len();
    let gate = crate::support::loadgen_command()
        .args(["run", fast.to_str().unwrap(), "--quiet", "--baseline"])
        .arg(&base)
        .arg("--out")
        .arg(workspace.out())
        .output()
        .unwrap();
    assert_eq!(gate.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&gate.stderr).contains("Re-baseline"));
    assert_eq!(server.seen().len(), sent, "nothing was sent");
}

/// Baselines older loadgens wrote — committed as they wrote them, each from the same
/// scenario — are still read: the gate compares against them, and the comparison covers
/// the steps both runs have.
#[test]
fn a_baseline_of_schema_5_is_still_compared() {
    an_older_baseline_is_still_compared(5);
}

#[test]
fn a_baseline_of_schema_6_is_still_compared() {
    an_older_baseline_is_still_compared(6);
}

#[test]
fn a_baseline_of_schema_7_is_still_compared() {
    an_older_baseline_is_still_compared(7);
}

#[test]
fn a_baseline_of_schema_9_is_still_compared() {
    an_older_baseline_is_still_compared(9);
}

fn an_older_baseline_is_still_compared(version: u64) {
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/run-v{version}"));
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        base["schema_version"], version,
        "the fixture is of schema {version}"
    );
    let server = TestServer::start();
    let workspace = Workspace::new();
    let scenario = std::fs::read_to_string(fixture.join("scenario.toml"))
        .unwrap()
        .replace("http://127.0.0.1:18080", &server.url());
    let file = workspace.write(&format!("v{version}.toml"), &scenario);
    let (code, current) = run(
        &workspace,
        file.to_str().unwrap(),
        &["--baseline", fixture.to_str().unwrap()],
    );
    assert!(
        matches!(code, Some(0) | Some(1)),
        "the gate ran (exit {code:?}), it did not refuse the baseline"
    );
    let comparison: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(current.join("comparison.json")).unwrap())
            .unwrap();
    let scopes: Vec<&str> = comparison["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["scope"].as_str().unwrap())
        .collect();
    for scope in ["all", "browse/home", "browse/missing"] {
        assert!(scopes.contains(&scope), "{scope} compared: {scopes:?}");
    }
    let output = crate::support::loadgen_command()
        .args([
            "compare",
            fixture.to_str().unwrap(),
            current.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        matches!(output.status.code(), Some(0) | Some(1)),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A clean run whose generator was not the bottleneck (a loaded machine may need another
/// go, as a nightly may need another night): only such a run's latency is a baseline.
fn valid_baseline(workspace: &Workspace, scenario: &std::path::Path) -> PathBuf {
    for _ in 0..4 {
        let (code, dir) = run(workspace, scenario.to_str().unwrap(), &[]);
        assert_eq!(code, Some(0));
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
                .unwrap();
        if summary["generator"]["saturated"] == false {
            return dir;
        }
    }
    panic!("four runs in a row had the generator as their bottleneck");
}

/// A low-volume step with a known heavy tail (one request in 20 takes 25 ms more): two clean
/// runs do not flag it — its p99 is not compared (150 samples cannot bound it) and its p95's
/// intervals overlap — and the same step 20 ms slower is caught on the percentiles that can
/// be bounded.
#[test]
fn a_heavy_tail_on_a_low_volume_step_does_not_flap_and_a_real_slowdown_is_caught() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let scenario = |path: &str| {
        format!(
            r#"name = "tail"
[target]
base_url = "{}"
[load]
model = "open"
start_rate = "75/s"
[[load.stage]]
duration = "2s"
rate = "75/s"
[[journey]]
name = "j"
[[journey.step]]
name = "tail"
url = "{path}"
"#,
            server.url()
        )
    };
    let clean = workspace.write("clean.toml", &scenario("/tail/0"));
    let slower = workspace.write("slower.toml", &scenario("/tail/20"));
    let first = valid_baseline(&workspace, &clean);
    let second = valid_baseline(&workspace, &clean);
    let compared = |base: &PathBuf, current: &PathBuf| {
        let output = crate::support::loadgen_command()
            .args(["compare", base.to_str().unwrap(), current.to_str().unwrap()])
            .output()
            .unwrap();
        let comparison: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(current.join("comparison.json")).unwrap(),
        )
        .unwrap();
        (output, comparison)
    };
    let row = |comparison: &serde_json::Value, scope: &str, metric: &str| {
        comparison["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["scope"] == scope && r["metric"] == metric)
            .cloned()
            .unwrap_or_else(|| panic!("{scope} {metric}"))
    };
    for (base, current) in [(&first, &second), (&second, &first)] {
        let (output, comparison) = compared(base, current);
        let table = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{table}");
        let p99 = row(&comparison, "j/tail", "p99_us");
        assert_eq!(p99["status"], "not_compared", "{p99}");
        assert!(
            p99["reason"]
                .as_str()
                .unwrap()
                .contains("too few to bound p99"),
            "{p99}"
        );
        assert!(table.contains("not compared: "), "{table}");
        let p95 = row(&comparison, "j/tail", "p95_us");
        assert_eq!(p95["status"], "within", "{p95}");
        assert!(p95["base_samples"].as_u64().unwrap() >= 140, "{p95}");
        assert!(p95["base_interval"].is_array(), "{p95}");
    }
    // A night that passes the gate and one that fails it: JUnit names every compared row
    // the same way both nights (each keeps its history in a CI tool), the gate's failure is
    // a failed case, and `loadgen report` gives the run's exit code, gate included.
    let (code, passing) = run(
        &workspace,
        clean.to_str().unwrap(),
        &["--baseline", first.to_str().unwrap()],
    );
    // The same step, 20 ms slower on every request.
    let (code_slow, slow) = run(
        &workspace,
        slower.to_str().unwrap(),
        &["--baseline", first.to_str().unwrap()],
    );
    assert_eq!(code_slow, Some(1), "a 20 ms slowdown must fail the gate");
    let names = |dir: &PathBuf| -> Vec<String> {
        let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
        junit
            .split("<testcase ")
            .skip(1)
            .map(|case| {
                let name = case.split(" name=\"").nth(1).unwrap();
                name[..name.find('"').unwrap()].replace("&#x2f;", "/")
            })
            .collect()
    };
    if code == Some(0) {
        assert_eq!(
            names(&passing),
            names(&slow),
            "the same case names both nights"
        );
    }
    assert!(
        names(&slow).contains(&"baseline: j/tail p50".to_string()),
        "{:?}",
        names(&slow)
    );
    assert!(names(&slow).contains(&"outcome".to_string()));
    let junit = std::fs::read_to_string(slow.join("junit.xml")).unwrap();
    let p50_case = junit
        .split("<testcase ")
        .find(|c| c.contains(r#"name="baseline: j&#x2f;tail p50""#))
        .unwrap();
    assert!(p50_case.contains("<failure "), "{p50_case}");
    assert!(junit.contains(r#"<testcase classname="run" name="outcome" time=""#));
    let html = std::fs::read_to_string(slow.join("report.html")).unwrap();
    assert!(html.contains(r#"<h2 id="baseline">Baseline comparison</h2>"#));
    assert!(html.contains(r#"<a href="comparison.html">"#));
    let report = crate::support::loadgen_command()
        .args(["report", slow.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        report.status.code(),
        Some(1),
        "the run's exit code, gate included"
    );
    let comparison: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(slow.join("comparison.json")).unwrap())
            .unwrap();
    let p50 = row(&comparison, "j/tail", "p50_us");
    assert_eq!(p50["status"], "regressed", "{p50}");
    let [low, _] = [p50["current_interval"][0].as_f64().unwrap(), 0.0];
    let high = p50["base_interval"][1].as_f64().unwrap();
    assert!(low > high + 10_000.0, "{p50}");
    // The request counts behind it are what the server saw.
    let seen = server
        .seen()
        .iter()
        .filter(|r| r.path.starts_with("/tail/"))
        .count() as u64;
    let requests: u64 = std::fs::read_dir(workspace.out())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|dir| dir.join("summary.json").exists())
        .map(|dir| {
            let summary: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
                    .unwrap();
            summary["totals"]["requests"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(requests, seen);
}

/// Topology, identity and several baselines: an instance that served a third of the
/// baseline and nothing now is a regression of its own (whatever the latency says); a
/// baseline of another scenario is refused before anything is sent unless asked for; the
/// last nights together are one envelope; `--out` is created.
#[test]
fn an_instance_gone_silent_another_scenario_and_several_baselines() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let scenario = |name: &str, instances: &str| {
        format!(
            r#"name = "{name}"
[target]
base_url = "{}"
[load]
model = "open"
start_rate = "60/s"
[[load.stage]]
duration = "2s"
rate = "60/s"
[data.generator.instance]
kind = "pick"
values = [{instances}]
[[journey]]
name = "j"
[[journey.step]]
name = "get"
url = "/by/{{{{instance}}}}"
"#,
            server.url()
        )
    };
    let three = workspace.write("three.toml", &scenario("topology", r#""a", "b", "c""#));
    let two = workspace.write("two.toml", &scenario("topology", r#""a", "b""#));
    let other = workspace.write("other.toml", &scenario("another", r#""a", "b", "c""#));
    let (code, night1) = run(&workspace, three.to_str().unwrap(), &[]);
    assert_eq!(code, Some(0));
    let (code, night2) = run(&workspace, three.to_str().unwrap(), &[]);
    assert_eq!(code, Some(0));

    // Two nights as one envelope: the same platform passes.
    let out = workspace.dir.path().join("not/yet/there");
    let output = crate::support::loadgen_command()
        .args([
            "compare",
            night1.to_str().unwrap(),
            night2.to_str().unwrap(),
            night2.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{table}");
    let comparison: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("comparison.json")).unwrap())
            .unwrap();
    assert!(
        comparison["base"].as_str().unwrap().contains(", "),
        "two bases named"
    );
    let served_c = comparison["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "served_by:c")
        .cloned()
        .unwrap();
    assert_eq!(served_c["status"], "within", "{served_c}");
    // Two bases: the samples behind the base side are both nights'.
    assert!(
        served_c["base_samples"].as_u64().unwrap() >= 20,
        "{served_c}"
    );

    // Instance c stops serving: its own row regresses, named in the terminal.
    let before = server.seen().len();
    let (code, silent) = run(
        &workspace,
        two.to_str().unwrap(),
        &[
            "--baseline",
            night1.to_str().unwrap(),
            "--baseline",
            night2.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1), "an instance gone silent fails the gate");
    assert!(server.seen().len() > before);
    let comparison: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(silent.join("comparison.json")).unwrap())
            .unwrap();
    let rows = comparison["rows"].as_array().unwrap();
    let served_c = rows.iter().find(|r| r["metric"] == "served_by:c").unwrap();
    assert_eq!(served_c["status"], "regressed", "{served_c}");
    assert_eq!(served_c["current_samples"], 0, "{served_c}");
    assert!(
        served_c["current_text"]
            .as_str()
            .unwrap()
            .starts_with("0 of "),
        "{served_c}"
    );
    // Nothing else moved: c's row is the regression.
    let others: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["regressed"] == true && r["metric"] != "served_by:c")
        .collect();
    assert!(
        others
            .iter()
            .all(|r| r["metric"].as_str().unwrap().starts_with("served_by:")),
        "{others:#?}"
    );

    // A baseline of another scenario: refused before a request is sent (exit 2)…
    let before = server.seen().len();
    let out_dir = workspace.out();
    let output = crate::support::loadgen_command()
        .args([
            "run",
            other.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--quiet",
            "--baseline",
            night1.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("a run of scenario `topology`, not `another`"),
        "{stderr}"
    );
    assert_eq!(server.seen().len(), before, "nothing was sent");
    // …and compared when asked for.
    let (code, _) = run(
        &workspace,
        other.to_str().unwrap(),
        &[
            "--baseline",
            night1.to_str().unwrap(),
            "--baseline-any-scenario",
        ],
    );
    assert_eq!(code, Some(0));
}

/// A CI job under `--quiet` still learns why: each failing objective (measured against its
/// threshold) and each regressed row on stderr; the run directory in `--run-dir-file`; on
/// GitHub Actions the failures as `::error::` annotations and a Markdown summary appended to
/// `GITHUB_STEP_SUMMARY`.
#[test]
fn a_quiet_ci_run_says_why_it_failed() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let with_slo = |path: &str| {
        scenario(&server.url(), path)
            + "[[slo]]\nname = \"fast enough\"\nobjective = \"p50 < 20ms\"\n"
    };
    let fast = workspace.write("fast.toml", &with_slo("/hello"));
    let slow = workspace.write("slow.toml", &with_slo("/slow/40"));
    let base = valid_baseline(&workspace, &fast);
    let summary_file = workspace.dir.path().join("step-summary.md");
    let run_dir_file = workspace.dir.path().join("run-dir.txt");
    let out = workspace.out();
    let output = crate::support::loadgen_command()
        .args([
            "run",
            slow.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
            "--baseline",
            base.to_str().unwrap(),
            "--run-dir-file",
            run_dir_file.to_str().unwrap(),
        ])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let run_dir = stdout.lines().next().unwrap().trim().to_string();
    assert_eq!(
        std::fs::read_to_string(&run_dir_file).unwrap().trim(),
        run_dir
    );
    assert!(
        stderr.contains("error: objective `fast enough` [run] fail: p50 "),
        "{stderr}"
    );
    assert!(stderr.contains("(objective < 20.0ms)"), "{stderr}");
    assert!(stderr.contains("error: baseline: j/get p50: "), "{stderr}");
    assert!(stderr.contains("beyond tolerance ("), "{stderr}");
    assert!(
        stdout.contains("::error title=loadgen::objective `fast enough`"),
        "{stdout}"
    );
    let markdown = std::fs::read_to_string(&summary_file).unwrap();
    assert!(
        markdown.starts_with("## loadgen: gate — FAIL (exit 1)"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| fast enough | run | fail |"),
        "{markdown}"
    );
    assert!(markdown.contains("Baseline gate: "), "{markdown}");
    assert!(markdown.contains("- baseline: j/get p50:"), "{markdown}");
}
