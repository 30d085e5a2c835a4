//! nginx's three listeners: TLS with HTTP/2 (ALPN h2 and http/1.1) under a certificate from
//! the CA the stack made at start, h2c by prior knowledge, plain HTTP/1.1; and gzip for JSON.

use serde_json::Value;

use crate::fixture::{Reply, curl, shared, stack};

fn get(url: &str, extra: &[&str]) -> Reply {
    let mut args = extra.to_vec();
    args.push(url);
    curl(&args)
}

#[tokio::test]
async fn tls_h2_h2c_and_plain_http_all_serve_the_api() {
    let _g = shared().await;
    let s = stack();
    let state = s.state();
    let ca = s.ca_file.to_str().unwrap();
    let nginx = &state["nginx"];
    assert_eq!(
        state["base_url"],
        format!("https://127.0.0.1:{}", nginx["port"])
    );
    assert_eq!(
        state["h2c_url"],
        format!("http://127.0.0.1:{}", nginx["h2c_port"])
    );
    assert_eq!(
        state["http_url"],
        format!("http://127.0.0.1:{}", nginx["http_port"])
    );
    assert!(s.ca_file.is_absolute(), "{}", s.ca_file.display());
    assert_eq!(s.ca_file, s.state_dir.join("tls/ca.pem"));

    let ready = format!("{}/health/ready", s.base_url);
    // TLS: h2 when the client offers it, http/1.1 when that is all it offers.
    for (flags, version) in [(&["--http2"][..], "2"), (&["--http1.1"][..], "1.1")] {
        let reply = get(&ready, &[&["--cacert", ca][..], flags].concat());
        assert_eq!(reply.status, 200, "{flags:?}: {reply:?}");
        assert_eq!(reply.version, version, "{flags:?}");
        assert!(reply.header("x-instance").is_some(), "{reply:?}");
        assert_eq!(reply.json()["status"], "ready");
    }
    // The certificate names 127.0.0.1 and localhost, and only the stack's CA vouches for it.
    let port = nginx["port"].to_string();
    let localhost = format!("https://localhost:{port}/nginx-health");
    assert_eq!(get(&localhost, &["--cacert", ca]).status, 200);
    let untrusted = get(&ready, &[]);
    assert_eq!(untrusted.status, 0, "{untrusted:?}");
    assert_eq!(untrusted.exit, Some(60), "not trusted: {}", untrusted.error);
    let der = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(s.state_dir.join("tls/server.pem"))
        .output()
        .unwrap();
    let sans = String::from_utf8_lossy(&der.stdout);
    assert!(
        sans.contains("IP Address:127.0.0.1") && sans.contains("DNS:localhost"),
        "{sans}"
    );

    // h2c by prior knowledge; that listener speaks no HTTP/1.1.
    let h2c = format!("{}/health/ready", s.h2c_url);
    let reply = get(&h2c, &["--http2-prior-knowledge"]);
    assert_eq!(
        (reply.status, reply.version.as_str()),
        (200, "2"),
        "{reply:?}"
    );
    assert!(reply.header("x-instance").is_some());
    assert_ne!(get(&h2c, &["--http1.1"]).status, 200);

    // Plain HTTP/1.1 for everything else.
    let reply = get(&format!("{}/health/ready", s.http_url), &["--http1.1"]);
    assert_eq!(
        (reply.status, reply.version.as_str()),
        (200, "1.1"),
        "{reply:?}"
    );
}

#[tokio::test]
async fn json_comes_back_gzip_when_asked_and_segments_never() {
    let _g = shared().await;
    let s = stack();
    let ca = s.ca_file.to_str().unwrap();
    let courses = format!("{}/api/courses", s.base_url);

    let gzip = get(&courses, &["--cacert", ca, "-H", "Accept-Encoding: gzip"]);
    assert_eq!(gzip.status, 200, "{gzip:?}");
    assert_eq!(gzip.header("content-encoding"), Some("gzip"), "{gzip:?}");
    assert!(
        gzip.header("vary")
            .is_some_and(|v| v.contains("Accept-Encoding"))
    );
    assert!(
        gzip.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(gzip.body[..2], [0x1f, 0x8b], "a gzip stream");

    // The same JSON, decoded (curl --compressed), is larger than what came over the wire.
    let decoded = get(&courses, &["--cacert", ca, "--compressed"]);
    assert_eq!(decoded.header("content-encoding"), Some("gzip"));
    let list: Value = decoded.json();
    assert_eq!(list["courses"].as_array().unwrap().len(), 20);
    assert!(
        decoded.body.len() > gzip.body.len(),
        "{} vs {}",
        decoded.body.len(),
        gzip.body.len()
    );

    // Not asked, not compressed; on the other listeners the same.
    let plain = get(&courses, &["--cacert", ca]);
    assert_eq!(plain.header("content-encoding"), None, "{plain:?}");
    plain.json();
    for (url, flags) in [
        (
            format!("{}/api/courses", s.h2c_url),
            "--http2-prior-knowledge",
        ),
        (format!("{}/api/courses", s.http_url), "--http1.1"),
    ] {
        let reply = get(&url, &[flags, "-H", "Accept-Encoding: gzip"]);
        assert_eq!(reply.header("content-encoding"), Some("gzip"), "{url}");
    }

    // A video segment is not text: never compressed.
    let segment = get(
        &format!("{}/api/lessons/1/segments/0", s.base_url),
        &["--cacert", ca, "-H", "Accept-Encoding: gzip"],
    );
    assert_eq!(segment.status, 200);
    assert_eq!(
        segment.header("content-encoding"),
        None,
        "{:?}",
        segment.headers
    );
}
