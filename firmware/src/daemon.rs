//! The mining loop: one board's chain fed with work (local or a pool's), its nonces checked and
//! shares submitted, signed fleet commands obeyed, telemetry and the APIs' snapshot kept fresh.
//! The loop owns the board; the pool, the MQTT link and the API are tasks it talks to over
//! channels. The same loop runs a serial chain and the in-process simulator (`--sim`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bm13xx::{BlockHeader, InitConfig, NonceLayout, Response, TicketDifficulty, VersionMask};
use chipsim::SimControl;
use hashboard::board::BoardDescription;
use hashboard::mining::{Dispatcher, NonceOutcome, Share, Work, estimate_hashrate};
use serde::Serialize;
use stratum::Accounting;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::board::{Hardware, hottest_chip};
use crate::cgminer::{self, ChainRow, PoolRow, Snapshot};
use crate::config::MiningSettings;
use crate::control::{Change, Current, Decision, FailsafeAction, Intent, SleepCause};
use crate::cooling::Cooling;
use crate::fleet::{CommandDesk, Received};
use crate::mqtt::MqttLink;
use crate::pool::{PoolLink, Submission};
use crate::telemetry::{self, Rates, Window};
use fleet_proto::Mode;
use fleet_proto::messages::Hashrate;

/// Locally generated work's share difficulty (before the floor's scaling).
const LOCAL_POOL_DIFFICULTY: f64 = 1024.0;
/// How often fresh local work goes to the chips.
pub const JOB_INTERVAL: Duration = Duration::from_secs(5);
/// How often the daemon logs its state.
const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Where the chips' work comes from.
#[derive(Debug)]
pub enum WorkSource {
    /// Generated here: exercises the board without a network.
    Local,
    /// From a Stratum pool; shares go back to it.
    Pool(PoolLink),
}

impl WorkSource {
    /// The pool's verdicts so far; none for local work.
    pub fn accounting(&self) -> Accounting {
        match self {
            WorkSource::Pool(link) => *link.accounting.borrow(),
            WorkSource::Local => Accounting::default(),
        }
    }

    fn pool_rows(&self) -> Vec<PoolRow> {
        let WorkSource::Pool(link) = self else {
            return Vec::new();
        };
        let active = *link.active.borrow();
        link.pools
            .iter()
            .enumerate()
            .map(|(i, (url, user))| PoolRow {
                url: url.clone(),
                user: user.clone(),
                alive: active == Some(i),
            })
            .collect()
    }
}

/// The chain is drained when it has been quiet this long.
const DRAIN_QUIET_MS: u32 = 50;

/// How long a stopping daemon waits for its last shares to reach the pool.
const POOL_FLUSH_GRACE: Duration = Duration::from_secs(2);

/// What the nonces turned out to be.
#[derive(Debug, Default)]
pub struct Tally {
    pub nonces: u64,
    pub shares: u64,
    pub share_difficulty: f64,
    pub best_difficulty: f64,
    pub hardware_errors: u64,
    pub duplicates: u64,
    pub stale: u64,
}

impl Tally {
    /// Counts one nonce; returns it when it is a share for the pool.
    fn record(&mut self, outcome: NonceOutcome) -> Option<Share> {
        match outcome {
            NonceOutcome::Share(share) => {
                self.nonces += 1;
                self.shares += 1;
                self.share_difficulty += share.difficulty;
                self.best_difficulty = self.best_difficulty.max(share.difficulty);
                return Some(share);
            }
            NonceOutcome::Valid { .. } => self.nonces += 1,
            NonceOutcome::HardwareError { chip_index } => {
                self.hardware_errors += 1;
                warn!(chip_index, "hardware error");
            }
            NonceOutcome::Duplicate { .. } => self.duplicates += 1,
            NonceOutcome::Stale { job_id } => {
                self.stale += 1;
                warn!(job_id, "nonce for a job no longer known");
            }
        }
        None
    }
}

