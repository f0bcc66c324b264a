//! The agent's HTTP listener cannot be starved (#16, finding 7): a host opening hundreds of
//! dashboard event streams once took the file descriptors the agent's embedded broker needed, and
//! new MQTT clients were locked out. Now one host keeps at most its share of streams, another host
//! still reads `/metrics`, and the embedded broker still takes new clients.

use std::net::SocketAddr;
use std::time::Duration;

use testbed::site::LoneAgent;
use testbed::{Via, Watcher};

const SITE: &str = "listeners";
/// What the agent's listener lets one host hold (`host/src/agent/tasks.rs`).
const PER_PEER: usize = 32;

/// `GET /metrics` from 127.0.0.2 (another host, as the agent sees it): the reply's first line.
async fn metrics_from_elsewhere(port: u16) -> String {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("address"))
        .expect("binds 127.0.0.2");
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let mut stream = socket.connect(target).await.expect("connects");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
        .await
        .expect("sends");
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_event_streams_leaves_the_agent_to_everyone_else() {
    let site = LoneAgent::start("listeners", SITE, Via::Embedded, "").await;
    let address: SocketAddr = format!("127.0.0.1:{}", site.metrics_port)
        .parse()
        .expect("address");
    let flood = tokio::task::spawn_blocking(move || {
        testbed::hold_connections(
            address,
            300,
            b"GET /events HTTP/1.1\r\nHost: agent\r\n\r\n",
            PER_PEER,
        )
    });
    let (held, open) = flood.await.expect("joins");
    assert!(
        open <= PER_PEER,
        "one host holds at most {PER_PEER} streams: {open} open"
    );
    // Another host still reads the agent, and the embedded broker still takes a new client.
    let status = metrics_from_elsewhere(site.metrics_port).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut late =
        Watcher::connect(site.port, "late-client", &format!("hashwarden/v1/{SITE}/#")).await;
    late.subscribed().await;
    assert!(
        site.agent
            .log_text()
            .contains("connection refused: over the listener's limits"),
        "{}",
        site.agent.log_text()
    );
    drop(held);
    site.finish();
}
