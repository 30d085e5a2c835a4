//! Secrets given in a header, in a JSON body and through `${ENV}` reach the target, and
//! appear in no file of the run directory and nowhere in the terminal — also when
//! `loadgen report` renders the run again.

use std::path::Path;

use crate::support::server::TestServer;
use crate::support::{Workspace, loadgen_command, only_entry};

const IN_HEADER: &str = "header-secret-1a2b";
const IN_BODY: &str = "json-secret-3c4d";
const IN_ENV: &str = "env-secret-5e6f";
const IN_REDACT: &str = "custom-secret-7a8b";

/// Every file under `dir` that holds one of `secrets`, with the secret.
fn files_holding(dir: &Path, secrets: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in secrets {
            if text.contains(secret) {
                found.push(format!("{}: {secret}", path.display()));
            }
        }
    }
    found
}

#[test]
fn secrets_reach_the_target_but_no_file_and_no_terminal() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write(
        "secrets.toml",
        &format!(
            r#"name = "secrets"
redact = ["member_code"]
[target]
base_url = "{}"
headers = {{ Authorization = "Bearer {IN_HEADER}", X-Api-Key = "${{LOADGEN_IT_SECRET}}" }}
[load]
model = "open"
[[load.stage]]
duration = "2s"
rate = "10/s"
[[journey]]
name = "signup"
[[journey.step]]
name = "create"
method = "POST"
url = "/api/members"
json = {{ name = "ana", password = "{IN_BODY}", member_code = "{IN_REDACT}" }}
[[slo]]
objective = "error_rate < 1%"
"#,
            server.url()
        ),
    );
    let out = workspace.out();
    let ran = loadgen_command()
        .env("LOADGEN_IT_SECRET", IN_ENV)
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let terminal = format!(
        "{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    assert_eq!(ran.status.code(), Some(0), "{terminal}");
    let all = [IN_HEADER, IN_BODY, IN_ENV, IN_REDACT];
    // They were sent: the target saw every one of them.
    let seen = server.seen();
    assert!(seen.len() >= 10, "{}", seen.len());
    assert!(seen.iter().all(|s| s.authorization.as_deref()
        == Some(&format!("Bearer {IN_HEADER}") as &str)
        && s.body.contains(IN_BODY)
        && s.body.contains(IN_REDACT)));
    // ... and are nowhere else.
    for secret in all {
        assert!(!terminal.contains(secret), "{secret} printed:\n{terminal}");
    }
    let run_dir = only_entry(&out);
    assert_eq!(files_holding(&run_dir, &all), Vec::<String>::new());
    // The copy keeps the reference as written, and what it redacted says so.
    let copy = std::fs::read_to_string(run_dir.join("scenario.toml")).unwrap();
    assert!(copy.contains("${LOADGEN_IT_SECRET}"), "{copy}");
    assert_eq!(copy.matches("[redacted]").count(), 3, "{copy}");

    let report = loadgen_command()
        .args(["report", run_dir.to_str().unwrap()])
        .output()
        .unwrap();
    let terminal = format!(
        "{}{}",
        String::from_utf8_lossy(&report.stdout),
        String::from_utf8_lossy(&report.stderr)
    );
    assert_eq!(report.status.code(), Some(0), "{terminal}");
    assert!(run_dir.join("report.html").exists());
    assert_eq!(files_holding(&run_dir, &all), Vec::<String>::new());
    for secret in all {
        assert!(!terminal.contains(secret), "{secret} printed:\n{terminal}");
    }
}

#[test]
fn an_unset_variable_is_a_positioned_error_and_its_line_is_not_quoted() {
    let workspace = Workspace::new();
    let file = workspace.write(
        "unset.toml",
        r#"name = "unset"
[target]
base_url = "http://127.0.0.1:9"
headers = { Authorization = "Bearer literal-secret-9f", X-Key = "${LOADGEN_IT_NEVER_SET}" }
[load]
model = "open"
[[load.stage]]
duration = "1s"
rate = "1/s"
[[journey]]
name = "j"
[[journey.step]]
name = "a"
url = "/"
"#,
    );
    let ran = loadgen_command()
        .env_remove("LOADGEN_IT_NEVER_SET")
        .args(["validate", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "unset.toml:4:65: error: environment variable `LOADGEN_IT_NEVER_SET` is not set"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("literal-secret-9f"), "{stderr}");
}
