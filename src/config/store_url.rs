//! The highly available forms of `STORE` (SPEC 8): `redis+sentinel://`,
//! `rediss+sentinel://`, `redis+cluster://` and `rediss+cluster://`, with
//! `STORE_SENTINEL_PASSWORD` and `STORE_REPLICA_ACKS`. Problems name the
//! variable and never repeat a password.

use std::fmt;

use secrecy::SecretString;

/// Default port of a sentinel.
const SENTINEL_PORT: u16 = 26379;
/// Default port of a Redis node.
const REDIS_PORT: u16 = 6379;
/// Most replicas `STORE_REPLICA_ACKS` may ask for.
pub const MAX_REPLICA_ACKS: u32 = 16;

/// How a Redis deployment is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaKind {
    /// Sentinels are asked for the master of a named group.
    Sentinel,
    /// The nodes are seeds of a Redis Cluster.
    Cluster,
}

/// A highly available Redis, parsed from `STORE`.
#[derive(Clone)]
pub struct HaRedis {
    pub kind: HaKind,
    /// The sentinels, or the cluster's seed nodes.
    pub nodes: Vec<(String, u16)>,
    /// TLS to the data nodes (and to the sentinels): `rediss+...`.
    pub tls: bool,
    /// The data nodes' user and password (ACL), percent-decoded.
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// `STORE_SENTINEL_PASSWORD`: the sentinels' own password, if any.
    pub sentinel_password: Option<SecretString>,
    /// The sentinels' name of the master group.
    pub master: String,
    /// The database on the data nodes (a cluster has only 0).
    pub db: i64,
    /// The URL without its password, for logs.
    pub shown: String,
}

impl fmt::Debug for HaRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HaRedis").field("url", &self.shown).finish()
    }
}

/// `STORE_REPLICA_ACKS`: how many replicas must acknowledge a rotation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplicaAcks {
    /// Unset: 1 when the master reports a connected replica, else 0.
    #[default]
    Auto,
    /// Exactly this many (0: never wait).
    Exactly(u32),
}

/// Whether `STORE` names one of the highly available forms.
pub fn is_ha(text: &str) -> bool {
    scheme(text).is_some()
}

fn scheme(text: &str) -> Option<(HaKind, bool)> {
    let (scheme, _) = text.split_once("://")?;
    match scheme.to_ascii_lowercase().as_str() {
        "redis+sentinel" => Some((HaKind::Sentinel, false)),
        "rediss+sentinel" => Some((HaKind::Sentinel, true)),
        "redis+cluster" => Some((HaKind::Cluster, false)),
        "rediss+cluster" => Some((HaKind::Cluster, true)),
        _ => None,
    }
}

const SENTINEL_FORM: &str =
    "redis+sentinel://[user:password@]host:port[,host:port...]/<master name>[/db]";
const CLUSTER_FORM: &str = "redis+cluster://[user:password@]host:port[,host:port...]";

