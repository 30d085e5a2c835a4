//! Every acknowledged write is durable: it reads back by id through nginx after every
//! backend has been restarted, and it is in Postgres.

use serde_json::{Value, json};

use crate::fixture::{exclusive, http, new_member, stack};

#[tokio::test]
async fn acknowledged_writes_survive_backend_restarts() {
    let _g = exclusive().await;
    let s = stack();
    let c = http();
    let (member, token) = new_member(&c, "Durable").await;
    let (other, other_token) = new_member(&c, "Durable partner").await;

    let post = |path: &str, token: &str, body: Value| {
        c.post(s.url(path))
            .bearer_auth(token.to_string())
            .json(&body)
            .send()
    };
    let enrolment: Value = post("/api/courses/11/enrolments", &token, json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let view: Value = post("/api/lessons/8/views", &token, json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let beat = post(
        &format!("/api/views/{}/heartbeats", view["id"]),
        &token,
        json!({ "position_s": 42 }),
    )
    .await
    .unwrap();
    assert_eq!(beat.status(), 201);
    let payment: Value = c
        .post(s.url("/api/payments"))
        .bearer_auth(&token)
        .header("Idempotency-Key", format!("durable-{member}"))
        .json(&json!({ "course_id": 11 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let confirmed = post(
        &format!("/api/payments/{}/confirm", payment["id"]),
        &token,
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(confirmed.status(), 200);
    let exchange: Value = post(
        "/api/ayni/exchanges",
        &token,
        json!({ "receiver_id": other, "amount": 9 }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let ex = exchange["id"].clone();
    assert_eq!(
        post(
            &format!("/api/ayni/exchanges/{ex}/accept"),
            &other_token,
            json!({})
        )
        .await
        .unwrap()
        .status(),
        200
    );
    assert_eq!(
        post(
            &format!("/api/ayni/exchanges/{ex}/confirm"),
            &token,
            json!({})
        )
        .await
        .unwrap()
        .status(),
        200
    );

    // Restart every instance (SIGTERM, drain, start again on the same port).
    let names: Vec<String> = s.state()["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    let pids_before: Vec<i64> = s.state()["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["pid"].as_i64().unwrap())
        .collect();
    for name in &names {
        s.restart_backend(name);
    }
    let pids_after: Vec<i64> = s.state()["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["pid"].as_i64().unwrap())
        .collect();
    assert!(
        pids_before.iter().all(|p| !pids_after.contains(p)),
        "every backend is a new process"
    );

    let get = |path: String| {
        let c = c.clone();
        let url = s.url(&path);
        async move {
            let resp = c.get(url).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            resp.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(
        get(format!("/api/enrolments/{}", enrolment["id"])).await,
        enrolment
    );
    let v = get(format!("/api/views/{}", view["id"])).await;
    assert_eq!(
        (v["heartbeats"].as_i64(), v["last_position_s"].as_i64()),
        (Some(1), Some(42))
    );
    let p = get(format!("/api/payments/{}", payment["id"])).await;
    assert_eq!(
        (p["status"].as_str(), p["charges"].as_i64()),
        (Some("succeeded"), Some(1))
    );
    assert_eq!(
        get(format!("/api/ayni/exchanges/{ex}")).await["status"],
        "confirmed"
    );
    assert_eq!(
        get(format!("/api/members/{member}/balance")).await["balance"],
        109
    );
    assert_eq!(
        get(format!("/api/members/{other}/balance")).await["balance"],
        91
    );

    // And straight from Postgres.
    let db = s.postgres().await;
    let enrolled: i64 = db
        .query_one(
            "SELECT count(*) FROM enrolments WHERE id = $1 AND member_id = $2 AND course_id = 11",
            &[&enrolment["id"].as_i64().unwrap(), &member],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(enrolled, 1);
    let status: String = db
        .query_one(
            "SELECT status FROM payments WHERE id = $1",
            &[&payment["id"].as_i64().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "succeeded");
    let ex_status: String = db
        .query_one(
            "SELECT status FROM exchanges WHERE id = $1",
            &[&ex.as_i64().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ex_status, "confirmed");
    let beats: i64 = db
        .query_one(
            "SELECT count(*) FROM view_heartbeats WHERE view_id = $1",
            &[&view["id"].as_i64().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(beats, 1);
}
