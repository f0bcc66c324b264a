//! The embedded broker (rumqttd inside `hashwarden run`) against what the miners and the agent
//! rely on from any broker: retained presence and state for late subscribers, a retained last
//! will when a client vanishes, a persistent session that delivers a command sent while its
//! miner was away, shared subscriptions splitting telemetry, passwords, and TLS that trusts only
//! the configured CA.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use fleet_mqtt::embedded::{BrokerSettings, TlsListener};
use fleet_mqtt::{Connection, LinkError, Secret};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, Packet};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use testbed::{TestPki, Watcher, free_port, scratch};

const SOON: Duration = Duration::from_secs(20);

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

struct Running {
    plain: u16,
    tls: u16,
    pki: TestPki,
}

fn start(name: &str) -> Running {
    let dir = scratch(name);
    let pki = TestPki::generate(&dir);
    let (plain, tls) = (free_port(), free_port());
    let settings = BrokerSettings {
        listen: loopback(plain),
        tls: Some(TlsListener {
            listen: loopback(tls),
            cert_file: pki.cert.clone(),
            key_file: pki.key.clone(),
        }),
        users: BTreeMap::from([
            ("agent".to_string(), Secret::new("agent-pw")),
            ("miner".to_string(), Secret::new("miner-pw")),
        ]),
        ..BrokerSettings::default()
    };
    fleet_mqtt::embedded::start(&settings).expect("the embedded broker starts");
    Running { plain, tls, pki }
}

fn plain(port: u16, user: &str, password: &str) -> Connection {
    Connection::new(
        &format!("mqtt://127.0.0.1:{port}"),
        None,
        Some(user),
        Some(&Secret::new(password)),
    )
    .expect("valid")
}

/// Connects and reports whether the broker accepted (CONNACK success) within `SOON`.
async fn accepted(options: MqttOptions) -> bool {
    let (_client, mut eventloop) = AsyncClient::new(options, 8);
    let attempt = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    return ack.code == rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success;
                }
                Ok(_) => {}
                // Nothing listening yet: the broker starts its listeners in the background, and
                // a suite that asks at once can be there first. Ask again until it answers.
                Err(rumqttc::v5::ConnectionError::Io(e))
                    if e.kind() == std::io::ErrorKind::ConnectionRefused =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(SOON, attempt).await.unwrap_or(false)
}

/// A client whose connection can be cut without a DISCONNECT, as a miner losing power does.
fn vanishing(options: MqttOptions) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let (client, eventloop) = AsyncClient::new(options, 64);
    let task = tokio::spawn(drive(eventloop, None));
    (client, task)
}

/// Like [`vanishing`], with a channel that hears each subscription the broker acknowledges.
fn vanishing_subscriber(
    options: MqttOptions,
) -> (
    AsyncClient,
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let (client, eventloop) = AsyncClient::new(options, 64);
    let (acked, acks) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(drive(eventloop, Some(acked)));
    (client, task, acks)
}

