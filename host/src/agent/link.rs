//! The agent's MQTT v5 link: its presence (`…/agent` retained `online`, last will `offline` —
//! what the miners' failsafe watches), the subscriptions to every miner's status, state,
//! telemetry and acks and to the site's market, grid and maestro topics, and the signed commands
//! out. Incoming messages go to the agent's loop over a bounded queue; a broker that goes away is
//! reconnected to in the background, re-announcing and re-subscribing each time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fleet_proto::messages::{OFFLINE, ONLINE};
use fleet_proto::{Kind, Name, topic};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event};
use tokio::sync::mpsc;
use tracing::{info, warn};

use fleet_mqtt::Connection;

use crate::site::ShareSection;

/// Messages waiting for the loop; a flood beyond this is dropped (and logged).
pub const INCOMING_QUEUE: usize = 65_536;
/// The largest message taken; telemetry and state are a few kilobytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const REQUEST_QUEUE: usize = 4_096;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often the agent signs a heartbeat, and how long one is good for: miners count the host
/// present while a heartbeat within its time is the last they heard (`topic::agent_heartbeat`).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
const HEARTBEAT_TTL_S: u64 = 30;
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// One message for the loop.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub payload: Vec<u8>,
    /// A miner's report's envelope and signature, checked by the verifier thread on its way
    /// (`super::verifier`); `None` for anything else, or when it came another way.
    pub checked: Option<Result<fleet_proto::report::Checked, fleet_proto::report::ReportRefusal>>,
}

impl Incoming {
    pub fn new(topic: String, payload: Vec<u8>) -> Self {
        Self {
            topic,
            payload,
            checked: None,
        }
    }
}

#[derive(Debug)]
pub struct Link {
    client: AsyncClient,
    presence: String,
    pub incoming: mpsc::Receiver<Incoming>,
    task: tokio::task::JoinHandle<()>,
    /// The signed heartbeats, every [`HEARTBEAT_EVERY`].
    beating: tokio::task::JoinHandle<()>,
    /// Set once the agent says goodbye: its own `offline` is then not answered.
    stopping: Arc<AtomicBool>,
}

/// Signs and publishes a heartbeat (retained) every [`HEARTBEAT_EVERY`], until aborted. Queued
/// while the broker is away; one that arrives after its time is refused by the miners, and the
/// next comes within ten seconds.
async fn beat(
    client: AsyncClient,
    topic: String,
    presence: String,
    mut signer: fleet_proto::feed::FeedSigner,
) {
    let mut ticks = tokio::time::interval(HEARTBEAT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = super::unix_now();
        let reading = serde_json::json!({ "agent": presence });
        match signer.wire(
            fleet_proto::feed::FeedKind::Heartbeat,
            reading,
            now,
            HEARTBEAT_TTL_S,
        ) {
            Ok(bytes) => {
                if client
                    .try_publish(&topic, QoS::AtLeastOnce, true, bytes)
                    .is_err()
                {
                    warn!("MQTT request queue full: a heartbeat was not sent");
                }
            }
            Err(e) => warn!(error = %e, "cannot sign a heartbeat"),
        }
    }
}

