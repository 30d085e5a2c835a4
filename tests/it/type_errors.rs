//! "Every error at once" (issue 25): a value of the wrong type is reported at its own line,
//! once, in words, and sets off nothing else — no "unknown …" elsewhere because the table
//! that held it was dropped.
//!
//! Seeded: into each stock scenario, k ∈ 1..=5 single values on their own `key = value`
//! lines are given a value of another type (text ↔ number, a flag → text); the scenario
//! reader must report exactly those k lines, one diagnostic each, and no other.
//! `LOADGEN_TYPE_SEED=<u64>` picks another seed; a failing case prints its mutated lines.

use std::collections::BTreeMap;
use std::path::Path;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

const DEFAULT_SEED: u64 = 0x7e9e_2025;
/// Cases per stock scenario: each draws k and k lines afresh.
const CASES_PER_SCENARIO: usize = 60;

/// One mutable line: its index and the value written there.
struct Candidate {
    line: usize,
    value_start: usize,
    value: String,
}

/// Lines holding one scalar value (`key = "text"`, `key = 3`, `key = true`) outside
/// multi-line arrays and outside tables whose values may be of any type (`json`, `fields`).
fn candidates(text: &str) -> Vec<Candidate> {
    let mut found = Vec::new();
    let mut depth = 0i32;
    let mut any_type_section = false;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if depth == 0 && trimmed.starts_with('[') {
            let header = trimmed.trim_matches(|c| c == '[' || c == ']');
            any_type_section = header.split('.').any(|p| p == "json" || p == "fields");
            continue;
        }
        let opened = line.matches('[').count() as i32 - line.matches(']').count() as i32;
        if depth != 0 {
            depth += opened;
            continue;
        }
        depth += opened;
        if trimmed.starts_with('#') || any_type_section {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let value = value.split(" #").next().unwrap_or("").trim();
        let scalar = (value.starts_with('"')
            && value.ends_with('"')
            && value.len() >= 2
            && value[1..value.len() - 1]
                .chars()
                .all(|c| c != '"' && c != '\\'))
            || value.parse::<i64>().is_ok()
            || value == "true"
            || value == "false";
        if !scalar {
            continue;
        }
        let value_start = line.find('=').unwrap()
            + 1
            + (line[line.find('=').unwrap() + 1..].len()
                - line[line.find('=').unwrap() + 1..].trim_start().len());
        found.push(Candidate {
            line: index,
            value_start,
            value: value.to_string(),
        });
    }
    found
}

/// The same value's kind of mistake: text becomes a number, a number text, a flag text.
fn wrong_type(value: &str, rng: &mut StdRng) -> String {
    if value.starts_with('"') {
        rng.random_range(1..=500).to_string()
    } else if value == "true" || value == "false" {
        "\"yes\"".to_string()
    } else {
        format!("\"{value}\"")
    }
}

#[test]
fn seeded_type_errors_are_reported_each_at_its_line_and_nothing_else() {
    let seed = std::env::var("LOADGEN_TYPE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    println!("LOADGEN_TYPE_SEED={seed}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut scenarios: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    scenarios.sort();
    assert!(scenarios.len() >= 4, "the stock scenarios: {scenarios:?}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut failures = Vec::new();
    let mut cases = 0;
    for path in &scenarios {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let candidates = candidates(&text);
        assert!(
            candidates.len() >= 10,
            "{}: only {} candidate lines",
            path.display(),
            candidates.len()
        );
        for case in 0..CASES_PER_SCENARIO {
            let k = rng.random_range(1..=5);
            let chosen: Vec<&Candidate> = candidates.choose_multiple(&mut rng, k).collect();
            let mut mutated: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            let mut expected: BTreeMap<usize, String> = BTreeMap::new();
            for candidate in &chosen {
                let line = &mut mutated[candidate.line];
                let replacement = wrong_type(&candidate.value, &mut rng);
                line.replace_range(
                    candidate.value_start..candidate.value_start + candidate.value.len(),
                    &replacement,
                );
                expected.insert(candidate.line + 1, line.clone());
            }
            let source = mutated.join("\n") + "\n";
            cases += 1;
            let result = loadgen::api::scenario::from_source(&source, Path::new("case.toml"), &dir);
            let reported: Vec<(usize, String)> = match &result {
                Ok(_) => Vec::new(),
                Err(diagnostics) => diagnostics
                    .headlines()
                    .into_iter()
                    .map(|h| {
                        let line = h.split(':').nth(1).unwrap().parse().unwrap();
                        (line, h)
                    })
                    .collect(),
            };
            let reported_lines: Vec<usize> = reported.iter().map(|(l, _)| *l).collect();
            let expected_lines: Vec<usize> = expected.keys().copied().collect();
            if reported_lines != expected_lines {
                failures.push(format!(
                    "{} case {case}: mutated\n  {}\nreported\n  {}",
                    path.file_name().unwrap().to_string_lossy(),
                    expected
                        .iter()
                        .map(|(l, t)| format!("{l}: {t}"))
                        .collect::<Vec<_>>()
                        .join("\n  "),
                    reported
                        .iter()
                        .map(|(_, h)| h.as_str())
                        .collect::<Vec<_>>()
                        .join("\n  ")
                ));
            }
        }
    }
    println!("{cases} cases, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {cases} cases reported other lines than those mutated:\n\n{}",
        failures.len(),
        failures
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}
