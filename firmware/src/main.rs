//! `hashwarden-fw`: the control-board daemon.
//!
//! It mines on a chain behind a serial device (`[[chains]] serial`, a real hashboard or a
//! `chipsim serve` PTY) or on an in-process simulated board (`--sim`), on locally generated work
//! or a Stratum pool's; serves the cgminer API; reports to the fleet and obeys its signed
//! commands over MQTT.

use hashwarden_fw::{
    config, daemon, fleet, image_cli, mining, mqtt, persist, pool, serial, sim, update,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use config::MiningSettings;
use hashboard::board::{self as boards, BoardDescription};
use tracing::warn;

#[derive(Debug, Parser)]
#[command(
    name = "hashwarden-fw",
    version,
    about = "hashwarden control-board daemon",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Tool>,
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
    /// In --sim: stop once the simulated chips have run this many seconds, however long that
    /// takes on a loaded machine (a reproducible run; --duration still caps the wall time).
    #[arg(long, requires = "sim")]
    sim_duration: Option<f64>,
    /// Where the cgminer-compatible API listens (read-only); `off` to not serve it. Overrides
    /// `[api] listen`; default 0.0.0.0:4028.
    #[arg(long)]
    api_listen: Option<String>,
    /// Where the AxeOS-compatible HTTP API and /metrics listen; `off` to not serve them.
    /// Overrides `[api] http_listen`; default 0.0.0.0:80.
    #[arg(long)]
    http_listen: Option<String>,
}

/// What the binary does besides being the daemon.
#[derive(Debug, clap::Subcommand)]
enum Tool {
    /// Signed firmware images: build one, or check one.
    #[command(subcommand)]
    Image(image_cli::ImageCommand),
    /// Installs a signed image into the inactive slot and puts it on trial (`[update]`).
    Install {
        image: PathBuf,
        #[arg(long)]
        config: PathBuf,
    },
    /// Runs the daemon from the committed slot (or this binary), boots a newly installed build
    /// on trial, commits it once healthy, rolls it back when not. Arguments after `--` go to
    /// the daemon (`--config` is passed on by itself).
    Supervise {
        #[arg(long)]
        config: PathBuf,
        #[arg(last = true)]
        daemon_args: Vec<String>,
    },
}

/// The command desk: with a fleet link, over the durable state in the data directory (commands
/// and intent); with only a write token for the HTTP API, the intent there; otherwise in memory.
/// A damaged state file stops the daemon rather than silently waking a machine that was put to
/// sleep.
fn open_desk(config: Option<&config::Config>) -> Result<fleet::CommandDesk, String> {
    let Some(config) = config else {
        return fleet::CommandDesk::local(None).map_err(|e| e.to_string());
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
            fleet::CommandDesk::open(mqtt.miner.clone(), verifier, store()?).map_err(damaged)
        }
        (None, Some(_)) => fleet::CommandDesk::local(Some(store()?)).map_err(damaged),
        (None, None) => fleet::CommandDesk::local(None).map_err(|e| e.to_string()),
    }
}

/// The configuration's data directory, board and `[update]` section, for the update tools.
fn update_config(
    path: &std::path::Path,
) -> Result<
    (
        config::Config,
        &'static BoardDescription,
        update::UpdateSection,
    ),
    String,
> {
    let (config, board) = config::Config::load(path).map_err(|e| e.to_string())?;
    let section = config
        .update
        .clone()
        .ok_or("the configuration has no [update] section (release_keys)")?;
    Ok((config, board, section))
}

fn run_tool(tool: Tool) -> Result<(), String> {
    match tool {
        Tool::Image(command) => image_cli::run(command),
        Tool::Install { image, config } => {
            let (settings, board, section) = update_config(&config)?;
            let (slot, manifest) =
                update::install(&image, &settings.daemon.data_dir, board.name, &section)?;
            println!(
                "version {} installed in slot {slot:?}, on trial: the supervisor boots it next",
                manifest.version
            );
            Ok(())
        }
        Tool::Supervise {
            config,
            daemon_args,
        } => {
            cli_common::init_logging();
            let (settings, _, section) = update_config(&config)?;
            let mut args = vec!["--config".to_string(), config.display().to_string()];
            args.extend(daemon_args);
            let supervision = update::Supervision::new(&settings.daemon.data_dir, &section, args);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))?
                .block_on(update::supervise(supervision))
        }
    }
}

