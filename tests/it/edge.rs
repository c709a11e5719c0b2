//! The server's edge: client addresses behind proxies, and connections
//! that never finish a request or sit idle.

use std::time::Duration;

use oauth_broker::config::{Limits, parse_proxies};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::broker::{CLIENT_ID, CLIENT_SECRET, Setup, config_for};
use crate::support::logs;
use crate::support::mock_provider::MockProvider;
use crate::support::process;

/// An AuthID sealed by another broker's key: this one cannot open it.
fn foreign_authid(mock: &MockProvider) -> String {
    Setup::new(mock, &["googledrive"])
        .build()
        .seal("googledrive", "rt-foreign")
}

#[tokio::test]
async fn a_forwarded_entry_with_a_port_is_the_client_and_entries_left_of_it_are_not_believed() {
    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["googledrive"])
        .limits(Limits {
            bad_authids_per_minute: 3,
            trusted_proxies: parse_proxies("127.0.0.1").unwrap(),
            ..Limits::default()
        })
        .build();
    let base = broker.serve().await;
    let foreign = foreign_authid(&mock);
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    // The proxy appends the client's address with its port; the client
    // writes a new address of its own to the left on every request.
    for i in 0..5 {
        let reply = client
            .get(format!("{base}/refresh"))
            .header("X-AuthID", &foreign)
            .header(
                "X-Forwarded-For",
                format!("198.51.100.{i}, 203.0.113.7:5678"),
            )
            .send()
            .await
            .unwrap();
        statuses.push(reply.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);

    // Another client behind the same proxy, written as [v6]:port, has
    // its own budget.
    let other = client
        .get(format!("{base}/refresh"))
        .header("X-AuthID", &foreign)
        .header("X-Forwarded-For", "198.51.100.1, [2001:db8::9]:443")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 401);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_counted_and_warned_about_once() {
    let mock = MockProvider::start().await;
    // No TRUSTED_PROXIES: the loopback peer is not trusted.
    let broker = Setup::new(&mock, &["googledrive"]).build();
    let base = broker.serve().await;
    let client = reqwest::Client::new();
    let warning = "X-Forwarded-For from a peer outside TRUSTED_PROXIES";
    assert!(!logs::captured().contains(warning));
    for i in 0..3 {
        let reply = client
            .get(format!("{base}/refresh"))
            .header("X-AuthID", "v3:not-an-authid")
            .header("X-Forwarded-For", format!("198.51.100.{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 400);
    }
    // Without the header nothing is counted.
    client
        .get(format!("{base}/refresh"))
        .header("X-AuthID", "v3:not-an-authid")
        .send()
        .await
        .unwrap();
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "oauth_broker_untrusted_forwarded_total 3"),
        "{metrics}"
    );
    assert_eq!(
        logs::captured().matches(warning).count(),
        1,
        "one warning, not one per request"
    );
}

/// Reads until the server closes the connection; returns what it sent.
/// Bounded, so a server that never closes fails the test instead of
/// hanging it.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open; it sent {:?}",
        String::from_utf8_lossy(&received)
    );
    String::from_utf8_lossy(&received).into_owned()
}

fn one_second_for_headers() -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["googledrive"])
        .limits(one_second_for_headers())
        .build();
    let base = broker.serve().await;
    let address = base.trim_start_matches("http://");

    let mut partial = TcpStream::connect(address).await.unwrap();
    partial
        .write_all(b"GET /health HTTP/1.1\r\nHost: broker\r\nX-Slow: 1\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut partial).await;
    assert!(!answer.contains("200 OK"), "{answer}");

    let mut silent = TcpStream::connect(address).await.unwrap();
    read_until_closed(&mut silent).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["googledrive"])
        .limits(one_second_for_headers())
        .build();
    let base = broker.serve().await;
    let mut stream = TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: broker\r\n\r\n")
        .await
        .unwrap();
    // The answer comes, the connection stays open for another request,
    // and is closed once it has been idle for the timeout.
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("connection: close"));
}

/// More stalled connections than the process has files: the broker keeps
/// some files for itself and sheds the stalled connections after the
/// header timeout, so `/health` is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_stalled_connections_do_not_stop_health_from_answering() {
    let mock = MockProvider::start().await;
    mock.set_client(CLIENT_ID, CLIENT_SECRET);
    let tmp = tempfile::tempdir().unwrap();
    crate::support::process::key_dir_with_primary(tmp.path());
    let env = [
        ("CONFIGFILE", config_for(&mock, &["googledrive"])),
        (
            "SECRETS",
            format!(r#"{{"TEST_SECRET": "{CLIENT_SECRET}"}}"#),
        ),
        ("SERVICES", "googledrive".into()),
        ("HEADER_READ_TIMEOUT", "1".into()),
    ];
    let server = process::start_with_open_file_limit(128, &["serve"], &env, tmp.path());
    let address = server.base.trim_start_matches("http://").to_string();

    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: b").await;
        stalled.push(stream);
    }
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .get(format!("{}/health", server.base))
        .send()
        .await
        .expect("/health answered");
    assert_eq!(health.status(), 200);
    drop(stalled);
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_a_json_405_with_a_reason() {
    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["googledrive"]).build();
    for (method, path) in [
        ("PUT", "/refresh"),
        ("DELETE", "/fetch"),
        ("POST", "/ready"),
    ] {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let reply = broker.request(request).await;
        assert_eq!(reply.status.as_u16(), 405, "{method} {path}");
        assert_eq!(
            reply.header("x-reason"),
            Some("This method is not allowed here"),
            "{method} {path}"
        );
        assert_eq!(reply.json()["error"], "This method is not allowed here");
    }
}
