//! The test Redis itself: it requires its password, keeps its data across
//! a restart (append-only file), and can be wiped, so store tests built on
//! it test the store and not the fixture.

use crate::support::redis::{RedisServer, Reply};

#[test]
fn the_test_redis_requires_its_password_and_survives_a_restart() {
    let mut redis = RedisServer::start();
    assert!(redis.url().contains(redis.password()));
    assert!(!redis.url_without_password().contains(redis.password()));

    assert_eq!(
        redis.command(&["SET", "fixture:a", "1"]),
        Reply::Status("OK".into())
    );
    assert_eq!(redis.keys("fixture:*"), ["fixture:a"]);

    // Without AUTH the server refuses commands.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    std::io::Write::write_all(&mut raw, b"*2\r\n$3\r\nGET\r\n$9\r\nfixture:a\r\n").unwrap();
    let mut answer = [0u8; 7];
    std::io::Read::read_exact(&mut raw, &mut answer).unwrap();
    assert_eq!(&answer, b"-NOAUTH");

    redis.restart();
    assert_eq!(
        redis.command(&["GET", "fixture:a"]),
        Reply::Bulk(Some(b"1".to_vec())),
        "the append-only file brings the data back"
    );

    redis.wipe();
    assert!(redis.keys("*").is_empty());

    redis.stop();
    assert!(!redis.is_running());
    assert!(std::net::TcpStream::connect(("127.0.0.1", redis.port())).is_err());
}
