//! Where the proxy's connections go. An address given as a name (Compose's `postgres:5432`)
//! is looked up again whenever a connection to the last address fails: a container
//! recreated by Compose comes back on a new address under the same name, and a proxy that
//! resolved once at start would refuse every connection from then on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Looks the upstream's name up again (blocking: it may ask DNS).
pub type Resolver = Arc<dyn Fn() -> Result<SocketAddr, String> + Send + Sync>;

pub struct Upstream {
    current: Mutex<SocketAddr>,
    resolver: Option<Resolver>,
}

impl Upstream {
    /// A fixed address, never looked up again.
    pub fn fixed(addr: SocketAddr) -> Upstream {
        Upstream {
            current: Mutex::new(addr),
            resolver: None,
        }
    }

    /// `first`, as resolved at start, and how to resolve the name again.
    pub fn named(first: SocketAddr, resolver: Resolver) -> Upstream {
        Upstream {
            current: Mutex::new(first),
            resolver: Some(resolver),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        *self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After a failed connection to `failed`: the name's address now, if it has one and it
    /// is another (then it is also remembered for the next connections).
    pub async fn moved_from(&self, failed: SocketAddr) -> Option<SocketAddr> {
        let resolver = self.resolver.clone()?;
        let now = tokio::task::spawn_blocking(move || resolver())
            .await
            .ok()?
            .ok()?;
        if now == failed {
            return None;
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = now;
        Some(now)
    }
}
