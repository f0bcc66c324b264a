//! `hashwarden demo`: a site to watch and a verdict to read, with nothing to set up. An embedded
//! broker, a fleet of `hashwarden-fw` daemons on simulated chains (S19-class grades, 17 to
//! 38 J/TH, seeded), the agent planning them with its dashboard on localhost, and the shipped
//! market replay through the 2025–2026 crash told to the agent as it happens — months in about
//! a minute, the demand-response night in slow motion so the miners can be seen shedding load.
//!
//! The verdict is the backtest of the same story for the same machines (as they measured
//! themselves): never, naive, threshold, optimise and the oracle, hour by hour — and the live
//! site's own books from its telemetry, for what the real daemons did under the agent.

mod clock;
mod ledger;
mod site;
mod story;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fleet_proto::feed::FeedKind;
use fleet_proto::{Kind, MinerTopic};
use serde::Serialize;

use crate::backtest::Report;
use crate::fleet::FleetView;
use clock::StoryClock;
use ledger::{LiveLedger, Reported};
use story::Story;

/// The demand-response night runs at two wall seconds per story hour (an hour either side
/// included): slow enough for the miners to be seen shedding load.
const SLOW_PACE: f64 = 1800.0;
/// Story seconds of notice the demand-response event is announced with (the grid signal's
/// `from`): real programmes give tens of minutes to hours. The slow-motion window opens this
/// long before the event, so the notice is told at slow pace.
const EVENT_NOTICE_S: u64 = 3_600;

/// The event's notice in wall seconds: the agent's `grid_lead_s`, so it uses all of it.
fn event_notice_wall_s() -> u64 {
    (EVENT_NOTICE_S as f64 / SLOW_PACE).ceil() as u64
}
/// How often the story moves on and the books are kept.
const TICK: Duration = Duration::from_millis(100);
/// How often the agent is told the market again when it has not moved.
const RETELL: Duration = Duration::from_secs(2);
/// The least wall time between two market readings: a real feed moves every few minutes, which
/// leaves the site time to carry a plan out. Told every story-hour at the steady pace (15 ms),
/// the optimiser would retarget machines faster than a command is applied.
const TELL_EVERY: Duration = Duration::from_secs(1);
/// How long the fleet has to come up and measure itself.
const BRING_UP: Duration = Duration::from_secs(180);
/// How long the site has to stop when the story is over.
const WIND_DOWN: Duration = Duration::from_secs(15);

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Machines on the site.
    #[arg(long, default_value_t = 40)]
    pub miners: usize,
    /// Varies the machines (their models, grades and silicon).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Wall seconds the story takes once the fleet is up.
    #[arg(long, default_value_t = 45.0)]
    pub seconds: f64,
    /// Where the dashboard is served (another free port when this one is taken).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The final report as one JSON object on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Keep the scratch directory (configurations, logs, the agent's store) afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// The live site's part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    pub profit_usd: f64,
    pub revenue_usd: f64,
    pub energy_kwh: f64,
    pub switches: u64,
    /// The demand-response cap as a share of the site's full power (the boards' own, as the
    /// agent caps them).
    pub event_cap_share: f64,
    /// Story seconds from the event's start to the site under its cap; `None` if it never was.
    pub event_met_after_s: Option<u64>,
    /// The most the site drew in the event once under the cap, as a share of its full power.
    pub event_peak_share: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub strategies: Vec<crate::backtest::Outcome>,
    pub live: Live,
    pub machines: usize,
    pub seed: u64,
    pub story_from: u64,
    pub story_to: u64,
}

