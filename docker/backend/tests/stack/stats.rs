//! `/api/stats` counts exactly what the API did and shows no Ayni drift; a backend in the
//! test-only LOSSY mode acknowledges writes it rolled back, and its log names exactly those.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::fixture::{ExtraBackend, exclusive, http, new_member, shared, stack};

const STATS_KEYS: [&str; 7] = [
    "members",
    "enrolments",
    "payments",
    "charges",
    "exchanges",
    "exchanges_confirmed",
    "ayni",
];
const AYNI_KEYS: [&str; 3] = ["credits", "issued", "drift"];

/// `/api/stats` through nginx, checked to be exactly the documented shape of integers.
async fn stats(c: &reqwest::Client) -> Value {
    let resp = c.get(stack().url("/api/stats")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let keys = |v: &Value| {
        v.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
    };
    let set = |names: &[&str]| names.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(keys(&body), set(&STATS_KEYS), "{body}");
    assert_eq!(keys(&body["ayni"]), set(&AYNI_KEYS), "{body}");
    for key in &STATS_KEYS[..6] {
        assert!(body[key].is_i64(), "{key} is not an integer: {body}");
    }
    for key in AYNI_KEYS {
        assert!(
            body["ayni"][key].is_i64(),
            "ayni.{key} is not an integer: {body}"
        );
    }
    body
}

/// How far each count moved from `before` to `after`, `ayni.x` for the nested ones.
fn moved(before: &Value, after: &Value) -> Vec<(String, i64)> {
    let delta = |a: &Value, b: &Value| b.as_i64().unwrap() - a.as_i64().unwrap();
    let mut out: Vec<(String, i64)> = STATS_KEYS[..6]
        .iter()
        .map(|k| (k.to_string(), delta(&before[k], &after[k])))
        .collect();
    for k in AYNI_KEYS {
        out.push((
            format!("ayni.{k}"),
            delta(&before["ayni"][k], &after["ayni"][k]),
        ));
    }
    out
}

/// POSTs `body` to `path` on the shared stack as `token`, expecting `status`.
async fn post(c: &reqwest::Client, path: &str, token: &str, body: Value, status: u16) -> Value {
    let resp = c
        .post(stack().url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), status, "POST {path}");
    resp.json().await.unwrap()
}

#[tokio::test]
async fn stats_move_by_exactly_what_the_api_did_and_ayni_does_not_drift() {
    // Exact counts: nothing else may write meanwhile.
    let _g = exclusive().await;
    let c = http();
    let before = stats(&c).await;
    assert_eq!(before["ayni"]["drift"], 0, "{before}");

    let (provider, ptoken) = new_member(&c, "Stats provider").await;
    let (receiver, rtoken) = new_member(&c, "Stats receiver").await;
    post(&c, "/api/courses/4/enrolments", &rtoken, json!({}), 201).await;
    let payment = post(&c, "/api/payments", &rtoken, json!({ "course_id": 4 }), 201).await;
    let confirm = format!("/api/payments/{}/confirm", payment["id"]);
    post(&c, &confirm, &rtoken, json!({}), 200).await;
    let offer = json!({ "receiver_id": receiver, "amount": 7, "description": "stats" });
    let exchange = post(&c, "/api/ayni/exchanges", &ptoken, offer, 201).await;
    let ex = format!("/api/ayni/exchanges/{}", exchange["id"]);
    post(&c, &format!("{ex}/accept"), &rtoken, json!({}), 200).await;
    let confirmed = post(&c, &format!("{ex}/confirm"), &ptoken, json!({}), 200).await;
    assert_eq!(confirmed["provider_id"], provider);

    let after = stats(&c).await;
    // Two members bring 100 credits each; the exchange only moves 7 between them.
    let expected: Vec<(String, i64)> = [
        ("members", 2),
        ("enrolments", 1),
        ("payments", 1),
        ("charges", 1),
        ("exchanges", 1),
        ("exchanges_confirmed", 1),
        ("ayni.credits", 200),
        ("ayni.issued", 200),
        ("ayni.drift", 0),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), *n))
    .collect();
    assert_eq!(moved(&before, &after), expected, "{before} -> {after}");
    assert_eq!(after["ayni"]["drift"], 0, "{after}");

    // The same totals straight from Postgres.
    let db = stack().postgres().await;
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM enrolments), (SELECT sum(balance)::bigint FROM members)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(after["enrolments"], row.get::<_, i64>(0));
    assert_eq!(after["ayni"]["credits"], row.get::<_, i64>(1));
}

