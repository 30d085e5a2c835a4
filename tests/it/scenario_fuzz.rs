//! Bad input, tried at scale (issue 24): seeded mutations of the stock scenarios
//! (`scenarios/*.toml`, `base_url` first pointed at a listener this test holds on
//! 127.0.0.1:0; mutations may break that line too). One to three of: keys removed,
//! renamed or duplicated; values of the wrong type or out of range (negative, zero, 1e300,
//! u64::MAX+1, i64::MAX+1, 4294967296, …) whole or digit by digit; unbalanced templates
//! (`{{x`, `}}`, `{{}}`, unknown names); tables renamed and duplicated; lines and tables of
//! the format's documentation grafted in (options the stock files leave out: fault kinds,
//! the closed model); stray characters, multi-byte text and escapes inside strings; strings
//! rewritten as literal or multi-line ones. Then sometimes: invalid UTF-8 bytes, a
//! truncation at any byte, an empty or comment-only file, CRLF line ends, a BOM.
//!
//! 10,240 mutations go through the scenario reader in-process (`scenario::load_with`, what
//! `loadgen validate` calls; a valid one also through `run::prepare` and `describe`, what
//! `loadgen plan` calls), and 320 of them through the built binary's `validate` and `plan`.
//! Each must be either valid (Ok / exit 0, and then `plan` exits 0 too) or refused
//! (Err / exit 2) with at least one `file:line:col` position, every position inside the
//! mutated file (1 ≤ line ≤ its lines, counting the empty one after a last newline;
//! 1 ≤ col ≤ that line's length + 1). Never a panic, a hang or another exit code. One
//! exception: a valid file whose base_url names a host no resolver knows (a mutated
//! `127.0.0.1e-300`) is refused by `plan`, which resolves the target, with exit 2 and
//! nothing sent; such cases are counted apart. At the end the listener must have seen no
//! connection: validate and plan send nothing. The counts (valid / refused) are printed.
//!
//! `LOADGEN_FUZZ_SEED=<u64>` (or `random`) picks the seed, `LOADGEN_FUZZ_CASES=<n>` the
//! number of in-process mutations; both are printed, and so is every failing mutation (its
//! case number and operators), each kept under `target/tmp/scenario-fuzz-failures/`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::support::{Workspace, loadgen_command};

const DEFAULT_SEED: u64 = 0x5ce_2a21_0f22;
const DEFAULT_CASES: usize = 10_240;
const BINARY_CASES: usize = 320;
const WORKERS: usize = 2;
/// A case taking longer than this is a hang.
const CASE_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn mutated_stock_scenarios_are_valid_or_refused_with_positions() {
    let started = Instant::now();
    let seed = match std::env::var("LOADGEN_FUZZ_SEED").ok().as_deref() {
        None | Some("") => DEFAULT_SEED,
        Some("random") => rand::random(),
        Some(text) => text
            .parse()
            .expect("LOADGEN_FUZZ_SEED is a u64 or `random`"),
    };
    let cases: usize = std::env::var("LOADGEN_FUZZ_CASES")
        .ok()
        .map_or(DEFAULT_CASES, |n| {
            n.parse().expect("LOADGEN_FUZZ_CASES is a count")
        });
    println!("scenario fuzz: seed {seed} (LOADGEN_FUZZ_SEED), {cases} in-process cases");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();

    let workspace = Workspace::new();
    let stock = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    copy_dir(&stock, workspace.dir.path());
    let corpus = Arc::new(Corpus::read(&stock, port));
    let dir = workspace.dir.path().to_path_buf();
    println!(
        "scenario fuzz: mutated files in {} (each worker's last one, and its case, are left \
         there if the process aborts)",
        dir.display()
    );

    // In-process: every case, through the reader (and prepare + describe when valid).
    let policy = loadgen::api::policy::find(None).expect("the environment's policy (if any) loads");
    let policy = Arc::new(policy);
    let in_process_started = Instant::now();
    let in_process = run_pool(cases, &dir, seed, &corpus, {
        let policy = Arc::clone(&policy);
        move |path, bytes| in_process_case(path, bytes, policy.as_ref().as_ref())
    });

    // The binary: evenly spaced cases, through `validate` and `plan`.
    let picked: Vec<usize> = (0..BINARY_CASES.min(cases))
        .map(|i| i * cases / BINARY_CASES.min(cases))
        .collect();
    let expected: Vec<Option<Outcome>> = picked.iter().map(|&i| in_process.seen[i]).collect();
    let in_process_took = in_process_started.elapsed();
    let binary = run_pool_picked(
        "binary",
        &picked,
        &dir,
        seed,
        &corpus,
        move |path, bytes, slot| binary_case(path, bytes, expected[slot]),
    );

    let mut failures = in_process.failures;
    failures.extend(binary.failures);
    let mut connections = 0;
    while listener.accept().is_ok() {
        connections += 1;
    }
    let count = |outcomes: &[Option<Outcome>], want: Outcome| {
        outcomes.iter().filter(|o| **o == Some(want)).count()
    };
    let counts = |outcomes: &[Option<Outcome>]| {
        format!(
            "{} valid, {} refused, {} valid naming a host no resolver knows",
            count(outcomes, Outcome::Valid),
            count(outcomes, Outcome::Refused),
            count(outcomes, Outcome::Unresolved)
        )
    };
    println!(
        "scenario fuzz: seed {seed}: in-process {} mutations ({}), binary {} (validate + plan; \
         {}), {} failures, {} connections, {:.1}s ({:.1}s in-process)",
        in_process.seen.len(),
        counts(&in_process.seen),
        binary.seen.len(),
        counts(&binary.seen),
        failures.len(),
        connections,
        started.elapsed().as_secs_f64(),
        in_process_took.as_secs_f64()
    );
    assert_eq!(connections, 0, "validate or plan connected to the target");
    if !failures.is_empty() {
        let kept = keep_failures(&failures);
        let mut report = String::new();
        // The kinds of failure (first line, numbers hidden), each with a count.
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for failure in &failures {
            let first = failure.problem.lines().next().unwrap_or("");
            let kind: String = first
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .take(100)
                .collect();
            *kinds.entry(kind).or_default() += 1;
        }
        for (kind, count) in &kinds {
            let _ = writeln!(report, "{count:6} × {kind}");
        }
        // Each failing mutation on a line of its own (the first 500).
        for failure in failures.iter().take(500) {
            let _ = writeln!(
                report,
                "case {}: {} → {}",
                failure.case,
                failure.operators.join("; "),
                failure.problem.lines().next().unwrap_or("")
            );
        }
        if failures.len() > 500 {
            let _ = writeln!(report, "… and {} more", failures.len() - 500);
        }
        let mut shown = BTreeSet::new();
        let examples = failures.iter().filter(|f| {
            let first = f.problem.lines().next().unwrap_or("").to_string();
            let kind: String = first
                .chars()
                .filter(|c| !c.is_ascii_digit())
                .take(100)
                .collect();
            shown.insert(kind)
        });
        for failure in examples.take(30) {
            let _ = writeln!(
                report,
                "--- case {} (seed {seed}), kept as {}\n    mutations: {}\n    {}",
                failure.case,
                kept.join(&failure.file_name).display(),
                failure.operators.join("; "),
                failure.problem.replace('\n', "\n    ")
            );
        }
        panic!(
            "{} of the mutations failed (seed {seed}; their kinds, each one, then an example of \
             each kind in full):\n{report}",
            failures.len()
        );
    }
    assert!(count(&in_process.seen, Outcome::Valid) > 0);
    assert!(count(&in_process.seen, Outcome::Refused) > 0);
}