/// Jobs remembered for submitting their shares; the chips forget older ones sooner.
const REMEMBERED_JOBS: usize = 256;

/// How the run goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Simulated seconds per wall second (1 for real hardware).
    pub speed: f64,
    /// Wall time to run; until stopped when absent.
    pub duration: Option<Duration>,
    /// Where to serve the cgminer API; not served when absent.
    pub api_listen: Option<SocketAddr>,
    /// Where to serve the HTTP API (AxeOS, `/metrics`); not served when absent.
    pub http_listen: Option<SocketAddr>,
    /// Enables the HTTP API's writes.
    pub http_token: Option<String>,
}

/// What the loop talks to besides the board.
#[derive(Debug)]
pub struct Links {
    pub source: WorkSource,
    pub fleet: Option<Fleet>,
}

/// A change asked for through the local API.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalAction {
    /// What a fleet command could ask (sleep, wake, clock, voltage, reboot).
    Command(fleet_proto::Action),
    /// A fixed fan duty, or `None` for automatic control. The thermal guard still watches.
    Fan(Option<f32>),
}

#[derive(Debug)]
pub struct LocalRequest {
    pub action: LocalAction,
    /// Applied, with a note; or why not.
    pub reply: tokio::sync::oneshot::Sender<Result<Option<String>, String>>,
}

/// One local change, decided and made like a fleet command, and as durable.
async fn apply_local(
    desk: &mut CommandDesk,
    hw: &mut impl Hardware,
    cooling: &mut Cooling,
    mining: &mut Mining,
    action: LocalAction,
) -> Result<Option<String>, String> {
    let action = match action {
        LocalAction::Fan(percent) => {
            info!(?percent, "local API: fan");
            return cooling.set_manual_fan(hw, percent).map(|()| None);
        }
        LocalAction::Command(action) => action,
    };
    info!(?action, "local API");
    let current = Current {
        frequency: hw.frequency(),
        core_mv: hw.core_mv(),
    };
    let decision = desk.decide_local(&action, current, hw.description());
    let (intent, note) = carry_out(decision, hw, cooling, mining).await?;
    desk.commit(intent)
        .map_err(|e| format!("applied, but cannot persist it: {e}"))?;
    Ok(note)
}

/// Makes a decision's change and says how it went: the intent now in effect and the note for
/// the ack (the decision's, and why the board was held back, if it was).
async fn carry_out(
    decision: Decision,
    hw: &mut impl Hardware,
    cooling: &mut Cooling,
    mining: &mut Mining,
) -> Result<(Intent, Option<String>), String> {
    let (intent, change, note) = match decision {
        Decision::Fail(reason) => return Err(reason),
        Decision::Apply {
            intent,
            change,
            note,
        } => (intent, change, note),
    };
    let held = apply_change(hw, cooling, change).await;
    if matches!(change, Change::Wake | Change::Reboot) {
        mining.restart(hw);
    }
    let note = match (note, held?) {
        (Some(note), Some(held)) => Some(format!("{note}; {held}")),
        (note, held) => note.or(held.map(str::to_string)),
    };
    Ok((intent, note))
}

/// The fleet side of a run: the MQTT link and the failsafe.
#[derive(Debug)]
pub struct Fleet {
    pub link: MqttLink,
    pub telemetry_interval: Duration,
    pub failsafe: (Duration, FailsafeAction),
}

/// How often the APIs' snapshot is refreshed.
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);
/// Local API changes waiting for the loop; the API answers "busy" beyond this.
const LOCAL_QUEUE: usize = 8;
/// How long a stopping daemon waits for the broker to take its goodbye.
const MQTT_GOODBYE_GRACE: Duration = Duration::from_secs(2);

/// A board ready to run: its hardware, the simulator behind it in `--sim`, and the difficulty
/// its chips filter nonces at.
pub struct Rig<H> {
    pub hw: H,
    pub sim: Option<SimControl>,
    pub ticket: f64,
    /// Share difficulties are scaled by a simulated chain's floor; 1 on real chips.
    pub scale: f64,
}

