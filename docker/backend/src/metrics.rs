//! Prometheus metrics under the platform documentation's `lms_*` names, encoded in the
//! OpenMetrics text format by prometheus-client. Handlers count business events; the
//! middleware counts and times every request; a scrape reads the gauges that are states
//! (database connections in use, members active in the last five minutes) as they are then.
//!
//! One documented name is a family's, not its sample's: the counter `lms_revenue_total_cents`
//! is exposed as the sample `lms_revenue_total_cents_total` (every OpenMetrics counter sample
//! ends in `_total`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds (seconds) of the request latency buckets: web latency, 1 ms to 30 s.
const REQUEST_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Sessions last seconds (a drill's journey) to the cookie's day.
const SESSION_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14_400.0, 86_400.0,
];
/// Watch time a heartbeat reports since the view's previous one.
const WATCH_BUCKETS: [f64; 9] = [1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// How recently a member must have made a request to count as active.
const ACTIVE_WINDOW: Duration = Duration::from_secs(300);

/// The documentation's name. OpenMetrics advises against (SHOULD avoid) a family name ending
/// in a suffix its samples use, but allows it: a gauge's one sample carries its family's name
/// exactly, and Prometheus's and python-prometheus-client's OpenMetrics parsers take it as a
/// gauge (the stack test parses a scrape with the latter).
const ACTIVE_USERS: &str = "lms_active_users_total";

/// Business events handlers count.
#[derive(Clone, Copy, Debug)]
pub enum Business {
    Enrolment,
    VideoView,
    PaymentSucceeded { amount_cents: i64 },
    PaymentFailed,
    ExchangeOffered,
    ExchangeAccepted,
    ExchangeConfirmed,
    MemberCreated,
    SignedIn,
    SignInRejected,
    SignedOut { session: Option<Duration> },
}

/// What a database query does, from its SQL (a `WITH … INSERT` is an insert).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Select,
    Insert,
    Update,
    Delete,
    Other,
}