// ---------------------------------------------------------------------------------------
// Checking one mutated file.

/// What a case came to when it passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Ok / exit 0, and `plan` exits 0 too.
    Valid,
    /// Err / exit 2, with positions inside the file (validate and plan alike).
    Refused,
    /// Valid, but its base_url names a host no resolver knows (`127.0.0.1e-300`): `plan`
    /// refuses it (exit 2, nothing sent) when it resolves the target, as it must.
    Unresolved,
}

/// A passing case's outcome, or what is wrong with it.
type Verdict = Result<Outcome, String>;

/// `plan`'s refusal of a target host no resolver knows (only a name is resolved).
fn unresolved(message: &str) -> bool {
    message.contains("cannot resolve target host") || message.contains("resolves to no address")
}

fn in_process_case(
    path: &Path,
    bytes: &[u8],
    policy: Option<&loadgen::api::policy::Policy>,
) -> Verdict {
    use loadgen::api::scenario::ScenarioError;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match loadgen::api::scenario::load_with(path, policy) {
            Ok(_plan) => {
                let options = loadgen::api::run::RunOptions {
                    scenario: path.to_path_buf(),
                    ..Default::default()
                };
                match loadgen::api::run::prepare(&options) {
                    Ok(prepared) => {
                        let _ = loadgen::api::scenario::describe(&prepared.plan, prepared.seed);
                        Ok(Outcome::Valid)
                    }
                    Err(error) if unresolved(&error.to_string()) => Ok(Outcome::Unresolved),
                    Err(error) => Err(format!("validates, but `plan` refuses it: {error}")),
                }
            }
            Err(ScenarioError::Invalid(diagnostics)) => {
                let text = diagnostics.to_string();
                check_positions(path, bytes, &text).map(|()| Outcome::Refused)
            }
            Err(other) => {
                check_positions(path, bytes, &other.to_string()).map(|()| Outcome::Refused)
            }
        }
    }));
    outcome.unwrap_or_else(|payload| Err(format!("panicked: {}", panic_message(&payload))))
}

fn binary_case(path: &Path, bytes: &[u8], in_process: Option<Outcome>) -> Verdict {
    let file = path.to_str().unwrap();
    let (validate_code, validate_err) = run_with_timeout(&["validate", file])?;
    let (plan_code, plan_err) = run_with_timeout(&["plan", file])?;
    let valid = match validate_code {
        Some(0) => true,
        Some(2) => false,
        other => return Err(format!("validate exited {other:?}:\n{validate_err}")),
    };
    let outcome = match (valid, plan_code) {
        (true, Some(0)) => Outcome::Valid,
        (true, Some(2)) if unresolved(&plan_err) => Outcome::Unresolved,
        (false, Some(2)) => {
            check_positions(path, bytes, &plan_err).map_err(|e| format!("plan's refusal: {e}"))?;
            check_positions(path, bytes, &validate_err)?;
            Outcome::Refused
        }
        (_, other) => {
            return Err(format!(
                "validate exited {validate_code:?} but plan {other:?}:\n{plan_err}"
            ));
        }
    };
    if in_process.is_some_and(|seen| seen != outcome) {
        return Err(format!(
            "the binary came to {outcome:?}, the same file in-process to {in_process:?}"
        ));
    }
    Ok(outcome)
}

