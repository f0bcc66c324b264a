//! The fleet link over MQTT v5: `status` retained `online` with the last will `offline`, `state`
//! retained, telemetry and acks out; signed commands and the agent's presence in.
//!
//! The mining loop never waits on the broker: it hands messages over with `try_publish` and takes
//! commands from a bounded queue. A broker that goes away is reconnected to in the background,
//! and on every (re)connection the miner re-announces itself and its state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleet_proto::feed::FeedKind;
use fleet_proto::{Kind, MinerTopic, messages};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectProperties, Packet};
use rumqttc::v5::{AsyncClient, Event};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::config::MqttSection;

/// Commands waiting for the mining loop; beyond this a flood is dropped (and logged), so a
/// hostile publisher cannot grow the daemon's memory.
const COMMAND_QUEUE: usize = 64;
/// The largest command accepted; a signed command is a few hundred bytes.
pub const MAX_COMMAND_BYTES: usize = 4096;
/// Agents' presences remembered at most: a site runs a handful, and a client flooding made-up
/// peer names (on a broker without ACLs) must not grow the miner's memory.
const MAX_AGENTS: usize = 64;
/// The largest packet this miner takes: a command and its topic with room to spare.
const MAX_INCOMING_PACKET: u32 = 16 * 1024;
/// Outgoing messages rumqttc may hold while the broker is away.
const REQUEST_QUEUE: usize = 256;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How long the broker keeps this miner's session (and queued commands) while it is away.
const SESSION_EXPIRY_S: u32 = 3600;

/// How long a verified heartbeat vouches for the agent. The agent signs one every 10 s, each
/// good for 30 s; past this the host counts as silent even if its presence still says `online` —
/// which anyone the broker lets in could have written.
pub const HEARTBEAT_FRESH: Duration = Duration::from_secs(30);

/// What the link knows about the other side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Presence {
    pub broker_connected: bool,
    /// The agent's presence topic says `online`.
    pub agent_online: bool,
    /// When the last heartbeat signed by a trusted key arrived.
    pub heartbeat_at: Option<tokio::time::Instant>,
}

impl Presence {
    /// The host can be heard at `now`: through a broker, the agent's presence `online` (its last
    /// will says at once when it dies) and its own signed heartbeat recent (a forged `online`
    /// has none).
    pub fn host_heard(self, now: tokio::time::Instant) -> bool {
        let vouched = self
            .heartbeat_at
            .is_some_and(|at| now.saturating_duration_since(at) <= HEARTBEAT_FRESH);
        self.broker_connected && self.agent_online && vouched
    }
}

/// The mining loop's end of the link.
#[derive(Debug)]
pub struct MqttLink {
    client: AsyncClient,
    topics: Topics,
    /// Signs every state, telemetry and ack, so the agent can tell this miner's word from a
    /// forgery on its topics.
    device: fleet_proto::report::DeviceSigner,
    /// The last `state` published, re-published on every reconnection.
    last_state: Arc<Mutex<Option<Vec<u8>>>>,
    pub commands: mpsc::Receiver<Vec<u8>>,
    pub presence: watch::Receiver<Presence>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone)]
struct Topics {
    status: String,
    state: String,
    telemetry: String,
    cmd: String,
    ack: String,
    agent: String,
    /// Several agents sharing the site, each under its own name.
    agent_peers: String,
    /// The agents' signed heartbeat.
    heartbeat: String,
}

impl Topics {
    fn new(section: &MqttSection) -> Self {
        let topic = |kind| MinerTopic::new(&section.site, &section.miner, kind).to_string();
        Self {
            status: topic(Kind::Status),
            state: topic(Kind::State),
            telemetry: topic(Kind::Telemetry),
            cmd: topic(Kind::Cmd),
            ack: topic(Kind::Ack),
            agent: fleet_proto::topic::agent_status(&section.site),
            agent_peers: fleet_proto::topic::every_agent_peer(&section.site),
            heartbeat: fleet_proto::topic::agent_heartbeat(&section.site),
        }
    }
}

