//! The daemon put together from a configuration: the command desk over the data directory, the
//! work source, the fleet link, and the chains (serial, or with the `sim` feature simulated
//! in-process). The binary runs one; `hashwarden demo` runs a site of them in one process.

use std::net::SocketAddr;
use std::time::Duration;

use hashboard::board::BoardDescription;
use tracing::warn;

use crate::config::{self, MiningSettings};
#[cfg(feature = "sim")]
use crate::sim;
use crate::{daemon, desk, mining, mqtt, persist, pool, serial, update};

/// The simulated board's side of a `--sim` run.
#[cfg(feature = "sim")]
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Simulated seconds per wall second.
    pub speed: f64,
    /// The first chain's silicon; each further chain gets the next seed.
    pub silicon: sim::Silicon,
    /// Faults to play on every chain.
    pub faults: Option<chipsim::FaultScript>,
}

/// One daemon: its configuration (none for a bare `--sim`), board, and how it runs.
#[derive(Debug, Clone)]
pub struct Launch {
    pub config: Option<config::Config>,
    pub board: &'static BoardDescription,
    /// On simulated chains (`--sim`), or on the configured serial ones when `None`.
    #[cfg(feature = "sim")]
    pub sim: Option<SimOptions>,
    pub duration: Option<Duration>,
    pub chip_duration_s: Option<f64>,
    pub api_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
}

impl Launch {
    /// Whether the chains are the in-process simulator's.
    fn simulated(&self) -> bool {
        #[cfg(feature = "sim")]
        return self.sim.is_some();
        #[cfg(not(feature = "sim"))]
        false
    }
}

/// The command desk: with a fleet link, over the durable state in the data directory (commands
/// and intent); with only a write token for the HTTP API, the intent there; otherwise in memory.
/// A damaged state file stops the daemon rather than silently waking a machine that was put to
/// sleep.
pub fn open_desk(config: Option<&config::Config>) -> Result<desk::CommandDesk, String> {
    let Some(config) = config else {
        return desk::CommandDesk::local(None).map_err(|e| e.to_string());
    };
    let data_dir = &config.daemon.data_dir;
    let store = || persist::Store::open(data_dir).map_err(|e| format!("daemon.data_dir: {e}"));
    let damaged = |e: persist::PersistError| {
        format!("{e}; move it aside to start from defaults (awake, no command history)")
    };
    match (&config.mqtt, &config.api.token) {
        (Some(mqtt), _) => {
            let keys = mqtt
                .trusted_keys()
                .map_err(|(i, e)| format!("mqtt.trusted_keys[{i}]: {e}"))?;
            let verifier =
                fleet_proto::CommandVerifier::new(mqtt.site.clone(), mqtt.miner.clone(), keys);
            desk::CommandDesk::open(mqtt.miner.clone(), verifier, store()?).map_err(damaged)
        }
        (None, Some(_)) => desk::CommandDesk::local(Some(store()?)).map_err(damaged),
        (None, None) => desk::CommandDesk::local(None).map_err(|e| e.to_string()),
    }
}

/// The miner's device key, from (or made in) the data directory.
fn device_key(
    config: Option<&config::Config>,
) -> Result<fleet_proto::report::DeviceSigner, String> {
    let data_dir = config.map_or_else(
        || config::DaemonSection::default().data_dir,
        |c| c.daemon.data_dir.clone(),
    );
    crate::device_key::load_or_create(&data_dir).map_err(|e| format!("daemon.data_dir: {e}"))
}

/// A daemon whose configuration holds together and whose state is read: what is left can only
/// fail at run time (a device, the broker).
#[derive(Debug)]
pub struct Ready {
    launch: Launch,
    settings: MiningSettings,
    serial_chains: Vec<config::ChainSection>,
    desk: desk::CommandDesk,
}