pub fn run(args: &DemoArgs) -> Result<(), String> {
    if args.miners == 0 || args.miners > 500 {
        return Err("--miners takes 1 to 500".into());
    }
    if !(args.seconds.is_finite() && (15.0..=3600.0).contains(&args.seconds)) {
        return Err("--seconds takes 15 to 3600".into());
    }
    let dir = std::env::temp_dir().join(format!("hashwarden-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let log = dir.join("demo.log");
    cli_common::init_logging_to(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = runtime.block_on(demo(args, &dir));
    runtime.shutdown_timeout(Duration::from_secs(2));
    if args.keep {
        eprintln!("the site's files and logs: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let report = result?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", verdict(&report));
    }
    Ok(())
}

/// A free port on loopback: `wanted` when it is free, any other when not.
fn free_address(wanted: SocketAddr) -> Result<SocketAddr, String> {
    std::net::TcpListener::bind(wanted)
        .or_else(|_| std::net::TcpListener::bind((wanted.ip(), 0)))
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port on {}: {e}", wanted.ip()))
}

/// Progress for people: stdout when it is the only output, stderr beside `--json`.
struct Say {
    json: bool,
}

impl Say {
    fn line(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }
}

async fn demo(args: &DemoArgs, dir: &std::path::Path) -> Result<DemoReport, String> {
    let say = Say { json: args.json };
    let story = Story::shipped()?;
    let machines = crate::backtest::fleet::generate(args.miners, args.seed);
    let places = site::Places {
        dir: dir.to_path_buf(),
        broker: free_address("127.0.0.1:0".parse().map_err(|_| "address")?)?,
        dashboard: free_address(args.listen)?,
    };
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let (agent, public_key, mut feed) =
        site::start_agent(&places, &story, args.miners, stopping.clone()).await?;
    say.line(&format!(
        "hashwarden demo: {} miners (seed {}), the agent's dashboard on http://{}/",
        args.miners, args.seed, places.dashboard
    ));
    let mut tap = site::Tap::connect(places.broker).await?;
    let miners = site::start_miners(&places, &machines, args.seed, &public_key, &stopping)?;
    let interrupted = cli_common::shutdown_signal();
    let outcome = async {
        let boards = bring_up(&mut tap, &machines, &say).await?;
        let sizes = Sizes::new(&machines, &boards);
        let fleet = sizes.fleet(&boards);
        let scenario = story.scenario(fleet.clone());
        let report = tokio::task::spawn_blocking(move || crate::backtest::run(&scenario));
        let live = replay(
            &mut tap,
            &mut feed,
            &story,
            &boards,
            &sizes,
            args.seconds,
            &say,
        )
        .await?;
        let report: Report = report.await.map_err(|e| format!("the backtest: {e}"))?;
        Ok::<_, String>(DemoReport {
            strategies: report.strategies,
            live,
            machines: fleet.len(),
            seed: args.seed,
            story_from: story.start,
            story_to: story.end,
        })
    };
    // Ctrl-C stops the site as cleanly as the story's end does.
    let outcome = tokio::select! {
        outcome = outcome => outcome,
        () = interrupted => Err("interrupted".to_string()),
    };
    let _ = stop.send(true);
    let wound_down = tokio::time::timeout(WIND_DOWN, async {
        for miner in miners {
            if let Ok(Err(e)) = miner.await {
                tracing::warn!(error = %e, "a miner stopped with an error");
            }
        }
        agent.await
    })
    .await;
    match wound_down {
        Ok(Ok(Ok(summary))) => tracing::info!(?summary, "the agent stopped"),
        Ok(Ok(Err(e))) => return Err(format!("the agent: {e}")),
        Ok(Err(e)) => return Err(format!("the agent: {e}")),
        Err(_) => tracing::warn!("the site did not stop in time"),
    }
    outcome
}

/// Waits for every machine to report its measured nameplate; the fleet as the agent plans it.
async fn bring_up(
    tap: &mut site::Tap,
    machines: &[crate::planner::Machine],
    say: &Say,
) -> Result<Vec<crate::planner::Machine>, String> {
    let mut view = FleetView::default();
    let deadline = Instant::now() + BRING_UP;
    let mut told = Instant::now();
    loop {
        let now = crate::agent::unix_now();
        // Its nameplate, measured at its clock: a machine with a tuned curve has a full point
        // before that (the curve's top), but the story starts from the machines as they run.
        let measured: Vec<crate::planner::Machine> = view
            .machines(now)
            .into_iter()
            .filter(|m| {
                view.get(&m.id)
                    .and_then(|heard| heard.state.as_ref())
                    .is_some_and(|state| state.nameplate.power_w > 0.0)
            })
            .collect();
        if measured.len() == machines.len() {
            say.line(&format!("all {} miners up and measured", machines.len()));
            // The report's strategies start from the same place: every machine on, no history.
            return Ok(measured
                .into_iter()
                .map(|m| crate::planner::Machine {
                    exempt: m.exempt,
                    overhead: m.overhead,
                    ..crate::planner::Machine::new(&m.id, m.full, m.curve)
                })
                .collect());
        }
        if told.elapsed() >= Duration::from_secs(2) {
            say.line(&format!(
                "bringing the site up: {}/{} miners measured",
                measured.len(),
                machines.len()
            ));
            told = Instant::now();
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "only {} of {} miners came up within {} s",
                measured.len(),
                machines.len(),
                BRING_UP.as_secs()
            ));
        }
        let heard = tokio::time::timeout(Duration::from_millis(500), tap.heard.recv()).await;
        if let Ok(Some(heard)) = heard
            && let Ok(topic) = MinerTopic::parse(&heard.topic)
            && let Err(e) = view.ingest(
                topic.miner.as_str(),
                topic.kind,
                &opened(&heard.payload),
                now,
            )
        {
            tracing::warn!(error = %e, "demo: a message not taken");
        }
    }
}

/// A miner's message as the demo's story teller reads it: a signed report's payload, anything
/// else as it came. The teller only shows what the miners say; the agent is the one that checks
/// who said it.
fn opened(payload: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match fleet_proto::report::open(payload) {
        Ok(report) => std::borrow::Cow::Owned(report.payload.into_bytes()),
        Err(_) => std::borrow::Cow::Borrowed(payload),
    }
}

/// Each simulated 12-chip board stands in for one machine of its model: the board's own J/TH as
/// it measured it, at the model's hash rate. Figures for people (progress, report) are the
/// board's times its machine's size; the agent and its dashboard see the boards as they are.
#[derive(Debug, Clone, Default)]
struct Sizes {
    by_miner: BTreeMap<String, f64>,
}

impl Sizes {
    fn new(machines: &[crate::planner::Machine], boards: &[crate::planner::Machine]) -> Self {
        let by_miner = boards
            .iter()
            .filter_map(|board| {
                let model = machines.iter().find(|m| m.id == board.id)?;
                let ratio = model.full.hashrate.0 / board.full.hashrate.0;
                (ratio.is_finite() && ratio > 0.0).then(|| (board.id.clone(), ratio))
            })
            .collect();
        Self { by_miner }
    }

    fn of(&self, miner: &str) -> f64 {
        self.by_miner.get(miner).copied().unwrap_or(1.0)
    }

    /// The boards at their machines' size.
    fn fleet(&self, boards: &[crate::planner::Machine]) -> Vec<crate::planner::Machine> {
        let scale = |point: crate::planner::Point, by: f64| crate::planner::Point {
            watts: crate::units::Watts(point.watts.0 * by),
            hashrate: crate::units::TerahashPerSecond(point.hashrate.0 * by),
        };
        boards
            .iter()
            .map(|board| {
                let by = self.of(&board.id);
                crate::planner::Machine {
                    full: scale(board.full, by),
                    curve: board.curve.iter().map(|p| scale(*p, by)).collect(),
                    ..board.clone()
                }
            })
            .collect()
    }
}

/// The event's progress on the live site.
#[derive(Debug, Default)]
struct EventWatch {
    met_after_s: Option<u64>,
    peak_after_met_w: Option<f64>,
}

/// Tells the agent the story as it happens and keeps the live site's books.
#[allow(clippy::too_many_arguments)]
async fn replay(
    tap: &mut site::Tap,
    feed: &mut fleet_proto::feed::FeedSigner,
    story: &Story,
    boards: &[crate::planner::Machine],
    sizes: &Sizes,
    seconds: f64,
    say: &Say,
) -> Result<Live, String> {
    // The agent caps the boards; the books count the machines they stand for.
    let cap = story::event_cap(boards);
    let full_w: f64 = boards.iter().map(|b| b.full.watts.0).sum();
    let machine_cap = story::event_cap(&sizes.fleet(boards));
    let mut boards_w: BTreeMap<String, f64> = BTreeMap::new();
    let clock = StoryClock::new(
        story.start,
        story.end,
        &[(story.event.0 - 3600, story.event.1 + 3600)],
        SLOW_PACE,
        seconds,
    )?;
    say.line(&format!(
        "the market from {} to {} in {:.0} s, the demand-response night of {} in slow motion",
        civil(story.start),
        civil(story.end),
        clock.wall_length(),
        civil(story.event.0)
    ));
    let mut latest: BTreeMap<String, Reported> = BTreeMap::new();
    let mut ledger = LiveLedger::default();
    let mut event = EventWatch::default();
    let mut in_event = false;
    let mut announced = false;
    let mut last_told: Option<(story::Told, Instant)> = None;
    let mut last_line = Instant::now() - Duration::from_secs(10);
    let started = Instant::now();
    let mut story_at = story.start;
    let mut ticks = tokio::time::interval(TICK);
    loop {
        ticks.tick().await;
        while let Ok(heard) = tap.heard.try_recv() {
            let Ok(topic) = MinerTopic::parse(&heard.topic) else {
                continue;
            };
            if topic.kind != Kind::Telemetry {
                continue;
            }
            let Ok(t) = serde_json::from_slice::<fleet_proto::Telemetry>(&opened(&heard.payload))
            else {
                continue;
            };
            let running = t.mode != fleet_proto::Mode::Sleeping && t.power_w > 0.0;
            ledger.observe(topic.miner.as_str(), running);
            boards_w.insert(topic.miner.to_string(), t.power_w);
            let size = sizes.of(topic.miner.as_str());
            latest.insert(
                topic.miner.to_string(),
                Reported {
                    power_w: t.power_w * size,
                    hashrate_ths: if running {
                        t.hashrate_ths.s5 * size
                    } else {
                        0.0
                    },
                    running,
                },
            );
        }
        let Some(now_story) = clock.story_at(started.elapsed().as_secs_f64()) else {
            ledger.accrue(story, story_at, story.end, latest.values());
            break;
        };
        ledger.accrue(story, story_at, now_story, latest.values());
        story_at = now_story;
        let Some(told) = story.told(story_at, clock.pace_at(story_at)) else {
            continue;
        };
        let unix = crate::agent::unix_now();
        let stale = last_told.is_none_or(|(before, at)| {
            let moved =
                before.hashprice != told.hashprice || before.power_price != told.power_price;
            (moved && at.elapsed() >= TELL_EVERY) || at.elapsed() >= RETELL
        });
        if stale {
            tap.tell(
                feed,
                FeedKind::Market,
                format!(
                    "{{\"v\":1,\"at\":{unix},\"hashprice_usd_per_ph_day\":{}}}",
                    told.hashprice.0
                ),
            )
            .await;
            tap.tell(
                feed,
                FeedKind::Power,
                format!(
                    "{{\"v\":1,\"at\":{unix},\"usd_per_kwh\":{}}}",
                    told.power_price.0
                ),
            )
            .await;
            last_told = Some((told, Instant::now()));
        }
        if !announced && story_at + EVENT_NOTICE_S >= story.event.0 && story_at < story.event.1 {
            announced = true;
            let wall = |story_s: u64| (story_s as f64 / clock.pace_at(story_at)).round() as u64;
            let body = format!(
                "{{\"v\":1,\"at\":{unix},\"cap_kw\":{},\"from\":{},\"until\":{}}}",
                cap.0 / 1000.0,
                unix + wall(story.event.0.saturating_sub(story_at)),
                unix + wall(story.event.1 - story_at).max(1)
            );
            tap.tell(feed, FeedKind::Grid, body).await;
        }
        if told.in_event != in_event {
            in_event = told.in_event;
            if !in_event {
                let lift = format!("{{\"v\":1,\"at\":{unix},\"cap_kw\":null,\"until\":null}}");
                tap.tell(feed, FeedKind::Grid, lift).await;
            }
        }
        let site_w: f64 = latest.values().map(|r| r.power_w).sum();
        if in_event {
            let boards_now: f64 = boards_w.values().sum();
            match event.met_after_s {
                None if boards_now <= cap.0 => event.met_after_s = Some(story_at - story.event.0),
                Some(_) => {
                    event.peak_after_met_w =
                        Some(event.peak_after_met_w.unwrap_or(0.0).max(boards_now))
                }
                None => {}
            }
        }
        if last_line.elapsed() >= Duration::from_secs(1) {
            last_line = Instant::now();
            let running = latest.values().filter(|r| r.running).count();
            say.line(&format!(
                "{}  hashprice ${:>5.2}/PH/day  power ${:.3}/kWh{}  | mining {running:>3}/{}  {:>6.2} PH/s  {:>6.1} kW  {:>5.0}% of the story",
                civil(story_at),
                told.hashprice.0,
                told.power_price.0,
                if in_event {
                    format!("  DEMAND RESPONSE: cap {:.0} kW", machine_cap.0 / 1000.0)
                } else {
                    String::new()
                },
                boards.len(),
                latest.values().map(|r| r.hashrate_ths).sum::<f64>() / 1000.0,
                site_w / 1000.0,
                (story_at - story.start) as f64 / (story.end - story.start) as f64 * 100.0,
            ));
        }
    }
    Ok(Live {
        profit_usd: ledger.profit_usd,
        revenue_usd: ledger.revenue_usd,
        energy_kwh: ledger.energy_kwh,
        switches: ledger.switches,
        event_cap_share: story::EVENT_SHARE,
        event_met_after_s: event.met_after_s,
        event_peak_share: event
            .peak_after_met_w
            .map(|w| w / full_w.max(f64::MIN_POSITIVE)),
    })
}

/// `YYYY-MM-DD HH:MM` UTC of unix time `at` (days to civil date after Howard Hinnant).
fn civil(at: u64) -> String {
    let days = (at / 86_400) as i64;
    let minutes = (at % 86_400) / 60;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        minutes / 60,
        minutes % 60
    )
}

