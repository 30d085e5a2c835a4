//! Every endpoint of every journey, through nginx.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fixture::{http, new_member, shared, stack};

fn instance(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-instance")
        .and_then(|v| v.to_str().ok())
        .expect("every response carries X-Instance")
        .to_string()
}

#[tokio::test]
async fn health_metrics_and_errors() {
    let _g = shared().await;
    let s = stack();
    let c = http();

    for path in ["/health/live", "/health/ready"] {
        let resp = c.get(s.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        instance(&resp);
    }
    let ready: Value = c
        .get(s.url("/health/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["postgres"], "ok");
    assert_eq!(ready["redis"], "ok");

    let resp = c.get(s.url("/no/such/route")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    instance(&resp);

    // Writes need a token; a bad one is 401, not 500.
    let resp = c
        .post(s.url("/api/courses/1/enrolments"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .post(s.url("/api/courses/1/enrolments"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .post(s.url("/api/members"))
        .json(&json!({ "name": "" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // Requests are spread over the instances (least_conn; sequential requests rotate).
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        let resp = c.get(s.url("/health/live")).send().await.unwrap();
        seen.insert(instance(&resp));
    }
    assert!(seen.len() >= 2, "only {seen:?} served 30 requests");

    // /metrics straight from one backend: per-route counters, histograms, business counters.
    let backend = s.state()["backends"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let text = c
        .get(format!("{backend}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "lms_http_requests_total{method=\"GET\",route=\"/health/live\",status=\"200\"}",
        "lms_http_request_duration_seconds_bucket{le=\"+Inf\",method=\"GET\",route=\"/health/live\"}",
        "lms_course_enrollments_total ",
        "lms_video_views_total ",
        "lms_successful_payments_total ",
        "lms_payment_failures_total ",
        "lms_ayni_exchanges_total{stage=\"confirmed\"}",
        "lms_database_queries_total{operation=\"select\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics");
    }
    // The documented families, each of its type, as an OpenMetrics parser reads the scrape.
    let families = openmetrics_families(&text);
    for (name, kind) in [
        ("lms_http_requests", "counter"),
        ("lms_http_request_duration_seconds", "histogram"),
        ("lms_user_registrations", "counter"),
        ("lms_failed_login_attempts", "counter"),
        ("lms_user_session_duration_seconds", "histogram"),
        ("lms_active_users_total", "gauge"),
        ("lms_course_enrollments", "counter"),
        ("lms_video_views", "counter"),
        ("lms_video_watch_duration_seconds", "histogram"),
        ("lms_payment_attempts", "counter"),
        ("lms_successful_payments", "counter"),
        ("lms_payment_failures", "counter"),
        ("lms_revenue_total_cents", "counter"),
        ("lms_database_queries", "counter"),
        ("lms_database_connections_active", "gauge"),
        ("lms_cache_hits", "counter"),
        ("lms_cache_misses", "counter"),
        ("lms_ayni_exchanges", "counter"),
        ("lms_sessions", "counter"),
    ] {
        assert_eq!(
            families.get(name).map(String::as_str),
            Some(kind),
            "{name} in {families:?}"
        );
    }
    assert!(
        !text.contains("platform_") && !text.contains("\nhttp_requests_total"),
        "the old names are gone"
    );

    // Prometheus is up and scrapes every backend.
    let prom = s.state()["prometheus"]["url"].as_str().unwrap().to_string();
    let cfg: Value = c
        .get(format!("{prom}/api/v1/status/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let yaml = cfg["data"]["yaml"].as_str().unwrap();
    for b in s.state()["backends"].as_array().unwrap() {
        assert!(
            yaml.contains(&format!("127.0.0.1:{}", b["port"])),
            "{b} not scraped"
        );
    }
}

#[tokio::test]
async fn enrolment_journey() {
    let _g = shared().await;
    let s = stack();
    let c = http();
    let (member, token) = new_member(&c, "Enrol Tester").await;

    let me: Value = c
        .get(s.url("/api/members/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], member);
    assert!(
        me.get("auth").is_none(),
        "the token is only returned at creation"
    );
    let read: Value = c
        .get(s.url(&format!("/api/members/{member}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["balance"], 100);

    // The course list comes from Redis after the first request.
    let first = c.get(s.url("/api/courses")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = c.get(s.url("/api/courses")).send().await.unwrap();
    assert_eq!(second.headers()["x-cache"], "hit");
    let courses: Value = second.json().await.unwrap();
    assert!(courses["courses"].as_array().unwrap().len() >= 5);

    let course: Value = c
        .get(s.url("/api/courses/7"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(course["id"], 7);
    assert_eq!(
        c.get(s.url("/api/courses/9999"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let resp = c
        .post(s.url("/api/courses/7/enrolments"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let enrolment: Value = resp.json().await.unwrap();
    let again = c
        .post(s.url("/api/courses/7/enrolments"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let missing = c
        .post(s.url("/api/courses/9999/enrolments"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let read: Value = c
        .get(s.url(&format!("/api/enrolments/{}", enrolment["id"])))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read, enrolment);
}

#[tokio::test]
async fn video_journey() {
    let _g = shared().await;
    let s = stack();
    let c = http();
    let (member, token) = new_member(&c, "Video Tester").await;

    let manifest: Value = c
        .get(s.url("/api/lessons/5/manifest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let segments = manifest["segments"].as_array().unwrap();
    assert!(!segments.is_empty());
    let size = manifest["segment_bytes"].as_u64().unwrap();
    for seg in segments {
        let resp = c
            .get(s.url(seg["url"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.bytes().await.unwrap().len() as u64, size);
    }
    let past_end = format!("/api/lessons/5/segments/{}", segments.len());
    assert_eq!(c.get(s.url(&past_end)).send().await.unwrap().status(), 404);
    assert_eq!(
        c.get(s.url("/api/lessons/9999/manifest"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let resp = c
        .post(s.url("/api/lessons/5/views"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["member_id"], member);
    for pos in [10, 20, 30] {
        let resp = c
            .post(s.url(&format!("/api/views/{}/heartbeats", view["id"])))
            .bearer_auth(&token)
            .json(&json!({ "position_s": pos }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    // Someone else's view: 403.
    let (_, other) = new_member(&c, "Intruder").await;
    let resp = c
        .post(s.url(&format!("/api/views/{}/heartbeats", view["id"])))
        .bearer_auth(&other)
        .json(&json!({ "position_s": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    let read: Value = c
        .get(s.url(&format!("/api/views/{}", view["id"])))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["heartbeats"], 3);
    assert_eq!(read["last_position_s"], 30);
}

#[tokio::test]
async fn payment_journey() {
    let _g = shared().await;
    let s = stack();
    let c = http();
    let (_, token) = new_member(&c, "Payer").await;
    let key = format!("journey-{}", std::process::id());

    let create = |card: &'static str, key: String| {
        c.post(s.url("/api/payments"))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .json(&json!({ "course_id": 3, "card": card }))
            .send()
    };
    let resp = create("4242424242424242", key.clone()).await.unwrap();
    assert_eq!(resp.status(), 201);
    let payment: Value = resp.json().await.unwrap();
    assert_eq!(payment["status"], "pending");
    let replay = create("4242424242424242", key.clone()).await.unwrap();
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap()["id"], payment["id"]);
    // The same key with another body is refused, not silently replayed.
    assert_eq!(
        create("5555555555554444", key.clone())
            .await
            .unwrap()
            .status(),
        422
    );

    let confirm = c
        .post(s.url(&format!("/api/payments/{}/confirm", payment["id"])))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), 200);
    let read: Value = c
        .get(s.url(&format!("/api/payments/{}", payment["id"])))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "succeeded");
    assert_eq!(read["charges"], 1);

    // The sandbox's declined card: 402 and status failed, nothing charged.
    let declined: Value = create("4000000000000002", format!("{key}-declined"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = c
        .post(s.url(&format!("/api/payments/{}/confirm", declined["id"])))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 402);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "failed");
    assert_eq!(body["charges"], 0);
}

#[tokio::test]
async fn ayni_journey() {
    let _g = shared().await;
    let s = stack();
    let c = http();
    let (provider, ptoken) = new_member(&c, "Provider").await;
    let (receiver, rtoken) = new_member(&c, "Receiver").await;

    let resp = c
        .post(s.url("/api/ayni/exchanges"))
        .bearer_auth(&ptoken)
        .json(&json!({ "receiver_id": receiver, "amount": 12, "description": "roof repair" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let ex: Value = resp.json().await.unwrap();
    let id = ex["id"].clone();
    let post =
        |path: String, token: &str| c.post(s.url(&path)).bearer_auth(token.to_string()).send();

    // Not accepted yet: 409. Only the receiver may accept: 403.
    assert_eq!(
        post(format!("/api/ayni/exchanges/{id}/confirm"), &ptoken)
            .await
            .unwrap()
            .status(),
        409
    );
    assert_eq!(
        post(format!("/api/ayni/exchanges/{id}/accept"), &ptoken)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(format!("/api/ayni/exchanges/{id}/accept"), &rtoken)
            .await
            .unwrap()
            .status(),
        200
    );
    let confirmed = post(format!("/api/ayni/exchanges/{id}/confirm"), &ptoken)
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    assert_eq!(
        confirmed.json::<Value>().await.unwrap()["status"],
        "confirmed"
    );
    // Confirming again replays; balance moves once.
    assert_eq!(
        post(format!("/api/ayni/exchanges/{id}/confirm"), &rtoken)
            .await
            .unwrap()
            .status(),
        200
    );

    let balance = |m: i64| {
        let c = c.clone();
        let url = s.url(&format!("/api/members/{m}/balance"));
        async move {
            c.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()["balance"]
                .as_i64()
                .unwrap()
        }
    };
    assert_eq!(balance(provider).await, 112);
    assert_eq!(balance(receiver).await, 88);
    let read: Value = c
        .get(s.url(&format!("/api/ayni/exchanges/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "confirmed");

    // More than the receiver has: 409 at confirm, nothing moves.
    let big: Value = c
        .post(s.url("/api/ayni/exchanges"))
        .bearer_auth(&ptoken)
        .json(&json!({ "receiver_id": receiver, "amount": 500 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let big_id = big["id"].clone();
    assert_eq!(
        post(format!("/api/ayni/exchanges/{big_id}/accept"), &rtoken)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post(format!("/api/ayni/exchanges/{big_id}/confirm"), &ptoken)
            .await
            .unwrap()
            .status(),
        409
    );
    assert_eq!(balance(receiver).await, 88);
}

/// The `session` cookie's value from a `Set-Cookie` header, and the header's attributes.
fn session_cookie(set_cookie: &str) -> (String, Vec<String>) {
    let mut parts = set_cookie.split(';').map(str::trim);
    let value = parts
        .next()
        .and_then(|p| p.strip_prefix("session="))
        .unwrap_or_else(|| panic!("not the session cookie: {set_cookie}"))
        .to_string();
    (value, parts.map(String::from).collect())
}

/// Seconds Redis keeps the session `token` alive (-2: no such key).
fn session_ttl(token: &str) -> i64 {
    let url = stack().state()["redis"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let out = std::process::Command::new("redis-cli")
        .args(["-u", &url, "TTL", &format!("platform:session:v1:{token}")])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A backend counter summed over every instance's /metrics.
/// Every metric family in an OpenMetrics scrape with its type, as python-prometheus-client's
/// OpenMetrics parser reads it (Debian's python3-prometheus-client, installed by `.ci/run`,
/// hence Debian's interpreter rather than whichever `python3` is first on PATH): a scrape it
/// refuses fails the test with the parser's reason.
fn openmetrics_families(text: &str) -> std::collections::BTreeMap<String, String> {
    let parsed = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys\n\
             from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
             for f in text_string_to_metric_families(sys.stdin.read()):\n    print(f.name, f.type)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("python3 runs");
    assert!(
        parsed.status.success(),
        "the OpenMetrics parser refused the scrape: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    String::from_utf8_lossy(&parsed.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect()
}

async fn counter(c: &reqwest::Client, line: &str) -> u64 {
    let mut total = 0;
    for b in stack().state()["backends"].as_array().unwrap() {
        let text = c
            .get(format!("{}/metrics", b["url"].as_str().unwrap()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        total += text
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .map_or(0, |v| v.trim().parse::<u64>().unwrap());
    }
    total
}

#[tokio::test]
async fn sign_in_sets_a_session_cookie_that_me_needs_and_sign_out_ends_it() {
    let _g = shared().await;
    let s = stack();
    let c = http();
    let (member, token) = new_member(&c, "Cookie Tester").await;
    let signed_in_before = counter(&c, "lms_sessions_total{event=\"signed_in\"}").await;
    let sessions_ended_before = counter(&c, "lms_user_session_duration_seconds_count").await;

    // Without a cookie (a bearer token does not count here): 401 with a JSON error.
    for req in [
        c.get(s.url("/api/me")),
        c.get(s.url("/api/me")).bearer_auth(&token),
        c.get(s.url("/api/me"))
            .header("cookie", "session=not-a-session"),
        c.get(s.url("/api/me"))
            .header("cookie", format!("session={}", "0".repeat(64))),
    ] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        instance(&resp);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "not_signed_in", "{body}");
    }

    // A wrong token, or an unknown member: 401, and no cookie.
    for body in [
        json!({ "member_id": member, "token": "wrong" }),
        json!({ "member_id": -1, "token": token }),
    ] {
        let resp = c
            .post(s.url("/api/session"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{body}");
        assert!(resp.headers().get("set-cookie").is_none());
        assert_eq!(
            resp.json::<Value>().await.unwrap()["error"],
            "bad_credentials"
        );
    }

    let resp = c
        .post(s.url("/api/session"))
        .json(&json!({ "member_id": member, "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    let signed_in: Value = resp.json().await.unwrap();
    assert_eq!(signed_in["id"], member, "{signed_in}");
    assert!(signed_in.get("token").is_none() && signed_in.get("auth").is_none());
    let (session, attributes) = session_cookie(&set_cookie);
    assert_eq!(session.len(), 64, "{set_cookie}");
    assert_ne!(session, token, "a session token of its own");
    // Over plain HTTP (nginx says X-Forwarded-Proto: http): not Secure.
    assert_eq!(
        attributes,
        ["Path=/api", "HttpOnly", "SameSite=Lax", "Max-Age=3600"],
        "{set_cookie}"
    );
    // Kept in Redis for as long as the cookie lives.
    let ttl = session_ttl(&session);
    assert!((3590..=3600).contains(&ttl), "Redis TTL {ttl}");

    // The cookie alone signs the member in, on whichever instance nginx picks (the session
    // lives in Redis, shared by all).
    let cookie = format!("theme=dark; session={session}");
    let mut seen = BTreeSet::new();
    for _ in 0..12 {
        let resp = c
            .get(s.url("/api/me"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        seen.insert(instance(&resp));
        let me: Value = resp.json().await.unwrap();
        assert_eq!(me["id"], member);
        assert_eq!(me["name"], "Cookie Tester");
    }
    assert!(seen.len() >= 2, "only {seen:?} answered");
    assert!(
        counter(&c, "lms_sessions_total{event=\"signed_in\"}").await > signed_in_before,
        "the sign-in is counted"
    );

    // Sign-out: 204, the cookie expired, the session gone from Redis; the old cookie is
    // worth nothing any more. Signing out again is harmless.
    for _ in 0..2 {
        let resp = c
            .delete(s.url("/api/session"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let expired = resp.headers()["set-cookie"].to_str().unwrap();
        assert_eq!(
            session_cookie(expired),
            (
                String::new(),
                ["Path=/api", "HttpOnly", "SameSite=Lax", "Max-Age=0"]
                    .map(String::from)
                    .to_vec()
            )
        );
    }
    assert_eq!(session_ttl(&session), -2, "the session is gone from Redis");
    assert!(
        counter(&c, "lms_user_session_duration_seconds_count").await > sessions_ended_before,
        "the sign-out observes how long the session lasted"
    );
    let resp = c
        .get(s.url("/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "not_signed_in"
    );
}

/// The same through nginx's TLS listener over HTTP/2, with curl's cookie jar: the cookie is
/// `Secure` there, the jar sends it back, and forgets it at sign-out.
#[tokio::test]
async fn over_tls_the_session_cookie_is_secure_and_the_jar_carries_it() {
    let _g = shared().await;
    let s = stack();
    let (member, token) = new_member(&http(), "TLS Cookie Tester").await;
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("jar");
    let jar = jar.to_str().unwrap();
    let ca = s.ca_file.to_str().unwrap();
    let https = |method: &str, path: &str, extra: &[&str]| {
        let url = format!("{}{path}", s.base_url);
        let mut args = vec!["--cacert", ca, "-b", jar, "-c", jar, "-X", method];
        args.extend_from_slice(extra);
        args.push(&url);
        crate::fixture::curl(&args)
    };

    let body = json!({ "member_id": member, "token": token }).to_string();
    let signed_in = https(
        "POST",
        "/api/session",
        &["-H", "content-type: application/json", "--data", &body],
    );
    assert_eq!(signed_in.status, 201, "{signed_in:?}");
    assert_eq!(signed_in.version, "2", "TLS with h2 by ALPN");
    let (session, attributes) = session_cookie(signed_in.header("set-cookie").unwrap());
    assert_eq!(session.len(), 64);
    assert_eq!(
        attributes,
        [
            "Path=/api",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=3600",
            "Secure"
        ]
    );

    let me = https("GET", "/api/me", &[]);
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.json()["id"], member);
    let out = https("DELETE", "/api/session", &[]);
    assert_eq!(out.status, 204, "{out:?}");
    let after = https("GET", "/api/me", &[]);
    assert_eq!(after.status, 401, "the jar dropped the expired cookie");
    assert_eq!(session_ttl(&session), -2);
}