/// Runs the binary with `args`, killed after `CASE_TIMEOUT`: (exit code, stderr).
fn run_with_timeout(args: &[&str]) -> Result<(Option<i32>, String), String> {
    let scratch = tempfile::tempdir().unwrap();
    let stdout = std::fs::File::create(scratch.path().join("out")).unwrap();
    let stderr = std::fs::File::create(scratch.path().join("err")).unwrap();
    let mut child = loadgen_command()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("the loadgen binary starts");
    let deadline = Instant::now() + CASE_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("`loadgen {}` hung", args[0]));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let err = std::fs::read(scratch.path().join("err")).unwrap();
    Ok((status.code(), String::from_utf8_lossy(&err).into_owned()))
}

/// At least one `FILE:line:col` in `text`, and each inside the file's `bytes`.
fn check_positions(path: &Path, bytes: &[u8], text: &str) -> Result<(), String> {
    let source = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = source.split('\n').collect();
    let prefix = format!("{}:", path.display());
    let mut found = 0;
    for (at, _) in text.match_indices(&prefix) {
        let rest = &text[at + prefix.len()..];
        let mut parts = rest.splitn(3, ':');
        let (Some(line), Some(col)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(line), Ok(col)) = (line.parse::<usize>(), col.parse::<usize>()) else {
            continue;
        };
        found += 1;
        if line == 0 || line > lines.len() {
            return Err(format!(
                "position {line}:{col} is outside the file's {} lines:\n{text}",
                lines.len()
            ));
        }
        let width = lines[line - 1].chars().count();
        if col == 0 || col > width + 1 {
            return Err(format!(
                "position {line}:{col} is outside line {line} ({width} characters):\n{text}"
            ));
        }
    }
    if found == 0 {
        return Err(format!("refused without a file:line:col position:\n{text}"));
    }
    Ok(())
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

// ---------------------------------------------------------------------------------------
// Running cases on a few threads, with a watchdog.

struct Failure {
    case: usize,
    operators: Vec<String>,
    problem: String,
    file_name: String,
    bytes: Vec<u8>,
}

/// A worker's case in flight: its number and operators (named when it hangs).
type InFlight = (usize, Vec<String>);

struct Outcomes {
    /// Per case: its outcome, or `None` when it failed.
    seen: Vec<Option<Outcome>>,
    failures: Vec<Failure>,
}

fn run_pool(
    cases: usize,
    dir: &Path,
    seed: u64,
    corpus: &Arc<Corpus>,
    check: impl Fn(&Path, &[u8]) -> Verdict + Send + Sync + 'static,
) -> Outcomes {
    let picked: Vec<usize> = (0..cases).collect();
    run_pool_picked(
        "in-process",
        &picked,
        dir,
        seed,
        corpus,
        move |path, bytes, _| check(path, bytes),
    )
}

/// Runs the cases numbered `picked` on `WORKERS` threads; panics naming the case in flight
/// when one takes longer than `CASE_TIMEOUT`.
fn run_pool_picked(
    tag: &str,
    picked: &[usize],
    dir: &Path,
    seed: u64,
    corpus: &Arc<Corpus>,
    check: impl Fn(&Path, &[u8], usize) -> Verdict + Send + Sync + 'static,
) -> Outcomes {
    let picked = Arc::new(picked.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let check = Arc::new(check);
    let in_flight: Arc<Mutex<Vec<Option<InFlight>>>> = Arc::new(Mutex::new(vec![None; WORKERS]));
    let (sender, results) = mpsc::channel();
    for worker in 0..WORKERS {
        let (picked, next, check, in_flight, sender, corpus) = (
            Arc::clone(&picked),
            Arc::clone(&next),
            Arc::clone(&check),
            Arc::clone(&in_flight),
            sender.clone(),
            Arc::clone(corpus),
        );
        let path = dir.join(format!("{tag}-{worker}.toml"));
        std::thread::spawn(move || {
            loop {
                let slot = next.fetch_add(1, Ordering::Relaxed);
                let Some(&case) = picked.get(slot) else { break };
                let mutation = corpus.mutate(seed, case);
                in_flight.lock().unwrap()[worker] = Some((case, mutation.operators.clone()));
                std::fs::write(&path, &mutation.bytes).unwrap();
                // What an abort (a failed allocation) leaves to tell which case it was.
                let note = format!(
                    "seed {seed} case {case}: {}\n",
                    mutation.operators.join("; ")
                );
                std::fs::write(path.with_extension("case"), note).unwrap();
                let verdict = check(&path, &mutation.bytes, slot);
                in_flight.lock().unwrap()[worker] = None;
                if sender.send((slot, case, mutation, verdict)).is_err() {
                    break;
                }
            }
        });
    }
    drop(sender);
    let mut outcomes = Outcomes {
        seen: vec![None; picked.len()],
        failures: Vec::new(),
    };
    for _ in 0..picked.len() {
        let (slot, case, mutation, verdict) = match results.recv_timeout(CASE_TIMEOUT) {
            Ok(result) => result,
            Err(_) => panic!(
                "a mutation hangs (seed {seed}); in flight: {:?}",
                in_flight.lock().unwrap()
            ),
        };
        match verdict {
            Ok(outcome) => outcomes.seen[slot] = Some(outcome),
            Err(problem) => outcomes.failures.push(Failure {
                case,
                problem,
                file_name: format!("case-{case}.toml"),
                operators: mutation.operators,
                bytes: mutation.bytes,
            }),
        }
    }
    outcomes
}

/// Copies each failing mutation to target/tmp/scenario-fuzz-failures/ (beside copies of
/// the scenarios' data files, so it can be run again as it was).
fn keep_failures(failures: &[Failure]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scenario-fuzz-failures");
    let _ = std::fs::remove_dir_all(&dir); // an earlier run's
    std::fs::create_dir_all(&dir).unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"),
        &dir,
    );
    for failure in failures {
        std::fs::write(dir.join(&failure.file_name), &failure.bytes).unwrap();
    }
    dir
}

/// Copies `from`'s files (not its .toml scenarios) and subdirectories into `to`.
fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else if entry.path().extension().is_none_or(|e| e != "toml") {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Mutations.

/// The stock scenarios with `base_url` pointed at the test's listener, and every key and
/// table name they use (for renames).
struct Corpus {
    files: Vec<(String, String)>,
    keys: Vec<String>,
    headers: Vec<String>,
    /// `key = value` lines of the format's documentation and the extra tables below, each
    /// with the table it belongs in (`""`: top level): grafted into a scenario, they reach
    /// the options the stock scenarios leave out.
    donor_lines: Vec<(String, String)>,
    /// Whole tables (header and its lines) of the documentation and `EXTRA_TABLES`.
    donor_tables: Vec<Vec<String>>,
}

/// Tables the documentation describes in prose only: fault kinds, the closed model.
const EXTRA_TABLES: &str = r#"
[[fault]]
name = "slow"
at = "5s"
duration = "3s"
repeat = 3
every = "10s"
action = "latency"
latency = "10ms"
jitter = "5ms"
target = { proxy = "postgres" }
[[fault]]
name = "narrow"
at = "5s"
duration = "2s"
action = "bandwidth"
bandwidth = "64KiB/s"
target = { proxy = "postgres" }
[[fault]]
name = "close slowly"
at = "5s"
duration = "2s"
action = "slow_close"
delay = "1s"
target = { proxy = "postgres" }
[[fault]]
name = "loss"
at = "1s"
duration = "2s"
action = "loss"
probability = "10%"
target = { port = 5432 }
[[fault]]
name = "stop a container"
at = "2s"
duration = "2s"
action = "stop"
target = { container = "backend-1" }
among = { label = "platform.role=backend" }
mode = { count = 2 }
max_unavailable = "50%"
[[fault]]
name = "disconnect"
at = "2s"
duration = "2s"
action = "disconnect"
network = "platform_default"
target = { label = "com.docker.compose.service=backend-1" }
mode = { percent = "50%" }
[[fault]]
name = "terminate"
at = "2s"
action = "terminate"
target = { pidfile = "x.pid" }
signal = "SIGTERM"
allow_last = true
required = false
effect = "30s"
[[fault]]
name = "scale down"
at = "1s"
duration = "5s"
action = "scale"
target = { deployment = "api", namespace = "staging" }
replicas = 0
[load]
model = "closed"
start_vus = 2
failure_backoff = "1s"
[[load.stage]]
duration = "5s"
vus = 10
[data.feeder.members]
file = "data/members.csv"
order = "unique"
on_exhausted = "stop"
"#;

struct Mutation {
    operators: Vec<String>,
    bytes: Vec<u8>,
}

/// Values of the wrong type or out of range, in TOML.
const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "30",
    "-9223372036854775808",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "65536",
    "1e300",
    "-1e300",
    "1e-300",
    "0.5",
    "-0.0",
    "nan",
    "inf",
    "-inf",
    "true",
    "false",
    "\"\"",
    "\" \"",
    "\"x\"",
    "\"0\"",
    "\"-1\"",
    "\"1e300\"",
    "\"18446744073709551616\"",
    "\"0s\"",
    "\"-1s\"",
    "\"1e300s\"",
    "\"18446744073709551616s\"",
    "\"1ms..0ms\"",
    "\"..\"",
    "\"5s..\"",
    "\"0/s\"",
    "\"-1/s\"",
    "\"1e300/s\"",
    "\"18446744073709551616/s\"",
    "\"1/0s\"",
    "\"0B\"",
    "\"1e300MiB\"",
    "\"18446744073709551616GiB\"",
    "\"-1%\"",
    "\"1e300%\"",
    "\"NaN%\"",
    "\"p100 < 0ms\"",
    "\"p0 < 1s\"",
    "\"p99 <\"",
    "\"error_rate < 1e300%\"",
    "\"availability >= -5%\"",
    "\"fault:\"",
    "\"fault:nope\"",
    "\"steady\"",
    "\"{{x\"",
    "\"}}\"",
    "\"{{}}\"",
    "\"/{{members.name}}\"",
    "\"日本語\"",
    "\"🦀\"",
    "\"\\u0000\"",
    "[]",
    "[1, \"a\"]",
    "[[]]",
    "[\"\"]",
    "{}",
    "{ a = 1 }",
    "{ process = 1 }",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "'''\nmulti\n'''",
    "\"\"\"\nmulti\nline\"\"\"",
];

/// Numbers, for the digits of a value (inside strings too).
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "3",
    "1e300",
    "18446744073709551616",
    "18446744073709551615",
    "9223372036854775808",
    "4294967296",
    "65536",
    "999999999999999999999999999",
    "0.0000001",
    "1e-300",
    "NaN",
    "",
    "999999999",
    "1000000000",
    "1000000001",
    "86400",
    "10000",
    "10001",
    "65535",
    "2147483647",
    "4294967295",
    "9223372036854775807",
    "255",
    "256",
    "100",
    "101",
    "20",
    "21",
];

