//! Slow and greedy clients at the listener: a client that stops reading
//! its answers loses its connection after `WRITE_TIMEOUT`, one address
//! cannot hold more than `MAX_CONNECTIONS_PER_ADDRESS` connections, and
//! `/metrics` can be served on a listener of its own (`METRICS_LISTEN`).

use std::net::SocketAddr;
use std::time::Duration;

use oauth_broker::config::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::broker::{CLIENT_ID, CLIENT_SECRET, Setup, assert_error_shape, config_for};
use crate::support::mock_provider::Fault;
use crate::support::mock_provider::MockProvider;
use crate::support::process;

/// A connection from `source` with a tiny receive window.
async fn connect_from(source: &str, to: SocketAddr, receive_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends one request and reads until the server closes or a whole answer
/// came; bounded.
async fn ask_health(stream: &mut TcpStream) -> String {
    let _ = stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: broker\r\n\r\n")
        .await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
            if received.windows(4).any(|w| w == b"\r\n\r\n") && received.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_is_disconnected_after_the_write_timeout() {
    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["googledrive"])
        .limits(Limits {
            write_timeout: Duration::from_secs(1),
            max_connections: 1,
            ..Limits::default()
        })
        .build();
    let base = broker.serve().await;
    let address: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let mut slow = connect_from("127.0.0.1", address, Some(1024)).await;
    // Pipelined requests, never a byte read: the server's answers fill
    // the window and its buffers, then make no progress. The client's
    // writes stop being taken too, until the server ends the connection.
    let request = b"GET /metrics HTTP/1.1\r\nHost: broker\r\n\r\n".repeat(64);
    let ended = tokio::time::timeout(Duration::from_secs(120), async {
        for _ in 0..100_000 {
            if slow.write_all(&request).await.is_err() {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ended, Ok(true), "the server ended the connection");
    // Its one slot is free for another client.
    let mut other = connect_from("127.0.0.1", address, None).await;
    let answer = ask_health(&mut other).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

#[tokio::test]
async fn one_address_cannot_open_more_than_its_cap_while_another_still_can() {
    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["googledrive"])
        .limits(Limits {
            max_connections_per_address: 2,
            ..Limits::default()
        })
        .build();
    let base = broker.serve().await;
    let address: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect_from("127.0.0.2", address, None).await;
        let answer = ask_health(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        held.push(stream);
    }
    let mut third = connect_from("127.0.0.2", address, None).await;
    let refused = ask_health(&mut third).await;
    assert!(refused.is_empty(), "closed without an answer: {refused}");
    let mut other = connect_from("127.0.0.1", address, None).await;
    let answer = ask_health(&mut other).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    // A closed connection frees its place.
    drop(held.pop());
    let served = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let mut again = connect_from("127.0.0.2", address, None).await;
            if ask_health(&mut again).await.starts_with("HTTP/1.1 200 OK") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(served.is_ok(), "the address got its place back");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn metrics_listen_serves_metrics_on_its_own_listener_and_not_on_the_public_one() {
    let mock = MockProvider::start().await;
    mock.set_client(CLIENT_ID, CLIENT_SECRET);
    let tmp = tempfile::tempdir().unwrap();
    crate::support::process::key_dir_with_primary(tmp.path());
    let metrics_address = format!("127.0.0.1:{}", free_port());
    let env = [
        ("CONFIGFILE", config_for(&mock, &["googledrive"])),
        (
            "SECRETS",
            format!(r#"{{"TEST_SECRET": "{CLIENT_SECRET}"}}"#),
        ),
        ("SERVICES", "googledrive".into()),
        ("METRICS_LISTEN", metrics_address.clone()),
    ];
    let server = process::start(&["serve"], &env, tmp.path());
    server.wait_for_log("serving /metrics");
    let client = reqwest::Client::new();
    let public = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let own = client
        .get(format!("http://{metrics_address}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    let text = own.text().await.unwrap();
    assert!(text.contains("oauth_broker_"), "{text}");
    let refresh = client
        .get(format!("http://{metrics_address}/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 404, "only /metrics and /health there");
}

/// A request that outlives `REQUEST_TIMEOUT` (here 1 s, shorter than the
/// upstream timeout, against a provider that never answers) is answered
/// 504 JSON with `X-Reason`, like every other error.
#[tokio::test]
async fn a_request_past_the_request_timeout_is_a_504_json_with_a_reason() {
    let mock = MockProvider::start().await;
    mock.set_sticky_fault(Some(Fault::Hang));
    let broker = Setup::new(&mock, &["googledrive"])
        .limits(Limits {
            request_timeout: Duration::from_secs(1),
            ..Limits::default()
        })
        .build();
    let authid = broker.seal("googledrive", &mock.issue_refresh_token());
    let reply = broker.refresh(&authid).await;
    assert_eq!(reply.status.as_u16(), 504, "{}", reply.body);
    assert_error_shape(&reply);
    assert_eq!(
        reply.header("x-reason"),
        Some("The request took too long; try again later")
    );
    assert_eq!(
        reply.json()["error"],
        "The request took too long; try again later"
    );
}

/// The key directory is looked at every `KEYS_RELOAD_INTERVAL` (here
/// 1 s): a key activated there becomes primary without a signal (the
/// default of 30 s would outlast the wait for the log line).
#[tokio::test]
async fn a_key_activated_in_keys_dir_is_picked_up_within_the_reload_interval() {
    let mock = MockProvider::start().await;
    mock.set_client(CLIENT_ID, CLIENT_SECRET);
    let tmp = tempfile::tempdir().unwrap();
    let keys = oauth_broker::authid::keydir::KeyDir::new(tmp.path().join("keys"));
    let now = oauth_broker::clock::Clock::now(&oauth_broker::clock::SystemClock);
    keys.generate(now, true).unwrap();
    let env = [
        ("CONFIGFILE", config_for(&mock, &["googledrive"])),
        (
            "SECRETS",
            format!(r#"{{"TEST_SECRET": "{CLIENT_SECRET}"}}"#),
        ),
        ("SERVICES", "googledrive".into()),
        ("KEYS_RELOAD_INTERVAL", "1".into()),
    ];
    let server = process::start(&["serve"], &env, tmp.path());
    let new = keys.generate(now + 1, true).unwrap();
    let line = server.wait_for_log("keys loaded");
    assert!(line.contains(&new), "the new key is primary: {line}");
}