/// Checks `launch` and opens its command desk; an error is the operator's to fix.
pub fn prepare(launch: Launch) -> Result<Ready, String> {
    let settings = launch.config.as_ref().map_or_else(
        || MiningSettings::defaults_for(launch.board),
        |c| c.mining_settings(launch.board),
    );
    let serial_chains: Vec<config::ChainSection> = launch
        .config
        .iter()
        .flat_map(|c| c.chains.clone())
        .collect();
    if !launch.simulated() && serial_chains.is_empty() {
        return Err(
            "no chain to mine on: configure [[chains]] serial = PATH, or run with --sim".into(),
        );
    }
    let desk = open_desk(launch.config.as_ref())?;
    Ok(Ready {
        launch,
        settings,
        serial_chains,
        desk,
    })
}

/// Runs the daemon until `stop` resolves (or its duration passes); its summary.
pub async fn run(
    ready: Ready,
    stop: impl std::future::Future<Output = ()>,
) -> Result<daemon::Summary, String> {
    let Ready {
        launch,
        settings,
        serial_chains,
        desk,
    } = ready;
    let simulated = launch.simulated();
    let Launch {
        config,
        board,
        #[cfg(feature = "sim")]
            sim: sim_options,
        duration,
        chip_duration_s,
        api_listen,
        http_listen,
    } = launch;
    #[cfg(feature = "sim")]
    let speed = sim_options.as_ref().map_or(1.0, |s| s.speed);
    #[cfg(not(feature = "sim"))]
    let speed = 1.0;
    let pools: Vec<config::PoolSection> = config.iter().flat_map(|c| c.pools.clone()).collect();
    let source = if pools.is_empty() {
        mining::WorkSource::Local
    } else {
        if simulated {
            // Simulated nonces meet the share difficulty only after the simulator's scaling,
            // so a real pool rejects them: this exercises the pool path, it does not earn.
            warn!(
                "--sim with pools: shares meet the pool's difficulty x 2^-26 only; real pools reject them"
            );
        }
        let plan = pool::WorkPlan {
            interval: mining::job_interval(board, speed),
            variants: board.chains as usize,
        };
        mining::WorkSource::Pool(pool::spawn(pools, plan))
    };
    let options = daemon::RunOptions {
        speed,
        duration,
        chip_duration_s,
        api_listen,
        http_listen,
        http_token: config.as_ref().and_then(|c| c.api.token.clone()),
    };
    let intent = desk.intent();
    let fleet = match config.as_ref().and_then(|c| c.mqtt.as_ref()) {
        Some(mqtt) => Some(mqtt::Fleet {
            link: mqtt::spawn(mqtt, device_key(config.as_ref())?)?,
            telemetry_interval: Duration::from_secs_f64(mqtt.telemetry_interval_s),
            failsafe: (
                Duration::from_secs_f64(mqtt.failsafe.after_s),
                mqtt.failsafe.action,
            ),
            nameplate: None,
            updater: config.as_ref().and_then(|c| {
                let section = c.update.clone()?;
                Some(update::Updater::new(
                    c.daemon.data_dir.clone(),
                    board.name,
                    section,
                ))
            }),
        }),
        None => None,
    };
    let links = daemon::Links { source, fleet };
    #[cfg(feature = "sim")]
    if let Some(simulated) = sim_options {
        let mut rigs = Vec::new();
        for chain in 0..u64::from(board.chains) {
            // Each chain its own silicon: seeds differ per chain.
            let silicon = sim::Silicon {
                seed: simulated.silicon.seed + chain,
                ..simulated.silicon
            };
            let faults = simulated
                .faults
                .as_ref()
                .map(|script| script.for_chain(chain as u32));
            rigs.push(sim::rig(
                board,
                &settings,
                intent,
                silicon,
                simulated.speed,
                faults,
            )?);
        }
        return daemon::run(rigs, settings, desk, links, options, stop).await;
    }
    let board_section = config
        .as_ref()
        .map(|c| c.board.clone())
        .ok_or("no config")?;
    let mut rigs = Vec::new();
    for (index, chain) in serial_chains.iter().enumerate() {
        rigs.push(serial::rig(
            board,
            &board_section,
            index,
            chain,
            &settings,
            intent,
        )?);
    }
    daemon::run(rigs, settings, desk, links, options, stop).await
}