/// Connects in the background and returns at once; `section` was checked at config load.
pub fn spawn(
    section: &MqttSection,
    device: fleet_proto::report::DeviceSigner,
) -> Result<MqttLink, String> {
    let connection = section.connection().map_err(|e| format!("mqtt: {e}"))?;
    let topics = Topics::new(section);
    let client_id = format!("hashwarden-fw-{}-{}", section.site, section.miner);
    let mut options = connection
        .client_options(client_id, Some(&topics.status))
        .map_err(|e| format!("mqtt: {e}"))?;
    options.set_keep_alive(KEEP_ALIVE);
    options.set_clean_start(false);
    let mut properties = ConnectProperties::new();
    properties.session_expiry_interval = Some(SESSION_EXPIRY_S);
    // Told to the broker in CONNECT, so it drops anything bigger instead of sending it: an
    // oversized message on the command topic would otherwise break the connection, and, kept
    // in the session, again on every reconnect.
    properties.max_packet_size = Some(MAX_INCOMING_PACKET);
    options.set_connect_properties(properties);
    let (client, eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
    let keys = section
        .trusted_keys()
        .map_err(|(i, e)| format!("mqtt.trusted_keys[{i}]: {e}"))?;
    let heartbeats = fleet_proto::feed::FeedVerifier::new(section.site.clone(), keys);
    let (command_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let (presence_tx, presence) = watch::channel(Presence::default());
    let last_state = Arc::new(Mutex::new(None));
    let task = tokio::spawn(run_eventloop(
        eventloop,
        client.clone(),
        topics.clone(),
        Arc::clone(&last_state),
        command_tx,
        presence_tx,
        heartbeats,
    ));
    info!(broker = %connection.url, topic = %topics.cmd, device_key = device.public_hex(), "MQTT link starting");
    Ok(MqttLink {
        client,
        topics,
        device,
        last_state,
        commands,
        presence,
        task,
    })
}

async fn run_eventloop(
    mut eventloop: rumqttc::v5::EventLoop,
    client: AsyncClient,
    topics: Topics,
    last_state: Arc<Mutex<Option<Vec<u8>>>>,
    commands: mpsc::Sender<Vec<u8>>,
    presence: watch::Sender<Presence>,
    mut heartbeats: fleet_proto::feed::FeedVerifier,
) {
    let mut refused: Option<String> = None;
    let mut agents_online = std::collections::BTreeSet::new();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                info!("MQTT connected");
                presence.send_modify(|p| p.broker_connected = true);
                refused = None;
                announce(&client, &topics, &last_state);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let topic = String::from_utf8_lossy(&publish.topic);
                let is_peer = topic.starts_with(topics.agent_peers.trim_end_matches('+'));
                if topic == topics.agent || is_peer {
                    // One agent, or several sharing the site: the host is there while any is.
                    let online = publish.payload.as_ref() == messages::ONLINE.as_bytes();
                    if online && agents_online.len() < MAX_AGENTS {
                        agents_online.insert(topic.to_string());
                    } else {
                        agents_online.remove(topic.as_ref());
                    }
                    debug!(%topic, online, agents = agents_online.len(), "agent presence");
                    let any = !agents_online.is_empty();
                    presence.send_modify(|p| p.agent_online = any);
                } else if topic == topics.heartbeat {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    match heartbeats.check(&publish.payload, FeedKind::Heartbeat, now) {
                        Ok(Some(_)) => {
                            let at = tokio::time::Instant::now();
                            presence.send_modify(|p| p.heartbeat_at = Some(at));
                        }
                        // The same one again (retained, on a reconnect): it vouches for no more.
                        Ok(None) => {}
                        Err(refusal) => {
                            debug!(%refusal, "heartbeat not taken: it does not vouch for the host")
                        }
                    }
                } else if topic == topics.cmd {
                    take_command(&commands, publish.payload.to_vec());
                } else {
                    warn!(%topic, "message on a topic this miner did not subscribe to");
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                presence.send_modify(|p| p.broker_connected = false);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let was_connected = presence.borrow().broker_connected;
                fleet_mqtt::log_failure(&e, was_connected, &mut refused);
                // With the broker gone the agent cannot be heard either; the retained presences
                // come again on reconnecting.
                agents_online.clear();
                // The last heartbeat still vouches for its time: the retained one comes again
                // on reconnecting, but as one already taken.
                presence.send_modify(|p| {
                    *p = Presence {
                        heartbeat_at: p.heartbeat_at,
                        ..Presence::default()
                    }
                });
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
        }
    }
}

fn take_command(commands: &mpsc::Sender<Vec<u8>>, payload: Vec<u8>) {
    if payload.len() > MAX_COMMAND_BYTES {
        warn!(bytes = payload.len(), "oversized command dropped");
        return;
    }
    if commands.try_send(payload).is_err() {
        warn!("command queue full (a flood?); command dropped");
    }
}

/// On every connection: online, the current state, and the subscriptions (a broker that lost
/// the session has lost them too).
fn announce(client: &AsyncClient, topics: &Topics, last_state: &Mutex<Option<Vec<u8>>>) {
    let state = last_state.lock().map(|s| s.clone()).unwrap_or(None);
    let mut results = vec![
        client.try_publish(
            &topics.status,
            QoS::AtLeastOnce,
            true,
            messages::ONLINE.as_bytes(),
        ),
        client.try_subscribe(&topics.cmd, QoS::AtLeastOnce),
        client.try_subscribe(&topics.agent, QoS::AtLeastOnce),
        client.try_subscribe(&topics.agent_peers, QoS::AtLeastOnce),
        client.try_subscribe(&topics.heartbeat, QoS::AtLeastOnce),
    ];
    if let Some(state) = state {
        results.push(client.try_publish(&topics.state, QoS::AtLeastOnce, true, state));
    }
    if results.iter().any(Result::is_err) {
        warn!("MQTT request queue full while announcing");
    }
}

impl MqttLink {
    fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: Vec<u8>) {
        if let Err(e) = self.client.try_publish(topic, qos, retain, payload) {
            warn!(%topic, error = %e, "MQTT message dropped");
        }
    }

    /// `value` signed with the device key for `topic`, published there.
    fn publish_json<T: serde::Serialize>(&self, topic: &str, qos: QoS, retain: bool, value: &T) {
        match self.device.wire(topic, value) {
            Ok(bytes) => self.publish(topic, qos, retain, bytes),
            Err(e) => warn!(%topic, error = %e, "cannot encode message"),
        }
    }

    pub fn telemetry(&self, telemetry: &fleet_proto::Telemetry) {
        // Telemetry is superseded every few seconds: at most once is enough.
        self.publish_json(&self.topics.telemetry, QoS::AtMostOnce, false, telemetry);
    }

    pub fn ack(&self, ack: &fleet_proto::Ack) {
        self.publish_json(&self.topics.ack, QoS::AtLeastOnce, false, ack);
    }

    pub fn state(&self, state: &fleet_proto::State) {
        let Ok(bytes) = self.device.wire(&self.topics.state, state) else {
            return;
        };
        if let Ok(mut last) = self.last_state.lock() {
            *last = Some(bytes.clone());
        }
        self.publish(&self.topics.state, QoS::AtLeastOnce, true, bytes);
    }

    /// Says `offline` (a clean stop leaves no will to fire) and disconnects, waiting at most
    /// `grace` for the broker to take it.
    pub async fn finish(self, grace: Duration) {
        self.publish(
            &self.topics.status,
            QoS::AtLeastOnce,
            true,
            messages::OFFLINE.as_bytes().to_vec(),
        );
        let _ = self.client.try_disconnect();
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            warn!("MQTT broker did not take the goodbye in time");
            task.abort();
        }
    }
}

