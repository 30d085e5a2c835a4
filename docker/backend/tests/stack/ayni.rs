//! Exchanges only move balance: after a concurrent burst of exchanges among a few members
//! (so they contend for the same rows), the sum of their balances is unchanged and each
//! balance matches the confirmed exchanges exactly.

use serde_json::{Value, json};

use crate::fixture::{http, new_member, shared, stack};

const MEMBERS: usize = 6;
const EXCHANGES: usize = 90;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_is_conserved_under_concurrent_exchanges() {
    let _g = shared().await;
    let s = stack();
    let c = http();
    let mut members = Vec::new();
    for i in 0..MEMBERS {
        members.push(new_member(&c, &format!("Ayni burst {i}")).await);
    }
    let ids: Vec<i64> = members.iter().map(|m| m.0).collect();

    let tasks = (0..EXCHANGES).map(|i| {
        // A fixed, well-mixed pattern of pairs and amounts (some exceed what is left).
        let p = (i * 7) % MEMBERS;
        let r = (p + 1 + (i * 5) % (MEMBERS - 1)) % MEMBERS;
        let amount = 5 + (i * 13) % 40;
        let (provider, receiver) = (members[p].clone(), members[r].clone());
        let c = c.clone();
        let base = s.http_url.clone();
        tokio::spawn(async move {
            let ex: Value = c
                .post(format!("{base}/api/ayni/exchanges"))
                .bearer_auth(&provider.1)
                .json(&json!({ "receiver_id": receiver.0, "amount": amount }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = ex["id"].as_i64().expect("exchange id");
            let accept = c
                .post(format!("{base}/api/ayni/exchanges/{id}/accept"))
                .bearer_auth(&receiver.1)
                .send()
                .await
                .unwrap();
            assert_eq!(accept.status(), 200);
            // Both parties confirm at once: credits must move once, never twice.
            let confirm = |token: String| {
                let (c, url) = (c.clone(), format!("{base}/api/ayni/exchanges/{id}/confirm"));
                async move {
                    c.post(url)
                        .bearer_auth(token)
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                }
            };
            let (a, b) = tokio::join!(confirm(provider.1.clone()), confirm(receiver.1.clone()));
            (a, b)
        })
    });
    let mut confirmed = 0;
    for handle in tasks.collect::<Vec<_>>() {
        let (a, b) = handle.await.unwrap();
        for status in [a, b] {
            assert!(status == 200 || status == 409, "confirm answered {status}");
        }
        // One confirm may be refused (409, balance short) and the other succeed a moment
        // later once the receiver earned credits elsewhere; the DB check below proves
        // the credits moved exactly once per confirmed exchange.
        confirmed += usize::from(a == 200 || b == 200);
    }
    assert!(
        confirmed > EXCHANGES / 3,
        "only {confirmed} exchanges confirmed"
    );

    let mut total = 0;
    for id in &ids {
        let b: Value = c
            .get(s.url(&format!("/api/members/{id}/balance")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let balance = b["balance"].as_i64().unwrap();
        assert!(balance >= 0);
        total += balance;
    }
    assert_eq!(
        total,
        100 * MEMBERS as i64,
        "sum of balances through the API"
    );

    let db = s.postgres().await;
    let row = db
        .query_one(
            "SELECT sum(balance)::bigint,
                    bool_and(balance = 100
                        + coalesce((SELECT sum(amount) FROM exchanges e WHERE e.provider_id = m.id AND e.status = 'confirmed'), 0)
                        - coalesce((SELECT sum(amount) FROM exchanges e WHERE e.receiver_id = m.id AND e.status = 'confirmed'), 0))
             FROM members m WHERE m.id = ANY($1)",
            &[&ids],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        100 * MEMBERS as i64,
        "sum of balances in Postgres"
    );
    assert!(
        row.get::<_, bool>(1),
        "every balance equals 100 + credits earned - credits spent"
    );
    println!(
        "ayni burst: {EXCHANGES} exchanges, {confirmed} confirmed, the rest refused for insufficient balance"
    );
}