/// A temp dir holding the LOSSY_LOG path, and the path as a string for the environment.
fn lossy_log() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lost.log").to_string_lossy().to_string();
    (dir, path)
}

/// The status of `GET path` through nginx, and its body.
async fn read_back(c: &reqwest::Client, path: &str) -> (u16, Value) {
    let resp = c.get(stack().url(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Enrols `token` in `course` on `backend`, expecting 201; returns the enrolment.
async fn enrol(c: &reqwest::Client, backend: &ExtraBackend, token: &str, course: i32) -> Value {
    let resp = c
        .post(format!("{}/api/courses/{course}/enrolments", backend.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "enrolment in course {course}");
    resp.json().await.unwrap()
}

#[tokio::test]
async fn a_lossy_backend_acknowledges_writes_it_rolled_back_and_logs_them() {
    let _g = shared().await;
    let c = http();
    let (_dir, log) = lossy_log();
    let backend = ExtraBackend::spawn(
        "lossy-all",
        &[("LOSSY_WRITES", "1"), ("LOSSY_LOG", log.as_str())],
    );
    assert!(backend.stderr().contains("LOSSY"), "{}", backend.stderr());
    let (member, token) = new_member(&c, "Lossy enrolee").await;

    // Acknowledged as usual: 201 and the enrolment, with an id. But it is not there.
    let enrolment = enrol(&c, &backend, &token, 9).await;
    assert_eq!(
        (&enrolment["member_id"], &enrolment["course_id"]),
        (&json!(member), &json!(9))
    );
    let id = enrolment["id"].as_i64().expect("an id");
    let (status, _) = read_back(&c, &format!("/api/enrolments/{id}")).await;
    assert_eq!(status, 404, "a lost enrolment reads back 404");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("enrolment {id}\n")
    );

    // A new payment is lost the same way.
    let resp = c
        .post(format!("{}/api/payments", backend.url()))
        .bearer_auth(&token)
        .json(&json!({ "course_id": 9 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let payment: Value = resp.json().await.unwrap();
    assert_eq!(payment["status"], "pending");
    let pid = payment["id"].as_i64().expect("an id");
    let (status, _) = read_back(&c, &format!("/api/payments/{pid}")).await;
    assert_eq!(status, 404, "a lost payment reads back 404");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("enrolment {id}\npayment {pid}\n")
    );

    // Nothing was stored, so the member can enrol again (no 409), and the id the lost one
    // took from the sequence is never handed out again.
    let kept = post(&c, "/api/courses/9/enrolments", &token, json!({}), 201).await;
    assert!(kept["id"].as_i64().unwrap() > id, "{kept} after {id}");
}

#[tokio::test]
async fn a_half_lossy_backend_logs_exactly_the_writes_that_read_back_404() {
    let _g = shared().await;
    let c = http();
    let (_dir, log) = lossy_log();
    let backend = ExtraBackend::spawn(
        "lossy-half",
        &[("LOSSY_WRITES", "0.5"), ("LOSSY_LOG", log.as_str())],
    );
    // 2 members x 20 courses: 40 enrolments, none a repeat (a repeat would be a 409).
    let mut acknowledged = Vec::new();
    for name in ["Half lossy 1", "Half lossy 2"] {
        let (_, token) = new_member(&c, name).await;
        for course in 1..=20 {
            acknowledged.push(enrol(&c, &backend, &token, course).await);
        }
    }

    let (mut lost, mut kept) = (BTreeSet::new(), BTreeSet::new());
    for enrolment in &acknowledged {
        let id = enrolment["id"].as_i64().unwrap();
        match read_back(&c, &format!("/api/enrolments/{id}")).await {
            (404, _) => lost.insert(id),
            (200, stored) => {
                assert_eq!(
                    &stored, enrolment,
                    "a kept enrolment reads back as acknowledged"
                );
                kept.insert(id)
            }
            (status, body) => panic!("GET /api/enrolments/{id}: {status} {body}"),
        };
    }
    let mut logged: Vec<i64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| {
            let id = line
                .strip_prefix("enrolment ")
                .unwrap_or_else(|| panic!("{line:?}"));
            id.parse().unwrap()
        })
        .collect();
    logged.sort_unstable();
    assert_eq!(
        logged,
        lost.iter().copied().collect::<Vec<_>>(),
        "the log names exactly the enrolments that are gone, each once"
    );
    // Both kinds happen: all 40 landing on one side has odds of 2^-39.
    assert!(
        !lost.is_empty() && !kept.is_empty(),
        "lost {lost:?}, kept {kept:?}"
    );
}