async fn drive(
    mut eventloop: EventLoop,
    subscribed: Option<tokio::sync::mpsc::UnboundedSender<()>>,
) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if let Some(subscribed) = &subscribed {
                    let _ = subscribed.send(());
                }
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_presence_and_the_last_will_reach_late_subscribers() {
    let broker = start("embedded-will");
    let miner = plain(broker.plain, "miner", "miner-pw");
    let status = "hashwarden/v1/site/m1/status";
    let (client, task) = vanishing(miner.client_options("m1", Some(status)).expect("options"));
    client
        .publish(status, QoS::AtLeastOnce, true, "online")
        .await
        .expect("queued");
    client
        .publish(
            "hashwarden/v1/site/m1/state",
            QoS::AtLeastOnce,
            true,
            "{\"v\":1}",
        )
        .await
        .expect("queued");

    // The miner's publishes are queued, not yet at the broker: an early subscriber may get them
    // live. Once one has arrived the broker holds it, and a subscriber arriving after that must
    // get it as retained.
    let agent = plain(broker.plain, "agent", "agent-pw");
    let mut early = Watcher::connect_to(&agent, "agent-early", "hashwarden/v1/site/+/+").await;
    early.wait_for("/m1/state", SOON, |_| true).await;
    let mut watcher = Watcher::connect_to(&agent, "agent", "hashwarden/v1/site/+/+").await;
    let state = watcher.wait_for("/m1/state", SOON, |s| s.retain).await;
    assert_eq!(state.text(), "{\"v\":1}");
    watcher
        .current("/m1/status", SOON, |s| s.text() == "online")
        .await;

    // Power cut: no DISCONNECT, so the broker publishes the will.
    task.abort();
    drop(client);
    watcher
        .wait_for("/m1/status", Duration::from_secs(40), |s| {
            s.text() == "offline"
        })
        .await;
    // And keeps it: an agent starting now reads the miner as offline.
    let mut late = Watcher::connect_to(&agent, "agent-2", "hashwarden/v1/site/#").await;
    let retained = late.wait_for("/m1/status", SOON, |s| s.retain).await;
    assert_eq!(retained.text(), "offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_sent_while_a_miner_was_away_arrives_when_it_returns() {
    let broker = start("embedded-session");
    let miner = plain(broker.plain, "miner", "miner-pw");
    let cmd = "hashwarden/v1/site/m2/cmd";
    let persistent = || {
        let mut options = miner.client_options("m2", None).expect("options");
        options.set_clean_start(false);
        let mut properties = ConnectProperties::new();
        properties.session_expiry_interval = Some(3_600);
        options.set_connect_properties(properties);
        options
    };
    let (away, task, mut subscribed) = vanishing_subscriber(persistent());
    away.subscribe(cmd, QoS::AtLeastOnce).await.expect("queued");
    tokio::time::timeout(SOON, subscribed.recv())
        .await
        .expect("the broker keeps the subscription in the session");
    task.abort();
    drop(away);
    // The one fixed wait left: the broker gives no sign a client can see that it has noticed a
    // dropped connection, and a command published before then goes to the dead one.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let agent = plain(broker.plain, "agent", "agent-pw");
    let host = Watcher::connect_to(&agent, "host", "hashwarden/v1/site/+/ack").await;
    host.publish(cmd, "{\"sleep\":true}", false).await;
    // No wait for the broker to queue it: whether it is queued for the session or routed to the
    // session once it is back, the returning miner gets it.

    // Back with the same session: the command waited for it.
    let mut back = Watcher::connect_with(persistent(), "hashwarden/v1/site/m2/unused").await;
    let delivered = back.wait_for("/m2/cmd", SOON, |_| true).await;
    assert_eq!(delivered.text(), "{\"sleep\":true}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_subscription_splits_telemetry_between_agents() {
    let broker = start("embedded-share");
    let agent = plain(broker.plain, "agent", "agent-pw");
    let filter = "$share/agents/hashwarden/v1/site/+/telemetry";
    let mut first = Watcher::connect_to(&agent, "agent-a", filter).await;
    let mut second = Watcher::connect_to(&agent, "agent-b", filter).await;
    // Both subscriptions in place before the first message: the split starts with it.
    first.subscribed().await;
    second.subscribed().await;
    let miner = Watcher::connect_to(&plain(broker.plain, "miner", "miner-pw"), "m", "none").await;
    let sent = 40;
    for i in 0..sent {
        miner
            .publish(&format!("hashwarden/v1/site/m{i}/telemetry"), "{}", false)
            .await;
    }
    let count = |watcher: &mut Watcher| {
        let mut n = 0;
        while watcher.try_next().is_some() {
            n += 1;
        }
        n
    };
    let (mut a, mut b) = (0, 0);
    let deadline = tokio::time::Instant::now() + SOON;
    while a + b < sent && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        a += count(&mut first);
        b += count(&mut second);
    }
    assert_eq!(a + b, sent, "each message to exactly one agent ({a} + {b})");
    assert!(a > 0 && b > 0, "both agents take a share ({a} + {b})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_tls_roots_are_enforced() {
    let broker = start("embedded-auth");
    let with = |url: String, ca: Option<&std::path::Path>, user: Option<(&str, &str)>| {
        let password = user.map(|(_, p)| Secret::new(p));
        Connection::new(&url, ca, user.map(|(u, _)| u), password.as_ref())
            .expect("valid")
            .client_options(format!("probe-{}", free_port()), None)
            .expect("options")
    };
    let plain_url = format!("mqtt://127.0.0.1:{}", broker.plain);
    let tls_url = format!("mqtts://localhost:{}", broker.tls);
    assert!(accepted(with(plain_url.clone(), None, Some(("miner", "miner-pw")))).await);
    assert!(!accepted(with(plain_url.clone(), None, Some(("miner", "wrong")))).await);
    assert!(
        !accepted(with(plain_url, None, None)).await,
        "anonymous refused"
    );
    let ca = Some(broker.pki.ca.as_path());
    assert!(accepted(with(tls_url.clone(), ca, Some(("miner", "miner-pw")))).await);
    let unrelated = Some(broker.pki.unrelated_ca.as_path());
    assert!(
        !accepted(with(tls_url, unrelated, Some(("miner", "miner-pw")))).await,
        "a broker certificate from another CA is refused"
    );
}

#[test]
fn a_taken_port_is_an_error_not_a_silent_second_broker() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let settings = BrokerSettings {
        listen: taken.local_addr().expect("bound"),
        ..BrokerSettings::default()
    };
    let error = fleet_mqtt::embedded::start(&settings).expect_err("the port is taken");
    assert!(matches!(error, LinkError::Listen { .. }), "{error}");
}

/// An oversized message on a miner's command topic must not reach the miner: it would break its
/// connection and, kept in its session, break it again on every reconnect. rumqttd ignores the
/// Maximum Packet Size a client declares (MQTT v5 §3.1.2.11.4), so the embedded broker refuses
/// such messages at the door instead (`fleet_mqtt::embedded::MAX_PAYLOAD`, below what a miner
/// takes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_never_reaches_a_miner() {
    let broker = start("embedded-oversize");
    let miner = plain(broker.plain, "miner", "miner-pw");
    let cmd = "hashwarden/v1/site/m3/cmd";
    let mut options = miner.client_options("m3", None).expect("options");
    options.set_max_packet_size(Some(16 * 1024));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client
        .subscribe(cmd, QoS::AtLeastOnce)
        .await
        .expect("queued");
    let (tx, mut received) = tokio::sync::mpsc::unbounded_channel();
    let (up_tx, up) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut up_tx = Some(up_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(up) = up_tx.take() {
                        let _ = up.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(Ok(p.payload.len()));
                }
                Ok(_) => {}
                // Before the subscription the broker may still be starting.
                Err(e) if up_tx.is_some() => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    tokio::time::timeout(SOON, up)
        .await
        .expect("subscribed")
        .expect("up");
    for size in [200_000, fleet_mqtt::embedded::MAX_PAYLOAD + 1] {
        let attacker = Watcher::connect_to(
            &plain(broker.plain, "agent", "agent-pw"),
            "attacker",
            "none",
        )
        .await;
        attacker.publish_bytes(cmd, vec![b'x'; size], false).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let host = Watcher::connect_to(&plain(broker.plain, "agent", "agent-pw"), "host", "none").await;
    host.publish(cmd, "{\"small\":true}", false).await;
    let next = tokio::time::timeout(SOON, received.recv())
        .await
        .expect("something arrives")
        .expect("open");
    assert_eq!(
        next,
        Ok(14),
        "the small message, not the big one nor a broken connection"
    );
}
