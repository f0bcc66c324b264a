//! The demo's site in this process: the agent (with its embedded broker and dashboard) and a
//! `hashwarden-fw` daemon per machine on simulated chains of the machine's grade — the same code
//! that runs on a control board, behind the same MQTT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::planner::Machine;

pub const SITE: &str = "demo";
const KEY_ID: &str = "demo-agent";
/// The story teller's feed key: the agent takes only signed market, power and grid readings.
const FEED_KEY_ID: &str = "demo-feed";
/// Simulated chip seconds per wall second: bring-up and thermal settling in a few seconds.
const SIM_SPEED: f64 = 5.0;

/// Where the site lives while it runs.
#[derive(Debug, Clone)]
pub struct Places {
    pub dir: PathBuf,
    pub broker: SocketAddr,
    pub dashboard: SocketAddr,
}

/// The agent's site file: the story's pool fee, a fallback tariff, the operator's policy in optimise
/// mode with dwell and batches scaled to the story's pace, planning four times a second.
fn agent_toml(
    places: &Places,
    key: &Path,
    feed_public_key: &str,
    story: &super::story::Story,
    miners: usize,
) -> String {
    // The agent is told every price on the power topic; its own tariff is only the fallback.
    let tariff = format!(
        "kind = \"fixed\"\nprice = {}\n",
        story.tariff.price_at(story.start).0
    );
    format!(
        "[site]\nname = \"{SITE}\"\npool_fee = {fee}\ngrid_lead_s = {lead}\n\
         [tariff]\n{tariff}\
         [power]\nmax_age_s = 60\n\
         [policy]\nmode = \"optimise\"\nband = {band}\nmin_on_s = 1\nmin_off_s = 1\n\
         restore_cooldown_s = 1\nbatch_size = {miners}\nbatch_interval_s = 1\n\
         [broker]\nlisten = \"{broker}\"\n\
         [agent]\nkey_file = \"{key}\"\nkey_id = \"{KEY_ID}\"\nenrol = \"first-seen\"\nplan_interval_s = 0.25\n\
         store = \"{store}\"\nmetrics_listen = \"{dashboard}\"\n\
         [[feeds.trusted_keys]]\nid = \"{FEED_KEY_ID}\"\npublic_key = \"{feed_public_key}\"\n",
        fee = story.pool_fee,
        lead = super::event_notice_wall_s(),
        band = story.policy.band,
        broker = places.broker,
        key = key.display(),
        store = places.dir.join("agent.db").display(),
        dashboard = places.dashboard,
    )
}