/// Template breakage, for what lies between `{{` and `}}`.
const TEMPLATE_INSIDES: &[&str] = &[
    "",
    " ",
    "nope",
    "members.",
    ".name",
    "members.nope",
    "ack.id",
    "ack.fields.",
    "repeat",
    "vu",
    "iteration",
    "cookie.",
    "cookie.x",
    "a b",
    "{{x}}",
    "日本",
    "x|upper",
    "0",
    "}",
    "{",
];

/// Stray text for a random place of the file.
const STRAY: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    "\n",
    "#",
    "'''",
    "\"\"\"",
    "\\",
    "\t",
    "\r",
    "\0",
    "\u{7f}",
    ",",
    ".",
    "{{",
    "}}",
    "{{}}",
    "é",
    "日本語",
    "🦀",
    "\u{301}",
    "\u{200b}",
    "\u{feff}",
    "\u{2028}",
];

/// Multi-byte text for inside a string.
const MULTIBYTE: &[&str] = &[
    "é",
    "日本語",
    "🦀",
    "\u{301}",
    "\u{200b}",
    "Ω≈ç√",
    "\u{feff}",
    "ñ{{",
    "}}ü",
];

/// Escapes for inside a basic string (some invalid: `\q`, a lone `\u`, a surrogate).
const ESCAPES: &[&str] = &[
    r"\u00e9",
    r"\t",
    r#"\""#,
    r"\U0001F980",
    r"\\",
    r"\q",
    r"\u",
    r"\uD800",
    r"\u00e9{{nope}}",
    r"\n",
    r"\r\n",
];