/// The chain's settings at start: the configuration's, then what the operator set since.
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
    pub chips: u32,
    /// Seconds the chips ran (simulated seconds in `--sim`).
    pub simulated_s: f64,
    pub nonces: u64,
    pub shares: u64,
    pub hardware_errors: u64,
    pub duplicates: u64,
    pub stale: u64,
    pub hashrate_ths: f64,
    pub expected_ths: f64,
    /// The simulator's side (`--sim` only): nonces it sent, hottest chip, chips in thermal
    /// shutdown now, the chain's power at exit (0 after a clean ramp-down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sim: Option<SimTruth>,
    /// Bytes and frames the daemon's UART decoder could not use (garbage, CRC, truncation).
    pub uart_errors: u64,
    /// The pool's verdicts, when mining pool work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<Accounting>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimTruth {
    pub nonces_sent: u64,
    pub hottest_chip_c: f64,
    /// The hottest any chip got during the run (sampled every second of chip time).
    pub peak_chip_c: f64,
    pub chips_overheated: usize,
    pub final_power_w: f64,
}

/// Local work: a fresh header per job, so every job is different work.
fn local_work(n: u64) -> Work {
    let mut merkle_root = [0u8; 32];
    merkle_root[..8].copy_from_slice(&n.to_le_bytes());
    Work {
        work_id: n,
        header: BlockHeader {
            version: 0x2000_0000,
            prev_hash: [0x42; 32],
            merkle_root,
            ntime: 1_767_225_600 + n as u32,
            nbits: 0x1702_4a86,
            nonce: 0,
        },
        version_mask: VersionMask::BIP320,
        pool_difficulty: LOCAL_POOL_DIFFICULTY,
    }
}

/// What the loop keeps about mining between iterations.
struct Mining {
    dispatcher: Option<Dispatcher>,
    ticket: f64,
    scale: f64,
    tally: Tally,
    job: u64,
    sent_jobs: VecDeque<(u64, String, Vec<u8>)>,
    /// Pool work that arrived while asleep: the freshest is sent at wake.
    held_work: Option<stratum::PoolWork>,
    next_local_job: tokio::time::Instant,
}

impl Mining {
    /// A (re)initialised chain has forgotten every job: start over with fresh work at once.
    fn restart(&mut self, board: &impl Hardware) {
        self.dispatcher = board.addressing().map(|addressing| {
            Dispatcher::new(
                board.description().model,
                NonceLayout::ESP_MINER,
                addressing,
                self.ticket,
                self.scale,
            )
        });
        self.next_local_job = tokio::time::Instant::now();
    }

    /// The next work for the chips, if any is due.
    fn fresh_work(&mut self, source: &mut WorkSource, asleep: bool) -> Option<Work> {
        let now = tokio::time::Instant::now();
        let pool_work = match source {
            WorkSource::Local if asleep || now < self.next_local_job => return None,
            WorkSource::Local => {
                self.next_local_job = now + JOB_INTERVAL;
                return Some(local_work(self.job + 1));
            }
            WorkSource::Pool(link) => {
                while let Ok(work) = link.work.try_recv() {
                    self.held_work = Some(work);
                }
                if asleep {
                    return None;
                }
                self.held_work.take()?
            }
        };
        let work = Work {
            work_id: self.job + 1,
            header: pool_work.header,
            version_mask: VersionMask::new(pool_work.version_mask),
            pool_difficulty: pool_work.difficulty,
        };
        if self.sent_jobs.len() == REMEMBERED_JOBS {
            self.sent_jobs.pop_front();
        }
        self.sent_jobs
            .push_back((work.work_id, pool_work.job_id, pool_work.extranonce2));
        Some(work)
    }

