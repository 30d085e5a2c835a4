//! The host's CPU over a run, next to loadgen's own: when arrivals left late, whether the
//! generator's threads were at their limit or other work on the host took the cores.
//! Read from `/proc/stat` and `/proc/self/stat` (both in USER_HZ ticks); elsewhere `None`.

use serde::{Deserialize, Serialize};

/// CPU time counters at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuClock {
    host_busy: u64,
    host_total: u64,
    own: u64,
}

/// Shares of the host's CPU over an interval (0 to 1 of all its cores).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HostLoad {
    pub cores: usize,
    /// Every process's CPU, loadgen's included.
    pub busy: f64,
    /// loadgen's own CPU.
    pub own: f64,
}

impl HostLoad {
    /// The share other processes took.
    pub fn others(&self) -> f64 {
        (self.busy - self.own).max(0.0)
    }
}

impl CpuClock {
    pub(crate) fn now() -> Option<CpuClock> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let (host_busy, host_total) = host_ticks(&stat)?;
        let own = own_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        Some(CpuClock {
            host_busy,
            host_total,
            own,
        })
    }

    /// The load from `self` to now.
    pub(crate) fn load_since(self) -> Option<HostLoad> {
        let now = CpuClock::now()?;
        let total = now.host_total.checked_sub(self.host_total)?;
        if total == 0 {
            return None;
        }
        let busy = now.host_busy.saturating_sub(self.host_busy) as f64 / total as f64;
        let own = now.own.saturating_sub(self.own) as f64 / total as f64;
        Some(HostLoad {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            busy: busy.min(1.0),
            own: own.min(1.0),
        })
    }
}

/// The `cpu` line of /proc/stat: (busy, total) ticks of all cores; idle and iowait are
/// not busy, steal is (another guest had the core).
fn host_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest times are in user already).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// utime + stime of /proc/self/stat (fields 14 and 15; the command name may hold spaces,
/// so fields are counted after its closing parenthesis).
fn own_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ")": field 3 (state) is index 0, so field N is index N - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_read_from_the_kernels_lines() {
        let stat = "cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(host_ticks(stat), Some((161, 981)));
        let own = "1234 (load gen) S 1 2 3 4 5 6 7 8 9 10 70 30 0 0 20 0 4 0 5 6";
        assert_eq!(own_ticks(own), Some(100));
    }
}
