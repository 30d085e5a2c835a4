//! `loadgen proxy`: a TCP fault proxy in front of a service.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::small_runtime;
use crate::chaos::proxy::daemon::{self, DaemonOptions};
use crate::judge::exit::ExitCode;

// `loadgen proxy`'s flags (its help text is `Command::Proxy`'s).
#[derive(Debug, clap::Args)]
pub(super) struct ProxyArgs {
    /// Where clients connect (loopback; port 0 picks a free one).
    #[arg(long)]
    listen: SocketAddr,
    /// The real service, HOST:PORT (allow-listed: loopback unless --allow-host).
    #[arg(long)]
    upstream: String,
    /// Where the control API listens (loopback). It has no authentication.
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
    /// Write the bound addresses here (JSON) once ready; removed on exit.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Another host or network the upstream may be on (repeatable); a host name is
    /// allowed by name, whatever it resolves to (e.g. a Compose service: postgres).
    #[arg(long = "allow-host")]
    allow_hosts: Vec<String>,
    /// Let --listen and --control bind non-loopback addresses (0.0.0.0). Only for a proxy
    /// running inside a container's own network namespace: the container network is
    /// the boundary, and the host must publish the ports on 127.0.0.1 only (as
    /// docker/docker-compose.yml does). Never on a host's own network.
    #[arg(long)]
    container_network: bool,
}

impl From<ProxyArgs> for DaemonOptions {
    fn from(args: ProxyArgs) -> DaemonOptions {
        let ProxyArgs {
            listen,
            upstream,
            control,
            ready_file,
            allow_hosts,
            container_network,
        } = args;
        DaemonOptions {
            listen,
            upstream,
            control,
            ready_file,
            allow_hosts,
            container_network,
        }
    }
}

pub(super) fn proxy_command(options: DaemonOptions) -> ExitCode {
    let upstream = match daemon::check(&options) {
        Ok(upstream) => upstream,
        Err(problems) => {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            return ExitCode::BadInput;
        }
    };
    let runtime = match small_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(daemon::serve(options, upstream)) {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            eprintln!("error: proxy: {e}");
            ExitCode::CouldNotRun
        }
    }
}
