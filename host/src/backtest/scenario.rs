//! A backtest's inputs from files: the site (tariff, pool fee, contract cap, policy), a market
//! replay, and optionally real-time power prices and grid events — each error naming its file
//! and line.

use std::path::Path;

use super::{CapWindow, Scenario};
use crate::planner::Machine;
use crate::site::SiteConfig;
use crate::units::{UsdPerKwh, UsdPerPhDay, Watts};

/// Where the inputs are.
#[derive(Debug, Clone)]
pub struct Files<'a> {
    pub site: &'a Path,
    pub market: &'a Path,
    pub power: Option<&'a Path>,
    pub grid: Option<&'a Path>,
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The scenario, from its first market reading to one step past its last.
pub fn load(
    files: &Files<'_>,
    machines: Vec<Machine>,
    step_s: u64,
    ramp_s: u64,
) -> Result<Scenario, String> {
    let site = SiteConfig::load(files.site).map_err(|e| e.to_string())?;
    let mut machines = machines;
    site.apply_to(&mut machines);
    let at = |path: &Path| {
        let path = path.display().to_string();
        move |e: crate::sources::SourceError| format!("{path}: {e}")
    };
    let market = crate::sources::csv(&read(files.market)?)
        .map_err(at(files.market))?
        .iter()
        .map(|m| {
            crate::market::Reading::from_message(m)
                .map(|r| (r.at, r.hashprice))
                .map_err(|e| format!("{}: reading at {}: {e}", files.market.display(), m.at))
        })
        .collect::<Result<Vec<(u64, UsdPerPhDay)>, String>>()?;
    let (Some(&(start, _)), Some(&(last, _))) = (market.first(), market.last()) else {
        return Err(format!("{}: no readings", files.market.display()));
    };
    let power = match files.power {
        Some(path) => crate::sources::power_csv(&read(path)?)
            .map_err(at(path))?
            .iter()
            .map(|p| (p.at, UsdPerKwh(p.usd_per_kwh)))
            .collect(),
        None => Vec::new(),
    };
    let grid = match files.grid {
        Some(path) => crate::sources::grid_csv(&read(path)?)
            .map_err(at(path))?
            .into_iter()
            .map(|(from, to, cap_kw)| CapWindow {
                from,
                to,
                cap: Watts(cap_kw * 1000.0),
            })
            .collect(),
        None => Vec::new(),
    };
    if step_s == 0 {
        return Err("the step must be at least a second".into());
    }
    Ok(Scenario {
        start,
        end: last + step_s,
        step_s,
        market,
        tariff: site.tariff.clone(),
        power,
        pool_fee: site.site.pool_fee,
        site_cap: site.cap(),
        grid,
        policy: site.policy,
        machines,
        ramp_s,
    })
}
