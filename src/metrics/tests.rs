//! The series `/metrics` shows for keys and readiness.

use super::*;

fn key_lines(metrics: &Metrics) -> Vec<String> {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("oauth_broker_authids_opened{"))
        .map(str::to_string)
        .collect()
}

#[test]
fn each_key_has_one_series_under_its_current_state() {
    let metrics = Metrics::new();
    let opened = BTreeMap::from([("old".to_string(), 7)]);
    metrics.record_keys("old", &["old"], &opened);
    assert_eq!(
        key_lines(&metrics),
        [r#"oauth_broker_authids_opened{kid="old",state="primary"} 7"#]
    );

    // Rotation: a new primary; the old key opens on as secondary.
    metrics.record_keys("new", &["old", "new"], &opened);
    let mut lines = key_lines(&metrics);
    lines.sort();
    assert_eq!(
        lines,
        [
            r#"oauth_broker_authids_opened{kid="new",state="primary"} 0"#,
            r#"oauth_broker_authids_opened{kid="old",state="secondary"} 7"#,
        ]
    );

    // Retired (or removed from the key directory): still shown, as such.
    metrics.record_keys("new", &["new"], &opened);
    let mut lines = key_lines(&metrics);
    lines.sort();
    assert_eq!(
        lines,
        [
            r#"oauth_broker_authids_opened{kid="new",state="primary"} 0"#,
            r#"oauth_broker_authids_opened{kid="old",state="retired"} 7"#,
        ]
    );
}

#[test]
fn ready_is_a_gauge_named_for_alerts() {
    let metrics = Metrics::new();
    metrics.ready.set(1);
    assert!(
        metrics
            .render()
            .lines()
            .any(|l| l == "oauth_broker_ready 1")
    );
}
