//! Failover through nginx: a burst of traffic, one backend SIGKILLed in the middle.
//! Idempotent requests (GET) are retried by nginx on another instance and must all
//! succeed; a non-idempotent request (POST) can only fail if it was in flight on the
//! killed instance, so its failures are bounded by the concurrency. The figures are printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::fixture::{Stack, exclusive, http, pid_alive, stack};

const WORKERS: usize = 16;
const BEFORE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(4);
const VICTIM: &str = "backend-2";

#[derive(Clone, Copy)]
struct Sample {
    at: Duration,
    post: bool,
    ok: bool,
}

/// Restarts the victim even if the test fails, so later tests find a full stack.
struct Restart(&'static Stack);
impl Drop for Restart {
    fn drop(&mut self) {
        self.0.restart_backend(VICTIM);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_backend_mid_burst() {
    let _g = exclusive().await;
    let s = stack();
    let c = http();
    let victim = s.state()["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == VICTIM)
        .expect("victim in state.json")
        .clone();
    let pid = victim["pid"].as_i64().unwrap() as i32;

    let samples = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let end = start + BEFORE + AFTER;
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (c, samples, base) = (c.clone(), samples.clone(), s.http_url.clone());
        workers.push(tokio::spawn(async move {
            let mut local = Vec::new();
            let mut i = 0usize;
            while Instant::now() < end {
                i += 1;
                let post = i.is_multiple_of(4);
                let req = if post {
                    c.post(format!("{base}/api/members"))
                        .json(&serde_json::json!({ "name": format!("failover {w}-{i}") }))
                } else if i.is_multiple_of(2) {
                    c.get(format!("{base}/api/courses/{}", 1 + (i + w) % 20))
                } else {
                    c.get(format!("{base}/api/lessons/{}/manifest", 1 + (i + w) % 60))
                };
                let ok = matches!(req.send().await, Ok(r) if r.status().is_success());
                local.push(Sample {
                    at: start.elapsed(),
                    post,
                    ok,
                });
            }
            samples.lock().await.extend(local);
        }));
    }

    tokio::time::sleep(BEFORE).await;
    let _restart = Restart(s);
    let killed_at = start.elapsed();
    // SAFETY: kill(2) on a PID read from state.json, which the stack recorded.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGKILL) },
        0,
        "SIGKILL {VICTIM}"
    );
    for w in workers {
        w.await.unwrap();
    }
    assert!(!pid_alive(pid as i64), "{VICTIM} is dead");

    let samples = samples.lock().await;
    let count = |f: &dyn Fn(&Sample) -> bool| samples.iter().filter(|s| f(s)).count();
    let gets = count(&|s| !s.post);
    let posts = count(&|s| s.post);
    let get_failed = count(&|s| !s.post && !s.ok);
    let post_failed = count(&|s| s.post && !s.ok);
    let failures: Vec<Duration> = samples.iter().filter(|s| !s.ok).map(|s| s.at).collect();
    let window = match (failures.iter().min(), failures.iter().max()) {
        (Some(first), Some(last)) => format!(
            "first failure {:?} after the kill, last {:?} after it (burst {:?})",
            first.saturating_sub(killed_at),
            last.saturating_sub(killed_at),
            *last - *first
        ),
        _ => "no failures".to_string(),
    };
    let after_kill = count(&|s| s.at > killed_at && s.ok);
    println!(
        "failover: {WORKERS} workers, {} requests ({gets} GET, {posts} POST) over {:?}, {VICTIM} SIGKILLed at {:?}; \
         failed: {get_failed} GET, {post_failed} POST; {window}; {after_kill} requests succeeded after the kill",
        samples.len(),
        BEFORE + AFTER,
        killed_at
    );
    assert!(
        after_kill > 100,
        "traffic kept flowing after the kill ({after_kill} ok)"
    );
    assert_eq!(
        get_failed, 0,
        "nginx retries idempotent requests on another instance"
    );
    assert!(
        post_failed <= WORKERS,
        "only POSTs in flight on the killed instance may fail ({post_failed} failed)"
    );
    // Errors, if any, are confined to the moment of the kill.
    if let Some(last) = failures.iter().max() {
        assert!(
            last.saturating_sub(killed_at) < Duration::from_secs(1),
            "{window}"
        );
    }
}
