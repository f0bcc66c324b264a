//! `hashwarden`: the fleet agent. `hashwarden run` runs it against a broker; `hashwarden keys
//! init` makes its command-signing key; `hashwarden hashprice` computes the hashprice from the
//! network's figures; `hashwarden plan` shows what the planner would do with a site and a fleet
//! (every machine's setting, when it would go out, and why).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cli_common::parse_duration;
use hashwarden::market::Network;
use hashwarden::planner::{
    Economics, Inputs, Machine, Manual as PlannerManual, Plan, Setting, plan,
};
use hashwarden::site::SiteConfig;
use hashwarden::store::{AuditEntry, AuditKind, Store};

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
    /// The fleet as the running agent last planned it: mode, hash rate, power, J/TH, breakeven,
    /// margin, target and reason per miner.
    Status {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Which miners the agent listens to (their device keys, from the config or at first
    /// sight), and which it heard of but does not — with the lines that would enrol them.
    Enrolment {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Why a miner has its setting: the audit log of its plans, commands, acks and checks.
    Explain {
        miner: String,
        #[arg(long)]
        config: PathBuf,
        /// How many entries, newest last.
        #[arg(long, default_value_t = 30)]
        last: usize,
        #[arg(long)]
        json: bool,
    },
    /// Puts miners to sleep by hand, whatever the plan says, for a while (the running agent
    /// carries it out on its next round).
    Curtail(Manual),
    /// Runs miners at full power by hand, whatever the plan says, for a while.
    Resume(Manual),
    /// Rolls a signed firmware image out to miners: a canary first, then staged waves while
    /// the failures stay under the threshold (the running agent carries it out and serves the
    /// image); follows it with a progress bar and ends with every miner's outcome.
    Flash(hashwarden::flash::FlashArgs),
    /// Replays the planner over a market, a tariff and grid events for a fleet, against never
    /// curtailing, a naive threshold and the perfect-foresight oracle.
    Backtest(hashwarden::backtest::cli::BacktestArgs),
    /// A simulated site run through the 2025-2026 crash in about a minute: real daemons on
    /// simulated chains, the agent and its dashboard, and the verdict against never, naive,
    /// threshold and perfect foresight.
    #[cfg(feature = "demo")]
    Demo(hashwarden::demo::DemoArgs),
    /// Signs one market reading, power price or grid signal with a feed key and publishes it
    /// on the site's topic (the agent takes only readings signed by a key in `[feeds]`).
    Feed(hashwarden::feed_cli::FeedArgs),
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

#[derive(Debug, clap::Args)]
struct Manual {
    /// The miners; or `--all` for every miner the agent knows.
    miners: Vec<String>,
    #[arg(long)]
    all: bool,
    #[arg(long)]
    config: PathBuf,
    /// How long the override holds: `90s`, `30m`, `4h`, `2d` (default 1h).
    #[arg(long = "for", default_value = "1h")]
    duration: String,
    /// Follow the change until every miner is verified (or failed), with a progress bar;
    /// exits non-zero if any did not get there.
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits: `90s`, `30m`, …
    #[arg(long, default_value = "10m")]
    timeout: String,
    /// With `--wait`: the outcomes as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Creates a key pair: the private key to `--out` (mode 0600, never over an existing file);
    /// prints the public key for the miners' `[[mqtt.trusted_keys]]` (a command key) or the
    /// site's `[[feeds.trusted_keys]]` (a feed key).
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
        Command::Status { config, json } => status(&config, json),
        Command::Enrolment { config, json } => {
            hashwarden::enrol_cli::listing(&config).and_then(|listing| {
                if json {
                    let text = serde_json::to_string(&listing).map_err(|e| e.to_string())?;
                    println!("{text}");
                } else {
                    print!("{}", hashwarden::enrol_cli::render(&listing));
                }
                Ok(())
            })
        }
        Command::Explain {
            miner,
            config,
            last,
            json,
        } => explain(&config, &miner, last, json),
        Command::Curtail(manual) => override_miners(&manual, Setting::Sleep),
        Command::Resume(manual) => override_miners(&manual, Setting::Full),
        Command::Flash(args) => hashwarden::flash::run(&args),
        Command::Feed(args) => hashwarden::feed_cli::run(&args),
        Command::Backtest(args) => hashwarden::backtest::cli::run(&args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => hashwarden::demo::run(&args),
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

/// The store named by the site's `[agent]` section.
fn open_store(config: &Path) -> Result<Store, String> {
    let site = SiteConfig::load(config).map_err(|e| e.to_string())?;
    let agent = site
        .agent
        .ok_or_else(|| format!("{}: no [agent] section (and so no store)", config.display()))?;
    Store::open(&agent.store).map_err(|e| e.to_string())
}

fn status(config: &Path, json: bool) -> Result<(), String> {
    let store = open_store(config)?;
    let rows = store.fleet().map_err(|e| e.to_string())?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&rows).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!(
        "{:<24} {:>8} {:>12} {:>9} {:>8} {:>10} {:>8} {:>9} {:>10}  reason",
        "miner", "mode", "TH/s", "W", "J/TH", "breakeven", "margin", "target", "key"
    );
    let figure = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    for row in &rows {
        println!(
            "{:<24} {:>8} {:>12.3} {:>9.0} {:>8} {:>10} {:>8} {:>9} {:>10}  {}",
            row.miner,
            if row.online {
                row.mode.as_str()
            } else {
                "offline"
            },
            row.hashrate_ths,
            row.power_w,
            figure(row.j_per_th),
            figure(row.breakeven),
            figure(row.margin),
            row.target,
            row.enrolment.as_deref().unwrap_or("-"),
            row.reason
        );
    }
    let waiting = store.unenrolled().map_err(|e| e.to_string())?;
    if !waiting.is_empty() {
        let names: Vec<&str> = waiting.iter().map(|w| w.miner.as_str()).collect();
        println!(
            "\n{} heard of but not listened to (not enrolled): {} — `hashwarden enrolment` tells why",
            waiting.len(),
            names.join(", ")
        );
    }
    Ok(())
}

fn explain(config: &Path, miner: &str, last: usize, json: bool) -> Result<(), String> {
    let store = open_store(config)?;
    let entries = store
        .history(Some(miner), last)
        .map_err(|e| e.to_string())?;
    let row = store
        .fleet()
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|r| r.miner == miner);
    if row.is_none() && entries.is_empty() {
        return Err(format!("{miner}: not a miner this agent has seen"));
    }
    if json {
        let out = serde_json::json!({"miner": miner, "status": row, "history": entries});
        println!("{out}");
        return Ok(());
    }
    if let Some(row) = &row {
        println!(
            "{miner}: {} now, target {} — {}",
            row.mode, row.target, row.reason
        );
    }
    for entry in &entries {
        println!(
            "{}  {:<12} {}",
            cli_common::time::utc(entry.at),
            entry.kind,
            entry.detail
        );
    }
    Ok(())
}

fn override_miners(manual: &Manual, to: Setting) -> Result<(), String> {
    let seconds = parse_duration(&manual.duration).map_err(|e| format!("--for {e}"))?;
    let timeout_s = parse_duration(&manual.timeout).map_err(|e| format!("--timeout {e}"))?;
    let mut store = open_store(&manual.config)?;
    let miners = hashwarden::follow::chosen_miners(&store, &manual.miners, manual.all)?;
    let now = hashwarden::agent::unix_now();
    let until = now + seconds;
    // Outcomes logged from here on may answer this override.
    let mark = store.audit_mark().map_err(|e| e.to_string())?;
    for miner in &miners {
        store
            .set_override(miner, PlannerManual { setting: to, until })
            .map_err(|e| e.to_string())?;
        store
            .audit(
                &AuditEntry::new(
                    now,
                    miner,
                    AuditKind::Override,
                    format!("{to} by hand until {until}"),
                )
                .about(to),
            )
            .map_err(|e| e.to_string())?;
    }
    if !manual.wait {
        println!("{} miner(s) to {} until {until}", miners.len(), to);
        return Ok(());
    }
    follow(&store, mark, &miners, to, now, timeout_s, manual.json)
}

/// Follows an override to its end in the store the running agent writes, with a progress bar on
/// a terminal, then prints each miner's outcome.
fn follow(
    store: &Store,
    mark: i64,
    miners: &[String],
    to: Setting,
    since: u64,
    timeout_s: u64,
    json: bool,
) -> Result<(), String> {
    use hashwarden::follow::{Follow, Outcome};
    let mut follow = Follow::new(miners, to, since);
    let bar = hashwarden::follow::progress_bar(follow.total() as u64, &format!("to {}", to))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout_s);
    while follow.finished() < follow.total() && std::time::Instant::now() < deadline {
        let outcomes = store.outcomes_after(mark).map_err(|e| e.to_string())?;
        let fleet = store.fleet().map_err(|e| e.to_string())?;
        for (miner, outcome) in follow.take(&outcomes, &fleet) {
            if !outcome.succeeded() {
                bar.println(format!("{miner}: {outcome:?}"));
            }
            bar.inc(1);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    bar.finish_and_clear();
    let failed = follow
        .outcomes()
        .values()
        .filter(|o| !o.as_ref().is_some_and(Outcome::succeeded))
        .count();
    if json {
        let rows: Vec<serde_json::Value> = follow
            .outcomes()
            .iter()
            .map(|(miner, outcome)| {
                serde_json::json!({"miner": miner, "outcome": outcome.as_ref().map_or(
                    serde_json::json!({"result": "timed_out"}),
                    |o| serde_json::to_value(o).unwrap_or_default(),
                )})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"to": to.to_string(), "miners": rows, "failed": failed})
        );
    } else {
        println!("{:<28}  outcome", "miner");
        for (miner, outcome) in follow.outcomes() {
            let text = match outcome {
                Some(Outcome::Verified) => "verified by telemetry".to_string(),
                Some(Outcome::InEffect) => "already in effect".to_string(),
                Some(Outcome::Failed(reason)) => format!("failed: {reason}"),
                Some(Outcome::Unresponsive) => "unresponsive".to_string(),
                None => "timed out".to_string(),
            };
            println!("{miner:<28}  {text}");
        }
    }
    if failed > 0 {
        return Err(format!(
            "{failed} of {} miner(s) did not get to {}",
            follow.total(),
            to
        ));
    }
    Ok(())
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
    let mut machines: Vec<Machine> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", fleet.display()))?;
    site.apply_to(&mut machines);
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
            d.id, d.from, d.to, at, breakeven, d.reason
        );
    }
    println!(
        "{} changes; site power {}{}",
        plan.changes().count(),
        plan.power,
        plan.cap.map_or(String::new(), |c| format!(" of a {c} cap"))
    );
}
