//! The daemon's local APIs cannot be starved (#16, finding 7): a thousand half-open connections
//! from one host once made the HTTP and cgminer APIs unreachable for everyone. Now each listener
//! closes what is over its caps at once, so another host is still answered, and the flooding
//! host's connections beyond its share are closed rather than held.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

mod common;

/// One request from 127.0.0.2 (another host, as far as the daemon can tell): its whole reply.
fn ask_from_elsewhere(address: SocketAddr, request: &[u8]) -> Vec<u8> {
    let socket = connect_from_elsewhere(address);
    let mut stream = socket;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request).expect("sends");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    reply
}

/// A std connection bound to 127.0.0.2 first: tokio's socket builder, driven to completion on a
/// small runtime (std cannot bind before connecting).
fn connect_from_elsewhere(address: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("address"))
            .expect("binds 127.0.0.2");
        let stream = socket.connect(address).await.expect("connects");
        let stream = stream.into_std().expect("std");
        stream.set_nonblocking(false).expect("blocking");
        stream
    })
}

/// A simulated daemon with one of its local APIs on a free port: `what` is "cgminer API" or
/// "HTTP API"; the other is off.
fn daemon_with(what: &str) -> (common::Listening, SocketAddr) {
    let (api, http) = if what == "cgminer API" {
        ("127.0.0.1:0", "off")
    } else {
        ("off", "127.0.0.1:0")
    };
    let listening = common::start_listening(
        &[
            "--sim",
            "--speed",
            "20",
            "--duration",
            "60",
            "--api-listen",
            api,
            "--http-listen",
            http,
        ],
        what,
    );
    let address = listening.address.parse().expect("an address");
    (listening, address)
}

#[test]
fn a_flood_from_one_host_leaves_the_cgminer_api_to_the_others() {
    let (mut daemon, cgminer) = daemon_with("cgminer API");
    let (held, open) = testbed::hold_connections(cgminer, 300, b"{\"command\":\"sum", 8);
    assert!(open <= 8, "one host keeps at most 8 of 300: {open} open");
    let reply = ask_from_elsewhere(cgminer, br#"{"command":"version"}"#);
    assert_eq!(
        reply.last(),
        Some(&0),
        "answered: {}",
        String::from_utf8_lossy(&reply)
    );
    drop(held);
    let _ = daemon.child.kill();
    let _ = daemon.child.wait();
    let log = daemon.log.join().expect("log");
    let refusals = log
        .iter()
        .filter(|l| l.contains("over the listener's limits"))
        .count();
    assert!(refusals >= 1, "the refusals are logged");
    assert!(
        refusals <= 2,
        "logged at most every ten seconds: {refusals} lines"
    );
}

#[test]
fn a_flood_from_one_host_leaves_the_http_api_to_the_others() {
    let (mut daemon, http) = daemon_with("HTTP API");
    let (held, open) = testbed::hold_connections(
        http,
        300,
        b"GET /api/system/info HTTP/1.1\r\nHost: x\r\n",
        16,
    );
    assert!(open <= 16, "one host keeps at most 16 of 300: {open} open");
    let reply = ask_from_elsewhere(
        http,
        b"GET /api/system/info HTTP/1.1\r\nHost: miner\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    drop(held);
    let _ = daemon.child.kill();
    let _ = daemon.child.wait();
    let _ = daemon.log.join();
}
