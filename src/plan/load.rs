//! The load shape: the open model's rate stages or the closed model's user stages, and
//! their total length (a run's `duration` cut stages to fit).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub model: LoadModel,
    /// Open model: journeys in flight at once, run-wide; an arrival beyond it is dropped
    /// (and counted as a failed attempt).
    pub max_in_flight: usize,
    pub ramp_down: Duration,
    /// Closed model: after a failed iteration a user waits at least this (and at least the
    /// failed step's think time) before its next, so a dead target is not hammered by a
    /// retry storm of the drill's own making. Zero: no backoff.
    pub failure_backoff: Duration,
}

/// The two load models. Stages ramp linearly from the previous value to their own.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadModel {
    /// Arrivals per second, independent of how fast the target answers.
    Open {
        start_rate: f64,
        stages: Vec<RateStage>,
    },
    /// Virtual users each running journeys back to back.
    Closed {
        start_vus: usize,
        stages: Vec<VuStage>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateStage {
    pub duration: Duration,
    /// Arrivals per second at the end of the stage.
    pub rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VuStage {
    pub duration: Duration,
    pub vus: usize,
}

impl LoadModel {
    pub fn total_duration(&self) -> Duration {
        match self {
            LoadModel::Open { stages, .. } => stages.iter().map(|s| s.duration).sum(),
            LoadModel::Closed { stages, .. } => stages.iter().map(|s| s.duration).sum(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            LoadModel::Open { .. } => "open",
            LoadModel::Closed { .. } => "closed",
        }
    }

    /// Cuts the stages at `limit` (the `--duration` override), interpolating the value at
    /// the cut so a ramp stops where it would have been at that moment.
    pub fn truncate(&mut self, limit: Duration) {
        match self {
            LoadModel::Open { start_rate, stages } => {
                let mut from = *start_rate;
                truncate_stages(stages, limit, |stage, fraction| {
                    let rate = from + (stage.rate - from) * fraction;
                    from = stage.rate;
                    RateStage {
                        duration: stage.duration.mul_f64(fraction),
                        rate,
                    }
                });
            }
            LoadModel::Closed { start_vus, stages } => {
                let mut from = *start_vus as f64;
                truncate_stages(stages, limit, |stage, fraction| {
                    let vus = from + (stage.vus as f64 - from) * fraction;
                    from = stage.vus as f64;
                    VuStage {
                        duration: stage.duration.mul_f64(fraction),
                        vus: vus.floor() as usize,
                    }
                });
            }
        }
    }
}

fn truncate_stages<S>(stages: &mut Vec<S>, limit: Duration, mut cut: impl FnMut(&S, f64) -> S)
where
    S: Copy + HasDuration,
{
    let mut elapsed = Duration::ZERO;
    let mut kept = Vec::new();
    for stage in stages.iter() {
        if elapsed >= limit {
            break;
        }
        let remaining = limit - elapsed;
        if stage.duration() <= remaining {
            kept.push(cut(stage, 1.0));
        } else {
            let fraction = remaining.as_secs_f64() / stage.duration().as_secs_f64();
            kept.push(cut(stage, fraction));
        }
        elapsed += stage.duration();
    }
    *stages = kept;
}

trait HasDuration {
    fn duration(&self) -> Duration;
}
impl HasDuration for RateStage {
    fn duration(&self) -> Duration {
        self.duration
    }
}
impl HasDuration for VuStage {
    fn duration(&self) -> Duration {
        self.duration
    }
}
