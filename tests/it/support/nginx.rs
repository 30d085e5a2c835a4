//! A real nginx for the tests that need one: TLS with HTTP/2 (a fresh self-signed
//! certificate for 127.0.0.1) and plain HTTP/1.1, `return 200` everywhere, keep-alive
//! limits as the test sets them, and an access log of each request's connection number
//! and status — what nginx itself saw, to check loadgen's counts against.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::eventually;

pub struct Nginx {
    child: Child,
    pub dir: tempfile::TempDir,
    pub tls_port: u16,
    pub http_port: u16,
    /// The certificate to trust (`ca_file`).
    pub ca_file: PathBuf,
}

/// A port free a moment ago (nginx cannot be asked for port 0 and say which it got).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// `keepalive`: the lines that set nginx's client keep-alive (`keepalive_requests 10;`).
    pub fn start(keepalive: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        let (tls_port, http_port) = (free_port(), free_port());
        let d = dir.path().display();
        let conf = format!(
            r#"daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    log_format counts '$connection $status $server_protocol';
    access_log {d}/access.log counts;
    {keepalive}
    server {{
        listen 127.0.0.1:{tls_port} ssl http2 backlog=4096;
        listen 127.0.0.1:{http_port} backlog=4096;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        location / {{ return 200 "ok"; }}
    }}
}}
"#
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .args(["-p", &d.to_string(), "-c", "nginx.conf"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx runs (apt-get install nginx)");
        let ready = eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", http_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
        });
        assert!(
            ready,
            "nginx did not listen: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
        Nginx {
            child,
            tls_port,
            http_port,
            ca_file: cert,
            dir,
        }
    }

    /// (connections, requests answered 200) in the access log.
    pub fn served(&self) -> (usize, u64) {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        let mut connections = std::collections::BTreeSet::new();
        let mut ok = 0;
        for line in log.lines() {
            let mut fields = line.split_whitespace();
            if let (Some(connection), Some(status)) = (fields.next(), fields.next()) {
                connections.insert(connection.to_string());
                ok += u64::from(status == "200");
            }
        }
        (connections.len(), ok)
    }
}

impl Drop for Nginx {
    /// SIGTERM, not SIGKILL: the master then stops its worker too (a killed master leaves
    /// its worker running).
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}
