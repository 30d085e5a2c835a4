//! `loadgen proxy`: a fault proxy that runs on its own, in front of a service other
//! processes connect to (the local stack puts one between the backends and Postgres). It
//! starts clean; faults are set and cleared over its control API — by a run's timeline,
//! by `loadgen recover`, or by hand with curl.
//!
//! It only forwards to allow-listed hosts (default loopback) and only listens on loopback:
//! the control API has no authentication. The one exception is `--container-network`, for
//! a proxy that is the only process of its own container (the Compose platform's
//! `postgres-proxy`): there loopback is the container's alone, so the listeners bind the
//! container's private network instead. What reaches them is then whatever shares that
//! network — the project's own services — and, from the host, only the ports Compose
//! publishes, which it publishes on 127.0.0.1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use super::control::serve_control_on_any_address;
use super::{Proxy, Upstream, serve_control};
use crate::util::safety::AllowList;

#[derive(Debug, Clone)]
pub(crate) struct DaemonOptions {
    /// Where clients connect (loopback; port 0 picks one).
    pub listen: SocketAddr,
    /// `host:port` of the real service.
    pub upstream: String,
    /// Where the control API listens (loopback; port 0 picks one).
    pub control: SocketAddr,
    /// Written (atomically) once both listeners are bound: the addresses actually bound.
    pub ready_file: Option<PathBuf>,
    /// Hosts the upstream may be on (default: loopback).
    pub allow_hosts: Vec<String>,
    /// `--container-network`: `listen` and `control` may be non-loopback addresses (e.g.
    /// 0.0.0.0), because this process runs inside a container's own network namespace.
    /// Off by default, and nothing else is relaxed: the upstream is still checked against
    /// the allow-list.
    pub container_network: bool,
}

/// What the proxy announces when it is ready: on stdout (one JSON line) and in the ready
/// file, so a script that asked for port 0 learns the real ports.
#[derive(Debug, Serialize)]
pub(crate) struct Ready {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub control: String,
    pub pid: u32,
}

/// Checks the options without binding anything: every problem at once.
pub(crate) fn check(options: &DaemonOptions) -> Result<SocketAddr, Vec<String>> {
    let mut problems = Vec::new();
    for (flag, addr) in [("--listen", options.listen), ("--control", options.control)] {
        if !addr.ip().is_loopback() && !options.container_network {
            problems.push(format!(
                "{flag} {addr}: the proxy only listens on loopback addresses (inside a container's own network, pass --container-network)"
            ));
        }
    }
    let allow = allow_list(options);
    let upstream = match (&allow, split_host_port(&options.upstream)) {
        (Ok(allow), Ok((host, port))) => match allow.resolve(host, port) {
            Ok(addr) => Some(addr),
            Err(e) => {
                problems.push(format!("--upstream: {e}"));
                None
            }
        },
        (Err(errors), _) => {
            problems.extend(errors.iter().cloned());
            None
        }
        (_, Err(e)) => {
            problems.push(e);
            None
        }
    };
    if let Some(addr) = upstream
        && addr == options.listen
    {
        // Every connection would dial the proxy itself, again and again.
        problems.push(format!(
            "--upstream {addr} is the proxy's own --listen address"
        ));
    }
    match upstream {
        Some(addr) if problems.is_empty() => Ok(addr),
        _ => Err(problems),
    }
}

/// `--allow-host`, else loopback.
fn allow_list(options: &DaemonOptions) -> Result<AllowList, Vec<String>> {
    if options.allow_hosts.is_empty() {
        return Ok(AllowList::default());
    }
    AllowList::parse(&options.allow_hosts).map_err(|errors| {
        errors
            .into_iter()
            .map(|(_, e)| format!("--allow-host: {e}"))
            .collect()
    })
}

/// The upstream `check` resolved: a name is looked up again — and held to the allow-list
/// again — when a connection to its last address fails.
fn upstream_of(options: &DaemonOptions, resolved: SocketAddr) -> Upstream {
    let named = split_host_port(&options.upstream)
        .ok()
        .filter(|(host, _)| host.parse::<std::net::IpAddr>().is_err());
    match (named, allow_list(options)) {
        (Some((host, port)), Ok(allow)) => {
            let host = host.to_string();
            Upstream::named(resolved, Arc::new(move || allow.resolve(&host, port)))
        }
        _ => Upstream::fixed(resolved),
    }
}

fn split_host_port(text: &str) -> Result<(&str, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("--upstream {text:?}: expected HOST:PORT"))?;
    let port = port
        .parse()
        .map_err(|_| format!("--upstream {text:?}: `{port}` is not a port"))?;
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
}