/// The final report for people.
fn verdict(report: &DemoReport) -> String {
    let backtest = Report {
        strategies: report.strategies.clone(),
        steps: 0,
        machines: report.machines,
    };
    let live = &report.live;
    let event = match (live.event_met_after_s, live.event_peak_share) {
        (Some(after), peak) => format!(
            "the demand-response cap ({:.0} % of full power, announced {} story-minutes ahead) was \
             met {}{}",
            live.event_cap_share * 100.0,
            EVENT_NOTICE_S / 60,
            if after < 60 {
                "from the event's start".to_string()
            } else {
                format!("{} story-minutes into the event", after / 60)
            },
            peak.map_or(String::new(), |p| format!(
                ", the site at most {:.0} % after",
                p * 100.0
            ))
        ),
        (None, _) => format!(
            "the demand-response cap ({:.0} % of full power) was not met",
            live.event_cap_share * 100.0
        ),
    };
    let table = crate::backtest::cli::table(&backtest);
    let table = table
        .split_once('\n')
        .map_or(table.as_str(), |(_, rest)| rest);
    format!(
        "\n{} → {}, {} machines (each simulated board at its model's size and the J/TH it \
         measured), every strategy scored hour by hour:\n{table}\
         \nlive: hashwarden optimise on the real daemons, from their own telemetry: profit \
         ${:.0}, energy {:.1} MWh, {} switches; {event}.\n(The live site is told each day's \
         average tariff outside the slow-motion hours — an hour lasts 15 ms there — so it \
         cannot dodge the daily peak the strategies above dodge.)\n",
        civil(report.story_from),
        civil(report.story_to),
        report.machines,
        live.profit_usd,
        live.energy_kwh / 1000.0,
        live.switches,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_read_as_calendars_do() {
        assert_eq!(super::civil(0), "1970-01-01 00:00");
        assert_eq!(super::civil(1_767_837_600), "2026-01-08 02:00");
        assert_eq!(super::civil(1_772_323_200 - 60), "2026-02-28 23:59");
        assert_eq!(super::civil(1_709_164_800), "2024-02-29 00:00");
    }
}
