//! `hashwarden-fw`: the control-board daemon.
//!
//! It mines on a chain behind a serial device (`[[chains]] serial`, a real hashboard or a
//! `chipsim serve` PTY) or, built with the `sim` feature (the default), on an in-process
//! simulated board (`--sim`), on locally generated work or a Stratum pool's; serves the cgminer
//! API; reports to the fleet and obeys its signed commands over MQTT.

use hashwarden_fw::{config, image_cli, launch, update};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hashboard::board::{self as boards, BoardDescription};

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
    #[cfg(feature = "sim")]
    #[command(flatten)]
    sim: SimArgs,
    /// Stop after this many seconds (wall time) and print a summary.
    #[arg(long)]
    duration: Option<f64>,
    /// Where the cgminer-compatible API listens (read-only); `off` to not serve it. Overrides
    /// `[api] listen`; default 0.0.0.0:4028.
    #[arg(long)]
    api_listen: Option<String>,
    /// Where the AxeOS-compatible HTTP API and /metrics listen; `off` to not serve them.
    /// Overrides `[api] http_listen`; default 0.0.0.0:80.
    #[arg(long)]
    http_listen: Option<String>,
}

/// The simulated board: for development, demos and tests; not in a production build.
#[cfg(feature = "sim")]
#[derive(Debug, clap::Args)]
struct SimArgs {
    /// Run on an in-process simulated board (the configured board, or the 12-chip BM1397 one).
    #[arg(long)]
    sim: bool,
    /// Simulated seconds per wall second in --sim.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Seed of the simulated silicon.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// In --sim: the simulated silicon's grade, J/TH at the chip's nominal clock and voltage
    /// (a better bin, or a worn board); the model's typical figure by default.
    #[arg(long, requires = "sim")]
    sim_grade: Option<f64>,
    /// In --sim: a chipsim fault script, `[{"at_s": T, "faults": {...}}, ...]` (dead fan, chain
    /// break, UART noise, ...), to see what the daemon does about it.
    #[arg(long)]
    sim_faults: Option<PathBuf>,
    /// In --sim: stop once the simulated chips have run this many seconds, however long that
    /// takes on a loaded machine (a reproducible run; --duration still caps the wall time).
    #[arg(long, requires = "sim")]
    sim_duration: Option<f64>,
}

#[cfg(feature = "sim")]
impl SimArgs {
    /// The simulated side of the run (none without `--sim`), and the chip seconds to stop at.
    fn options(&self) -> Result<(Option<launch::SimOptions>, Option<f64>), String> {
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return Err("--speed must be a positive number".into());
        }
        if self
            .sim_duration
            .is_some_and(|s| !(s.is_finite() && s > 0.0))
        {
            return Err("--sim-duration must be a positive number of seconds".into());
        }
        let faults = match &self.sim_faults {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| e.to_string())
                    .and_then(|text| {
                        chipsim::FaultScript::from_json(&text).map_err(|e| e.to_string())
                    })
                    .map_err(|e| format!("--sim-faults {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let options = self.sim.then_some(launch::SimOptions {
            speed: self.speed,
            silicon: hashwarden_fw::sim::Silicon {
                seed: self.seed,
                joules_per_th: self.sim_grade,
            },
            faults,
        });
        Ok((options, self.sim_duration))
    }
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
    /// Prints this miner's device key (made in the data directory if it has none yet), for the
    /// site config's `[[machines]] public_key`.
    DeviceKey {
        #[arg(long)]
        config: PathBuf,
    },
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

/// The daemon the command line asks for; an error names the flag or section at fault.
fn launch_of(
    cli: &Cli,
    config: Option<config::Config>,
    board: &'static BoardDescription,
) -> Result<launch::Launch, String> {
    let duration = match cli.duration {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(_) => return Err("--duration must be a positive number of seconds".into()),
        None => None,
    };
    let api_section = config.as_ref().map(|c| c.api.clone()).unwrap_or_default();
    let listen =
        |flag: &str, given: &Option<String>, configured: &Option<String>, default: &str| {
            let text = given
                .as_deref()
                .or(configured.as_deref())
                .unwrap_or(default);
            config::listen_address(text).map_err(|e| format!("{flag}: {e}"))
        };
    let api_listen = listen(
        "--api-listen",
        &cli.api_listen,
        &api_section.listen,
        "0.0.0.0:4028",
    )?;
    let http_listen = listen(
        "--http-listen",
        &cli.http_listen,
        &api_section.http_listen,
        "0.0.0.0:80",
    )?;
    #[cfg(feature = "sim")]
    let (sim, chip_duration_s) = cli.sim.options()?;
    #[cfg(not(feature = "sim"))]
    let chip_duration_s = None;
    Ok(launch::Launch {
        config,
        board,
        #[cfg(feature = "sim")]
        sim,
        duration,
        chip_duration_s,
        api_listen,
        http_listen,
    })
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
        Tool::DeviceKey { config } => {
            let (settings, _) = config::Config::load(&config).map_err(|e| e.to_string())?;
            let key = hashwarden_fw::device_key::load_or_create(&settings.daemon.data_dir)
                .map_err(|e| format!("daemon.data_dir: {e}"))?;
            println!("{}", key.public_hex());
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
    let ready = match launch_of(&cli, config, board).and_then(launch::prepare) {
        Ok(ready) => ready,
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
        // The signal handlers need the runtime: made inside it.
        launch::run(ready, cli_common::shutdown_signal()).await
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
