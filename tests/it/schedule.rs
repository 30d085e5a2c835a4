//! The schedulers on paused tokio time: each arrival / user change fires exactly when the
//! plan says, measured on the runtime's clock.

use std::cell::Cell;
use std::time::Duration;

use loadgen::api::engine::{drive_arrivals, drive_vus};
use loadgen::api::plan::{ArrivalSchedule, vu_changes};
use loadgen::api::plan::{RateStage, VuStage};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn stage(ms: u64, rate: f64) -> RateStage {
    RateStage {
        duration: Duration::from_millis(ms),
        rate,
    }
}

#[tokio::test(start_paused = true)]
async fn ramping_arrivals_fire_at_their_planned_instants() {
    // 0 → 20/s over 1 s (10 arrivals at √(k/10) s), 20/s for 0.5 s (10), 20 → 0/s over 1 s (10).
    let schedule = ArrivalSchedule::new(
        0.0,
        &[stage(1000, 20.0), stage(500, 20.0), stage(1000, 0.0)],
    );
    assert_eq!(schedule.total(), 30);
    let start = Instant::now();
    let mut fired = Vec::new();
    drive_arrivals(
        &schedule,
        start,
        0,
        1,
        &CancellationToken::new(),
        &Cell::new(None),
        |k, due| {
            fired.push((k, Instant::now() - start, due - start));
        },
        |k| panic!("never stopped, yet stopped at {k}"),
    )
    .await;
    assert_eq!(fired.len(), 30);
    let mut expected = Vec::new();
    for k in 0..10 {
        expected.push((k as f64 / 10.0).sqrt());
    }
    for k in 0..10 {
        expected.push(1.0 + k as f64 * 0.05);
    }
    for k in 0..10 {
        // Ramp down from 20/s over 1 s: N(t) = 20t − 10t², so t = 1 − √(1 − k/10).
        expected.push(1.5 + 1.0 - (1.0 - k as f64 / 10.0).sqrt());
    }
    for ((k, fired_at, due), want) in fired.iter().zip(&expected) {
        let due = due.as_secs_f64();
        assert!(
            (due - want).abs() < 1e-6,
            "arrival {k} due {due} want {want}"
        );
        // Paused time advances exactly to each timer: millisecond timer granularity.
        assert!(
            (fired_at.as_secs_f64() - want).abs() < 0.0011,
            "arrival {k} fired at {fired_at:?}, want {want}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn workers_split_arrivals_by_stride() {
    let schedule = ArrivalSchedule::new(10.0, &[stage(1000, 10.0)]);
    let start = Instant::now();
    let mut mine = Vec::new();
    drive_arrivals(
        &schedule,
        start,
        1,
        3,
        &CancellationToken::new(),
        &Cell::new(None),
        |k, due| mine.push((k, (due - start).as_millis())),
        |_| {},
    )
    .await;
    assert_eq!(mine, vec![(1, 100), (4, 400), (7, 700)]);
}

#[tokio::test(start_paused = true)]
async fn stop_ends_the_arrivals_at_once() {
    let schedule = ArrivalSchedule::new(10.0, &[stage(10_000, 10.0)]);
    let stop = CancellationToken::new();
    let start = Instant::now();
    let trigger = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(450)).await;
        trigger.cancel();
    });
    let mut count = 0;
    let next_due = Cell::new(None);
    let mut stopped_at = None;
    drive_arrivals(
        &schedule,
        start,
        0,
        1,
        &stop,
        &next_due,
        |_, _| count += 1,
        |k| {
            // Said while the first unlaunched arrival's second is still held open.
            assert!(next_due.get().is_some());
            stopped_at = Some(k);
        },
    )
    .await;
    assert_eq!(next_due.get(), None, "a stopped clock holds no second open");
    assert_eq!(stopped_at, Some(5), "the first arrival not launched");
    assert_eq!(count, 5, "arrivals at 0, 100, 200, 300, 400 ms only");
    assert!(Instant::now() - start < Duration::from_millis(460));
}

#[tokio::test(start_paused = true)]
async fn virtual_users_change_at_planned_instants() {
    let stages = [
        VuStage {
            duration: Duration::from_secs(2),
            vus: 4,
        },
        VuStage {
            duration: Duration::from_secs(1),
            vus: 2,
        },
    ];
    let changes = vu_changes(0, &stages);
    let start = Instant::now();
    let mut applied = Vec::new();
    drive_vus(&changes, start, &CancellationToken::new(), |n| {
        applied.push(((Instant::now() - start).as_millis(), n))
    })
    .await;
    assert_eq!(
        applied,
        vec![
            (0, 0),
            (500, 1),
            (1000, 2),
            (1500, 3),
            (2000, 4),
            (2500, 3),
            (3000, 2)
        ]
    );
}
