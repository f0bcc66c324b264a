use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::mpsc;

use super::*;

/// A server on 127.0.0.1 that greets each connection with `hi`, then reads until the client
/// closes or the guard ends it, reporting how each connection ended.
async fn server(limits: Limits) -> (SocketAddr, mpsc::UnboundedReceiver<io::Result<usize>>) {
    let inner = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let mut listener = GuardedListener::new(inner, limits, "test");
    let address = listener.local_addr().expect("bound");
    let (ended, endings) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await;
            let ended = ended.clone();
            tokio::spawn(async move {
                let _ = stream.write_all(b"hi").await;
                let mut total = 0;
                let mut buf = [0u8; 64];
                let outcome = loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => break Ok(total),
                        Ok(n) => total += n,
                        Err(e) => break Err(e),
                    }
                };
                let _ = ended.send(outcome);
            });
        }
    });
    (address, endings)
}

/// Connects from `from` (any 127.x.y.z: all loopback on Linux) and reads the greeting: `true`
/// when the server greeted, `false` when it closed the connection instead.
async fn connect_from(from: &str, to: SocketAddr) -> (TcpStream, bool) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("an address"))
        .expect("binds");
    let mut stream = socket.connect(to).await.expect("connects");
    let mut greeting = [0u8; 2];
    let greeted = tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut greeting))
        .await
        .is_ok_and(|r| r.is_ok());
    (stream, greeted)
}

const ROOMY: Duration = Duration::from_secs(60);

#[tokio::test]
async fn one_peer_cannot_take_every_slot_and_the_total_is_bounded() {
    let limits = Limits {
        max_connections: 3,
        max_per_peer: 2,
        idle: ROOMY,
    };
    let (address, _) = server(limits).await;
    let (first, ok1) = connect_from("127.0.0.1", address).await;
    let (_second, ok2) = connect_from("127.0.0.1", address).await;
    let (_third, ok3) = connect_from("127.0.0.1", address).await;
    assert_eq!((ok1, ok2, ok3), (true, true, false), "two per peer");
    let (_other, ok4) = connect_from("127.0.0.2", address).await;
    assert!(ok4, "another peer still gets in");
    let (_fourth, ok5) = connect_from("127.0.0.3", address).await;
    assert!(!ok5, "three in all");
    // A connection closed gives its place back.
    drop(first);
    let mut again = false;
    for _ in 0..100 {
        let (_stream, ok) = connect_from("127.0.0.1", address).await;
        if ok {
            again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again, "the place came back");
}

#[tokio::test]
async fn a_silent_connection_is_closed_and_a_slow_one_is_not() {
    let limits = Limits {
        max_connections: 8,
        max_per_peer: 8,
        idle: Duration::from_secs(1),
    };
    let (address, mut endings) = server(limits).await;
    // Half a request, then nothing: the guard ends it.
    let (mut silent, greeted) = connect_from("127.0.0.1", address).await;
    assert!(greeted);
    silent.write_all(b"GET / HT").await.expect("writes");
    let ended = tokio::time::timeout(Duration::from_secs(30), endings.recv())
        .await
        .expect("ended within 30 s")
        .expect("a report");
    assert_eq!(
        ended.map_err(|e| e.kind()).err(),
        Some(io::ErrorKind::TimedOut)
    );
    // A byte every tenth of a second for a second and a half: never idle for the whole second.
    let (mut slow, greeted) = connect_from("127.0.0.1", address).await;
    assert!(greeted);
    for _ in 0..15 {
        slow.write_all(b"x").await.expect("writes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(slow);
    let ended = tokio::time::timeout(Duration::from_secs(30), endings.recv())
        .await
        .expect("ended")
        .expect("a report");
    assert_eq!(
        ended.ok(),
        Some(15),
        "every byte read, closed by the client"
    );
}

#[tokio::test(start_paused = true)]
async fn repeated_log_lines_are_held_back_and_counted() {
    let mut throttle = Throttle::default();
    let start = Instant::now();
    assert_eq!(throttle.admit(start), Some(0));
    for _ in 0..1_000 {
        assert_eq!(throttle.admit(start + Duration::from_secs(5)), None);
    }
    assert_eq!(throttle.admit(start + LOG_EVERY), Some(1_000));
    assert_eq!(throttle.admit(start + LOG_EVERY), None);
}