/// Bytes that are never valid UTF-8 where they are put.
const INVALID_UTF8: &[&[u8]] = &[
    b"\xff",
    b"\xc3",
    b"\xe6\x97",
    b"\xed\xa0\x80",
    b"\xc0\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\x80",
];

impl Corpus {
    fn read(stock: &Path, port: u16) -> Corpus {
        let mut files = Vec::new();
        let mut keys = BTreeSet::new();
        let mut headers = BTreeSet::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(stock)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        entries.sort();
        for path in entries {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut pointed = false;
            let text: String = text
                .split_inclusive('\n')
                .map(|line| {
                    if line.trim_start().starts_with("base_url") {
                        pointed = true;
                        format!("base_url = \"http://127.0.0.1:{port}\"\n")
                    } else {
                        line.to_string()
                    }
                })
                .collect();
            assert!(pointed, "{} has no base_url line", path.display());
            // The stock scenario itself is valid once pointed at the listener.
            if let Err(error) = loadgen::api::scenario::from_source(&text, &path, stock) {
                panic!("{} pointed at 127.0.0.1:{port}: {error}", path.display());
            }
            for line in text.lines() {
                if let Some((key, _)) = key_line(line) {
                    keys.insert(key.to_string());
                } else if line.trim_start().starts_with('[') {
                    headers.insert(line.trim().to_string());
                }
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.push((name, text));
        }
        assert!(files.len() >= 2, "expected the stock scenarios");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut snippets = vec![EXTRA_TABLES.to_string()];
        for doc in ["docs/scenario-format.md", "docs/slo.md"] {
            let text = std::fs::read_to_string(root.join(doc)).unwrap();
            for block in text.split("```toml").skip(1) {
                snippets.push(block.split("```").next().unwrap_or("").to_string());
            }
        }
        let (mut donor_lines, mut donor_tables) = (Vec::new(), Vec::new());
        for snippet in &snippets {
            let mut section = String::new();
            let mut table: Vec<String> = Vec::new();
            for line in snippet.lines() {
                let trimmed = line.trim();
                if trimmed.starts_with('[') {
                    if !table.is_empty() {
                        donor_tables.push(std::mem::take(&mut table));
                    }
                    section = trimmed.split('#').next().unwrap_or("").trim().to_string();
                    table.push(section.clone());
                } else if let Some((_, value)) = key_line(line) {
                    // Only values on one line.
                    let value = value.split(" #").next().unwrap_or("");
                    let balanced = |open: char, close: char| {
                        value.matches(open).count() == value.matches(close).count()
                    };
                    if balanced('[', ']')
                        && balanced('{', '}')
                        && value.matches('"').count() % 2 == 0
                    {
                        donor_lines.push((section.clone(), trimmed.to_string()));
                        if !section.is_empty() {
                            table.push(trimmed.to_string());
                        }
                    }
                }
            }
            if !table.is_empty() {
                donor_tables.push(table);
            }
        }
        assert!(
            donor_lines.len() > 50 && donor_tables.len() > 10,
            "the docs' examples"
        );
        Corpus {
            files,
            keys: keys.into_iter().collect(),
            headers: headers.into_iter().collect(),
            donor_lines,
            donor_tables,
        }
    }

    /// Case `case` of `seed`: the same mutation every time.
    fn mutate(&self, seed: u64, case: usize) -> Mutation {
        let mut rng =
            StdRng::seed_from_u64(seed ^ (case as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (name, text) = self.files.choose(&mut rng).unwrap();
        let mut operators = vec![name.clone()];
        let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
        let count = match rng.random_range(0..100) {
            0..60 => 1,
            60..85 => 2,
            _ => 3,
        };
        for _ in 0..count {
            operators.push(self.mutate_lines(&mut lines, &mut rng));
        }
        let mut bytes = lines.join("\n").into_bytes();
        match rng.random_range(0..100) {
            0..7 => {
                let at = rng.random_range(0..=bytes.len());
                let bad = INVALID_UTF8.choose(&mut rng).unwrap();
                bytes.splice(at..at, bad.iter().copied());
                operators.push(format!("invalid UTF-8 {bad:x?} at byte {at}"));
            }
            7..12 => {
                let at = rng.random_range(0..=bytes.len());
                bytes.truncate(at);
                operators.push(format!("truncated at byte {at}"));
            }
            12..13 => {
                bytes.clear();
                operators.push("emptied".into());
            }
            13..14 => {
                let only = *[&b"\n\n"[..], b"   ", b"# only a comment\n", b"\xef\xbb\xbf"]
                    .choose(&mut rng)
                    .unwrap();
                bytes = only.to_vec();
                operators.push(format!("replaced by {only:?}"));
            }
            14..17 => {
                bytes = String::from_utf8(bytes)
                    .map(|t| t.replace('\n', "\r\n").into_bytes())
                    .unwrap_or_else(|e| e.into_bytes());
                operators.push("CRLF line ends".into());
            }
            17..18 => {
                bytes.splice(0..0, *b"\xef\xbb\xbf");
                operators.push("byte order mark".into());
            }
            _ => {}
        }
        Mutation { operators, bytes }
    }

    /// One text mutation of `lines`; returns what it did.
    fn mutate_lines(&self, lines: &mut Vec<String>, rng: &mut StdRng) -> String {
        let key_lines: Vec<usize> = (0..lines.len())
            .filter(|&i| key_line(&lines[i]).is_some())
            .collect();
        let header_lines: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].trim_start().starts_with('['))
            .collect();
        let template_lines: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].contains("{{") && key_line(&lines[i]).is_some())
            .collect();
        let operator = rng.random_range(0..130);
        // Operators needing a kind of line fall back to stray text when there is none.
        let pick = |candidates: &[usize], rng: &mut StdRng| candidates.choose(rng).copied();
        match operator {
            0..12 => {
                if let Some(i) = pick(&key_lines, rng) {
                    let removed = lines.remove(i);
                    return format!("line {}: removed `{}`", i + 1, removed.trim());
                }
            }
            12..20 => {
                if let Some(i) = pick(&key_lines, rng) {
                    let key = key_line(&lines[i]).unwrap().0.to_string();
                    let renamed = match rng.random_range(0..5) {
                        0 => format!("{key}x"),
                        1 => key.to_uppercase(),
                        2 => "\"\"".to_string(),
                        3 => format!("{key}.{key}"),
                        _ => self.keys.choose(rng).unwrap().clone(),
                    };
                    let at = lines[i].find(&key).unwrap();
                    lines[i].replace_range(at..at + key.len(), &renamed);
                    return format!("line {}: key `{key}` renamed `{renamed}`", i + 1);
                }
            }
            20..38 => {
                if let Some(i) = pick(&key_lines, rng) {
                    let (key, value) = key_line(&lines[i]).unwrap();
                    let (key, value) = (key.to_string(), value.to_string());
                    let new = VALUES.choose(rng).unwrap();
                    let at = lines[i].len() - value.len();
                    lines[i].replace_range(at.., &format!(" {new}"));
                    return format!("line {}: `{key}` = {new} (was {})", i + 1, value.trim());
                }
            }
            38..50 => {
                if let Some(i) = pick(&key_lines, rng) {
                    let tokens = value_tokens(&lines[i]);
                    if let Some(range) = tokens.choose(rng).cloned() {
                        let old = lines[i][range.clone()].to_string();
                        let new = VALUES.choose(rng).unwrap();
                        lines[i].replace_range(range, new);
                        return format!("line {}: token {old} replaced by {new}", i + 1);
                    }
                }
            }
            50..62 => {
                if let Some(i) = pick(&key_lines, rng) {
                    let digits = digit_runs(&lines[i]);
                    if let Some(range) = digits.choose(rng).cloned() {
                        let old = lines[i][range.clone()].to_string();
                        let new = NUMBERS.choose(rng).unwrap();
                        lines[i].replace_range(range, new);
                        return format!("line {}: number {old} replaced by `{new}`", i + 1);
                    }
                }
            }
            62..72 => {
                if let Some(i) = pick(&template_lines, rng) {
                    return break_template(&mut lines[i], i, rng);
                }
                if let Some(i) = pick(&key_lines, rng) {
                    let strings = string_insides(&lines[i]);
                    if let Some(range) = strings.choose(rng).cloned() {
                        let at = char_boundary_in(&lines[i], range, rng);
                        let stray = ["{{x", "}}", "{{}}", "{{", "{{ x }}"].choose(rng).unwrap();
                        lines[i].insert_str(at, stray);
                        return format!("line {}: `{stray}` inserted at byte {at}", i + 1);
                    }
                }
            }
            72..78 => {
                if let Some(i) = pick(&key_lines, rng) {
                    let strings = string_insides(&lines[i]);
                    if let Some(range) = strings.choose(rng).cloned() {
                        let at = char_boundary_in(&lines[i], range, rng);
                        let text = MULTIBYTE.choose(rng).unwrap();
                        lines[i].insert_str(at, text);
                        return format!("line {}: {text:?} inserted at byte {at}", i + 1);
                    }
                }
            }
            78..84 => {
                if let Some(&i) = header_lines.choose(rng) {
                    let end = header_lines
                        .iter()
                        .copied()
                        .find(|&h| h > i)
                        .unwrap_or(lines.len());
                    let block: Vec<String> = lines[i..end].to_vec();
                    let at = if rng.random_bool(0.5) {
                        end
                    } else {
                        lines.len()
                    };
                    lines.splice(at..at, block);
                    return format!("table `{}` (line {}) duplicated", lines[i].trim(), i + 1);
                }
            }
            84..89 => {
                if let Some(&i) = header_lines.choose(rng) {
                    let old = lines[i].trim().to_string();
                    let new = match rng.random_range(0..5) {
                        0 => old.replace("[[", "[").replace("]]", "]"),
                        1 if !old.starts_with("[[") => format!("[{old}]"),
                        2 => old.replace(']', "s]"),
                        3 => old.trim_end_matches(']').to_string(),
                        _ => self.headers.choose(rng).unwrap().clone(),
                    };
                    lines[i] = new.clone();
                    return format!("line {}: table `{old}` became `{new}`", i + 1);
                }
            }
            89..93 => {
                let i = rng.random_range(0..lines.len());
                let line = lines[i].clone();
                lines.insert(i, line.clone());
                return format!("line {}: duplicated `{}`", i + 1, line.trim());
            }
            93..96 => {
                let i = rng.random_range(0..lines.len());
                let removed = lines.remove(i);
                if lines.is_empty() {
                    lines.push(String::new());
                }
                return format!("line {}: removed `{}`", i + 1, removed.trim());
            }
            96..98 => {
                if let Some(&i) = header_lines.choose(rng) {
                    let key = ["bogus = 1", "name = \"again\"", "\"\" = 1", "é = 1"]
                        .choose(rng)
                        .unwrap();
                    lines.insert(i + 1, key.to_string());
                    return format!("line {}: inserted `{key}`", i + 2);
                }
            }
            100..112 => return self.graft_line(lines, &header_lines, rng),
            112..117 => {
                let mut table = self.donor_tables.choose(rng).unwrap().clone();
                let at = lines.len();
                let mut what = format!("line {}: appended table `{}`", at + 1, table[0]);
                // Half the time one of its numbers pushed out of range.
                let numbered: Vec<usize> = (1..table.len())
                    .filter(|&i| !digit_runs(&table[i]).is_empty())
                    .collect();
                if rng.random_bool(0.5)
                    && let Some(&i) = numbered.choose(rng)
                {
                    let range = digit_runs(&table[i]).choose(rng).cloned().unwrap();
                    let new = NUMBERS.choose(rng).unwrap();
                    table[i].replace_range(range, new);
                    let _ = write!(what, " with `{}`", table[i]);
                }
                lines.extend(table);
                return what;
            }
            117..120 => {
                // The open model made closed: users instead of arrivals per second.
                let mut changed = 0;
                for line in lines.iter_mut() {
                    let Some((key, value)) = key_line(line) else {
                        continue;
                    };
                    let number: String = value.chars().filter(char::is_ascii_digit).collect();
                    let new = match key {
                        "model" if value.contains("open") => "model = \"closed\"".to_string(),
                        "start_rate" => format!("start_vus = {number}"),
                        "rate" => format!("vus = {number}"),
                        "max_in_flight" => "failure_backoff = \"2s\"".to_string(),
                        _ => continue,
                    };
                    *line = new;
                    changed += 1;
                }
                if changed > 0 {
                    return format!("made a closed model ({changed} lines)");
                }
            }
            120..125 => {
                if let Some(i) = pick(&key_lines, rng) {
                    let strings = string_insides(&lines[i]);
                    if let Some(range) = strings.choose(rng).cloned() {
                        let at = char_boundary_in(&lines[i], range, rng);
                        let escape = ESCAPES.choose(rng).unwrap();
                        lines[i].insert_str(at, escape);
                        return format!("line {}: `{escape}` inserted at byte {at}", i + 1);
                    }
                }
            }
            125..130 => {
                if let Some(i) = pick(&key_lines, rng) {
                    let strings = string_insides(&lines[i]);
                    if let Some(range) = strings.first().cloned() {
                        let inner = lines[i][range.clone()].to_string();
                        let new = match rng.random_range(0..3) {
                            0 => format!("'{inner}'"),
                            1 => format!("\"\"\"\n{inner}\"\"\""),
                            _ => format!("'''{inner}'''"),
                        };
                        lines[i].replace_range(range.start - 1..range.end + 1, &new);
                        return format!("line {}: string written {new:?}", i + 1);
                    }
                }
            }
            _ => {}
        }
        // Stray text at a random place.
        let i = rng.random_range(0..lines.len());
        let at = char_boundary_in(&lines[i], 0..lines[i].len(), rng);
        let stray = STRAY.choose(rng).unwrap();
        lines[i].insert_str(at, stray);
        format!("line {}: {stray:?} inserted at byte {at}", i + 1)
    }
}

