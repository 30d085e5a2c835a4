//! Every stock scenario under scenarios/ validates, so a format change cannot silently break
//! the drills users run.

use std::path::Path;

#[test]
fn every_stock_scenario_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(error) = loadgen::api::scenario::load(&path) {
                panic!("{} does not validate:\n{error}", path.display());
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected the stock scenarios in {}",
        dir.display()
    );
}

/// The nightly gate's scenario lies within the policy its workflow ships
/// (docker/ci/policy.toml), and that policy still refuses what it is there to refuse.
#[test]
fn the_nightly_scenario_lies_within_the_nightly_policy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policy = loadgen::api::policy::load(&root.join("docker/ci/policy.toml")).unwrap();
    let soak = root.join("scenarios/soak.toml");
    if let Err(error) = loadgen::api::scenario::load_with(&soak, Some(&policy)) {
        panic!("scenarios/soak.toml is outside docker/ci/policy.toml:\n{error}");
    }
    // The workflow runs docker/ci/nightly.sh, whose defaults are that scenario and policy.
    let workflow = std::fs::read_to_string(root.join("docker/ci/nightly.yml")).unwrap();
    assert!(workflow.contains("bash docker/ci/nightly.sh"));
    assert!(!workflow.contains("--policy") && !workflow.contains("--scenario"));
    let script = std::fs::read_to_string(root.join("docker/ci/nightly.sh")).unwrap();
    assert!(script.contains("\nPOLICY=docker/ci/policy.toml\n"));
    assert!(script.contains("\nSCENARIO=scenarios/soak.toml\n"));
    assert!(policy.host_outside("10.0.0.0/8").is_some());
    assert!(
        policy
            .kube_namespaces
            .as_ref()
            .is_some_and(|n| n.entries.is_empty())
    );
}

/// `loadgen plan` speaks like the report: no Rust debug forms (`Int { min: 1, max: 10 }`,
/// `Pick([String(…)])`, `Latency { delay: … }`), and it lists the SLOs it will judge.
#[test]
fn loadgen_plan_prints_no_debug_forms_and_lists_the_slos() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    for name in ["peak.toml", "smoke.toml", "soak.toml"] {
        let output = crate::support::loadgen_command()
            .args(["plan", dir.join(name).to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{name}: {text}");
        for debug in [" { ", "([", "Some(", "String(", "Number("] {
            assert!(!text.contains(debug), "{name} prints `{debug}`:\n{text}");
        }
        assert!(text.contains("\nslos "), "{name}: no SLO list:\n{text}");
    }
}
