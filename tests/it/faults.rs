//! Providers that fail at the transport level, against a running broker:
//! connections reset, answers trickling in byte by byte, endless bodies,
//! redirect loops and hosts that do not resolve. Each ends in a JSON 5xx
//! with a reason, within the upstream timeout (2 s in the harness), and
//! the broker goes on serving a healthy provider meanwhile and afterwards.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::broker::{Reply, Setup, assert_error_shape};
use crate::support::mock_provider::MockProvider;

/// The provider whose token endpoint misbehaves.
const FAULTY: &str = "googledrive";
/// A provider on a healthy mock, refreshed around each fault.
const HEALTHY: &str = "dropbox";

/// Far above the harness's 2 s upstream timeout: only a broker that hangs
/// on a fault runs into it.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// A raw TCP server on 127.0.0.1:0 that hands every connection to `serve`.
struct RawServer {
    base_url: String,
    accept: JoinHandle<()>,
}

impl RawServer {
    async fn start<F, Fut>(serve: F) -> Self
    where
        F: Fn(TcpStream, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let own_url = base_url.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, own_url.clone()));
            }
        });
        Self { base_url, accept }
    }

    fn token_url(&self) -> String {
        format!("{}/token", self.base_url)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Reads up to the end of the request head (the broker's small form body
/// may follow; nothing here needs it).
async fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

/// A broker serving [`FAULTY`] at `token_url` and [`HEALTHY`] at `mock`,
/// listening on 127.0.0.1:0. Returns it with its base URL.
async fn broker_with_faulty(
    mock: &MockProvider,
    token_url: String,
) -> (crate::support::broker::Broker, String) {
    let broker = Setup::new(mock, &[FAULTY, HEALTHY])
        .adjust(move |entries| {
            for entry in entries.iter_mut().filter(|e| e["id"] == FAULTY) {
                entry["authUrl"] = Value::String(token_url.clone());
            }
        })
        .build();
    let base = broker.serve().await;
    (broker, base)
}

/// `GET /refresh` over HTTP, as a backup client sends it.
async fn refresh(base: &str, authid: &str) -> Reply {
    let call = async {
        let response = reqwest::Client::new()
            .get(format!("{base}/refresh"))
            .header("X-AuthID", authid)
            .send()
            .await
            .expect("the broker answers");
        Reply::from_reqwest(response).await
    };
    tokio::time::timeout(HANG_GUARD, call)
        .await
        .expect("the broker answered instead of hanging")
}

/// Refreshes the faulty provider while a healthy one is refreshed too,
/// asserts the fault's status and error shape, then refreshes the healthy
/// provider once more. Returns the fault's error message.
async fn assert_fault(
    broker: &crate::support::broker::Broker,
    base: &str,
    mock: &MockProvider,
    expected: StatusCode,
) -> String {
    let faulty_authid = broker.seal(FAULTY, "rt-faulty-provider");
    let healthy_authid = broker.seal(HEALTHY, &mock.issue_refresh_token());
    let (fault, during) = tokio::join!(
        refresh(base, &faulty_authid),
        refresh(base, &healthy_authid)
    );
    assert_eq!(fault.status, expected, "{}", fault.body);
    assert_error_shape(&fault);
    assert_eq!(during.status, StatusCode::OK, "during: {}", during.body);
    let after = refresh(base, &broker.seal(HEALTHY, &mock.issue_refresh_token())).await;
    assert_eq!(after.status, StatusCode::OK, "after: {}", after.body);
    assert!(mock.is_valid_access_token(after.json()["access_token"].as_str().unwrap()));
    fault.json()["error"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_provider_that_resets_connections_gets_502() {
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let server = RawServer::start(move |stream, _| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            // SO_LINGER 0: closing sends RST instead of FIN.
            stream.set_zero_linger().unwrap();
            drop(stream);
        }
    })
    .await;
    let mock = MockProvider::start().await;
    let (broker, base) = broker_with_faulty(&mock, server.token_url()).await;
    let message = assert_fault(&broker, &base, &mock, StatusCode::BAD_GATEWAY).await;
    assert!(message.contains("provider failed"), "{message}");
    assert!(accepted.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn a_provider_answering_byte_by_byte_times_out_with_504() {
    let server = RawServer::start(|mut stream, _| async move {
        read_head(&mut stream).await;
        let body = r#"{"access_token":"at-slow","expires_in":3600}"#;
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        // About 100 bytes at 200 ms each: some 20 s, far past the timeout.
        for byte in answer.bytes() {
            if stream.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let mock = MockProvider::start().await;
    let (broker, base) = broker_with_faulty(&mock, server.token_url()).await;
    let message = assert_fault(&broker, &base, &mock, StatusCode::GATEWAY_TIMEOUT).await;
    assert!(message.contains("did not answer in time"), "{message}");
}

#[tokio::test]
async fn a_huge_chunked_answer_is_cut_off_with_502() {
    const TOTAL: usize = 10 * 1024 * 1024;
    let written = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&written);
    let server = RawServer::start(move |mut stream, _| {
        let counter = Arc::clone(&counter);
        async move {
            read_head(&mut stream).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'a'; 64 * 1024];
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk,
                b"\r\n".to_vec(),
            ]
            .concat();
            let mut sent = 0;
            while sent < TOTAL {
                if stream.write_all(&framed).await.is_err() {
                    return;
                }
                sent += 64 * 1024;
                counter.store(sent, Ordering::SeqCst);
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
        }
    })
    .await;
    let mock = MockProvider::start().await;
    let (broker, base) = broker_with_faulty(&mock, server.token_url()).await;
    let message = assert_fault(&broker, &base, &mock, StatusCode::BAD_GATEWAY).await;
    assert!(message.contains("too large"), "{message}");
    assert!(
        written.load(Ordering::SeqCst) > 0,
        "the body was being sent"
    );
}

#[tokio::test]
async fn a_redirect_loop_is_not_followed_and_gets_502() {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let server = RawServer::start(move |mut stream, own_url| {
        let counter = Arc::clone(&counter);
        async move {
            read_head(&mut stream).await;
            counter.fetch_add(1, Ordering::SeqCst);
            let answer = format!(
                "HTTP/1.1 302 Found\r\nlocation: {own_url}/token\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    })
    .await;
    let mock = MockProvider::start().await;
    let (broker, base) = broker_with_faulty(&mock, server.token_url()).await;
    let message = assert_fault(&broker, &base, &mock, StatusCode::BAD_GATEWAY).await;
    assert!(message.contains("provider failed"), "{message}");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "one request, no redirect followed"
    );
}

#[tokio::test]
async fn a_token_host_that_does_not_resolve_gets_502() {
    // `.invalid` is reserved (RFC 6761) and never resolves: the only
    // traffic off loopback is the lookup attempt.
    let mock = MockProvider::start().await;
    let (broker, base) =
        broker_with_faulty(&mock, "https://nonexistent.invalid/token".to_string()).await;
    let message = assert_fault(&broker, &base, &mock, StatusCode::BAD_GATEWAY).await;
    assert!(message.contains("cannot connect"), "{message}");
}
