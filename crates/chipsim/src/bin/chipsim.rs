//! `chipsim`: simulated hashboard chains behind pseudo-terminals, and their ground truth.

use std::path::PathBuf;
use std::process::ExitCode;

use bm13xx::ChipModel;
use chipsim::{ChainConfig, ChainSim, FaultScript, Oracle, SimLink, pty::Pty};
use clap::{Parser, Subcommand};
use tracing::info;

#[derive(Debug, Parser)]
#[command(
    name = "chipsim",
    version,
    about = "Simulated BM13xx hashboard chains for hardware-in-the-loop tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, clap::Args)]
struct ChainArgs {
    #[arg(long, default_value = "bm1397", value_parser = parse_model)]
    model: ChipModel,
    #[arg(long, default_value_t = 1)]
    chips: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Open one PTY per chain, print their paths (one per line, chain order), and serve until killed.
    Serve {
        #[command(flatten)]
        chain: ChainArgs,
        #[arg(long, default_value_t = 1)]
        chains: u32,
        /// Nonces are genuine at ticket difficulty × this floor: a power of two ≤ 1, as 2^-k or a number.
        #[arg(long, default_value = "2^-26", value_parser = parse_share_floor)]
        share_floor: u32,
        /// A JSON fault script: [{"at_s": T, "faults": {...}}, ...].
        #[arg(long)]
        faults: Option<PathBuf>,
        /// Also make symlinks PATH0, PATH1, … to the PTYs.
        #[arg(long)]
        link: Option<PathBuf>,
        /// Simulated seconds per wall-clock second.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
    /// Print the ground truth a tuner is scored against.
    Oracle {
        #[command(flatten)]
        chain: ChainArgs,
        #[arg(long)]
        json: bool,
    },
}

fn parse_model(text: &str) -> Result<ChipModel, String> {
    text.parse()
        .map_err(|e: bm13xx::model::UnknownModel| e.to_string())
}

/// "2^-16", "0.0000152587890625" or "1" → k with floor 2^-k.
fn parse_share_floor(text: &str) -> Result<u32, String> {
    let log2 = if let Some(exponent) = text.strip_prefix("2^") {
        exponent
            .parse::<i32>()
            .map_err(|_| format!("{text:?}: exponent is not a whole number"))?
    } else {
        let value: f64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a number"))?;
        let log2 = value.log2();
        if !value.is_finite() || value <= 0.0 || log2.fract() != 0.0 {
            return Err(format!("{text:?} is not a power of two"));
        }
        log2 as i32
    };
    match u32::try_from(-log2) {
        Ok(k) if k <= 32 => Ok(k),
        _ => Err(format!("share floor {text} must be between 2^-32 and 1")),
    }
}

fn chain_config(args: &ChainArgs, chain: u32, share_floor_log2: u32) -> ChainConfig {
    let mut config = ChainConfig::new(
        args.model,
        args.chips,
        args.seed.wrapping_add(u64::from(chain)),
    );
    config.share_floor_log2 = share_floor_log2;
    config
}

fn make_links(base: &std::path::Path, ptys: &[Pty]) -> std::io::Result<Vec<PathBuf>> {
    let mut links = Vec::new();
    for (i, pty) in ptys.iter().enumerate() {
        let mut name = base.as_os_str().to_owned();
        name.push(i.to_string());
        let link = PathBuf::from(name);
        match std::fs::remove_file(&link) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::os::unix::fs::symlink(&pty.path, &link)?;
        links.push(link);
    }
    Ok(links)
}

async fn serve(
    chain: ChainArgs,
    chains: u32,
    share_floor: u32,
    faults: Option<PathBuf>,
    link: Option<PathBuf>,
    speed: f64,
) -> Result<(), String> {
    if chains == 0 {
        return Err("--chains must be at least 1".into());
    }
    if !(speed.is_finite() && speed > 0.0) {
        return Err("--speed must be a positive number".into());
    }
    let script = match &faults {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(FaultScript::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let mut ptys = Vec::new();
    let mut sims = Vec::new();
    for index in 0..chains {
        let mut sim =
            ChainSim::new(chain_config(&chain, index, share_floor)).map_err(|e| e.to_string())?;
        if let Some(script) = &script {
            sim.set_fault_script(script.for_chain(index));
        }
        sims.push(sim);
        ptys.push(Pty::open().map_err(|e| format!("cannot open a pseudo-terminal: {e}"))?);
    }
    let links = match &link {
        Some(base) => {
            make_links(base, &ptys).map_err(|e| format!("--link {}: {e}", base.display()))?
        }
        None => Vec::new(),
    };
    for pty in &ptys {
        println!("{}", pty.path.display());
    }
    use std::io::Write;
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    info!(chains, chips = chain.chips, model = %chain.model, "serving");

    let mut tasks = tokio::task::JoinSet::new();
    for (pty, sim) in ptys.into_iter().zip(sims) {
        let (uart, control) = SimLink::open(sim);
        tasks.spawn(pty.serve(uart, control, speed));
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let result = tokio::select! {
        _ = terminate.recv() => { info!("SIGTERM: stopping"); Ok(()) }
        _ = tokio::signal::ctrl_c() => { info!("SIGINT: stopping"); Ok(()) }
        Some(done) = tasks.join_next() => match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("serving failed: {e}")),
            Err(e) => Err(format!("serving task failed: {e}")),
        },
    };
    tasks.abort_all();
    for link in links {
        let _ = std::fs::remove_file(link);
    }
    result
}

fn main() -> ExitCode {
    let cli: Cli = match cli_common::parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    cli_common::init_logging();
    let result = match cli.command {
        Cmd::Oracle { chain, json } => ChainSim::new(chain_config(&chain, 0, 0))
            .map_err(|e| e.to_string())
            .and_then(|sim| {
                let oracle = Oracle::of(&sim);
                if json {
                    serde_json::to_string(&oracle)
                        .map(|line| println!("{line}"))
                        .map_err(|e| e.to_string())
                } else {
                    println!(
                        "{} × {} (seed {}): nominal {} V, {} MHz",
                        oracle.chips.len(),
                        oracle.model,
                        oracle.seed,
                        oracle.nominal_volts,
                        oracle.nominal_mhz
                    );
                    for chip in &oracle.chips {
                        let nominal = chip.points[chip.points.len() / 2];
                        let best = chip.most_efficient().unwrap_or(nominal);
                        println!(
                            "chip {:3}: {:7.1} MHz stable at {:.3} V ({:5.2} W); best {:.2} J/TH at {:.3} V, {:.1} MHz",
                            chip.index,
                            nominal.max_stable_mhz,
                            nominal.volts,
                            nominal.watts,
                            best.joules_per_th,
                            best.volts,
                            best.max_stable_mhz
                        );
                    }
                    Ok(())
                }
            }),
        Cmd::Serve {
            chain,
            chains,
            share_floor,
            faults,
            link,
            speed,
        } => {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => {
                    runtime.block_on(serve(chain, chains, share_floor, faults, link, speed))
                }
                Err(e) => Err(format!("cannot start the runtime: {e}")),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_share_floor;

    #[test]
    fn share_floors() {
        assert_eq!(parse_share_floor("2^-16"), Ok(16));
        assert_eq!(parse_share_floor("2^0"), Ok(0));
        assert_eq!(parse_share_floor("1"), Ok(0));
        assert_eq!(parse_share_floor("0.0000152587890625"), Ok(16));
        assert!(parse_share_floor("3").is_err());
        assert!(
            parse_share_floor("2").is_err(),
            "floors are at most difficulty 1"
        );
        assert!(parse_share_floor("2^-33").is_err());
        assert!(parse_share_floor("-1").is_err());
        assert!(parse_share_floor("2^x").is_err());
    }
}