    fn take(&mut self, response: Response, source: &WorkSource) {
        if let Response::Nonce(nonce) = response
            && let Some(dispatcher) = &mut self.dispatcher
            && let Some(share) = self.tally.record(dispatcher.check(&nonce))
            && let WorkSource::Pool(link) = source
        {
            submit(link, &self.sent_jobs, &share);
        }
    }
}

/// Makes a decided change on the board. A board the thermal guard stopped stays down until it
/// has cooled, whatever the command: the intent is kept and applied at resume.
async fn apply_change(
    board: &mut impl Hardware,
    cooling: &mut Cooling,
    change: Change,
) -> Result<Option<&'static str>, String> {
    let held = Some("overheated: the chains resume once they have cooled");
    match change {
        Change::Nothing => Ok(None),
        Change::Sleep => board.sleep().await.map(|()| None),
        Change::Wake | Change::Reboot if cooling.overheated() => Ok(held),
        Change::Wake => board.power_up().await.map(|()| None),
        Change::Frequency(target) => {
            cooling.tuned = target;
            cooling.set_power_target(None);
            board.set_frequency(target).await.map(|()| None)
        }
        Change::PowerTarget(watts) => {
            cooling.set_power_target(watts);
            Ok(None)
        }
        Change::CoreVoltage(mv) => board.set_core_voltage(mv).await.map(|()| None),
        Change::Reboot => {
            board.sleep().await?;
            board.power_up().await.map(|()| None)
        }
        Change::Identify => {
            info!("identify: this is the machine");
            Ok(None)
        }
    }
}

