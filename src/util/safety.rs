//! The allow-list of hosts loadgen may send to. Default: loopback only. The target is
//! checked — and its address resolved once — before a single request leaves the process.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowEntry {
    Net(IpNet),
    Host(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<AllowEntry>,
}

impl Default for AllowList {
    /// Loopback only: 127.0.0.0/8, ::1 and the name `localhost`.
    fn default() -> Self {
        AllowList {
            entries: vec![
                AllowEntry::Net("127.0.0.0/8".parse().expect("valid net")),
                AllowEntry::Net("::1/128".parse().expect("valid net")),
                AllowEntry::Host("localhost".to_string()),
            ],
        }
    }
}

impl AllowList {
    /// Parses entries: an IP address, a CIDR network, or a host name.
    pub fn parse(entries: &[String]) -> Result<AllowList, Vec<(usize, String)>> {
        let mut parsed = Vec::new();
        let mut errors = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let entry = entry.trim();
            if let Ok(net) = entry.parse::<IpNet>() {
                parsed.push(AllowEntry::Net(net));
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                parsed.push(AllowEntry::Net(IpNet::from(ip)));
            } else if is_host_name(entry) {
                parsed.push(AllowEntry::Host(entry.to_ascii_lowercase()));
            } else {
                errors.push((
                    index,
                    format!("`{entry}` is not an IP address, a CIDR network or a host name"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(AllowList { entries: parsed })
        } else {
            Err(errors)
        }
    }

    pub fn entries(&self) -> &[AllowEntry] {
        &self.entries
    }

    /// Whether `entry` (an IP, a CIDR network or a host name, as an allow-list writes it)
    /// lies within this list: a network inside one of its networks, a name it names.
    pub fn covers(&self, entry: &str) -> bool {
        let entry = entry.trim();
        let net = entry
            .parse::<IpNet>()
            .ok()
            .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from));
        match net {
            Some(net) => self.entries.iter().any(|e| match e {
                AllowEntry::Net(mine) => mine.contains(&net),
                AllowEntry::Host(_) => false,
            }),
            None => self.allows_name(entry),
        }
    }

    /// Whether every entry of `self` lies within `other`.
    pub fn within(&self, other: &AllowList) -> bool {
        self.entries.iter().all(|e| match e {
            AllowEntry::Net(net) => other.covers(&net.to_string()),
            AllowEntry::Host(name) => other.covers(name),
        })
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.entries.iter().any(|e| match e {
            AllowEntry::Net(net) => net.contains(&ip),
            AllowEntry::Host(_) => false,
        })
    }

    /// Whether `host` is on the list by name (then it is not resolved to be checked).
    pub fn allows_name(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.entries
            .iter()
            .any(|e| matches!(e, AllowEntry::Host(h) if *h == host))
    }

    /// Resolves `host:port` and returns the address to connect to, or why it is refused.
    /// An IP must fall in an allowed network; a name must be allowed by name or resolve only
    /// to allowed addresses. The address is resolved here, once, so traffic cannot drift.
    pub fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return if self.allows_ip(ip) {
                Ok(SocketAddr::new(ip, port))
            } else {
                Err(self.refusal(host))
            };
        }
        let addresses: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| {
                if self.allows_name(host) {
                    format!("cannot resolve target host `{host}`: {e}")
                } else {
                    format!(
                        "target host `{host}` is outside the allow-list ({}) unless it resolves to an address on it, and it does not resolve ({e}); add it to [target] allow_hosts if you really mean to load it",
                        self.listed().join(", ")
                    )
                }
            })?
            .collect();
        let first = *addresses
            .first()
            .ok_or_else(|| format!("target host `{host}` resolves to no address"))?;
        let all_allowed = addresses.iter().all(|a| self.allows_ip(a.ip()));
        if all_allowed || self.allows_name(host) {
            // Prefer IPv4 loopback when a name maps to both families: nginx and friends
            // listen on 127.0.0.1 by default.
            Ok(addresses
                .iter()
                .copied()
                .find(|a| a.is_ipv4())
                .unwrap_or(first))
        } else {
            Err(self.refusal(host))
        }
    }

    /// The entries, as an operator would write them.
    fn listed(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| match e {
                AllowEntry::Net(n) => n.to_string(),
                AllowEntry::Host(h) => h.clone(),
            })
            .collect()
    }

    fn refusal(&self, host: &str) -> String {
        let allowed = self.listed();
        format!(
            "target host `{host}` is outside the allow-list ({}); add it to [target] allow_hosts if you really mean to load it",
            allowed.join(", ")
        )
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_host_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_allows_loopback_only() {
        let list = AllowList::default();
        assert!(list.resolve("127.0.0.1", 80).is_ok());
        assert!(list.resolve("127.4.5.6", 80).is_ok());
        assert!(list.resolve("::1", 80).is_ok());
        assert!(list.resolve("localhost", 80).is_ok());
        let refused = list.resolve("10.1.2.3", 80).unwrap_err();
        assert!(refused.contains("outside the allow-list"), "{refused}");
        assert!(list.resolve("192.168.0.1", 80).is_err());
    }

    #[test]
    fn explicit_entries_replace_the_default() {
        let list = AllowList::parse(&["127.0.0.2".into()]).unwrap();
        assert!(list.resolve("127.0.0.2", 80).is_ok());
        assert!(list.resolve("127.0.0.1", 80).is_err());
        let errors = AllowList::parse(&["ok.example".into(), "not a host!".into()]).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, 1);
    }
}