impl Operation {
    pub fn of(sql: &str) -> Operation {
        let upper = sql.trim_start().to_ascii_uppercase();
        let first = upper.split_whitespace().next().unwrap_or("");
        let writes = |word: &str| upper.contains(&format!("{word} "));
        match first {
            "SELECT" => Operation::Select,
            "INSERT" => Operation::Insert,
            "UPDATE" => Operation::Update,
            "DELETE" => Operation::Delete,
            // A CTE's verb is the first data-changing statement inside it.
            "WITH" if writes("INSERT INTO") => Operation::Insert,
            "WITH" if writes("UPDATE") => Operation::Update,
            "WITH" if writes("DELETE FROM") => Operation::Delete,
            "WITH" => Operation::Select,
            _ => Operation::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Operation::Select => "select",
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Other => "other",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    registrations: Counter,
    failed_logins: Counter,
    session_duration: Histogram,
    active_users: Gauge,
    last_seen: Mutex<HashMap<i64, Instant>>,
    enrollments: Counter,
    video_views: Counter,
    watch_duration: Histogram,
    payment_attempts: Counter,
    payments_succeeded: Counter,
    payment_failures: Counter,
    revenue_cents: Counter,
    queries: Family<OperationLabel, Counter>,
    connections_active: Gauge,
    cache_hits: Counter,
    cache_misses: Counter,
    exchanges: Family<StageLabel, Counter>,
    sessions: Family<EventLabel, Counter>,
}

impl Metrics {
    pub fn new(instance: &str) -> Metrics {
        let mut metrics = Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(request_histogram),
            in_flight: Gauge::default(),
            registrations: Counter::default(),
            failed_logins: Counter::default(),
            session_duration: Histogram::new(SESSION_BUCKETS),
            active_users: Gauge::default(),
            last_seen: Mutex::new(HashMap::new()),
            enrollments: Counter::default(),
            video_views: Counter::default(),
            watch_duration: Histogram::new(WATCH_BUCKETS),
            payment_attempts: Counter::default(),
            payments_succeeded: Counter::default(),
            payment_failures: Counter::default(),
            revenue_cents: Counter::default(),
            queries: Family::default(),
            connections_active: Gauge::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            exchanges: Family::default(),
            sessions: Family::default(),
            registry: Registry::default(),
        };
        metrics.registry = metrics.registered(instance);
        // Every label value known up front starts at 0, so rate() sees its first event.
        for stage in ["offered", "accepted", "confirmed"] {
            let _ = metrics.exchanges.get_or_create(&StageLabel { stage });
        }
        for event in ["signed_in", "rejected", "signed_out"] {
            let _ = metrics.sessions.get_or_create(&EventLabel { event });
        }
        for operation in [
            Operation::Select,
            Operation::Insert,
            Operation::Update,
            Operation::Delete,
            Operation::Other,
        ] {
            let operation = operation.label();
            let _ = metrics.queries.get_or_create(&OperationLabel { operation });
        }
        metrics
    }

    /// Every family under its documented name (prometheus-client adds `_total` to counter
    /// samples and the unit to the name where one is given).
    fn registered(&self, instance: &str) -> Registry {
        let mut registry = Registry::default();
        registry.register(
            "lms_instance",
            "The instance serving this scrape",
            Info::new(vec![("instance_name".to_string(), instance.to_string())]),
        );
        registry.register(
            "lms_http_requests",
            "HTTP requests served, by method, route template and status",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "lms_http_request_duration",
            "Time to serve a request, by method and route template",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register(
            "lms_http_requests_in_flight",
            "Requests being served right now",
            self.in_flight.clone(),
        );
        let counters: [(&str, &str, &Counter); 10] = [
            (
                "lms_user_registrations",
                "Members created",
                &self.registrations,
            ),
            (
                "lms_failed_login_attempts",
                "Refused sign-ins",
                &self.failed_logins,
            ),
            (
                "lms_course_enrollments",
                "Enrolments committed",
                &self.enrollments,
            ),
            ("lms_video_views", "Video views started", &self.video_views),
            (
                "lms_payment_attempts",
                "Payments charged or declined at their first confirm",
                &self.payment_attempts,
            ),
            (
                "lms_successful_payments",
                "Payments charged",
                &self.payments_succeeded,
            ),
            (
                "lms_payment_failures",
                "Payments declined",
                &self.payment_failures,
            ),
            (
                "lms_revenue_total_cents",
                "Amounts of charged payments, in cents",
                &self.revenue_cents,
            ),
            (
                "lms_cache_hits",
                "Course catalogue reads answered by Redis",
                &self.cache_hits,
            ),
            (
                "lms_cache_misses",
                "Course catalogue reads that went to Postgres",
                &self.cache_misses,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register_with_unit(
            "lms_user_session_duration",
            "Sign-in to sign-out",
            Unit::Seconds,
            self.session_duration.clone(),
        );
        registry.register(
            ACTIVE_USERS,
            "Distinct members this instance served a request for in the last 5 minutes",
            self.active_users.clone(),
        );
        registry.register_with_unit(
            "lms_video_watch_duration",
            "Watch time a heartbeat reports since the view's previous heartbeat",
            Unit::Seconds,
            self.watch_duration.clone(),
        );
        registry.register(
            "lms_database_queries",
            "Queries run, by operation",
            self.queries.clone(),
        );
        registry.register(
            "lms_database_connections_active",
            "Pool connections in use",
            self.connections_active.clone(),
        );
        registry.register(
            "lms_ayni_exchanges",
            "Ayni reciprocity exchanges, by stage reached",
            self.exchanges.clone(),
        );
        registry.register(
            "lms_sessions",
            "Session cookie events: sign-ins, refused sign-ins, sign-outs",
            self.sessions.clone(),
        );
        registry
    }

    pub fn record_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn count(&self, what: Business) {
        let session = |event| {
            self.sessions.get_or_create(&EventLabel { event }).inc();
        };
        let stage = |stage| {
            self.exchanges.get_or_create(&StageLabel { stage }).inc();
        };
        match what {
            Business::Enrolment => {
                self.enrollments.inc();
            }
            Business::VideoView => {
                self.video_views.inc();
            }
            Business::PaymentSucceeded { amount_cents } => {
                self.payment_attempts.inc();
                self.payments_succeeded.inc();
                self.revenue_cents.inc_by(amount_cents.max(0) as u64);
            }
            Business::PaymentFailed => {
                self.payment_attempts.inc();
                self.payment_failures.inc();
            }
            Business::ExchangeOffered => stage("offered"),
            Business::ExchangeAccepted => stage("accepted"),
            Business::ExchangeConfirmed => stage("confirmed"),
            Business::MemberCreated => {
                self.registrations.inc();
            }
            Business::SignedIn => session("signed_in"),
            Business::SignInRejected => {
                self.failed_logins.inc();
                session("rejected");
            }
            Business::SignedOut { session: lasted } => {
                session("signed_out");
                if let Some(lasted) = lasted {
                    self.session_duration.observe(lasted.as_secs_f64());
                }
            }
        }
    }

    /// Counts a query and gives its SQL back, to wrap the SQL where the query is run.
    pub fn sql<'s>(&self, sql: &'s str) -> &'s str {
        let operation = Operation::of(sql).label();
        self.queries
            .get_or_create(&OperationLabel { operation })
            .inc();
        sql
    }

    /// A catalogue read answered by Redis (`true`) or by Postgres.
    pub fn cache(&self, hit: bool) {
        if hit {
            self.cache_hits.inc();
        } else {
            self.cache_misses.inc();
        }
    }

    /// Watch time a heartbeat reported.
    pub fn watched(&self, seconds: f64) {
        self.watch_duration.observe(seconds.max(0.0));
    }

    /// A request acting as `member`.
    pub fn seen(&self, member: i64) {
        self.last_seen
            .lock()
            .expect("metrics lock")
            .insert(member, Instant::now());
    }

    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// The whole registry in the OpenMetrics text format, its state gauges read now:
    /// `connections_in_use` from the pool's status.
    pub fn render(&self, connections_in_use: usize) -> String {
        self.connections_active.set(connections_in_use as i64);
        let active = {
            let mut seen = self.last_seen.lock().expect("metrics lock");
            seen.retain(|_, at| at.elapsed() <= ACTIVE_WINDOW);
            seen.len()
        };
        self.active_users.set(active as i64);
        let mut out = String::with_capacity(16 * 1024);
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_names_are_exposed_with_their_labels() {
        let m = Metrics::new("backend-1");
        m.record_request(
            "/api/payments/{id}/confirm",
            "POST",
            200,
            Duration::from_millis(3),
        );
        m.record_request("/a", "GET", 500, Duration::from_millis(300));
        m.count(Business::PaymentSucceeded { amount_cents: 4900 });
        m.count(Business::PaymentFailed);
        m.count(Business::SignInRejected);
        m.count(Business::SignedOut {
            session: Some(Duration::from_secs(42)),
        });
        m.sql("WITH p AS (INSERT INTO payments VALUES (1) RETURNING *) SELECT 1");
        m.sql("SELECT 1");
        m.seen(7);
        m.seen(7);
        m.seen(8);
        let text = m.render(3);
        for line in [
            "lms_http_requests_total{method=\"POST\",route=\"/api/payments/{id}/confirm\",status=\"200\"} 1",
            "lms_http_request_duration_seconds_bucket{le=\"0.005\",method=\"POST\",route=\"/api/payments/{id}/confirm\"} 1",
            "lms_http_request_duration_seconds_count{method=\"GET\",route=\"/a\"} 1",
            "lms_payment_attempts_total 2",
            "lms_successful_payments_total 1",
            "lms_payment_failures_total 1",
            "lms_revenue_total_cents_total 4900",
            "lms_failed_login_attempts_total 1",
            "lms_sessions_total{event=\"rejected\"} 1",
            "lms_user_session_duration_seconds_count 1",
            "lms_database_queries_total{operation=\"insert\"} 1",
            "lms_database_queries_total{operation=\"select\"} 1",
            "lms_database_connections_active 3",
            "lms_active_users_total 2",
            "lms_instance_info{instance_name=\"backend-1\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_querys_operation_is_its_verb() {
        assert_eq!(Operation::of("  select 1"), Operation::Select);
        assert_eq!(
            Operation::of(
                "WITH v AS (INSERT INTO video_views (a) VALUES (1) RETURNING *) SELECT 1"
            ),
            Operation::Insert
        );
        assert_eq!(
            Operation::of("UPDATE payments SET x = 1"),
            Operation::Update
        );
        assert_eq!(
            Operation::of("WITH a AS (SELECT 1) SELECT * FROM a"),
            Operation::Select
        );
        assert_eq!(Operation::of("BEGIN"), Operation::Other);
    }
}