/// Parses a `redis+sentinel://`, `rediss+sentinel://`, `redis+cluster://`
/// or `rediss+cluster://` URL. Errors never repeat the text.
pub fn parse_ha(text: &str) -> Result<HaRedis, String> {
    let (kind, tls) = scheme(text).ok_or("STORE is not a Sentinel or Cluster URL")?;
    let form = match kind {
        HaKind::Sentinel => SENTINEL_FORM,
        HaKind::Cluster => CLUSTER_FORM,
    };
    let bad = |what: &str| format!("STORE: {what}; use {form}");
    let rest = text.split_once("://").map_or("", |(_, r)| r);
    if rest.contains(['?', '#']) || rest.chars().any(char::is_whitespace) {
        return Err(bad("the URL must not have a query, fragment or spaces"));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = userinfo.map_or((None, None), split_userinfo);
    let default_port = match kind {
        HaKind::Sentinel => SENTINEL_PORT,
        HaKind::Cluster => REDIS_PORT,
    };
    let nodes = hosts
        .split(',')
        .map(|node| parse_node(node, default_port))
        .collect::<Option<Vec<_>>>()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("every node must be host or host:port (port 1 to 65535)"))?;
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (master, db) = match (kind, segments.as_slice()) {
        (HaKind::Sentinel, [master]) => (*master, 0),
        (HaKind::Sentinel, [master, db]) => (
            *master,
            db.parse::<i64>()
                .ok()
                .filter(|d| (0..=1_000_000).contains(d))
                .ok_or_else(|| bad("the database after the master name must be a number"))?,
        ),
        (HaKind::Sentinel, _) => return Err(bad("the sentinels' master name is missing")),
        (HaKind::Cluster, [] | ["0"]) => ("", 0),
        (HaKind::Cluster, _) => return Err(bad("a cluster has no database but 0 and no path")),
    };
    let master = percent_decode(master);
    if kind == HaKind::Sentinel && (master.is_empty() || master.chars().any(char::is_control)) {
        return Err(bad("the sentinels' master name is missing"));
    }
    let user = match (username.as_deref(), password.is_some()) {
        (None, false) => String::new(),
        (None, true) => ":***@".into(),
        (Some(u), false) => format!("{u}@"),
        (Some(u), true) => format!("{u}:***@"),
    };
    let path = match kind {
        HaKind::Sentinel => format!("/{master}/{db}"),
        HaKind::Cluster => String::new(),
    };
    let scheme = text.split_once("://").map_or("", |(s, _)| s);
    let shown = format!(
        "{}://{user}{}{path}",
        scheme.to_ascii_lowercase(),
        show_nodes(&nodes)
    );
    Ok(HaRedis {
        kind,
        nodes,
        tls,
        username,
        password: password.map(SecretString::from),
        sentinel_password: None,
        master,
        db,
        shown,
    })
}

fn split_userinfo(userinfo: &str) -> (Option<String>, Option<String>) {
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    let user = Some(percent_decode(user)).filter(|u| !u.is_empty());
    let password = password.map(percent_decode).filter(|p| !p.is_empty());
    (user, password)
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn parse_node(node: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = node.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (host, port)
    } else {
        match node.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (node, None),
        }
    };
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
    };
    valid_host.then(|| (host.to_string(), port))
}

fn show_nodes(nodes: &[(String, u16)]) -> String {
    let hosts: Vec<String> = nodes
        .iter()
        .map(|(h, p)| {
            if h.contains(':') {
                format!("[{h}]:{p}")
            } else {
                format!("{h}:{p}")
            }
        })
        .collect();
    hosts.join(",")
}

/// Applies `STORE_SENTINEL_PASSWORD` and `STORE_REPLICA_ACKS` to parsed
/// store settings; returns the problems found.
pub fn apply_ha_options(
    settings: &mut super::StoreSettings,
    sentinel_password: Option<&str>,
    replica_acks: Option<&str>,
) -> Vec<String> {
    let mut problems = Vec::new();
    match parse_replica_acks(replica_acks) {
        Ok(acks) => settings.replica_acks = acks,
        Err(e) => problems.push(e),
    }
    let sentinel_password = sentinel_password.filter(|p| !p.is_empty());
    match (&mut settings.backend, sentinel_password) {
        (super::StoreBackend::RedisHa(ha), Some(p)) if ha.kind == HaKind::Sentinel => {
            ha.sentinel_password = Some(SecretString::from(p.to_string()));
        }
        (_, Some(_)) => problems.push(
            "STORE_SENTINEL_PASSWORD is set but STORE is not a redis+sentinel:// or rediss+sentinel:// URL"
                .into(),
        ),
        (_, None) => {}
    }
    if matches!(&settings.backend, super::StoreBackend::RedisHa(ha) if ha.kind == HaKind::Cluster)
        && settings.prefix.contains(['{', '}'])
    {
        // A hash tag in the prefix would put every key in one slot.
        problems.push("STORE_PREFIX must not contain { or } on a Redis Cluster".into());
    }
    problems
}

