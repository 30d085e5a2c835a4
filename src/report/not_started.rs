//! A run that could not start (exit 3 at pre-flight: the target unreachable, a fault's
//! environment missing, verification's readings unreadable) still leaves a run directory a
//! CI job can publish: the scenario, junit.xml with one failing case saying why, and a
//! report.html that says the run did not happen — never one that could be taken for a run.

use std::path::{Path, PathBuf};

use minijinja::{Environment, context};

use crate::record::create_run_dir;
use crate::util::atomic::write_atomic;

const JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="loadgen" tests="1" failures="1">
<testsuite name="{{ scenario }}" tests="1" failures="1" skipped="0" time="0" timestamp="{{ at }}">
<testcase classname="run" name="outcome" time="0">
<failure message="the run could not start: {{ reason }}" type="exit_3">loadgen could not start this run: {{ reason }}
No load was sent and no fault was injected.</failure>
<system-out>exit 3</system-out></testcase>
</testsuite>
</testsuites>
"#;

const HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>loadgen: {{ scenario }} did not start</title>
<style>body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 900px; color: #222; } .fail { color: #c5221f; font-weight: 600; }</style>
</head>
<body>
<h1>{{ scenario }}: <span class="fail">NOT RUN</span></h1>
<p>loadgen could not start this run (exit 3): <b>{{ reason }}</b></p>
<p>No load was sent and no fault was injected, so there are no figures and no verdicts: this is not a report of a run. Attempted at {{ at }}.</p>
</body>
</html>
"#;

/// Writes the record of a run that could not start under `out`; its directory.
pub(crate) fn write(
    out: &Path,
    scenario: &str,
    redacted_source: &str,
    reason: &str,
) -> Option<PathBuf> {
    let at = jiff::Timestamp::now();
    let run_dir = create_run_dir(out, scenario, at).ok()?;
    let _ = std::fs::write(run_dir.join("scenario.toml"), redacted_source);
    let mut env = Environment::new();
    env.add_template("junit.xml", JUNIT).ok()?;
    env.add_template("report.html", HTML).ok()?;
    for name in ["junit.xml", "report.html"] {
        let text = env
            .get_template(name)
            .and_then(|t| t.render(context! { scenario, reason, at => at.to_string() }))
            .ok()?;
        write_atomic(&run_dir.join(name), text.as_bytes()).ok()?;
    }
    Some(run_dir)
}
