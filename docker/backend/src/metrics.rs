//! Prometheus metrics, kept in process and rendered in the text exposition format.
//!
//! A mutex per family is plenty at the few thousand requests per second an instance
//! serves; it keeps the module dependency-free and the output fully under our control.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Business counters the platform's dashboards use.
#[derive(Clone, Copy, Debug)]
pub enum Business {
    Enrolment,
    VideoView,
    PaymentSucceeded,
    PaymentFailed,
    ExchangeOffered,
    ExchangeAccepted,
    ExchangeConfirmed,
    MemberCreated,
    SignedIn,
    SignInRejected,
    SignedOut,
}

#[derive(Default)]
pub struct Metrics {
    /// (route, method, status) -> requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// (route, method) -> latency histogram.
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
    enrolments: AtomicU64,
    video_views: AtomicU64,
    payments_succeeded: AtomicU64,
    payments_failed: AtomicU64,
    exchanges_offered: AtomicU64,
    exchanges_accepted: AtomicU64,
    exchanges_confirmed: AtomicU64,
    members_created: AtomicU64,
    signed_in: AtomicU64,
    sign_ins_rejected: AtomicU64,
    signed_out: AtomicU64,
    in_flight: AtomicU64,
}

impl Metrics {
    pub fn record_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        let secs = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().expect("metrics lock");
        let h = latency
            .entry((route.to_string(), method.to_string()))
            .or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn count(&self, what: Business) {
        let counter = match what {
            Business::Enrolment => &self.enrolments,
            Business::VideoView => &self.video_views,
            Business::PaymentSucceeded => &self.payments_succeeded,
            Business::PaymentFailed => &self.payments_failed,
            Business::ExchangeOffered => &self.exchanges_offered,
            Business::ExchangeAccepted => &self.exchanges_accepted,
            Business::ExchangeConfirmed => &self.exchanges_confirmed,
            Business::MemberCreated => &self.members_created,
            Business::SignedIn => &self.signed_in,
            Business::SignInRejected => &self.sign_ins_rejected,
            Business::SignedOut => &self.signed_out,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> &AtomicU64 {
        &self.in_flight
    }

    /// The whole registry in Prometheus text format 0.0.4.
    pub fn render(&self, instance: &str) -> String {
        let mut out = String::with_capacity(8192);
        let _ = writeln!(
            out,
            "# HELP platform_instance_info The instance serving this scrape."
        );
        let _ = writeln!(out, "# TYPE platform_instance_info gauge");
        let _ = writeln!(
            out,
            "platform_instance_info{{instance_name=\"{instance}\"}} 1"
        );

        let _ = writeln!(
            out,
            "# HELP http_requests_total HTTP requests served, by route, method and status."
        );
        let _ = writeln!(out, "# TYPE http_requests_total counter");
        for ((route, method, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }

        let _ = writeln!(
            out,
            "# HELP http_request_duration_seconds Time to produce the response, by route and method."
        );
        let _ = writeln!(out, "# TYPE http_request_duration_seconds histogram");
        for ((route, method), h) in self.latency.lock().expect("metrics lock").iter() {
            let labels = format!("route=\"{route}\",method=\"{method}\"");
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }

        let _ = writeln!(
            out,
            "# HELP http_requests_in_flight Requests being served right now."
        );
        let _ = writeln!(out, "# TYPE http_requests_in_flight gauge");
        let _ = writeln!(
            out,
            "http_requests_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );

        let simple = [
            (
                "platform_members_created_total",
                "Members created.",
                &self.members_created,
            ),
            (
                "platform_enrolments_total",
                "Course enrolments created.",
                &self.enrolments,
            ),
            (
                "platform_video_views_total",
                "Video views started.",
                &self.video_views,
            ),
        ];
        for (name, help, value) in simple {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP platform_payments_total Payments confirmed, by result."
        );
        let _ = writeln!(out, "# TYPE platform_payments_total counter");
        for (result, value) in [
            ("succeeded", &self.payments_succeeded),
            ("failed", &self.payments_failed),
        ] {
            let _ = writeln!(
                out,
                "platform_payments_total{{result=\"{result}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP platform_ayni_exchanges_total Ayni reciprocity exchanges, by stage reached."
        );
        let _ = writeln!(out, "# TYPE platform_ayni_exchanges_total counter");
        for (stage, value) in [
            ("offered", &self.exchanges_offered),
            ("accepted", &self.exchanges_accepted),
            ("confirmed", &self.exchanges_confirmed),
        ] {
            let _ = writeln!(
                out,
                "platform_ayni_exchanges_total{{stage=\"{stage}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP platform_sessions_total Session cookie events: sign-ins, refused sign-ins, sign-outs."
        );
        let _ = writeln!(out, "# TYPE platform_sessions_total counter");
        for (event, value) in [
            ("signed_in", &self.signed_in),
            ("rejected", &self.sign_ins_rejected),
            ("signed_out", &self.signed_out),
        ] {
            let _ = writeln!(
                out,
                "platform_sessions_total{{event=\"{event}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.record_request("/a", "GET", 200, Duration::from_millis(3));
        m.record_request("/a", "GET", 500, Duration::from_millis(300));
        let text = m.render("i");
        assert!(text.contains("http_requests_total{route=\"/a\",method=\"GET\",status=\"200\"} 1"));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{route=\"/a\",method=\"GET\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{route=\"/a\",method=\"GET\",le=\"0.5\"} 2"
        ));
        assert!(
            text.contains("http_request_duration_seconds_count{route=\"/a\",method=\"GET\"} 2")
        );
    }
}