/// A miner's configuration: on the site's broker, trusting the agent's key.
fn miner_toml(places: &Places, name: &str, public_key: &str) -> String {
    format!(
        "[board]\nname = \"bm1397-hashboard-12\"\n[daemon]\ndata_dir = \"{data}\"\n\
         [mqtt]\nurl = \"mqtt://{broker}\"\nsite = \"{SITE}\"\nminer = \"{name}\"\n\
         telemetry_interval_s = 0.5\n\
         [[mqtt.trusted_keys]]\nid = \"{KEY_ID}\"\npublic_key = \"{public_key}\"\n",
        data = places.dir.join(format!("data-{name}")).display(),
        broker = places.broker,
    )
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The agent running, the public half of its command key (for the miners), and the feed the
/// story is told through.
pub type Started = (
    JoinHandle<Result<crate::agent::Summary, String>>,
    String,
    fleet_proto::feed::FeedSigner,
);

/// Starts the agent; returns once its broker takes connections.
pub async fn start_agent(
    places: &Places,
    story: &super::story::Story,
    miners: usize,
    stop: watch::Receiver<bool>,
) -> Result<Started, String> {
    let key = places.dir.join("agent.key");
    let public = crate::keys::init(&key, KEY_ID).map_err(|e| e.to_string())?;
    let feed_key = places.dir.join("feed.key");
    let feed_public = crate::keys::init(&feed_key, FEED_KEY_ID).map_err(|e| e.to_string())?;
    let site = fleet_proto::Name::new(SITE).map_err(|e| e.to_string())?;
    let feed = fleet_proto::feed::FeedSigner::new(
        site,
        crate::keys::load(&feed_key, FEED_KEY_ID).map_err(|e| e.to_string())?,
    );
    let path = places.dir.join("site.toml");
    let feed_public = crate::keys::hex(&feed_public);
    write(
        &path,
        &agent_toml(places, &key, &feed_public, story, miners),
    )?;
    let config = crate::site::SiteConfig::load(&path).map_err(|e| e.to_string())?;
    let agent = tokio::spawn(crate::agent::run(config, None, stopped(stop)));
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(places.broker).await.is_ok() {
            return Ok((agent, crate::keys::hex(&public), feed));
        }
        if agent.is_finished() {
            return match agent.await {
                Ok(Err(e)) => Err(format!("the agent: {e}")),
                _ => Err("the agent stopped".into()),
            };
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(format!(
        "the embedded broker on {} never answered",
        places.broker
    ))
}

/// Starts a daemon for each machine, its simulated silicon graded at the machine's J/TH.
pub fn start_miners(
    places: &Places,
    machines: &[Machine],
    seed: u64,
    public_key: &str,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<Result<hashwarden_fw::daemon::Summary, String>>>, String> {
    let mut tasks = Vec::new();
    for (index, machine) in machines.iter().enumerate() {
        let path = places.dir.join(format!("{}.toml", machine.id));
        write(&path, &miner_toml(places, &machine.id, public_key))?;
        let (config, board) =
            hashwarden_fw::config::Config::load(&path).map_err(|e| e.to_string())?;
        let silicon = hashwarden_fw::sim::Silicon {
            seed: seed.wrapping_mul(1_000_003).wrapping_add(index as u64),
            joules_per_th: Some(machine.efficiency().0),
        };
        let profile = hashwarden_fw::sim::surveyed_profile(
            board,
            silicon,
            0,
            board.default_core_mv,
            fleet_proto::command::TuneMode::Efficiency,
        )
        .map_err(|e| format!("miner {}: {e}", machine.id))?;
        tuned_before_the_story(places, &machine.id, profile)?;
        let launch = hashwarden_fw::launch::Launch {
            config: Some(config),
            board,
            sim: Some(hashwarden_fw::launch::SimOptions {
                speed: SIM_SPEED,
                silicon,
                faults: None,
            }),
            duration: None,
            chip_duration_s: None,
            api_listen: None,
            http_listen: None,
        };
        let ready = hashwarden_fw::launch::prepare(launch)
            .map_err(|e| format!("miner {}: {e}", machine.id))?;
        tasks.push(tokio::spawn(hashwarden_fw::launch::run(
            ready,
            stopped(stop.clone()),
        )));
    }
    Ok(tasks)
}

/// The site was tuned before the story starts: each miner's state holds the profile an
/// efficiency tune of its silicon leaves (its curve over the board's voltages), so the agent's
/// optimiser has curves to underclock along and the daemons move to their points. A real sweep
/// takes tens of minutes of chip time per board; the demo has a minute.
fn tuned_before_the_story(
    places: &Places,
    miner: &str,
    profile: hashwarden_fw::persist::TunedChain,
) -> Result<(), String> {
    let state = hashwarden_fw::persist::DurableState {
        v: 1,
        tuned: vec![profile],
        ..Default::default()
    };
    let data = places.dir.join(format!("data-{miner}"));
    std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let text = serde_json::to_string(&state).map_err(|e| e.to_string())?;
    write(&data.join("state.json"), &text)
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// One message off the site's topics.
#[derive(Debug)]
pub struct Heard {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// The demo's own client on the broker: it reads the miners' telemetry and state (for the live
/// books and the report's fleet) and publishes the story's market, power prices and grid.
pub struct Tap {
    client: AsyncClient,
    pub heard: mpsc::UnboundedReceiver<Heard>,
    task: JoinHandle<()>,
}

impl Tap {
    pub async fn connect(broker: SocketAddr) -> Result<Self, String> {
        let mut options =
            MqttOptions::new("demo-story-teller", broker.ip().to_string(), broker.port());
        options.set_keep_alive(std::time::Duration::from_secs(5));
        options.set_max_packet_size(Some(1 << 20));
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let (tx, heard) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let heard = Heard {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload.to_vec(),
                        };
                        if tx.send(heard).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "demo tap: reconnecting");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
            }
        });
        for kind in ["telemetry", "state"] {
            client
                .subscribe(format!("hashwarden/v1/{SITE}/+/{kind}"), QoS::AtMostOnce)
                .await
                .map_err(|e| format!("demo tap: {e}"))?;
        }
        Ok(Self {
            client,
            heard,
            task,
        })
    }

    /// A story reading (`reading`'s JSON as its kind's topic takes it), signed by `feed`,
    /// retained.
    pub async fn tell(
        &self,
        feed: &mut fleet_proto::feed::FeedSigner,
        kind: fleet_proto::feed::FeedKind,
        reading: String,
    ) {
        let Ok(site) = fleet_proto::Name::new(SITE) else {
            return;
        };
        let topic = kind.topic(&site);
        let now = crate::agent::unix_now();
        // Good for a minute: the story retells every few seconds.
        let signed =
            serde_json::from_str(&reading).and_then(|value| feed.wire(kind, value, now, 60));
        match signed {
            Ok(bytes) => {
                if let Err(e) = self
                    .client
                    .publish(topic, QoS::AtLeastOnce, true, bytes)
                    .await
                {
                    tracing::warn!(error = %e, "demo tap: cannot publish");
                }
            }
            Err(e) => tracing::warn!(error = %e, "demo tap: cannot sign a reading"),
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}