impl Corpus {
    /// A documented `key = value` line put into its table (replacing the key if the table
    /// has it), its numbers sometimes pushed out of range; into a random table when the
    /// scenario has none of its kind.
    fn graft_line(&self, lines: &mut Vec<String>, headers: &[usize], rng: &mut StdRng) -> String {
        let (section, donor) = self.donor_lines.choose(rng).unwrap();
        let mut donor = donor.clone();
        if rng.random_bool(0.3)
            && let Some(range) = digit_runs(&donor).choose(rng).cloned()
        {
            donor.replace_range(range, NUMBERS.choose(rng).unwrap());
        }
        let matching: Vec<usize> = headers
            .iter()
            .copied()
            .filter(|&h| lines[h].split('#').next().unwrap_or("").trim() == section)
            .collect();
        let start = if section.is_empty() {
            0
        } else {
            match matching.choose(rng).or_else(|| headers.choose(rng)) {
                Some(&h) => h + 1,
                None => 0,
            }
        };
        let end = (start..lines.len())
            .find(|&i| lines[i].trim_start().starts_with('['))
            .unwrap_or(lines.len());
        let key = key_line(&donor)
            .map(|(k, _)| k.to_string())
            .unwrap_or_default();
        let existing = (start..end).find(|&i| key_line(&lines[i]).is_some_and(|(k, _)| k == key));
        match existing {
            Some(i) => {
                let old = std::mem::replace(&mut lines[i], donor.clone());
                format!("line {}: `{}` became `{donor}`", i + 1, old.trim())
            }
            None => {
                lines.insert(start, donor.clone());
                format!("line {}: inserted `{donor}` (from {section:?})", start + 1)
            }
        }
    }
}

