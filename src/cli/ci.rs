//! What a CI job needs besides the files: every failure reason one line each on stderr
//! (also under `--quiet`), the run directory's path in a file (`--run-dir-file`), and on
//! GitHub Actions a Markdown summary appended to `GITHUB_STEP_SUMMARY` and each failure as an
//! `::error::` annotation.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::compare::{Comparison, RowStatus};
use crate::judge::exit::ExitCode;
use crate::record::summary::Summary;
use crate::record::verdicts::SloVerdict;

/// One line per failing objective: its name and window, and what was measured against what
/// (or why it could not be).
pub(crate) fn failing_objectives(summary: &Summary) -> Vec<String> {
    summary
        .slos
        .iter()
        .filter(|v| v.fails_run())
        .map(objective_line)
        .collect()
}

fn objective_line(v: &SloVerdict) -> String {
    let measured: Vec<String> = v
        .measured
        .iter()
        .filter(|m| !m.passed)
        .map(|m| {
            format!(
                "{} {} (objective {} {})",
                m.metric, m.value_text, m.op, m.threshold
            )
        })
        .collect();
    let status = v.status.name();
    let why = match (measured.is_empty(), &v.reason_text) {
        (false, _) => measured.join(", "),
        (true, Some(text)) => text.clone(),
        (true, None) => String::new(),
    };
    format!("objective `{}` [{}] {status}: {why}", v.name, v.window)
}

/// One line per row of the gate that regressed: both values, the change, the tolerance.
pub(crate) fn regressed_rows(comparison: &Comparison) -> Vec<String> {
    comparison
        .rows
        .iter()
        .filter(|r| r.status == RowStatus::Regressed)
        .map(|r| {
            format!(
                "baseline: {} {}: {} against {} ({}), beyond tolerance ({})",
                r.scope, r.label, r.current_text, r.base_text, r.change_text, r.tolerance_text
            )
        })
        .collect()
}

/// Writes the run directory's path (and a newline) to `file`.
pub(crate) fn write_run_dir(file: &Path, run_dir: &Path) -> std::io::Result<()> {
    std::fs::write(file, format!("{}\n", run_dir.display()))
}

/// On GitHub Actions: each failure as an annotation on stdout.
pub(crate) fn annotations(failures: &[String]) -> String {
    failures
        .iter()
        .map(|f| format!("::error title=loadgen::{}\n", escape_annotation(f)))
        .collect()
}

/// Annotation data escapes `%`, CR and LF (GitHub's workflow command syntax).
fn escape_annotation(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// The run as a Markdown section for the job's summary page.
pub(crate) fn markdown(
    summary: &Summary,
    run_dir: &Path,
    code: ExitCode,
    reasons: &[String],
    comparison: Option<&Comparison>,
) -> String {
    let mut out = String::new();
    let verdict = if code == ExitCode::Ok { "PASS" } else { "FAIL" };
    let _ = writeln!(
        out,
        "## loadgen: {} — {verdict} (exit {})\n",
        summary.scenario.name,
        code.code()
    );
    let _ = writeln!(
        out,
        "{} requests, {:.2}% failed attempts; {}\n",
        summary.totals.requests,
        summary.totals.error_rate * 100.0,
        summary.iterations_line()
    );
    if !summary.slos.is_empty() {
        objectives_table(&mut out, summary);
    }
    if let Some(comparison) = comparison {
        let regressed = regressed_rows(comparison);
        let not_compared = comparison
            .rows
            .iter()
            .filter(|r| r.status == RowStatus::NotCompared)
            .count();
        let _ = writeln!(
            out,
            "Baseline gate: {} regression(s), {not_compared} row(s) not compared (comparison.html).\n",
            regressed.len()
        );
        for line in regressed {
            let _ = writeln!(out, "- {}", cell(&line));
        }
        let _ = writeln!(out);
    }
    if let Some(warning) = &summary.generator.warning {
        let _ = writeln!(out, "> Generator: {}\n", cell(warning));
    }
    if !reasons.is_empty() {
        let _ = writeln!(out, "Why it failed:\n");
        for reason in reasons {
            let _ = writeln!(out, "- {}", cell(reason));
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "Files in `{}`: report.html, summary.json, junit.xml{}.\n",
        run_dir.display(),
        if comparison.is_some() {
            ", comparison.html"
        } else {
            ""
        }
    );
    out
}

/// The objectives as a Markdown table, a row each, and a blank line.
fn objectives_table(out: &mut String, summary: &Summary) {
    let _ = writeln!(out, "| objective | window | status | measured |");
    let _ = writeln!(out, "|---|---|---|---|");
    for v in &summary.slos {
        let measured: Vec<String> = v
            .measured
            .iter()
            .map(|m| format!("{} {} ({} {})", m.metric, m.value_text, m.op, m.threshold))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            cell(&v.name),
            cell(&v.window),
            v.status.name(),
            cell(&measured.join(", "))
        );
    }
    let _ = writeln!(out);
}

/// Text safe in a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Appends `markdown` to the file GitHub names in `GITHUB_STEP_SUMMARY`, if it names one.
pub(crate) fn append_step_summary(markdown: &str) -> std::io::Result<bool> {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) else {
        return Ok(false);
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(markdown.as_bytes())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_escape_what_would_end_them() {
        assert_eq!(
            annotations(&["50% lost\nnext".into()]),
            "::error title=loadgen::50%25 lost%0Anext\n"
        );
    }
}