/// Brings the board up (unless it was left asleep) and mines for `duration` of wall time, or
/// until `stop` resolves; then ramps the chains down.
pub async fn run<H: Hardware>(
    rig: Rig<H>,
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
        api_listen,
        http_listen,
        http_token,
    } = options;
    let Rig {
        mut hw,
        sim: control,
        ticket,
        scale,
    } = rig;
    let board = hw.description();
    let chips = board.chips_per_chain;
    let (snapshot_tx, snapshots) = watch::channel(Snapshot {
        board: board.name,
        ..Snapshot::default()
    });
    let (local_tx, local_rx) = mpsc::channel(LOCAL_QUEUE);
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
        hw.power_off_at_start()?;
        info!(cause = ?intent.sleeping, "asleep since before the restart: the chain stays down until woken");
    } else {
        hw.power_up().await?;
        info!(
            board = board.name,
            chips = hw.chips_up(),
            baud = hw.baud(),
            mhz = hw.frequency().mhz(),
            ticket,
            "chain up"
        );
    }
    let mut cooling = Cooling::new(&hw);
    cooling.set_power_target(intent.power_target_w);
    let mut peak_chip_c = f64::MIN;
    if !hw.has_thermal_sensor() {
        warn!("no temperature sensor wired: fan control and thermal protection are off");
    }
    let mut mining = Mining {
        dispatcher: None,
        ticket,
        scale,
        tally: Tally::default(),
        job: 0,
        sent_jobs: VecDeque::with_capacity(REMEMBERED_JOBS),
        held_work: None,
        next_local_job: tokio::time::Instant::now(),
    };
    mining.restart(&hw);

    let clock = control
        .clone()
        .map(|control| tokio::spawn(control.run_realtime(speed, Duration::from_millis(10))));
    let started = tokio::time::Instant::now();
    // Hash rates need the chips' time: the simulator's clock in `--sim`, the wall clock otherwise.
    let chip_seconds = || match &control {
        Some(control) => control.with_sim(|s| s.now_s()),
        None => started.elapsed().as_secs_f64(),
    };
    let start_s = chip_seconds();
    let mut next_report = started + REPORT_INTERVAL;
    let mut next_snapshot = started;
    let mut next_telemetry = started;
    let mut rates = Rates::default();
    let mut host_watch = fleet
        .as_ref()
        .map(|f| crate::control::HostWatch::new(f.failsafe.0));
    let mut nameplate_power_w = None;
    if let Some(fleet) = &fleet {
        fleet
            .link
            .state(&telemetry::state(&hw, desk.intent(), nameplate_power_w));
    }
    let deadline = duration.map(|d| started + d);
    tokio::pin!(stop);
    loop {
        let now = tokio::time::Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        if let Some(work) = mining.fresh_work(&mut source, hw.asleep())
            && let Some(dispatcher) = &mut mining.dispatcher
        {
            mining.job += 1;
            let frame = dispatcher.dispatch(work);
            hw.write_frame(frame.as_bytes()).await?;
        }
        let chip_s = chip_seconds() - start_s;
        if cooling.due(chip_s) {
            if let Some(control) = &control {
                peak_chip_c = peak_chip_c.max(control.with_sim(|s| hottest_chip(s)));
            }
            let was_asleep = hw.asleep();
            let asleep_by_intent = desk.intent().sleeping.is_some();
            cooling.tick(&mut hw, chip_s, asleep_by_intent).await;
            if was_asleep && !hw.asleep() {
                // Resumed after a thermal stop: the chips lost their work with their supply.
                mining.restart(&hw);
            }
        }
        if now >= next_snapshot {
            rates.add(now, chip_s, mining.tally.nonces);
            let reading = Reading {
                mining: &mining,
                rates: &rates,
                source: &source,
                sim: control.as_ref(),
                thermal_stop: cooling.overheated(),
                power_target: cooling.power_target().is_some(),
                elapsed: now - started,
                chip_s,
            };
            snapshot_tx.send_replace(reading.take(&mut hw));
            if let (Some(fleet), Some(watch)) = (&mut fleet, &mut host_watch) {
                let heard = fleet.link.presence.borrow().host_heard();
                if watch.observe(now - started, heard) {
                    failsafe(fleet, &mut desk, &mut hw).await;
                }
            }
            next_snapshot = now + SNAPSHOT_INTERVAL;
        }
        if let Some(fleet) = &fleet
            && now >= next_telemetry
        {
            let reading = telemetry::from_snapshot(&snapshot_tx.borrow());
            if nameplate_power_w.is_none()
                && !hw.asleep()
                && reading.power_w > 0.0
                && now - started >= Duration::from_secs(3)
            {
                // The first settled reading at the configured clock stands for the nameplate.
                nameplate_power_w = Some(reading.power_w);
                fleet
                    .link
                    .state(&telemetry::state(&hw, desk.intent(), nameplate_power_w));
            }
            fleet.link.telemetry(&reading);
            next_telemetry = now + fleet.telemetry_interval;
        }
        if now >= next_report {
            info!(
                nonces = mining.tally.nonces,
                shares = mining.tally.shares,
                hardware_errors = mining.tally.hardware_errors,
                hashrate_ths = rates.ths(Window::S5, ticket),
                asleep = hw.asleep(),
                "status"
            );
            next_report = now + REPORT_INTERVAL;
        }
        let command = async {
            match &mut fleet {
                Some(fleet) => fleet.link.commands.recv().await,
                None => std::future::pending().await,
            }
        };
        let local_request = async {
            match &mut local {
                Some(local) => local.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            response = hw.next_response(100) => {
                if let Some(response) = response? {
                    mining.take(response, &source);
                }
            }
            Some(bytes) = command => {
                if let Some(fleet) = &mut fleet {
                    obey(fleet, &mut desk, &mut hw, &mut cooling, &mut mining, &bytes, nameplate_power_w).await;
                }
            }
            Some(request) = local_request => {
                let outcome = apply_local(&mut desk, &mut hw, &mut cooling, &mut mining, request.action).await;
                if let Some(fleet) = &fleet {
                    fleet.link.state(&telemetry::state(&hw, desk.intent(), nameplate_power_w));
                }
                // The requester may have given up waiting; the change stands either way.
                let _ = request.reply.send(outcome);
            }
            () = &mut stop => break,
        }
    }
    // Stop the chips' clock, then take what they already sent: a stop loses no found work, and
    // the counts reconcile with what the chain sent.
    if let Some(clock) = clock {
        clock.abort();
        let _ = clock.await;
    }
    for server in [api, http].into_iter().flatten() {
        server.abort();
    }
    let ran_s = chip_seconds() - start_s;
    if !hw.asleep() {
        while let Some(response) = hw.next_response(DRAIN_QUIET_MS).await? {
            mining.take(response, &source);
        }
        // Ramp down rather than drop the load; the intent is untouched, so a restart mines.
        let ramped = hw.sleep().await;
        // A board that cannot cut its supply still hashes while it clocks down: count that too.
        while let Some(response) = hw.drain_response(DRAIN_QUIET_MS).await? {
            mining.take(response, &source);
        }
        match ramped {
            Ok(()) => info!("chains ramped down"),
            Err(e) => warn!(error = %e, "ramp-down failed"),
        }
    }
    if let Some(fleet) = fleet {
        fleet.link.finish(MQTT_GOODBYE_GRACE).await;
    }
    let sim = control.as_ref().map(|control| {
        control.with_sim(|s| SimTruth {
            nonces_sent: s.stats().nonces_sent,
            hottest_chip_c: hottest_chip(s),
            peak_chip_c: peak_chip_c.max(hottest_chip(s)),
            chips_overheated: s.chips().iter().filter(|c| c.thermal.overheated).count(),
            final_power_w: s.power_w(),
        })
    });
    let simulated_s = ran_s;
    let expected = bm13xx::expected_hashrate(board.model, settings.frequency, chips).terahashes();
    let tally = &mining.tally;
    Ok(Summary {
        board: board.name,
        chips,
        simulated_s,
        nonces: tally.nonces,
        shares: tally.shares,
        hardware_errors: tally.hardware_errors,
        duplicates: tally.duplicates,
        stale: tally.stale,
        hashrate_ths: estimate_hashrate(tally.nonces as u32, ticket, simulated_s)
            .map_or(0.0, |r| r.hashes_per_second / 1e12),
        expected_ths: expected,
        sim,
        uart_errors: hw.uart_errors(),
        pool: match source {
            WorkSource::Pool(link) => Some(link.finish(POOL_FLUSH_GRACE).await),
            WorkSource::Local => None,
        },
    })
}

