//! `hashwarden`: the fleet agent. `hashwarden run` runs it against a broker; `hashwarden keys
//! init` makes its command-signing key; `hashwarden hashprice` computes the hashprice from the
//! network's figures; `hashwarden plan` shows what the planner would do with a site and a fleet
//! (every machine's setting, when it would go out, and why).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hashwarden::market::Network;
use hashwarden::planner::{Economics, Inputs, Machine, Plan, Setting, plan};
use hashwarden::site::SiteConfig;

#[derive(Debug, Parser)]
#[command(version, about = "hashwarden fleet agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The agent: plans the site from the market, the grid and its miners' telemetry, and
    /// commands them over MQTT (the site's `[agent]` section).
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Stop after this many seconds (default: until SIGTERM/SIGINT).
        #[arg(long)]
        duration: Option<f64>,
    },
    /// The command-signing key.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The hashprice ($/PH/day) for the network's difficulty, height, fees and BTC price.
    Hashprice {
        #[arg(long)]
        difficulty: f64,
        #[arg(long)]
        height: u64,
        /// Average fees per block over the last 144 blocks, BTC.
        #[arg(long)]
        fees: f64,
        #[arg(long)]
        btc_usd: f64,
        #[arg(long)]
        json: bool,
    },
    /// What the planner would do: every machine's setting, when, and why. Changes nothing.
    Plan {
        /// The site: tariff, pool fee, cap, policy, market (`site.toml`).
        #[arg(long)]
        site: PathBuf,
        /// The fleet: a JSON array of machines (id, setting, full point, curve, history).
        #[arg(long)]
        fleet: PathBuf,
        /// Plan as of this unix time (default: now).
        #[arg(long)]
        at: Option<u64>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Creates a key pair: the private key to `--out` (mode 0600, never over an existing file);
    /// prints the public key for the miners' `[[mqtt.trusted_keys]]`.
    Init {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "host")]
        key_id: String,
    },
}

fn main() -> ExitCode {
    let cli: Cli = match cli_common::parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Run { config, duration } => run(&config, duration),
        Command::Keys {
            command: KeysCommand::Init { out, key_id },
        } => hashwarden::keys::init(&out, &key_id)
            .map(|public| {
                println!("{}", hashwarden::keys::hex(&public));
            })
            .map_err(|e| e.to_string()),
        Command::Hashprice {
            difficulty,
            height,
            fees,
            btc_usd,
            json,
        } => hashprice(
            Network {
                difficulty,
                height,
                fees_per_block_btc: fees,
                btc_usd,
            },
            json,
        ),
        Command::Plan {
            site,
            fleet,
            at,
            json,
        } => plan_command(&site, &fleet, at, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(cli_common::USAGE_ERROR)
        }
    }
}

fn run(config: &Path, duration: Option<f64>) -> Result<(), String> {
    cli_common::init_logging();
    let site = SiteConfig::load(config).map_err(|e| e.to_string())?;
    let duration = match duration {
        Some(s) if s.is_finite() && s > 0.0 => Some(std::time::Duration::from_secs_f64(s)),
        Some(s) => return Err(format!("--duration {s} is not a number of seconds")),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let summary = runtime.block_on(async {
        let stop = cli_common::shutdown_signal();
        hashwarden::agent::run(site, duration, stop).await
    })?;
    println!(
        "{}",
        serde_json::to_string(&summary).map_err(|e| e.to_string())?
    );
    Ok(())
}

fn hashprice(network: Network, json: bool) -> Result<(), String> {
    let positive = |name: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(format!("--{name} {v} is not a positive number"))
        }
    };
    positive("difficulty", network.difficulty)?;
    positive("btc-usd", network.btc_usd)?;
    if !(network.fees_per_block_btc.is_finite() && network.fees_per_block_btc >= 0.0) {
        return Err(format!(
            "--fees {} is not an amount of BTC",
            network.fees_per_block_btc
        ));
    }
    let hashprice = network.hashprice();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "hashprice_usd_per_ph_day": hashprice.0,
                "network_hashrate_ehs": network.hashrate_ehs(),
                "subsidy_btc": hashwarden::market::block_subsidy_btc(network.height),
            })
        );
    } else {
        println!(
            "hashprice {hashprice} (network {:.0} EH/s, subsidy {} BTC)",
            network.hashrate_ehs(),
            hashwarden::market::block_subsidy_btc(network.height)
        );
    }
    Ok(())
}

fn plan_command(site: &Path, fleet: &Path, at: Option<u64>, json: bool) -> Result<(), String> {
    let site = SiteConfig::load(site).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(fleet).map_err(|e| format!("{}: {e}", fleet.display()))?;
    let machines: Vec<Machine> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", fleet.display()))?;
    let now = at.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let economics = site.hashprice().map(|hashprice| Economics {
        hashprice,
        power_price: site.tariff.price_at(now),
        pool_fee: site.site.pool_fee,
    });
    let plan = plan(&Inputs {
        now,
        economics,
        cap: site.cap(),
        policy: &site.policy,
        machines: &machines,
    });
    if json {
        println!(
            "{}",
            serde_json::to_string(&plan).map_err(|e| e.to_string())?
        );
    } else {
        print_plan(&plan, economics.as_ref());
    }
    Ok(())
}

fn setting(s: Setting) -> String {
    match s {
        Setting::Sleep => "sleep".into(),
        Setting::Full => "full".into(),
        Setting::PowerTarget(w) => format!("{:.0} W", w.0),
    }
}

fn print_plan(plan: &Plan, economics: Option<&Economics>) {
    match economics {
        Some(e) => println!(
            "hashprice {}, power {}, pool fee {:.1} %, mode {:?}",
            e.hashprice,
            e.power_price,
            e.pool_fee * 100.0,
            plan.mode
        ),
        None => println!("no market data: the safe policy applies"),
    }
    println!(
        "{:<24} {:>9} {:>9} {:>7} {:>11}  reason",
        "machine", "now", "planned", "at", "breakeven"
    );
    for d in &plan.decisions {
        let at = if d.changes() {
            format!("+{}s", d.at - plan.at)
        } else {
            "-".into()
        };
        let breakeven = d.breakeven.map_or("-".into(), |b| format!("{:.2}", b.0));
        println!(
            "{:<24} {:>9} {:>9} {:>7} {:>11}  {}",
            d.id,
            setting(d.from),
            setting(d.to),
            at,
            breakeven,
            d.reason
        );
    }
    println!(
        "{} changes; site power {}{}",
        plan.changes().count(),
        plan.power,
        plan.cap.map_or(String::new(), |c| format!(" of a {c} cap"))
    );
}