fn main() -> ExitCode {
    let cli: Cli = match cli_common::parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if let Some(tool) = cli.command {
        return match run_tool(tool) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
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
    let serial_chains: Vec<config::ChainSection> =
        config.iter().flat_map(|c| c.chains.clone()).collect();
    if !cli.sim && serial_chains.is_empty() {
        eprintln!(
            "error: no chain to mine on: configure [[chains]] serial = PATH, or run with --sim"
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
    if cli
        .sim_duration
        .is_some_and(|s| !(s.is_finite() && s > 0.0))
    {
        eprintln!("error: --sim-duration must be a positive number of seconds");
        return ExitCode::from(2);
    }
    let api_section = config.as_ref().map(|c| c.api.clone()).unwrap_or_default();
    let listen =
        |flag: &str, given: &Option<String>, configured: &Option<String>, default: &str| {
            let text = given
                .as_deref()
                .or(configured.as_deref())
                .unwrap_or(default);
            config::listen_address(text).map_err(|e| format!("{flag}: {e}"))
        };
    let addresses = listen(
        "--api-listen",
        &cli.api_listen,
        &api_section.listen,
        "0.0.0.0:4028",
    )
    .and_then(|api| {
        listen(
            "--http-listen",
            &cli.http_listen,
            &api_section.http_listen,
            "0.0.0.0:80",
        )
        .map(|http| (api, http))
    });
    let (api_listen, http_listen) = match addresses {
        Ok(addresses) => addresses,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
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
    let desk = match open_desk(config.as_ref()) {
        Ok(desk) => desk,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
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
        let stop = cli_common::shutdown_signal();
        let source = if pools.is_empty() {
            mining::WorkSource::Local
        } else {
            if cli.sim {
                // Simulated nonces meet the share difficulty only after the simulator's scaling,
                // so a real pool rejects them: this exercises the pool path, it does not earn.
                warn!("--sim with pools: shares meet the pool's difficulty x 2^-26 only; real pools reject them");
            }
            let plan = pool::WorkPlan {
                interval: mining::job_interval(board, if cli.sim { cli.speed } else { 1.0 }),
                variants: board.chains as usize,
            };
            mining::WorkSource::Pool(pool::spawn(pools, plan))
        };
        let options = daemon::RunOptions {
            speed: if cli.sim { cli.speed } else { 1.0 },
            duration,
            chip_duration_s: cli.sim_duration,
            api_listen,
            http_listen,
            http_token: api_section.token.clone(),
        };
        let intent = desk.intent();
        let fleet = match config.as_ref().and_then(|c| c.mqtt.as_ref()) {
            Some(mqtt) => Some(daemon::Fleet {
                link: mqtt::spawn(mqtt)?,
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
        if cli.sim {
            let mut rigs = Vec::new();
            for chain in 0..u64::from(board.chains) {
                // Each chain its own silicon: seeds differ per chain.
                let rig = sim::rig(board, &settings, intent, cli.seed + chain, cli.speed)?;
                if let (Some(script), Some(control)) = (&fault_script, &rig.sim) {
                    control.with_sim(|s| s.set_fault_script(script.clone()));
                }
                rigs.push(rig);
            }
            daemon::run(rigs, settings, desk, links, options, stop).await
        } else {
            let board_section = config.as_ref().map(|c| c.board.clone()).ok_or("no config")?;
            let mut rigs = Vec::new();
            for (index, chain) in serial_chains.iter().enumerate() {
                rigs.push(serial::rig(board, &board_section, index, chain, &settings, intent)?);
            }
            daemon::run(rigs, settings, desk, links, options, stop).await
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
