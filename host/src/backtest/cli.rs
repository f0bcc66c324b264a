//! `hashwarden backtest`: the inputs from files (or a generated fleet), every strategy run, and
//! the comparison table (or one JSON object).

use std::path::PathBuf;

use super::{Report, scenario};

#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// The site: tariff, pool fee, contract cap, policy (`site.toml`).
    #[arg(long)]
    pub site: PathBuf,
    /// Market replay: `at,hashprice` (or `at,difficulty,height,fees_per_block_btc,btc_usd`).
    #[arg(long)]
    pub market: PathBuf,
    /// Real-time power prices over the tariff: `at,usd_per_kwh`.
    #[arg(long)]
    pub power: Option<PathBuf>,
    /// Grid events: `at,until,cap_kw`.
    #[arg(long)]
    pub grid: Option<PathBuf>,
    /// The fleet: a JSON array of machines (as `hashwarden plan --fleet` takes).
    #[arg(long, conflicts_with = "miners")]
    pub fleet: Option<PathBuf>,
    /// Or a generated S19-class fleet of this many machines (17 to 38 J/TH)…
    #[arg(long)]
    pub miners: Option<usize>,
    /// …varied by this seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How long each setting holds: `15m`, `1h`, …
    #[arg(long, default_value = "15m")]
    pub step: String,
    /// What a wake costs: the seconds it draws power before it earns.
    #[arg(long, default_value = "60s")]
    pub ramp: String,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &BacktestArgs) -> Result<(), String> {
    let step_s = cli_common::parse_duration(&args.step).map_err(|e| format!("--step {e}"))?;
    let ramp_s = cli_common::parse_duration(&args.ramp).map_err(|e| format!("--ramp {e}"))?;
    let machines = match (&args.fleet, args.miners) {
        (Some(path), _) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        (None, Some(0)) => return Err("--miners takes at least 1".into()),
        (None, Some(count)) => super::fleet::generate(count, args.seed),
        (None, None) => return Err("give the fleet (--fleet FILE) or --miners N".into()),
    };
    let files = scenario::Files {
        site: &args.site,
        market: &args.market,
        power: args.power.as_deref(),
        grid: args.grid.as_deref(),
    };
    let scenario = scenario::load(&files, machines, step_s, ramp_s)?;
    let report = super::run(&scenario);
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// The comparison: each strategy's profit (and its share of the oracle's), revenue, revenue
/// given up against never curtailing, energy and switches.
pub fn table(report: &Report) -> String {
    let oracle = report.get("oracle").map(|o| o.profit_usd);
    let never = report.get("never").map(|o| o.revenue_usd);
    let mut out = format!(
        "{} machines, {} steps\n{:<10} {:>14} {:>9} {:>14} {:>14} {:>12} {:>9}\n",
        report.machines,
        report.steps,
        "strategy",
        "profit $",
        "% oracle",
        "revenue $",
        "revenue lost",
        "energy MWh",
        "switches"
    );
    for o in &report.strategies {
        let share = oracle
            .filter(|p| p.abs() > f64::EPSILON)
            .map_or("-".into(), |p| format!("{:.1}", o.profit_usd / p * 100.0));
        let lost = never.map_or("-".into(), |n| format!("{:.0}", n - o.revenue_usd));
        out.push_str(&format!(
            "{:<10} {:>14.0} {:>9} {:>14.0} {:>14} {:>12.1} {:>9}\n",
            o.name,
            o.profit_usd,
            share,
            o.revenue_usd,
            lost,
            o.energy_kwh / 1000.0,
            o.switches
        ));
    }
    out
}
