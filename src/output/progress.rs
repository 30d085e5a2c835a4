//! Live progress: a line redrawn in place on a terminal, a plain line every few seconds when
//! output is not a terminal (CI logs), nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics::{Percentiles, Second};

pub(crate) enum Progress {
    Quiet,
    Plain { every: u64 },
    Live(ProgressBar),
}

impl Progress {
    pub(crate) fn new(quiet: bool, planned: Duration) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                Some(planned.as_secs().max(1)),
                ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:24} {pos}/{len}s  {msg}",
                )
                .expect("valid template"),
            );
            Progress::Live(bar)
        } else {
            Progress::Plain { every: 5 }
        }
    }

    pub(crate) fn second(&mut self, second: &Second, planned: Duration) {
        let s = &second.snapshot;
        let p = Percentiles::of(s.overall.latency.as_ref());
        let errors = s.overall.error_total();
        let line = format!(
            "{} req/s  in-flight {}  p99 {}  errors {}{}",
            s.overall.requests,
            second.in_flight,
            // No successful response this second: no latency to show, not 0.0 ms.
            if s.overall.latency.is_some() {
                format!("{:.1} ms", p.p99 as f64 / 1000.0)
            } else {
                "–".to_string()
            },
            errors,
            if s.generator.dropped > 0 {
                format!("  dropped {}", s.generator.dropped)
            } else {
                String::new()
            }
        );
        match self {
            Progress::Quiet => {}
            Progress::Plain { every } => {
                if (second.second + 1).is_multiple_of(*every) {
                    crate::util::text::warn(&format!(
                        "[{:>4}s/{}s] {line}\n",
                        second.second + 1,
                        planned.as_secs()
                    ));
                }
            }
            Progress::Live(bar) => {
                bar.set_position(second.second + 1);
                bar.set_message(line);
            }
        }
    }

    pub(crate) fn note(&self, message: &str) {
        match self {
            Progress::Quiet => {}
            Progress::Plain { .. } => crate::util::text::warn(&format!("{message}\n")),
            Progress::Live(bar) => bar.println(crate::util::text::printable(message)),
        }
    }

    /// A warning: a note, and under `--quiet` still a line on stderr.
    pub(crate) fn warn(&self, message: &str) {
        match self {
            Progress::Quiet => crate::util::text::warn(&format!("warning: {message}\n")),
            _ => self.note(&format!("warning: {message}")),
        }
    }

    pub(crate) fn finish(self) {
        if let Progress::Live(bar) = self {
            bar.finish_and_clear();
        }
    }
}
