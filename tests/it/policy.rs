//! The operator policy (`LOADGEN_POLICY`, never /etc in tests): a scenario can only narrow
//! it. What lies outside — a host, a namespace, a container pattern, a data file — is
//! refused by `validate`, `--dry-run` and `run` alike (exit 2, nothing sent), naming the
//! scenario's position and the policy's; a scenario inside it runs.

use std::process::Output;

use crate::support::server::TestServer;
use crate::support::{Workspace, loadgen_command, steady_get};

const POLICY: &str = r#"[target]
allow_hosts = ["127.0.0.0/8", "::1"]
[chaos]
kube_namespaces = ["staging"]
targets = ["backend-*"]
[data]
dirs = ["DATA_DIR"]
"#;

fn with_policy(workspace: &Workspace, args: &[&str]) -> Output {
    let data = workspace.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let policy = workspace.write(
        "policy.toml",
        &POLICY.replace("DATA_DIR", data.to_str().unwrap()),
    );
    loadgen_command()
        .env("LOADGEN_POLICY", &policy)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn what_lies_outside_the_policy_is_refused_with_both_positions_and_nothing_is_sent() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let outside = workspace.dir.path().join("elsewhere.csv");
    std::fs::write(&outside, "id\n1\n").unwrap();
    let scenario = format!(
        "{}[data.feeder.members]\nfile = \"{}\"\n[chaos]\nkube_namespaces = [\"prod\"]\n[[fault]]\nname = \"db\"\naction = \"stop\"\ntarget = {{ container = \"db-*\" }}\nat = \"1s\"\nduration = \"1s\"\n",
        steady_get(
            &server.url(),
            "allow_hosts = [\"127.0.0.0/8\", \"10.0.0.0/8\"]\n",
            5,
            "2s",
            "/hello"
        ),
        outside.display()
    );
    let file = workspace.write("wide.toml", &scenario);
    let file = file.to_str().unwrap();
    for args in [
        vec!["validate", file],
        vec!["run", file, "--dry-run"],
        vec![
            "run",
            file,
            "--quiet",
            "--out",
            workspace.out().to_str().unwrap(),
        ],
    ] {
        let output = with_policy(&workspace, &args);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {text}");
        for (line, what) in [
            (
                3,
                "host `10.0.0.0/8` is outside the operator policy's allow_hosts",
            ),
            (17, "is outside the operator policy's data dirs"),
            (
                19,
                "namespace `prod` is outside the operator policy's kube_namespaces",
            ),
            (23, "target `db-*` is outside the operator policy's targets"),
        ] {
            assert!(
                text.lines()
                    .any(|l| l.contains(&format!("wide.toml:{line}:")) && l.contains(what)),
                "{args:?}: line {line} `{what}` missing:\n{text}"
            );
        }
        assert!(text.contains("policy.toml:2:15"), "{text}");
        assert!(text.contains("policy.toml:5:11"), "{text}");
    }
    assert!(server.seen().is_empty(), "nothing was sent");
    assert!(!workspace.out().exists(), "no run directory");
}

#[test]
fn a_scenario_inside_the_policy_runs_and_a_target_flag_outside_it_is_refused() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write(
        "narrow.toml",
        &steady_get(
            &server.url(),
            "allow_hosts = [\"127.0.0.1\"]\n",
            10,
            "1s",
            "/hello",
        ),
    );
    let file = file.to_str().unwrap();
    let out = workspace.out();
    let ran = with_policy(
        &workspace,
        &["run", file, "--quiet", "--out", out.to_str().unwrap()],
    );
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    assert!(!server.seen().is_empty());
    // `--target` replaces the base URL after validation: the policy still applies to it.
    let flagged = with_policy(
        &workspace,
        &[
            "run",
            file,
            "--quiet",
            "--target",
            "http://10.1.2.3:80",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let text = stderr(&flagged);
    assert_eq!(flagged.status.code(), Some(2), "{text}");
    assert!(text.contains("10.1.2.3"), "{text}");
}

#[test]
fn without_a_policy_loadgen_says_what_the_scenario_widened() {
    let server = TestServer::start();
    let workspace = Workspace::new();
    let file = workspace.write(
        "wide.toml",
        &steady_get(
            &server.url(),
            "allow_hosts = [\"127.0.0.0/8\", \"10.0.0.0/8\"]\n",
            5,
            "1s",
            "/hello",
        ),
    );
    let ran = loadgen_command()
        .env_remove("LOADGEN_POLICY")
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            workspace.out().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = stderr(&ran);
    assert_eq!(ran.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "no operator policy: the scenario itself allows hosts 127.0.0.0/8, 10.0.0.0/8"
        ),
        "{text}"
    );
    // A list inside loopback widens nothing, and is not called out.
    let narrow = workspace.write(
        "narrow.toml",
        &steady_get(
            &server.url(),
            "allow_hosts = [\"127.0.0.1\"]\n",
            5,
            "1s",
            "/hello",
        ),
    );
    let ran = loadgen_command()
        .env_remove("LOADGEN_POLICY")
        .args([
            "run",
            narrow.to_str().unwrap(),
            "--out",
            workspace.out().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = stderr(&ran);
    assert_eq!(ran.status.code(), Some(0), "{text}");
    assert!(!text.contains("no operator policy"), "{text}");
}

#[test]
fn a_faults_guardrails_may_be_no_looser_than_the_policys() {
    let workspace = Workspace::new();
    let policy = workspace.write(
        "caps.toml",
        "[chaos]\nmax_unavailable = 1\nallow_last = false\n",
    );
    let fault = |guard: &str| {
        format!(
            "{}[[fault]]\nname = \"kill\"\naction = \"kill\"\ntarget = {{ process = \"backend-1\" }}\nat = \"1s\"\n{guard}\n",
            steady_get("http://127.0.0.1:9", "", 5, "2s", "/hello")
        )
    };
    let validate = |name: &str, text: &str| {
        let file = workspace.write(name, text);
        loadgen_command()
            .args(["validate", file.to_str().unwrap(), "--policy"])
            .arg(&policy)
            .output()
            .unwrap()
    };
    let loose = validate(
        "loose.toml",
        &fault("max_unavailable = 2\nallow_last = true"),
    );
    let text = stderr(&loose);
    assert_eq!(loose.status.code(), Some(2), "{text}");
    assert!(
        text.contains(
            "loose.toml:20:19: error: max_unavailable is looser than the operator policy's 1"
        ),
        "{text}"
    );
    assert!(text.contains("caps.toml:2:19"), "{text}");
    assert!(
        text.contains("allow_last = true is forbidden by the operator policy"),
        "{text}"
    );
    let share = validate("share.toml", &fault("max_unavailable = \"50%\""));
    assert_eq!(share.status.code(), Some(2), "{}", stderr(&share));
    let within = validate("within.toml", &fault("max_unavailable = 1"));
    assert_eq!(within.status.code(), Some(0), "{}", stderr(&within));
}