/// Breaks one `{{…}}` of `line`: an end or a start removed, or its inside replaced.
fn break_template(line: &mut String, index: usize, rng: &mut StdRng) -> String {
    let opens: Vec<usize> = line.match_indices("{{").map(|(i, _)| i).collect();
    let open = *opens.choose(rng).unwrap();
    let close = line[open..].find("}}").map(|i| open + i);
    match (rng.random_range(0..3), close) {
        (0, Some(close)) => {
            line.replace_range(close..close + 2, "");
            format!("line {}: `}}}}` at byte {close} removed", index + 1)
        }
        (1, _) | (_, None) => {
            line.replace_range(open..open + 2, "");
            format!("line {}: `{{{{` at byte {open} removed", index + 1)
        }
        (_, Some(close)) => {
            let inside = TEMPLATE_INSIDES.choose(rng).unwrap();
            line.replace_range(open + 2..close, inside);
            format!(
                "line {}: template at byte {open} became {{{{{inside}}}}}",
                index + 1
            )
        }
    }
}

/// `(key, value)` of a `key = value` line (not a comment, not a table header).
fn key_line(line: &str) -> Option<(&str, &str)> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') || trimmed.starts_with('[') {
        return None;
    }
    let (key, value) = line.split_once('=')?;
    let key = key.trim();
    let simple = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.\"' ".contains(c));
    simple.then_some((key, value))
}

