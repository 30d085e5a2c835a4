//! The terminating signals a run handles, from its start until its recoveries end: INT
//! (Ctrl-C), TERM, HUP (the terminal or SSH session went away) and QUIT. Once tokio has a
//! handler for one, its default action (death) is gone, so a run keeps listening for as
//! long as anything it broke may still be applied.

use std::time::{Duration, Instant};

use tokio::signal::unix::{Signal as Stream, SignalKind, signal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Interrupt,
    Terminate,
    Hangup,
    Quit,
}

impl Signal {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "interrupt",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
            Signal::Quit => "SIGQUIT",
        }
    }
}

/// A second INT / TERM / QUIT this long after the first skips the remaining recoveries; one
/// sooner is taken as the same keypress repeated.
pub(crate) const SKIP_AFTER: Duration = Duration::from_secs(1);

/// What a signal asks of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    /// Stop the load; recover everything now, while in-flight journeys drain.
    Stop(Signal),
    /// Abandon in-flight requests and skip the recoveries not begun yet.
    Abandon(Signal),
    /// Nothing more: a HUP never skips recovery, and a repeat inside `SKIP_AFTER` is noise.
    Nothing(Signal),
}

pub(crate) struct Signals {
    streams: Vec<(Signal, Stream)>,
    first: Option<Instant>,
}

impl Signals {
    /// Installs the handlers. A stream that cannot be installed is left out: the signal
    /// then keeps its default action, which is no worse than before.
    pub(crate) fn install() -> Signals {
        let kinds = [
            (Signal::Interrupt, SignalKind::interrupt()),
            (Signal::Terminate, SignalKind::terminate()),
            (Signal::Hangup, SignalKind::hangup()),
            (Signal::Quit, SignalKind::quit()),
        ];
        Signals {
            streams: kinds
                .into_iter()
                .filter_map(|(name, kind)| signal(kind).ok().map(|s| (name, s)))
                .collect(),
            first: None,
        }
    }

    /// The next signal and what it asks, given the ones before it.
    pub(crate) async fn next(&mut self) -> Asked {
        let signal = self.recv().await;
        match self.first {
            None => {
                self.first = Some(Instant::now());
                Asked::Stop(signal)
            }
            Some(_) if signal == Signal::Hangup => Asked::Nothing(signal),
            Some(first) if first.elapsed() < SKIP_AFTER => Asked::Nothing(signal),
            Some(_) => Asked::Abandon(signal),
        }
    }

    async fn recv(&mut self) -> Signal {
        if self.streams.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.streams.iter_mut().map(|(name, stream)| {
            let name = *name;
            Box::pin(async move {
                stream.recv().await;
                name
            })
        });
        futures::future::select_all(waits).await.0
    }
}
