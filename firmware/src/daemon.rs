//! The mining loop: a machine's chains fed with work (local or a pool's), their nonces checked
//! and shares submitted, signed fleet commands and local API changes obeyed on every chain,
//! telemetry and the APIs' snapshot kept fresh. The loop owns the chains; the pool, the MQTT link
//! and the APIs are tasks it talks to over channels. The same loop runs any [`Hardware`]: serial
//! chains, or the in-process simulator (`--sim`).

use std::net::SocketAddr;
use std::time::Duration;

use bm13xx::{InitConfig, Response, TicketDifficulty};
use futures_util::future::{join_all, select_all};
use hashboard::board::BoardDescription;
use serde::Serialize;
use stratum::Accounting;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::board::{BoardError, Hardware, Witness};
use crate::cgminer;
use crate::commands;
use crate::config::MiningSettings;
use crate::control::Intent;
use crate::desk::CommandDesk;
use crate::local::LocalRequest;
use crate::mining::{WorkSource, deal_pool_work};
use crate::mqtt::Fleet;
use crate::snapshot::Snapshot;
use crate::telemetry::{self, Window};
use crate::unit::{Rig, TuneEvent, Unit};

/// How often the daemon logs its state.
const REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// How long a stopping daemon waits for its last shares to reach the pool.
const POOL_FLUSH_GRACE: Duration = Duration::from_secs(2);
/// How often the APIs' snapshot is refreshed.
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);
/// Local API changes waiting for the loop; the API answers "busy" beyond this.
const LOCAL_QUEUE: usize = 8;
/// How long a stopping daemon waits for the broker to take its goodbye.
const MQTT_GOODBYE_GRACE: Duration = Duration::from_secs(2);
/// How long one wait for the chains lasts at most before the loop looks at its timers again;
/// shorter when the chains need work more often.
const RESPONSE_WAIT_MS: u32 = 100;

/// How the run goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Simulated seconds per wall second (1 for real hardware).
    pub speed: f64,
    /// Wall time to run; until stopped when absent.
    pub duration: Option<Duration>,
    /// Chip seconds to run (the simulator's clock in `--sim`): the run ends when every working
    /// chain has run this long.
    pub chip_duration_s: Option<f64>,
    /// Where to serve the cgminer API; not served when absent.
    pub api_listen: Option<SocketAddr>,
    /// Where to serve the HTTP API (AxeOS, `/metrics`); not served when absent.
    pub http_listen: Option<SocketAddr>,
    /// Enables the HTTP API's writes.
    pub http_token: Option<String>,
}

/// What the loop talks to besides the chains.
#[derive(Debug)]
pub struct Links {
    pub source: WorkSource,
    pub fleet: Option<Fleet>,
}

/// A chain's settings at start: the configuration's, then what the operator set since.
pub fn init_config(
    board: &BoardDescription,
    settings: &MiningSettings,
    intent: Intent,
) -> Result<(InitConfig, u32), String> {
    let mut init = InitConfig::esp_miner(board.model, board.chips_per_chain);
    init.frequency = settings.frequency;
    init.ticket =
        TicketDifficulty::at_most(settings.ticket_difficulty).ok_or("bad ticket difficulty")?;
    if let Some(mhz) = intent.frequency_mhz {
        init.frequency = board.clamp_frequency(bm13xx::Frequency::from_khz((mhz * 1000.0) as u32));
    }
    let core_mv = board.clamp_core_mv(intent.core_mv.unwrap_or(board.default_core_mv));
    Ok((init, core_mv))
}

/// How a run went, printed as one JSON line at the end.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub board: &'static str,
    pub chains: u32,
    /// Chips per chain.
    pub chips: u32,
    /// Seconds the chips ran by their own clock (simulated seconds in `--sim`, wall seconds on
    /// real chips), the longest chain's.
    pub chip_s: f64,
    /// Jobs sent to the chips, over every chain.
    pub jobs: u64,
    pub nonces: u64,
    pub shares: u64,
    pub hardware_errors: u64,
    pub duplicates: u64,
    pub stale: u64,
    pub hashrate_ths: f64,
    pub expected_ths: f64,
    /// The boards' own account where they keep one (the simulator's, in `--sim`), summed over
    /// the chains: nonces sent, hottest chip, chips in thermal shutdown now, power at exit (0
    /// after a clean ramp-down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sim: Option<Witness>,
    /// Bytes and frames the daemon's UART decoders could not use (garbage, CRC, truncation).
    pub uart_errors: u64,
    /// The pool's verdicts, when mining pool work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<Accounting>,
}

