//! The server's edge: client addresses behind proxies, and connections
//! that never finish a request or sit idle.

use oauth_broker::config::{Limits, parse_proxies};

use crate::support::broker::Setup;
use crate::support::logs;
use crate::support::mock_provider::MockProvider;

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