/// One command from `…/cmd`, start to finish: verify, ack, change the board, ack again.
async fn obey(
    fleet: &mut Fleet,
    desk: &mut CommandDesk,
    hw: &mut impl Hardware,
    cooling: &mut Cooling,
    mining: &mut Mining,
    bytes: &[u8],
    nameplate_power_w: Option<f64>,
) {
    let current = Current {
        frequency: hw.frequency(),
        core_mv: hw.core_mv(),
    };
    let board = hw.description();
    match desk.receive(bytes, telemetry::unix_now(), current, board) {
        Received::Answered(ack) => fleet.link.ack(&ack),
        Received::Apply {
            accepted,
            id,
            decision,
            ..
        } => {
            fleet.link.ack(&accepted);
            let outcome = carry_out(decision, hw, cooling, mining).await;
            let ack = desk.finish(id, outcome, telemetry::unix_now());
            fleet.link.ack(&ack);
            fleet
                .link
                .state(&telemetry::state(hw, desk.intent(), nameplate_power_w));
        }
    }
}

/// The host has been silent for the configured time.
async fn failsafe(fleet: &mut Fleet, desk: &mut CommandDesk, hw: &mut impl Hardware) {
    let intent = desk.intent();
    match fleet.failsafe.1 {
        FailsafeAction::Keep => warn!("host silent: failsafe keeps the current mode"),
        FailsafeAction::Sleep if intent.sleeping.is_some() => {}
        FailsafeAction::Sleep => {
            warn!("host silent: failsafe puts the machine to sleep until woken");
            let asleep = Intent {
                sleeping: Some(SleepCause::Failsafe),
                ..intent
            };
            if let Err(e) = desk.set_intent(asleep) {
                warn!(error = %e, "cannot persist the failsafe sleep");
            }
            if let Err(e) = hw.sleep().await {
                warn!(error = %e, "failsafe sleep failed");
            }
            fleet.link.state(&telemetry::state(hw, desk.intent(), None));
        }
    }
}