/// Keeps what the chains' tunes came to and tells the fleet.
fn record_tunes<H: Hardware>(
    desk: &mut CommandDesk,
    fleet: Option<&Fleet>,
    units: &[Unit<H>],
    events: Vec<TuneEvent>,
) {
    for event in events {
        if let TuneEvent::Finished(tuned) = event
            && let Err(e) = desk.save_tuned(tuned)
        {
            warn!(error = %e, "cannot store the tuned profile; the next start tunes again");
        }
    }
    if let Some(fleet) = fleet {
        commands::publish_state(fleet, units, desk.intent());
    }
}

/// The machine's snapshot: its chains' readings merged, the pool's verdicts and list once.
fn machine_snapshot<H: Hardware>(
    units: &mut [Unit<H>],
    source: &WorkSource,
    now: tokio::time::Instant,
    asleep_by_intent: bool,
) -> Snapshot {
    let mut machine = Snapshot::merge(units.iter_mut().map(|u| u.reading(now)).collect());
    machine.mode = telemetry::machine_mode(machine.mode, asleep_by_intent);
    let pool = source.accounting();
    machine.accepted += pool.accepted;
    machine.rejected += pool.rejected;
    machine.stale += pool.stale;
    machine.pools = source.pool_rows();
    machine
}

/// Brings the chains up (unless the machine was left asleep) and mines for `duration` of wall
/// time, or until `stop` resolves; then ramps the chains down.
pub async fn run<H: Hardware>(
    rigs: Vec<Rig<H>>,
    settings: MiningSettings,
    mut desk: CommandDesk,
    links: Links,
    options: RunOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Summary, String> {
    let Links {
        mut source,
        mut fleet,
    } = links;
    let RunOptions {
        speed,
        duration,
        chip_duration_s,
        api_listen,
        http_listen,
        http_token,
    } = options;
    let board = rigs
        .first()
        .map(|rig| rig.hw.description())
        .ok_or("no chains to run")?;
    let (snapshot_tx, snapshots) = watch::channel(Snapshot {
        board: board.name,
        ..Snapshot::default()
    });
    let (local_tx, local_rx) = mpsc::channel::<LocalRequest>(LOCAL_QUEUE);
    let mut local = http_token.is_some().then_some(local_rx);
    let http = http_listen.map(|address| {
        let writes = http_token.map(|token| (token, local_tx));
        tokio::spawn(crate::http::serve(
            address,
            snapshots.clone(),
            board,
            writes,
        ))
    });
    let api = api_listen.map(|address| tokio::spawn(cgminer::serve(address, snapshots)));
    let intent = desk.intent();
    if intent.sleeping.is_some() {
        info!(cause = ?intent.sleeping, "asleep since before the restart: the chains stay down until woken");
    }
    // The chains come up side by side: a bring-up's clock ramp takes seconds per chain.
    let per_chain_target = intent
        .power_target_w
        .map(|w| w / f64::from(board.chains.max(1)));
    let starts = (0u32..).zip(rigs).map(|(index, rig)| {
        let tuned = desk.tuned().iter().find(|t| t.chain == index).cloned();
        Unit::start(
            index,
            rig,
            intent.sleeping.is_some(),
            per_chain_target,
            tuned,
            speed,
        )
    });
    let mut units = join_all(starts)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, BoardError>>()
        .map_err(|e| e.to_string())?;
    let failures: Vec<String> = units
        .iter()
        .filter_map(|u| u.failed().map(|e| format!("chain {}: {e}", u.index())))
        .collect();
    if failures.len() == units.len() {
        return Err(failures.join("; "));
    }

    let started = tokio::time::Instant::now();
    let mut next_report = started + REPORT_INTERVAL;
    let mut next_snapshot = started;
    let mut next_telemetry = started;
    let mut host_watch = fleet
        .as_ref()
        .map(|f| crate::control::HostWatch::new(f.failsafe.0));
    let mut health = crate::update::HealthReport::from_env();
    if let Some(fleet) = &fleet {
        commands::publish_state(fleet, &units, desk.intent());
    }
    let deadline = duration.map(|d| started + d);
    let mut round = 0usize;
    let wait_ms =
        (crate::mining::job_interval(board, speed).as_millis() as u32).clamp(1, RESPONSE_WAIT_MS);
    tokio::pin!(stop);
    loop {
        let now = tokio::time::Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        if chip_duration_s.is_some_and(|s| {
            units
                .iter()
                .filter(|u| u.working())
                .all(|u| u.chip_s() >= s)
        }) {
            break;
        }
        deal_pool_work(&mut source, units.iter_mut().map(Unit::work_queue));
        let intent = desk.intent();
        let asleep_by_intent = intent.sleeping.is_some();
        let mut tune_events = Vec::new();
        for unit in units.iter_mut() {
            if unit.working() {
                if let Err(e) = unit.feed(&source).await {
                    unit.fail(e.to_string());
                } else {
                    unit.govern(asleep_by_intent).await;
                }
            }
            let tuner = &settings.tuner;
            tune_events.extend(
                unit.reconcile_tune(intent.tune, !asleep_by_intent, tuner)
                    .await,
            );
            tune_events.extend(unit.tune_round(tuner).await);
        }
        if !tune_events.is_empty() {
            record_tunes(&mut desk, fleet.as_ref(), &units, tune_events);
        }
        if !units.iter().any(Unit::working) {
            return Err("every chain has failed".into());
        }
        if now >= next_snapshot {
            let asleep_by_intent = desk.intent().sleeping.is_some();
            snapshot_tx.send_replace(machine_snapshot(&mut units, &source, now, asleep_by_intent));
            // Healthy, for a supervisor trying this build: chains up, and the broker reached
            // when there is a fleet link. A machine left asleep counts as up.
            let chains_up = units.iter().any(Unit::working);
            let connected = fleet
                .as_ref()
                .is_none_or(|f| f.link.presence.borrow().broker_connected);
            health.observe(chains_up, connected);
            if let (Some(fleet), Some(watch)) = (&mut fleet, &mut host_watch) {
                let heard = fleet
                    .link
                    .presence
                    .borrow()
                    .host_heard(tokio::time::Instant::now());
                if watch.observe(now - started, heard) {
                    commands::failsafe(fleet, &mut desk, &mut units).await;
                }
            }
            next_snapshot = now + SNAPSHOT_INTERVAL;
        }
        if let Some(fleet) = &mut fleet
            && now >= next_telemetry
        {
            let reading = telemetry::from_snapshot(&snapshot_tx.borrow());
            // The first settled reading at the configured clock stands for the nameplate.
            if fleet.nameplate.is_none()
                && let Some(nameplate) = telemetry::NameplateReading::from_reading(
                    &reading,
                    snapshot_tx.borrow().expected_ths,
                    now - started,
                )
            {
                fleet.nameplate = Some(nameplate);
                commands::publish_state(fleet, &units, desk.intent());
            }
            fleet.link.telemetry(&reading);
            next_telemetry = now + fleet.telemetry_interval;
        }
        if now >= next_report {
            let nonces: u64 = units.iter().map(|u| u.tally().nonces).sum();
            let ths: f64 = units.iter().map(|u| u.ths(Window::S5)).sum();
            info!(
                nonces,
                hashrate_ths = ths,
                asleep = asleep_by_intent,
                "status"
            );
            next_report = now + REPORT_INTERVAL;
        }
        let (commands_in, updater) = match &mut fleet {
            Some(fleet) => (Some(&mut fleet.link.commands), fleet.updater.as_mut()),
            None => (None, None),
        };
        let command = async {
            match commands_in {
                Some(commands_in) => commands_in.recv().await,
                None => std::future::pending().await,
            }
        };
        let updated = async {
            match updater {
                Some(updater) => updater.finished().await,
                None => std::future::pending().await,
            }
        };
        let local_request = async {
            match &mut local {
                Some(local) => local.recv().await,
                None => std::future::pending().await,
            }
        };
        // One wait over every chain; the first to answer (or time out) wins the round. The
        // order rotates so a busy chain cannot starve the others.
        round = round.wrapping_add(1);
        let first = round % units.len().max(1);
        let (before, after) = units.split_at_mut(first);
        // Chains whose I/O failed are left out; at least one is still working (checked above).
        let responses = select_all(
            after
                .iter_mut()
                .chain(before.iter_mut())
                .filter(|u| u.working())
                .map(|u| Box::pin(async move { (u.index(), u.next_response(wait_ms).await) })),
        );
        enum Woken {
            Chain(u32, Result<Option<Response>, BoardError>),
            Command(Vec<u8>),
            Local(LocalRequest),
            Updated(String, Result<String, String>),
            Stop,
        }
        let woken = tokio::select! {
            ((index, response), _, _) = responses => Woken::Chain(index, response),
            Some(bytes) = command => Woken::Command(bytes),
            Some(request) = local_request => Woken::Local(request),
            (id, outcome) = updated => Woken::Updated(id, outcome),
            () = &mut stop => Woken::Stop,
        };
        match woken {
            Woken::Chain(index, response) => {
                if let Some(unit) = units.get_mut(index as usize) {
                    match response {
                        Ok(Some(response)) => unit.take(response, &source),
                        Ok(None) => {}
                        Err(e) => unit.fail(e.to_string()),
                    }
                }
            }
            Woken::Command(bytes) => {
                if let Some(fleet) = &mut fleet {
                    commands::obey(fleet, &mut desk, &mut units, &bytes).await;
                }
                // The next telemetry must not describe the machine from before the change the
                // state just announced.
                next_snapshot = tokio::time::Instant::now();
            }
            Woken::Local(request) => {
                next_snapshot = tokio::time::Instant::now();
                let outcome = commands::apply_local(&mut desk, &mut units, request.action).await;
                if let Some(fleet) = &fleet {
                    commands::publish_state(fleet, &units, desk.intent());
                }
                // The requester may have given up waiting; the change stands either way.
                let _ = request.reply.send(outcome);
            }
            Woken::Updated(id, outcome) => {
                if let Some(fleet) = &fleet {
                    commands::finish_update(fleet, &mut desk, id, outcome);
                }
            }
            Woken::Stop => break,
        }
    }
    for server in [api, http].into_iter().flatten() {
        server.abort();
    }
    // Every chain is ramped down, even if another one's UART fails on the way.
    let mut ran_s: f64 = 0.0;
    for unit in &mut units {
        match unit.stop(&source).await {
            Ok(ran) => ran_s = ran_s.max(ran),
            Err(e) => warn!(chain = unit.index(), error = %e, "could not drain the chain"),
        }
    }
    if let Some(mut fleet) = fleet {
        if let Some(updater) = &mut fleet.updater
            && let Some((id, outcome)) = updater.ended().await
        {
            commands::finish_update(&fleet, &mut desk, id, outcome);
        }
        fleet.link.finish(MQTT_GOODBYE_GRACE).await;
    }
    summarise(board, &settings, &units, ran_s, source).await
}

/// The run's totals over every chain.
async fn summarise<H: Hardware>(
    board: &'static BoardDescription,
    settings: &MiningSettings,
    units: &[Unit<H>],
    ran_s: f64,
    source: WorkSource,
) -> Result<Summary, String> {
    let sum = |count: fn(&crate::mining::Tally) -> u64| -> u64 {
        units.iter().map(|u| count(u.tally())).sum()
    };
    let nonces = sum(|t| t.nonces);
    let work: f64 = units.iter().map(|u| u.tally().work).sum();
    let sim = units
        .iter()
        .map(Unit::witness)
        .collect::<Option<Vec<Witness>>>()
        .map(|chains| {
            chains.into_iter().fold(
                Witness {
                    peak_chip_c: f64::MIN,
                    hottest_chip_c: f64::MIN,
                    ..Witness::default()
                },
                |all, chain| Witness {
                    nonces_sent: all.nonces_sent + chain.nonces_sent,
                    hottest_chip_c: all.hottest_chip_c.max(chain.hottest_chip_c),
                    peak_chip_c: all.peak_chip_c.max(chain.peak_chip_c),
                    chips_overheated: all.chips_overheated + chain.chips_overheated,
                    final_power_w: all.final_power_w + chain.final_power_w,
                },
            )
        });
    let chains = units.len() as u32;
    let expected = bm13xx::expected_hashrate(
        board.model,
        settings.frequency,
        board.chips_per_chain * chains,
    )
    .terahashes();
    Ok(Summary {
        board: board.name,
        chains,
        chips: board.chips_per_chain,
        chip_s: ran_s,
        jobs: units.iter().map(Unit::jobs).sum(),
        nonces,
        shares: sum(|t| t.shares),
        hardware_errors: sum(|t| t.hardware_errors),
        duplicates: sum(|t| t.duplicates),
        stale: sum(|t| t.stale),
        hashrate_ths: crate::telemetry::terahashes(work, ran_s),
        expected_ths: expected,
        sim,
        uart_errors: units.iter().map(|u| u.hw().uart_errors()).sum(),
        pool: match source {
            WorkSource::Pool(link) => Some(link.finish(POOL_FLUSH_GRACE).await),
            WorkSource::Local => None,
        },
    })
}
