//! `hashwarden-fw`: the control-board daemon.
//!
//! It mines on a chain behind a serial device (`[[chains]] serial`, a real hashboard or a
//! `chipsim serve` PTY) or on an in-process simulated board (`--sim`), on locally generated work
//! or a Stratum pool's; serves the cgminer API; reports to the fleet and obeys its signed
//! commands over MQTT.

mod board;
mod cgminer;
mod config;
mod control;
mod cooling;
mod daemon;
mod fleet;
mod mqtt;
mod persist;
mod pool;
mod serial;
mod sim;
mod snapshot;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use config::MiningSettings;
use hashboard::board::{self as boards, BoardDescription};
use tracing::{info, warn};

#[derive(Debug, Parser)]
#[command(
    name = "hashwarden-fw",
    version,
    about = "hashwarden control-board daemon"
)]
struct Cli {
    /// TOML configuration: board, chains, pools, mining.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run on an in-process simulated board (the configured board, or the 12-chip BM1397 one).
    #[arg(long)]
    sim: bool,
    /// Simulated seconds per wall second in --sim.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Seed of the simulated silicon.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// In --sim: a chipsim fault script, `[{"at_s": T, "faults": {...}}, ...]` (dead fan, chain
    /// break, UART noise, ...), to see what the daemon does about it.
    #[arg(long)]
    sim_faults: Option<PathBuf>,
    /// Stop after this many seconds (wall time) and print a summary.
    #[arg(long)]
    duration: Option<f64>,
    /// Where the cgminer-compatible API listens (read-only); `off` to not serve it.
    #[arg(long, default_value = "0.0.0.0:4028")]
    api_listen: String,
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = terminate => info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT"),
    }
}

/// The command desk over the durable state in `data_dir`; a damaged state file stops the daemon
/// rather than silently waking a machine that was put to sleep.
fn open_desk(
    data_dir: &std::path::Path,
    mqtt: &config::MqttSection,
) -> Result<fleet::CommandDesk, String> {
    let keys = mqtt
        .trusted_keys()
        .map_err(|(i, e)| format!("mqtt.trusted_keys[{i}]: {e}"))?;
    let verifier = fleet_proto::CommandVerifier::new(mqtt.site.clone(), mqtt.miner.clone(), keys);
    let store = persist::Store::open(data_dir).map_err(|e| format!("daemon.data_dir: {e}"))?;
    fleet::CommandDesk::open(mqtt.miner.clone(), verifier, store).map_err(|e| {
        format!("{e}; move it aside to start from defaults (awake, no command history)")
    })
}

fn main() -> ExitCode {
    let cli: Cli = match cli_common::parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    cli_common::init_logging();

    let (config, board): (Option<config::Config>, &'static BoardDescription) = match &cli.config {
        Some(path) => match config::Config::load(path) {
            Ok((config, board)) => (Some(config), board),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => (None, &boards::BM1397_HASHBOARD_12),
    };
    let settings = config.as_ref().map_or_else(
        || MiningSettings::defaults_for(board),
        |c| c.mining_settings(board),
    );
    let serial = config.iter().flat_map(|c| &c.chains).next().cloned();
    if !cli.sim && serial.is_none() {
        eprintln!(
            "error: no chain to mine on: configure [[chains]] serial = PATH, or run with --sim"
        );
        return ExitCode::from(2);
    }
    if !cli.sim && board.chains != 1 {
        eprintln!(
            "error: {} has {} chains; the daemon drives one-chain boards so far",
            board.name, board.chains
        );
        return ExitCode::from(2);
    }
    let pools: Vec<config::PoolSection> = config.iter().flat_map(|c| c.pools.clone()).collect();
    if !(cli.speed.is_finite() && cli.speed > 0.0) {
        eprintln!("error: --speed must be a positive number");
        return ExitCode::from(2);
    }
    let duration = match cli.duration {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(_) => {
            eprintln!("error: --duration must be a positive number of seconds");
            return ExitCode::from(2);
        }
        None => None,
    };
    let api_listen = match cli.api_listen.as_str() {
        "off" => None,
        text => match text.parse::<std::net::SocketAddr>() {
            Ok(address) => Some(address),
            Err(_) => {
                eprintln!("error: --api-listen: {text:?} is not ADDRESS:PORT or off");
                return ExitCode::from(2);
            }
        },
    };
    let fault_script = match &cli.sim_faults {
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| chipsim::FaultScript::from_json(&text).map_err(|e| e.to_string()))
        {
            Ok(script) => Some(script),
            Err(e) => {
                eprintln!("error: --sim-faults {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let desk = match config
        .as_ref()
        .and_then(|c| c.mqtt.as_ref().map(|m| (c, m)))
    {
        Some((config, mqtt)) => match open_desk(&config.daemon.data_dir, mqtt) {
            Ok(desk) => Some(desk),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mined = runtime.block_on(async {
        let source = if pools.is_empty() {
            daemon::WorkSource::Local
        } else {
            if cli.sim {
                // Simulated nonces meet the share difficulty only after the simulator's scaling,
                // so a real pool rejects them: this exercises the pool path, it does not earn.
                warn!("--sim with pools: shares meet the pool's difficulty x 2^-26 only; real pools reject them");
            }
            daemon::WorkSource::Pool(pool::spawn(pools, daemon::JOB_INTERVAL))
        };
        let options = daemon::RunOptions {
            speed: if cli.sim { cli.speed } else { 1.0 },
            duration,
            api_listen,
        };
        let intent = desk.as_ref().map(|d| d.intent()).unwrap_or_default();
        let fleet = match (desk, config.as_ref().and_then(|c| c.mqtt.as_ref())) {
            (Some(desk), Some(mqtt)) => Some(daemon::Fleet {
                link: mqtt::spawn(mqtt)?,
                desk,
                telemetry_interval: Duration::from_secs_f64(mqtt.telemetry_interval_s),
                failsafe: (
                    Duration::from_secs_f64(mqtt.failsafe.after_s),
                    mqtt.failsafe.action,
                ),
            }),
            _ => None,
        };
        match serial {
            Some(chain) if !cli.sim => {
                let rig = serial::rig(board, &chain, &settings, intent)?;
                daemon::run(rig, settings, source, options, fleet, shutdown_signal()).await
            }
            _ => {
                let rig = sim::rig(board, &settings, intent, cli.seed, cli.speed)?;
                if let (Some(script), Some(control)) = (fault_script, &rig.sim) {
                    control.with_sim(|s| s.set_fault_script(script));
                }
                daemon::run(rig, settings, source, options, fleet, shutdown_signal()).await
            }
        }
    });
    match mined {
        Ok(summary) => {
            match serde_json::to_string(&summary) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("error: {e}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