/// Connects in the background and returns at once. With `share`, this agent is one of a group:
/// telemetry through the group's shared subscription, its presence under its own name, and the
/// peers' presence read to split the fleet (`crate::shard`).
pub fn spawn(
    connection: &Connection,
    site: &Name,
    share: Option<&ShareSection>,
    heartbeat: fleet_proto::feed::FeedSigner,
) -> Result<Link, String> {
    let (presence, client_id) = match share {
        Some(share) => (
            topic::agent_peer_status(site, &share.instance),
            format!("hashwarden-{site}-{}", share.instance),
        ),
        None => (topic::agent_status(site), format!("hashwarden-{site}")),
    };
    let mut options = connection
        .client_options(client_id, Some(&presence))
        .map_err(|e| format!("agent broker {}: {e}", connection.url))?;
    options.set_keep_alive(KEEP_ALIVE);
    options.set_max_packet_size(Some(MAX_MESSAGE_BYTES as u32 * 2));
    let (client, eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
    let (tx, raw) = mpsc::channel(INCOMING_QUEUE);
    let incoming = super::verifier::spawn(raw, site.clone(), INCOMING_QUEUE);
    let group = share.map(|share| &share.group);
    // Retained state and presence never reach a shared subscription (MQTT v5 §4.8.2), and acks
    // must reach the agent that sent the command: only telemetry is shared.
    let filters: Vec<String> = [Kind::Status, Kind::State, Kind::Ack]
        .into_iter()
        .map(|kind| topic::every_miner(site, kind, None))
        .chain([
            topic::every_miner(site, Kind::Telemetry, group),
            topic::market(site),
            topic::power(site),
            topic::grid(site),
            topic::MAESTRO_TARGET.to_string(),
        ])
        .chain(share.map(|_| topic::every_agent_peer(site)))
        // Its own presence too (a group's agents already hear theirs among the peers'): anything
        // but its `online` there is someone else's doing, and is answered at once.
        .chain(share.is_none().then(|| presence.clone()))
        .collect();
    let stopping = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(run(
        eventloop,
        client.clone(),
        presence.clone(),
        filters,
        tx,
        Arc::clone(&stopping),
    ));
    let beating = tokio::spawn(beat(
        client.clone(),
        topic::agent_heartbeat(site),
        presence.clone(),
        heartbeat,
    ));
    info!(broker = %connection.url, %site, "MQTT link starting");
    Ok(Link {
        client,
        presence,
        incoming,
        task,
        beating,
        stopping,
    })
}

async fn run(
    mut eventloop: rumqttc::v5::EventLoop,
    client: AsyncClient,
    presence: String,
    filters: Vec<String>,
    incoming: mpsc::Sender<Incoming>,
    stopping: Arc<AtomicBool>,
) {
    let mut connected = false;
    let mut refused: Option<String> = None;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                info!("MQTT connected");
                connected = true;
                refused = None;
                let announced = client
                    .try_publish(&presence, QoS::AtLeastOnce, true, ONLINE.as_bytes())
                    .is_ok();
                let subscribed = filters
                    .iter()
                    .all(|f| client.try_subscribe(f, QoS::AtLeastOnce).is_ok());
                if !(announced && subscribed) {
                    warn!("MQTT request queue full while announcing");
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if publish.topic == presence.as_bytes()
                    && publish.payload != ONLINE.as_bytes()
                    && !stopping.load(Ordering::Relaxed)
                {
                    // A forged `offline` (retained, say) would put miners with a `sleep`
                    // failsafe to sleep while this agent runs: say `online` again at once.
                    warn!(topic = %presence, "someone else wrote this agent's presence; online again");
                    if client
                        .try_publish(&presence, QoS::AtLeastOnce, true, ONLINE.as_bytes())
                        .is_err()
                    {
                        warn!("MQTT request queue full while re-asserting presence");
                    }
                }
                if publish.payload.len() > MAX_MESSAGE_BYTES {
                    warn!(bytes = publish.payload.len(), "oversized message dropped");
                    continue;
                }
                let message = Incoming::new(
                    String::from_utf8_lossy(&publish.topic).into_owned(),
                    publish.payload.to_vec(),
                );
                if incoming.try_send(message).is_err() {
                    warn!("incoming queue full; message dropped");
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                fleet_mqtt::log_failure(&e, connected, &mut refused);
                connected = false;
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
        }
    }
}

impl Link {
    /// A signed command to `topic`, QoS 1. Waits for room in the client's queue rather than
    /// dropping: a plan for ten thousand miners is ten thousand commands in one round.
    pub async fn command(&self, topic: &str, payload: Vec<u8>) {
        if let Err(e) = self
            .client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
        {
            warn!(%topic, error = %e, "command not queued");
        }
    }

    /// Says `offline` and disconnects, waiting at most `grace`.
    pub async fn finish(self, grace: Duration) {
        self.stopping.store(true, Ordering::Relaxed);
        self.beating.abort();
        let _ = self
            .client
            .try_publish(&self.presence, QoS::AtLeastOnce, true, OFFLINE.as_bytes());
        let _ = self.client.try_disconnect();
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }
}