/// `STORE_REPLICA_ACKS`: unset, empty or `auto`, or 0 to 16.
pub fn parse_replica_acks(text: Option<&str>) -> Result<ReplicaAcks, String> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(ReplicaAcks::Auto),
        Some(t) if t.eq_ignore_ascii_case("auto") => Ok(ReplicaAcks::Auto),
        Some(t) => t
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= MAX_REPLICA_ACKS)
            .map(ReplicaAcks::Exactly)
            .ok_or_else(|| {
                format!("STORE_REPLICA_ACKS must be auto or a number of replicas from 0 to {MAX_REPLICA_ACKS}")
            }),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn sentinel_urls() {
        let s =
            parse_ha("redis+sentinel://app:hunter%2F2@s1:26380,s2,[::1]:26381/mymaster/2").unwrap();
        assert_eq!(s.kind, HaKind::Sentinel);
        assert!(!s.tls);
        assert_eq!(
            s.nodes,
            [
                ("s1".to_string(), 26380),
                ("s2".to_string(), 26379),
                ("::1".to_string(), 26381)
            ]
        );
        assert_eq!(s.username.as_deref(), Some("app"));
        assert_eq!(
            s.password.as_ref().map(|p| p.expose_secret()),
            Some("hunter/2")
        );
        assert_eq!(s.master, "mymaster");
        assert_eq!(s.db, 2);
        assert_eq!(
            s.shown,
            "redis+sentinel://app:***@s1:26380,s2:26379,[::1]:26381/mymaster/2"
        );
        assert!(!format!("{s:?}").contains("hunter"));
        let t = parse_ha("rediss+sentinel://:pw@s1/m").unwrap();
        assert!(t.tls && t.db == 0 && t.username.is_none());
        assert_eq!(t.shown, "rediss+sentinel://:***@s1:26379/m/0");
    }

    #[test]
    fn cluster_urls() {
        let c = parse_ha("rediss+cluster://:pw@n1:7000,n2:7001").unwrap();
        assert_eq!(c.kind, HaKind::Cluster);
        assert!(c.tls);
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.shown, "rediss+cluster://:***@n1:7000,n2:7001");
        assert!(parse_ha("redis+cluster://n1/0").is_ok());
        assert_eq!(parse_ha("redis+cluster://n1").unwrap().nodes[0].1, 6379);
    }

    #[test]
    fn malformed_urls_name_store_and_hide_the_password() {
        for bad in [
            "redis+sentinel://:hunter2@s1:26379",
            "redis+sentinel://:hunter2@s1:26379/",
            "redis+sentinel://:hunter2@s1:0/m",
            "redis+sentinel://:hunter2@s1:99999/m",
            "redis+sentinel://:hunter2@s1,,s2/m",
            "redis+sentinel://:hunter2@/m",
            "redis+sentinel://:hunter2@s1/m/zero",
            "redis+sentinel://:hunter2@s1/m/1/2",
            "redis+sentinel://:hunter2@s 1/m",
            "redis+sentinel://:hunter2@s1/m?x=1",
            "redis+cluster://:hunter2@n1:7000/3",
            "redis+cluster://:hunter2@n1:seven",
            "rediss+cluster://:hunter2@",
            "redis+cluster://:hunter2@[::1/",
        ] {
            let e = parse_ha(bad).unwrap_err();
            assert!(e.starts_with("STORE"), "{bad}: {e}");
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
    }

    #[test]
    fn replica_acks() {
        assert_eq!(parse_replica_acks(None), Ok(ReplicaAcks::Auto));
        assert_eq!(parse_replica_acks(Some(" auto ")), Ok(ReplicaAcks::Auto));
        assert_eq!(parse_replica_acks(Some("")), Ok(ReplicaAcks::Auto));
        assert_eq!(parse_replica_acks(Some("0")), Ok(ReplicaAcks::Exactly(0)));
        assert_eq!(parse_replica_acks(Some("2")), Ok(ReplicaAcks::Exactly(2)));
        for bad in ["-1", "17", "one"] {
            assert!(
                parse_replica_acks(Some(bad))
                    .unwrap_err()
                    .contains("STORE_REPLICA_ACKS")
            );
        }
    }
}