/// What goes into the one-second snapshot besides the board's own readings.
struct Reading<'a> {
    mining: &'a Mining,
    rates: &'a Rates,
    source: &'a WorkSource,
    sim: Option<&'a SimControl>,
    thermal_stop: bool,
    power_target: bool,
    elapsed: Duration,
    chip_s: f64,
}

impl Reading<'_> {
    /// Reads the board (regulator, fan, sensor) and puts everything in one snapshot.
    fn take(self, hw: &mut impl Hardware) -> Snapshot {
        let tally = &self.mining.tally;
        let ticket = self.mining.ticket;
        let mhs_av = estimate_hashrate(tally.nonces as u32, ticket, self.chip_s)
            .map_or(0.0, |r| r.hashes_per_second / 1e6);
        let pool_accounting = self.source.accounting();
        let board = hw.description();
        let board_temp_c = hw.board_temp_c();
        // In `--sim` the simulator's die temperatures stand in for per-chip sensors.
        let (hottest_chip_c, sim_overheated) = match self.sim {
            Some(sim) => sim.with_sim(|s| {
                (
                    Some(hottest_chip(s)),
                    s.chips().iter().any(|c| c.thermal.overheated),
                )
            }),
            None => (board_temp_c, false),
        };
        let mode = if self.thermal_stop || sim_overheated {
            Mode::Overheated
        } else if hw.asleep() {
            Mode::Sleeping
        } else if self.power_target {
            Mode::PowerTarget
        } else {
            Mode::Mining
        };
        let hashrate = Hashrate {
            s5: self.rates.ths(Window::S5, ticket),
            m1: self.rates.ths(Window::M1, ticket),
            m15: self.rates.ths(Window::M15, ticket),
        };
        Snapshot {
            elapsed_s: self.elapsed.as_secs(),
            mhs_av,
            mhs_5s: hashrate.s5 * 1e6,
            accepted: pool_accounting.accepted,
            rejected: pool_accounting.rejected,
            stale: pool_accounting.stale + tally.stale,
            hardware_errors: tally.hardware_errors,
            nonces: tally.nonces,
            pools: self.source.pool_rows(),
            chains: vec![ChainRow {
                chips: board.chips_per_chain,
                model: board.model.name(),
                frequency_mhz: hw.frequency().mhz(),
                temperature_c: hottest_chip_c.unwrap_or(0.0),
                mhs_av,
                hardware_errors: tally.hardware_errors,
            }],
            board: board.name,
            mode,
            hashrate,
            share_difficulty: tally.share_difficulty,
            best_difficulty: tally.best_difficulty,
            power_w: hw.power_w(),
            fan: hw.fan(),
            board_temp_c,
            hottest_chip_c,
            core_mv: hw.core_mv(),
            frequency_mhz: hw.frequency().mhz(),
            chips_up: hw.chips_up(),
            chips_expected: board.chips_per_chain,
            asic_model: board.model.part_number(),
        }
    }
}

fn submit(link: &PoolLink, sent_jobs: &VecDeque<(u64, String, Vec<u8>)>, share: &Share) {
    let Some((_, job_id, extranonce2)) = sent_jobs.iter().find(|(id, _, _)| *id == share.work_id)
    else {
        warn!(
            work_id = share.work_id,
            "share for work no longer remembered"
        );
        return;
    };
    let submission = Submission {
        job_id: job_id.clone(),
        extranonce2: extranonce2.clone(),
        ntime: share.ntime,
        nonce: share.nonce,
        version: share.version,
    };
    if link.shares.send(submission).is_err() {
        warn!("the pool task has stopped; share dropped");
    }
}