/// Byte ranges of the string literals and bare numbers/words in a key line's value.
fn value_tokens(line: &str) -> Vec<std::ops::Range<usize>> {
    let start = line.find('=').map_or(0, |i| i + 1);
    let bytes = line.as_bytes();
    let mut tokens = Vec::new();
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let mut end = i + 1;
                while end < bytes.len() && bytes[end] != b'"' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                let end = (end + 1).min(bytes.len());
                tokens.push(i..end);
                i = end;
            }
            b'#' => break,
            c if c.is_ascii_alphanumeric() || c == b'-' => {
                let mut end = i;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric() || b"-_.+:".contains(&bytes[end]))
                {
                    end += 1;
                }
                tokens.push(i..end);
                i = end;
            }
            _ => i += 1,
        }
    }
    tokens
}

/// Byte ranges inside the closed string literals of a key line's value (without the quotes).
fn string_insides(line: &str) -> Vec<std::ops::Range<usize>> {
    value_tokens(line)
        .into_iter()
        .filter(|r| {
            let token = &line[r.clone()];
            token.len() >= 2 && token.starts_with('"') && token.ends_with('"')
        })
        .map(|r| r.start + 1..r.end - 1)
        .collect()
}

/// Byte ranges of the runs of ASCII digits in a key line's value.
fn digit_runs(line: &str) -> Vec<std::ops::Range<usize>> {
    let start = line.find('=').map_or(0, |i| i + 1);
    let bytes = line.as_bytes();
    let mut runs = Vec::new();
    let mut i = start;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let begin = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            runs.push(begin..i);
        } else {
            i += 1;
        }
    }
    runs
}

/// A random char boundary of `line` within `range` (both ends included).
fn char_boundary_in(line: &str, range: std::ops::Range<usize>, rng: &mut StdRng) -> usize {
    let boundaries: Vec<usize> = (range.start..=range.end)
        .filter(|&i| line.is_char_boundary(i))
        .collect();
    *boundaries.choose(rng).unwrap_or(&range.start)
}
