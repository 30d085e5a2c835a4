//! Postgres: the connection pool, the schema and the seed data.
//!
//! Several instances start at the same time against one database, so the schema and seed
//! are applied inside one transaction holding a transaction-scoped advisory lock: the
//! first instance creates everything, the others wait and then find nothing to do.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

/// Arbitrary key of the advisory lock that serialises schema setup ("loadgen" in ASCII).
const SCHEMA_LOCK_KEY: i64 = 0x006c_6f61_6467_656e;

/// Number of courses seeded at start; each has [`LESSONS_PER_COURSE`] video lessons.
pub const SEED_COURSES: i32 = 20;
pub const LESSONS_PER_COURSE: i32 = 3;
/// Segments listed in every lesson's manifest.
pub const SEGMENTS_PER_LESSON: i32 = 6;
/// Ayni balance every new member starts with (the only place balance is created).
pub const STARTING_BALANCE: i64 = 100;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS members (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL,
    token       TEXT NOT NULL UNIQUE,
    balance     BIGINT NOT NULL CHECK (balance >= 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS courses (
    id           INT PRIMARY KEY,
    title        TEXT NOT NULL,
    price_cents  INT NOT NULL CHECK (price_cents >= 0)
);
CREATE TABLE IF NOT EXISTS lessons (
    id        INT PRIMARY KEY,
    course_id INT NOT NULL REFERENCES courses(id),
    title     TEXT NOT NULL,
    segments  INT NOT NULL CHECK (segments > 0)
);
CREATE TABLE IF NOT EXISTS enrolments (
    id          BIGSERIAL PRIMARY KEY,
    member_id   BIGINT NOT NULL REFERENCES members(id),
    course_id   INT NOT NULL REFERENCES courses(id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (member_id, course_id)
);
CREATE TABLE IF NOT EXISTS video_views (
    id          BIGSERIAL PRIMARY KEY,
    member_id   BIGINT NOT NULL REFERENCES members(id),
    lesson_id   INT NOT NULL REFERENCES lessons(id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS view_heartbeats (
    id          BIGSERIAL PRIMARY KEY,
    view_id     BIGINT NOT NULL REFERENCES video_views(id),
    position_s  INT NOT NULL CHECK (position_s >= 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS view_heartbeats_view ON view_heartbeats (view_id);
CREATE TABLE IF NOT EXISTS payments (
    id               BIGSERIAL PRIMARY KEY,
    member_id        BIGINT NOT NULL REFERENCES members(id),
    course_id        INT NOT NULL REFERENCES courses(id),
    amount_cents     INT NOT NULL CHECK (amount_cents > 0),
    card             TEXT NOT NULL,
    idempotency_key  TEXT,
    status           TEXT NOT NULL DEFAULT 'pending',
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (member_id, idempotency_key)
);
CREATE TABLE IF NOT EXISTS charges (
    id           BIGSERIAL PRIMARY KEY,
    payment_id   BIGINT NOT NULL UNIQUE REFERENCES payments(id),
    amount_cents INT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS exchanges (
    id          BIGSERIAL PRIMARY KEY,
    provider_id BIGINT NOT NULL REFERENCES members(id),
    receiver_id BIGINT NOT NULL REFERENCES members(id),
    amount      BIGINT NOT NULL CHECK (amount > 0),
    description TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL DEFAULT 'offered',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (provider_id <> receiver_id)
);
"#;

const COURSE_TOPICS: [&str; 10] = [
    "Quechua for beginners",
    "Andean agronomy",
    "Community bookkeeping",
    "Rust for services",
    "Load testing in practice",
    "Weaving patterns",
    "Cooperative law",
    "Solar water heating",
    "Postgres operations",
    "Storytelling with data",
];

/// Builds the pool; connections are opened lazily, so this never touches the network.
pub fn pool(database_url: &str, size: usize) -> Result<Pool, String> {
    let mut pg: tokio_postgres::Config = database_url
        .parse()
        .map_err(|e| format!("DATABASE_URL: {e}"))?;
    pg.connect_timeout(Duration::from_secs(3));
    pg.application_name("platform-backend");
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(3)))
        .recycle_timeout(Some(Duration::from_secs(2)))
        .build()
        .map_err(|e| format!("building the Postgres pool: {e}"))
}

/// Creates the schema and the seed rows if they are missing. Safe to run concurrently.
pub async fn migrate(pool: &Pool) -> Result<(), String> {
    let mut client = pool.get().await.map_err(|e| e.to_string())?;
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK_KEY])
        .await
        .map_err(|e| e.to_string())?;
    tx.batch_execute(SCHEMA).await.map_err(|e| e.to_string())?;
    for course in 1..=SEED_COURSES {
        let topic = COURSE_TOPICS[(course as usize - 1) % COURSE_TOPICS.len()];
        let title = format!("{topic} {}", (course - 1) / COURSE_TOPICS.len() as i32 + 1);
        let price_cents = 1900 + (course % 5) * 1000;
        tx.execute(
            "INSERT INTO courses (id, title, price_cents) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
            &[&course, &title, &price_cents],
        )
        .await
        .map_err(|e| e.to_string())?;
        for n in 1..=LESSONS_PER_COURSE {
            let lesson = (course - 1) * LESSONS_PER_COURSE + n;
            let title = format!("{title}, lesson {n}");
            tx.execute(
                "INSERT INTO lessons (id, course_id, title, segments) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO NOTHING",
                &[&lesson, &course, &title, &SEGMENTS_PER_LESSON],
            )
            .await
            .map_err(|e| e.to_string())?;
        }
    }
    tx.commit().await.map_err(|e| e.to_string())
}