/// The fleet side of a run: the MQTT link and the failsafe.
#[derive(Debug)]
pub struct Fleet {
    pub link: MqttLink,
    pub telemetry_interval: Duration,
    pub failsafe: (Duration, crate::control::FailsafeAction),
    /// The machine's power and hash rate at its configured clock, once measured.
    pub nameplate: Option<crate::telemetry::NameplateReading>,
    /// Fetches and installs images an `update` command asks for; none without `[update]`.
    pub updater: Option<crate::update::Updater>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_heard_only_with_its_own_recent_word() {
        let now = tokio::time::Instant::now();
        let present = Presence {
            broker_connected: true,
            agent_online: true,
            heartbeat_at: Some(now),
        };
        assert!(present.host_heard(now));
        assert!(present.host_heard(now + HEARTBEAT_FRESH));
        // A forged retained `online` with no signed heartbeat behind it, or one gone stale.
        let forged = Presence {
            heartbeat_at: None,
            ..present
        };
        assert!(!forged.host_heard(now));
        assert!(!present.host_heard(now + HEARTBEAT_FRESH + Duration::from_secs(1)));
        // The agent's last will, or no broker: silent at once, heartbeat or not.
        for silent in [
            Presence {
                agent_online: false,
                ..present
            },
            Presence {
                broker_connected: false,
                ..present
            },
        ] {
            assert!(!silent.host_heard(now));
        }
    }
}
