//! Test-only LOSSY mode, compiled only with the cargo feature `lossy` (never in a default
//! build). With `LOSSY_WRITES=f`, each new enrolment or payment is, with probability f,
//! inserted in a transaction that is then rolled back, yet answered exactly as if it had
//! committed: the 201 and the JSON the insert returned, its id taken from the sequence (so
//! never reused, and a later read by id is 404). Each lost write is appended to `LOSSY_LOG`
//! as `<kind> <id>` before the answer goes out, so a drill harness that claims to catch
//! acknowledged-but-lost writes can be checked against what was really lost.
//!
//! The mode is process-wide and set once in `main` before the server starts; handlers reach
//! it through [`active`], which keeps the state and signatures of a default build as they
//! are.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio_postgres::types::ToSql;

use crate::config;
use crate::error::{ApiError, ApiResult};

pub struct Lossy {
    fraction: f64,
    /// Opened for appending: each line is one `write(2)` to an `O_APPEND` file, so the
    /// lines of several instances sharing the file never interleave.
    log: Arc<File>,
    seed: u64,
    draws: AtomicU64,
}

static LOSSY: OnceLock<Lossy> = OnceLock::new();

/// Turns the lossy mode on: opens `LOSSY_LOG` (created if missing) and says so on stderr,
/// so nobody mistakes this instance's answers for a real platform's.
pub fn start(settings: &config::Lossy, instance: &str) -> Result<(), String> {
    let path = &settings.log;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("LOSSY_LOG={path:?}: cannot open for appending: {e}"))?;
    let lossy = Lossy {
        fraction: settings.fraction,
        log: Arc::new(log),
        seed: seed(),
        draws: AtomicU64::new(0),
    };
    if LOSSY.set(lossy).is_err() {
        return Err("the lossy mode was started twice".into());
    }
    eprintln!(
        "platform-backend {instance}: LOSSY (test-only build): {} of new enrolments and \
         payments are acknowledged but rolled back; each one is logged to {}",
        settings.fraction,
        path.display()
    );
    Ok(())
}

/// The lossy mode, if this instance runs in it.
pub fn active() -> Option<&'static Lossy> {
    LOSSY.get()
}

impl Lossy {
    /// Whether the next write is to be lost: true with probability `fraction`.
    pub fn drops_next(&self) -> bool {
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        let draw = splitmix64(self.seed.wrapping_add(n.wrapping_mul(GOLDEN_GAMMA)));
        // The top 53 bits as a uniform fraction in [0, 1): below 1.0 even when it is 1.
        let uniform = (draw >> 11) as f64 / (1u64 << 53) as f64;
        uniform < self.fraction
    }

    /// Runs `sql` (an `INSERT … RETURNING <json>` of at most one row) in a transaction that
    /// is rolled back, logs the `kind` and id of the row it returned, and returns that row
    /// as if it had been committed. No row (e.g. a conflict) means nothing to lose.
    pub async fn insert_then_roll_back(
        &self,
        client: &mut deadpool_postgres::Object,
        kind: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> ApiResult<Option<Value>> {
        let tx = client.transaction().await?;
        let row: Option<Value> = tx.query_opt(sql, params).await?.map(|r| r.get(0));
        tx.rollback().await?;
        if let Some(value) = &row {
            let id = value["id"]
                .as_i64()
                .ok_or_else(|| ApiError::Internal(format!("lossy: {kind} without an id")))?;
            self.record(kind, id).await?;
        }
        Ok(row)
    }

    /// Appends `<kind> <id>` to the log and syncs it, off the async workers (it blocks).
    async fn record(&self, kind: &'static str, id: i64) -> ApiResult<()> {
        let log = self.log.clone();
        let line = format!("{kind} {id}\n");
        tokio::task::spawn_blocking(move || {
            (&*log).write_all(line.as_bytes())?;
            log.sync_data()
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        // Unlogged, the loss could not be checked: do not acknowledge the write either.
        .map_err(|e| ApiError::Internal(format!("lossy: writing LOSSY_LOG: {e}")))
    }
}

/// The golden-ratio increment of SplitMix64: consecutive draws land far apart.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function: a well-mixed 64-bit value from any input. Enough
/// randomness for picking writes to lose, without a dependency.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Differs per process and start, so instances sharing a log lose different writes.
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy(fraction: f64) -> Lossy {
        Lossy {
            fraction,
            log: Arc::new(tempfile::tempfile().unwrap()),
            seed: 42,
            draws: AtomicU64::new(0),
        }
    }

    #[test]
    fn one_loses_every_write() {
        let l = lossy(1.0);
        assert!((0..10_000).all(|_| l.drops_next()));
    }

    #[test]
    fn a_fraction_loses_about_that_share() {
        let l = lossy(0.1);
        let lost = (0..100_000).filter(|_| l.drops_next()).count();
        assert!((9_000..11_000).contains(&lost), "{lost} of 100000 lost");
    }

    #[tokio::test]
    async fn each_lost_write_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lost.log");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let l = Lossy {
            log: Arc::new(file),
            ..lossy(1.0)
        };
        l.record("enrolment", 7).await.unwrap();
        l.record("payment", 8).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "enrolment 7\npayment 8\n"
        );
    }
}
