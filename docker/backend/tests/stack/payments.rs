//! The same Idempotency-Key sent by many concurrent retries creates one payment and, once
//! confirmed by many concurrent retries, charges it once.

use serde_json::{Value, json};

use crate::fixture::{http, new_member, shared, stack};

const RETRIES: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_charge_once() {
    let _g = shared().await;
    let s = stack();
    let c = http();
    let (member, token) = new_member(&c, "Concurrent Payer").await;
    let key = format!("concurrent-{}-{member}", std::process::id());

    let creates = (0..RETRIES).map(|_| {
        let (c, token, key, url) = (
            c.clone(),
            token.clone(),
            key.clone(),
            s.url("/api/payments"),
        );
        tokio::spawn(async move {
            let resp = c
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&json!({ "course_id": 2 }))
                .send()
                .await
                .expect("create payment");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("payment JSON"))
        })
    });
    let mut created = 0;
    let mut ids = std::collections::BTreeSet::new();
    for handle in creates.collect::<Vec<_>>() {
        let (status, body) = handle.await.unwrap();
        assert!(status == 200 || status == 201, "status {status}: {body}");
        created += usize::from(status == 201);
        ids.insert(body["id"].as_i64().unwrap());
    }
    assert_eq!(created, 1, "exactly one request creates the payment");
    assert_eq!(ids.len(), 1, "every retry got the same payment: {ids:?}");
    let id = *ids.first().unwrap();

    let confirms = (0..RETRIES).map(|_| {
        let (c, token, url) = (
            c.clone(),
            token.clone(),
            s.url(&format!("/api/payments/{id}/confirm")),
        );
        tokio::spawn(async move {
            c.post(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("confirm")
                .status()
        })
    });
    for handle in confirms.collect::<Vec<_>>() {
        assert_eq!(handle.await.unwrap(), 200);
    }

    let read: Value = c
        .get(s.url(&format!("/api/payments/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "succeeded");
    assert_eq!(read["charges"], 1);

    let db = s.postgres().await;
    let payments: i64 = db
        .query_one(
            "SELECT count(*) FROM payments WHERE member_id = $1 AND idempotency_key = $2",
            &[&member, &key],
        )
        .await
        .unwrap()
        .get(0);
    let charges: i64 = db
        .query_one("SELECT count(*) FROM charges WHERE payment_id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!((payments, charges), (1, 1));
}
