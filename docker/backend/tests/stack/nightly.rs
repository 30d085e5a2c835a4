//! The nightly gate as a script (docker/ci/nightly.sh), on its local-image path: two short
//! nights on the Compose platform, each brought up and taken down by the script. The first
//! finds no baseline, passes on its SLOs and becomes the first baseline; the second is
//! compared with it (the gate in its JUnit), passes and joins it. Each night's step outputs
//! (code, dir, baseline_saved) are what the workflow reads; each night leaves its report,
//! JUnit and the platform's logs, and no container, network or volume.
//!
//! Run from the Compose test, on the images it built (one build for both).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::compose::{Ran, leftovers, run};
use crate::fixture::repo_root;

/// One night: the script's exit code, its step outputs and its stderr.
struct Night {
    code: Option<i32>,
    outputs: Vec<(String, String)>,
    stderr: String,
}

impl Night {
    fn output(&self, key: &str) -> &str {
        self.outputs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no step output {key}: {:?}", self.outputs))
    }
}

fn night(project: &str, tag: &str, loadgen: &Path, work: &Path, n: usize) -> Night {
    let outputs = work.join(format!("github-output-{n}"));
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("docker/ci/nightly.sh"))
        .args(["--local-images", tag, "--project", project])
        // smoke: every journey in ~8 s; the nightly scenario is a flag, the steps the same.
        .args(["--scenario", "scenarios/smoke.toml", "--duration", "8s"])
        .arg("--loadgen")
        .arg(loadgen)
        .arg("--out")
        .arg(work.join(format!("reports-{n}")))
        .arg("--baselines")
        .arg(work.join("baselines"))
        .args(["--save-baseline", "--keep", "3", "--branch", "main"])
        .env("GITHUB_OUTPUT", &outputs)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .current_dir(work);
    let Ran { stderr, .. } = run(cmd, Duration::from_secs(300));
    let code = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("nightly: artifacts: "))
        .and_then(|l| l.rsplit("; exit ").next())
        .and_then(|c| c.trim().parse().ok());
    let outputs = std::fs::read_to_string(&outputs)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Night {
        code,
        outputs,
        stderr,
    }
}

fn case_names(run_dir: &Path) -> BTreeSet<String> {
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    junit
        .split("<testcase ")
        .skip(1)
        .map(|case| {
            let name = case.split(" name=\"").nth(1).unwrap();
            name[..name.find('"').unwrap()].replace("&#x2f;", "/")
        })
        .collect()
}

fn nights_kept(baselines: &Path) -> Vec<PathBuf> {
    let mut nights: Vec<PathBuf> = std::fs::read_dir(baselines)
        .map(|dir| {
            dir.map(|e| e.unwrap().path())
                .filter(|p| p.join("summary.json").is_file())
                .collect()
        })
        .unwrap_or_default();
    nights.sort();
    nights
}

/// Two nights of docker/ci/nightly.sh on the local images tagged `tag`.
pub fn two_nights(tag: &str, loadgen: &Path) {
    let started = Instant::now();
    let project = format!("loadgen-nightly-{}", std::process::id());
    let work = tempfile::tempdir().unwrap();
    let work = work.path();

    // Night 1: nothing to compare with.
    let first = night(&project, tag, loadgen, work, 1);
    assert_eq!(first.code, Some(0), "night 1:\n{}", first.stderr);
    assert_eq!(first.output("code"), "0");
    assert!(
        first.stderr.contains("no baseline run found for main"),
        "{}",
        first.stderr
    );
    let first_dir = PathBuf::from(first.output("dir"));
    for file in ["summary.json", "junit.xml", "report.html"] {
        assert!(first_dir.join(file).is_file(), "night 1 has no {file}");
    }
    assert!(
        !first_dir.join("comparison.json").exists(),
        "night 1 had nothing to compare with"
    );
    let log = std::fs::read_to_string(work.join("reports-1/platform.log")).unwrap();
    assert!(log.contains("nginx"), "platform.log: {log}");
    assert_eq!(first.output("baseline_saved"), "true");
    let kept = nights_kept(&work.join("baselines"));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        std::fs::read_to_string(work.join("baselines/branch")).unwrap(),
        "main\n"
    );
    for kind in ["container", "network", "volume"] {
        let left = leftovers(&project, kind);
        assert!(left.is_empty(), "night 1 left {kind}s behind: {left:?}");
    }
    eprintln!("nightly: night 1 after {:?}", started.elapsed());

    // Night 2: compared with night 1, in the judged record.
    let second = night(&project, tag, loadgen, work, 2);
    assert_eq!(second.code, Some(0), "night 2:\n{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("compared with 1 baseline night(s): night-"),
        "{}",
        second.stderr
    );
    let second_dir = PathBuf::from(second.output("dir"));
    let comparison: Value =
        serde_json::from_str(&std::fs::read_to_string(second_dir.join("comparison.json")).unwrap())
            .unwrap();
    assert_eq!(
        comparison["base"].as_str().map(Path::new),
        Some(kept[0].as_path()),
        "night 2 is compared with the kept night 1"
    );
    let rows = comparison["rows"].as_array().unwrap();
    let row = |scope: &str, metric: &str| {
        rows.iter()
            .find(|r| r["scope"] == scope && r["metric"] == metric)
            .unwrap_or_else(|| panic!("no row {scope} {metric}: {comparison:#}"))
    };
    assert_eq!(row("all", "p50_us")["status"], "within", "{comparison:#}");
    for backend in ["backend-1", "backend-2", "backend-3"] {
        let served = row("all", &format!("served_by:{backend}"));
        assert!(served["base_samples"].as_u64().unwrap() > 0, "{served}");
    }
    // The same case names as night 1, plus the gate's.
    let (one, two) = (case_names(&first_dir), case_names(&second_dir));
    assert!(one.is_subset(&two), "night 1 {one:?}\nnight 2 {two:?}");
    let gate: Vec<_> = two.difference(&one).collect();
    assert!(
        gate.iter().all(|n| n.starts_with("baseline: "))
            && gate.contains(&&"baseline: all p50".to_string()),
        "{gate:?}"
    );
    assert_eq!(second.output("baseline_saved"), "true");
    assert_eq!(nights_kept(&work.join("baselines")).len(), 2);
    for kind in ["container", "network", "volume"] {
        let left = leftovers(&project, kind);
        assert!(left.is_empty(), "night 2 left {kind}s behind: {left:?}");
    }
    eprintln!("nightly: two nights after {:?}", started.elapsed());
}