/// Runs the proxy until SIGINT or SIGTERM, then closes every connection and returns.
pub(crate) async fn serve(options: DaemonOptions, upstream: SocketAddr) -> std::io::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let proxy = Proxy::start_to(options.listen, upstream_of(&options, upstream)).await?;
    let (control, control_task) = if options.container_network {
        serve_control_on_any_address(proxy.handle(), options.control).await?
    } else {
        serve_control(proxy.handle(), options.control).await?
    };
    let ready = Ready {
        listen: proxy.local_addr(),
        upstream,
        control: format!("http://{control}"),
        pid: std::process::id(),
    };
    let line = serde_json::to_string(&ready).map_err(std::io::Error::other)?;
    if let Some(path) = &options.ready_file {
        // Temp file and rename: whoever polls for the file never reads half of it.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, format!("{line}\n"))?;
        std::fs::rename(&partial, path)?;
    }
    println!("{line}");
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    proxy.shutdown().await;
    let _ = control_task.await;
    if let Some(path) = &options.ready_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(listen: &str, upstream: &str, control: &str) -> DaemonOptions {
        DaemonOptions {
            listen: listen.parse().unwrap(),
            upstream: upstream.into(),
            control: control.parse().unwrap(),
            ready_file: None,
            allow_hosts: vec![],
            container_network: false,
        }
    }

    /// The Compose platform's postgres-proxy: `loadgen proxy --container-network --listen
    /// 0.0.0.0:5432 --control 0.0.0.0:9000 --upstream postgres:5432 --allow-host postgres`.
    fn in_a_container(listen: &str, control: &str) -> DaemonOptions {
        DaemonOptions {
            container_network: true,
            ..options(listen, "127.0.0.1:5432", control)
        }
    }

    #[test]
    fn by_default_the_proxy_refuses_every_address_but_loopback() {
        for (listen, control) in [
            ("0.0.0.0:5432", "127.0.0.1:0"),
            ("127.0.0.1:0", "0.0.0.0:9000"),
            ("[::]:5432", "127.0.0.1:0"),
        ] {
            let problems = check(&options(listen, "127.0.0.1:5432", control)).unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].contains("only listens on loopback addresses"),
                "{problems:?}"
            );
            assert!(problems[0].contains("--container-network"), "{problems:?}");
        }
    }

    #[test]
    fn container_network_allows_binding_the_containers_network() {
        let upstream = check(&in_a_container("0.0.0.0:5432", "0.0.0.0:9000")).unwrap();
        assert_eq!(upstream, "127.0.0.1:5432".parse().unwrap());
        assert!(check(&in_a_container("[::]:5432", "172.18.0.5:9000")).is_ok());
    }

    #[test]
    fn container_network_leaves_the_upstream_allow_list_alone() {
        let options = DaemonOptions {
            upstream: "10.1.2.3:5432".into(),
            ..in_a_container("0.0.0.0:5432", "0.0.0.0:9000")
        };
        let problems = check(&options).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("`10.1.2.3` is outside the allow-list"),
            "{problems:?}"
        );
        // A Compose service name is allowed by name: whatever private address the project
        // network gave it (here, a name that resolves to loopback).
        let by_name = DaemonOptions {
            upstream: "localhost:5432".into(),
            allow_hosts: vec!["localhost".into()],
            ..in_a_container("0.0.0.0:5432", "0.0.0.0:9000")
        };
        assert!(check(&by_name).is_ok());
    }

    /// The flag reaches the control API too: it serves on 0.0.0.0 (which the default
    /// `serve_control` refuses).
    #[tokio::test]
    async fn a_container_proxy_serves_its_control_api_on_the_containers_network() {
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy::start(
            "127.0.0.1:0".parse().unwrap(),
            upstream.local_addr().unwrap(),
        )
        .await
        .unwrap();
        assert!(
            serve_control(proxy.handle(), "0.0.0.0:0".parse().unwrap())
                .await
                .is_err()
        );
        let (control, task) =
            serve_control_on_any_address(proxy.handle(), "0.0.0.0:0".parse().unwrap())
                .await
                .unwrap();
        assert!(control.ip().is_unspecified(), "{control}");
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", control.port()))
            .await
            .unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /fault HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("null"), "{answer}");
        proxy.shutdown().await;
        task.await.unwrap();
    }

    #[test]
    fn loopback_everywhere_is_accepted() {
        let upstream = check(&options("127.0.0.1:0", "127.0.0.1:5432", "127.0.0.1:0")).unwrap();
        assert_eq!(upstream, "127.0.0.1:5432".parse().unwrap());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let problems = check(&options("0.0.0.0:0", "10.1.2.3:5432", "192.168.1.1:9")).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("--listen 0.0.0.0:0"), "{problems:?}");
        assert!(
            problems[1].contains("--control 192.168.1.1:9"),
            "{problems:?}"
        );
        assert!(
            problems[2].contains("`10.1.2.3` is outside the allow-list"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_proxy_cannot_forward_to_itself() {
        let problems =
            check(&options("127.0.0.1:7000", "127.0.0.1:7000", "127.0.0.1:0")).unwrap_err();
        assert!(problems[0].contains("own --listen address"), "{problems:?}");
    }

    #[test]
    fn an_upstream_needs_a_port() {
        let problems = check(&options("127.0.0.1:0", "127.0.0.1", "127.0.0.1:0")).unwrap_err();
        assert!(problems[0].contains("expected HOST:PORT"), "{problems:?}");
    }
}
