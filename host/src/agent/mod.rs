//! `hashwarden run`: the agent. It listens to the fleet, the market and the grid over MQTT,
//! plans every `plan_interval_s`, hands the plan's changes to the executor, and publishes the
//! signed commands the executor issues. Every input is checked where it enters (a payload that
//! does not parse, an implausible market reading) and refused with a logged reason; the state
//! it plans from is the last good one.

mod inputs;
mod intake;
mod link;
mod records;
mod rollouts;
mod tasks;
mod verifier;

pub use rollouts::Shelf;
pub use tasks::serve_http;
use tasks::spawn_poller;

use std::collections::BTreeMap;
use std::time::Duration;

use fleet_proto::{CommandSigner, Kind, MinerTopic, Name, topic};
use serde::Serialize;
use tracing::{info, warn};

use crate::executor::{Executor, Phase, Wanted};
use crate::fleet::FleetView;
use crate::grid::Grid;
use crate::market::{MarketGuard, MarketView, Plausibility, Reading};
use crate::metrics::Counters;
use crate::planner::{Economics, Inputs, Setting, plan};
use crate::site::SiteConfig;
use crate::store::{AuditEntry, AuditKind, FleetRow, Store};
use records::Records;

/// How often the fleet table for `hashwarden status` is rewritten, s.
const FLEET_TABLE_EVERY_S: u64 = 5;

/// The dashboard's charts keep a point per this many seconds.
const DASHBOARD_EVERY_S: u64 = 2;

/// How long a stopping agent waits for the broker to take its goodbye.
const GOODBYE_GRACE: Duration = Duration::from_secs(2);

/// What a run did, printed as one JSON line at the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub counters: Counters,
    pub miners: usize,
}

struct Agent {
    config: SiteConfig,
    site: Name,
    fleet: FleetView,
    executor: Executor,
    market: MarketGuard,
    grid: Grid,
    /// Who may move the market, the power price and the grid cap over MQTT.
    feeds: crate::feeds::FeedGate,
    /// Which miners' reports are their own word: their enrolled device keys.
    enrolment: crate::enrol::Enrolment,
    refusals: intake::RefusalLog,
    signer: CommandSigner,
    /// The store, the audit entries of the round and the run's counters.
    records: Records,
    /// Market readings still to replay, oldest first.
    replay: std::collections::VecDeque<fleet_proto::Market>,
    metrics: crate::metrics::FleetMetrics,
    /// When the fleet table was last written (unix s).
    fleet_saved_at: u64,
    /// When each command in flight was published (host monotonic clock), for its latency.
    sent_at: std::collections::HashMap<String, std::time::Instant>,
    /// Each miner's last reported phase, to log every change once.
    reported: BTreeMap<String, &'static str>,
    /// The real-time power price over the tariff, and its replay file's readings to come.
    power: crate::power_price::PowerPrice,
    power_replay: std::collections::VecDeque<fleet_proto::PowerPrice>,
    /// Set when this agent is one of several sharing the site.
    group: Option<crate::shard::Group>,
    /// `hashwarden/v1/<site>/agent/peers/`: where the group's presences arrive.
    peer_prefix: String,
    /// Firmware rollouts under way, and the images they serve.
    rollouts: rollouts::Rollouts,
    /// The dashboard's document (JSON), its history, and when it was last rebuilt.
    dashboard: String,
    history: crate::dashboard::History,
    dashboard_at: Option<u64>,
    /// The override (by its end time) each miner's last manual change was asked for under: a
    /// new one is the operator asking again, which retries a change that failed at once.
    manual_asked: BTreeMap<String, u64>,
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A change's final outcome as the audit log keeps it: about the setting the change was for, so
/// that `curtail|resume --wait` can tell which override it answers.
fn outcome_entry(
    now: u64,
    op: &crate::executor::Op,
    kind: AuditKind,
    detail: String,
) -> AuditEntry {
    AuditEntry::new(now, &op.miner, kind, detail).about(op.want)
}

/// Runs the agent until `stop` resolves (or for `duration`).
pub async fn run(
    config: SiteConfig,
    duration: Option<Duration>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Summary, String> {
    let section = config.agent.clone().ok_or(
        "the site has no [agent] section: key_file, key_id (and mqtt_url for an external broker)",
    )?;
    let site = Name::new(&config.site.name).map_err(|e| format!("site.name: {e}"))?;
    let broker = config.broker.clone();
    let signer = crate::keys::load(&section.key_file, &section.key_id)
        .map_err(|e| format!("agent.key_file: {e}"))?;
    let heartbeat_key = signer.clone();
    let store = Store::open(&section.store).map_err(|e| format!("agent.store: {e}"))?;
    let replay = match &config.market.csv {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("market.csv: {}: {e}", path.display()))?;
            crate::sources::csv(&text)
                .map_err(|e| format!("market.csv: {}: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    let power_replay = match &config.power.csv {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("power.csv: {}: {e}", path.display()))?;
            crate::sources::power_csv(&text)
                .map_err(|e| format!("power.csv: {}: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    let poller = config.market.poll.as_ref().map(|sources| {
        let every = Duration::from_secs_f64(config.market.poll_interval_s.unwrap_or(300.0));
        spawn_poller(sources.list(), every)
    });
    let mut agent = Agent::new(config, site.clone(), signer, section.maestro, unix_now())?;
    agent.attach(store, unix_now())?;
    agent.replay = replay.into();
    agent.power_replay = power_replay.into();
    let (poller_task, mut polled) = match poller {
        Some((task, rx)) => (Some(task), Some(rx)),
        None => (None, None),
    };
    let (metrics_tx, metrics_rx) = tokio::sync::watch::channel(String::new());
    let (dashboard_tx, dashboard_rx) = tokio::sync::watch::channel(String::new());
    let metrics_server = match section.metrics_listen {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|e| format!("agent.metrics_listen {address}: {e}"))?;
            info!(%address, "dashboard on /, metrics on /metrics, rollouts' images on /images/");
            let shelf = agent.rollouts.shelf();
            Some(tokio::spawn(serve_http(
                listener,
                tasks::Served {
                    metrics: metrics_rx,
                    dashboard: dashboard_rx,
                    images: shelf,
                },
            )))
        }
        None => None,
    };
    if let Some(settings) = section.embedded_broker(broker.as_ref()) {
        fleet_mqtt::embedded::start(&settings).map_err(|e| format!("broker: {e}"))?;
    }
    let connection = section
        .connection(broker.as_ref())
        .map_err(|e| format!("agent: {e}"))?;
    // The heartbeat is signed with the command key, which the miners already trust.
    let heartbeat = fleet_proto::feed::FeedSigner::new(site.clone(), heartbeat_key);
    let mut link = link::spawn(&connection, &site, section.share.as_ref(), heartbeat)?;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(section.plan_interval_s));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop, deadline);
    info!(site = %site, "agent running");
    loop {
        tokio::select! {
            Some(message) = link.incoming.recv() => agent.take_message(message, unix_now()),
            Some(polled) = async {
                match &mut polled {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => agent.take_polled(polled, unix_now()),
            _ = ticks.tick() => {
                agent.take_queued(&mut link.incoming, link::INCOMING_QUEUE);
                for (miner, payload) in agent.round(unix_now()) {
                    link.command(&MinerTopic::new(&agent.site, &miner, Kind::Cmd).to_string(), payload).await;
                }
                metrics_tx.send_replace(agent.metrics.render(&agent.records.counters));
                if *dashboard_tx.borrow() != agent.dashboard {
                    dashboard_tx.send_replace(agent.dashboard.clone());
                }
            }
            () = &mut stop => break,
            () = &mut deadline => break,
        }
    }
    agent.records.flush();
    for task in [poller_task, metrics_server].into_iter().flatten() {
        task.abort();
    }
    link.finish(GOODBYE_GRACE).await;
    Ok(Summary {
        counters: agent.records.counters,
        miners: agent.fleet.len(),
    })
}

/// The enrolment book as the config sets it up: its mode, its bound, the keys it names.
fn enrolment(config: &SiteConfig) -> Result<crate::enrol::Enrolment, String> {
    let agent = config.agent.as_ref();
    let mut book = crate::enrol::Enrolment::new(
        agent.map(|a| a.enrol).unwrap_or_default(),
        agent
            .and_then(|a| a.max_unenrolled)
            .unwrap_or(crate::enrol::DEFAULT_MAX_UNENROLLED),
    );
    for (i, machine) in config.machines.iter().enumerate() {
        if let Some(key) = &machine.public_key {
            book.enrol(&machine.id, key, crate::enrol::How::Config)
                .map_err(|e| format!("machines[{i}].public_key: {e}"))?;
        }
    }
    Ok(book)
}

impl Agent {
    fn new(
        config: SiteConfig,
        site: Name,
        signer: CommandSigner,
        maestro: bool,
        now: u64,
    ) -> Result<Self, String> {
        let power_max_age_s = config.power.max_age_s;
        let group = config
            .agent
            .as_ref()
            .and_then(|agent| agent.share.as_ref())
            .map(|share| crate::shard::Group::new(share.instance.as_str()));
        let images_base = config.agent.as_ref().and_then(|a| a.images_base_url());
        let commands = config
            .agent
            .as_ref()
            .map(|agent| agent.commands)
            .unwrap_or_default();
        let peer_prefix = topic::every_agent_peer(&site)
            .trim_end_matches('+')
            .to_string();
        let mut market = MarketGuard::new(Plausibility::default());
        if let Some(hashprice) = config.hashprice() {
            // The configured market stands until a feed says otherwise (and for its bound only).
            let reading = Reading {
                at: now,
                hashprice,
                difficulty: config.market.network.map(|n| n.difficulty),
            };
            market
                .offer(reading, now)
                .map_err(|e| format!("market: {e}"))?;
        }
        // Sequence numbers continue above anything this key signed before: the clock in ms only
        // grows, and a host makes far fewer than 1,000 commands a second per key.
        let seq_floor = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        let max_miners = config
            .agent
            .as_ref()
            .and_then(|a| a.max_miners)
            .unwrap_or(crate::fleet::MAX_MINERS);
        let feeds = crate::feeds::FeedGate::new(&site, &config.feeds)
            .map_err(|e| format!("feeds.trusted_keys: {e}"))?;
        let enrolment = enrolment(&config)?;
        Ok(Self {
            feeds,
            enrolment,
            refusals: intake::RefusalLog::default(),
            grid: Grid::new(config.cap(), maestro, now).with_lead(config.site.grid_lead_s),
            executor: Executor::new(site.clone(), commands, seq_floor),
            config,
            site,
            fleet: FleetView::with_max_miners(max_miners),
            market,
            signer,
            records: Records::default(),
            replay: std::collections::VecDeque::new(),
            metrics: crate::metrics::FleetMetrics::default(),
            fleet_saved_at: 0,
            sent_at: std::collections::HashMap::new(),
            reported: BTreeMap::new(),
            group,
            peer_prefix,
            power: crate::power_price::PowerPrice::new(power_max_age_s),
            power_replay: std::collections::VecDeque::new(),
            rollouts: rollouts::Rollouts::new(images_base),
            dashboard: String::new(),
            history: crate::dashboard::History::default(),
            dashboard_at: None,
            manual_asked: BTreeMap::new(),
        })
    }

    /// Takes up where the last run left off: switch history (dwell survives a restart) and
    /// sequence numbers above every one the key has used.
    fn attach(&mut self, store: Store, now: u64) -> Result<(), String> {
        if let Some(last) = store.last_seq().map_err(|e| e.to_string())? {
            let floor = self.executor.next_seq().max(last + 1);
            self.executor = Executor::new(self.site.clone(), self.executor.config(), floor);
        }
        for (miner, at, on) in store.switches().map_err(|e| e.to_string())? {
            self.executor.restore_switch(&miner, at, on);
        }
        // Keys enrolled at first sight in earlier runs; a key the config names stays.
        for (miner, public_key, _) in store.enrolled().map_err(|e| e.to_string())? {
            if let Err(e) = self
                .enrolment
                .enrol(&miner, &public_key, crate::enrol::How::FirstSeen)
            {
                warn!(error = %e, "stored device key not used");
            }
        }
        match store.last_market().map_err(|e| e.to_string())? {
            Some(reading) => {
                // A restart: the configured starting hashprice is not news. The last reading
                // the site had stands for what it is, through the guard like any reading — too
                // old, and the safe policy applies.
                self.market = MarketGuard::new(Plausibility::default());
                match self.market.offer(reading, now) {
                    Ok(()) => {
                        info!(hashprice = %reading.hashprice, at = reading.at, "market reading restored")
                    }
                    Err(reason) => {
                        warn!(%reason, at = reading.at, "stored market reading not used: the safe policy applies until a feed speaks")
                    }
                }
            }
            None => {
                // A first start: the configured starting hashprice is stored with the time it
                // was first taken, so a later restart finds it as old as it is.
                if let Some(reading) = self.market.last()
                    && let Err(e) = store.save_market(&reading)
                {
                    warn!(error = %e, "market reading not stored");
                }
            }
        }
        self.records.attach(store);
        Ok(())
    }

    /// One planning round at `now`: the plan's changes to the executor, and the signed commands
    /// to publish, by miner.
    fn round(&mut self, now: u64) -> Vec<(Name, Vec<u8>)> {
        self.replay(now);
        let mut machines = self.fleet.machines(now);
        let overrides = match self.records.store() {
            Some(store) => store.overrides(now).unwrap_or_else(|e| {
                warn!(error = %e, "cannot read the overrides");
                Vec::new()
            }),
            None => Vec::new(),
        };
        self.config.apply_to(&mut machines);
        inputs::with_history(&mut machines, &overrides, &self.executor);
        let economics = match self.market.view(now) {
            MarketView::Current { hashprice, .. } => Some(Economics {
                hashprice,
                power_price: self.power.at(&self.config.tariff, now).0,
                pool_fee: self.config.site.pool_fee,
            }),
            MarketView::Expired { .. } => None,
        };
        let mut cap = self.grid.cap(now).map(|(watts, _)| watts);
        let mut moved: Vec<String> = Vec::new();
        if let Some(group) = &self.group {
            cap = inputs::cap_share(cap, &machines, |id| group.owns(id), group.size());
            machines.retain(|m| group.owns(&m.id));
            moved = self
                .executor
                .ops()
                .filter(|op| !group.owns(&op.miner))
                .map(|op| op.miner.clone())
                .collect();
        }
        for miner in moved {
            if let Some(op) = self.executor.hand_over(&miner) {
                info!(%miner, want = ?op.want, "another agent's miner now: its change handed over");
                self.records.audit(
                    AuditEntry::new(now, &miner, AuditKind::HandedOver, op.want.to_string())
                        .about(op.want),
                );
            }
        }
        let plan = plan(&Inputs {
            now,
            economics,
            cap,
            policy: &self.config.policy,
            machines: &machines,
        });
        self.records.counters.plans += 1;
        for (machine, decision) in machines.iter().zip(&plan.decisions) {
            if !decision.changes() {
                continue;
            }
            if let crate::planner::Reason::Manual { until } = decision.reason
                && self.manual_asked.insert(machine.id.clone(), until) != Some(until)
                && self.executor.forget_failure(&machine.id)
            {
                info!(miner = %machine.id, "asked again by hand: the change that was not carried out is retried now");
            }
            let baseline = self.fleet.get(&machine.id).and_then(|h| h.power());
            let wanted = self.executor.want(
                &machine.id,
                decision.from,
                decision.to,
                decision.at,
                baseline,
                machine.full.watts,
            );
            match wanted {
                Wanted::New => {
                    self.records.audit(
                        AuditEntry::new(
                            now,
                            &machine.id,
                            AuditKind::Planned,
                            format!(
                                "{} -> {} at {}: {}",
                                decision.from, decision.to, decision.at, decision.reason
                            ),
                        )
                        .about(decision.to),
                    );
                    info!(miner = %machine.id, from = %decision.from, to = %decision.to, at = decision.at, reason = %decision.reason, "planned");
                }
                Wanted::Drifted => {
                    self.records.audit(
                        AuditEntry::new(
                            now,
                            &machine.id,
                            AuditKind::Drifted,
                            format!(
                                "verified at {}, shows {} now: {} again",
                                decision.to, decision.from, decision.to
                            ),
                        )
                        .about(decision.to),
                    );
                    warn!(miner = %machine.id, shows = %decision.from, wanted = %decision.to, "drifted from its verified setting: the change goes again");
                }
                Wanted::Retry | Wanted::Unchanged => {}
            }
        }
        // The fleet table is for people: every few seconds is fresh enough, and rewriting ten
        // thousand rows each half second would slow the round that carries a curtailment.
        if now >= self.fleet_saved_at + FLEET_TABLE_EVERY_S {
            self.save_fleet(&machines, &plan, now);
            self.fleet_saved_at = now;
        }
        self.metrics
            .plan(&plan, &machines, economics.map(|e| e.power_price.0));
        self.metrics.unenrolled = self.enrolment.unenrolled().count();
        self.refresh_dashboard(&machines, &plan, economics.map(|e| e.power_price.0), now);
        let mut commands = self.executor.tick(now, &self.fleet);
        commands.extend(self.rollouts_round(now));
        if let (Some(store), Some(last)) =
            (self.records.store(), commands.iter().map(|c| c.seq).max())
            && let Err(e) = store.save_seq(last)
        {
            warn!(error = %e, "cannot store the sequence number");
        }
        self.report(now);
        let mut out = Vec::new();
        for command in commands {
            match self.signer.sign(&command) {
                Ok(signed) => match serde_json::to_vec(&signed) {
                    Ok(bytes) => {
                        self.records.counters.commands_sent += 1;
                        // Bounded: a fleet that never answers must not grow this without end.
                        if self.sent_at.len() < 100_000 {
                            self.sent_at
                                .insert(command.id.clone(), std::time::Instant::now());
                        }
                        info!(miner = %command.miner, id = %command.id, action = ?command.action, "command sent");
                        self.records.audit(AuditEntry::new(
                            now,
                            command.miner.as_str(),
                            AuditKind::Sent,
                            format!("{} {:?} seq {}", command.id, command.action, command.seq),
                        ));
                        out.push((command.miner.clone(), bytes));
                    }
                    Err(e) => warn!(error = %e, "cannot encode a command"),
                },
                Err(e) => warn!(error = %e, "cannot sign a command"),
            }
        }
        self.records.flush();
        out
    }

    /// The fleet as this plan saw it, a row per machine: the `hashwarden status` table and the
    /// dashboard's.
    fn fleet_rows(
        &self,
        machines: &[crate::planner::Machine],
        plan: &crate::planner::Plan,
    ) -> Vec<FleetRow> {
        machines
            .iter()
            .zip(&plan.decisions)
            .map(|(machine, decision)| {
                let heard = self.fleet.get(&machine.id);
                let telemetry = heard.and_then(|h| h.telemetry.as_ref());
                let breakeven = decision.breakeven.map(|b| b.0);
                FleetRow {
                    miner: machine.id.clone(),
                    online: machine.online,
                    mode: telemetry.map_or("unknown".into(), |t| {
                        serde_json::to_value(t.mode)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    }),
                    hashrate_ths: telemetry.map_or(0.0, |t| t.hashrate_ths.m1),
                    power_w: telemetry.map_or(0.0, |t| t.power_w),
                    j_per_th: telemetry.and_then(|t| t.efficiency_j_per_th),
                    breakeven,
                    margin: plan.hashprice.zip(breakeven).map(|(h, b)| h.0 - b),
                    target: decision.to,
                    reason: decision.reason.to_string(),
                    last_seen: heard.map_or(0, |h| h.last_seen),
                    enrolment: self
                        .enrolment
                        .how(&machine.id)
                        .map(|how| how.as_str().to_string()),
                }
            })
            .collect()
    }

    /// The dashboard's document as of this plan (at most once a second: a large fleet's table
    /// is not rebuilt every half-second round).
    fn refresh_dashboard(
        &mut self,
        machines: &[crate::planner::Machine],
        plan: &crate::planner::Plan,
        power_price: Option<f64>,
        now: u64,
    ) {
        self.history
            .record(crate::dashboard::moment(plan), DASHBOARD_EVERY_S);
        if self.dashboard_at.is_some_and(|at| now < at + 1) {
            return;
        }
        self.dashboard_at = Some(now);
        let pending = self
            .executor
            .ops()
            .filter(|op| op.phase.in_flight())
            .map(|op| crate::dashboard::Pending {
                miner: op.miner.clone(),
                want: op.want,
                phase: op.phase.name(),
            })
            .collect();
        let view = crate::dashboard::View {
            site: self.site.to_string(),
            at: now,
            hashprice: plan.hashprice.map(|h| h.0),
            power_price,
            cap_w: plan.cap.map(|c| c.0),
            fleet: self.fleet_rows(machines, plan),
            pending,
            history: self.history.moments(),
        };
        match serde_json::to_string(&view) {
            Ok(json) => self.dashboard = json,
            Err(e) => warn!(error = %e, "cannot encode the dashboard"),
        }
    }

    /// The fleet table for `hashwarden status`, as this plan saw it.
    fn save_fleet(
        &mut self,
        machines: &[crate::planner::Machine],
        plan: &crate::planner::Plan,
        now: u64,
    ) {
        if self.records.store().is_none() {
            return;
        }
        let rows = self.fleet_rows(machines, plan);
        let held: Vec<crate::enrol::Unenrolled> = self.enrolment.unenrolled().cloned().collect();
        let Some(store) = self.records.store_mut() else {
            return;
        };
        if let Err(e) = store.save_fleet(&rows, now) {
            warn!(error = %e, "cannot store the fleet table");
        }
        if let Err(e) = store.save_unenrolled(&held) {
            warn!(error = %e, "cannot store the miners waiting for enrolment");
        }
    }

    /// Logs each op's phase change once, records it, and counts outcomes.
    fn report(&mut self, now: u64) {
        let mut changes = Vec::new();
        for op in self.executor.ops() {
            let phase = op.phase.name();
            if self.reported.get(&op.miner) == Some(&phase) {
                continue;
            }
            self.reported.insert(op.miner.clone(), phase);
            changes.push(op.clone());
        }
        for op in &changes {
            match &op.phase {
                Phase::Verified { at } => {
                    self.records.counters.verified += 1;
                    let power = self.fleet.get(&op.miner).and_then(|h| h.power());
                    let power = power.map_or("unknown".to_string(), |w| format!("{:.0} W", w.0));
                    let detail = format!("{}; power now {power}", op.want);
                    self.records
                        .audit(outcome_entry(now, op, AuditKind::Verified, detail));
                    // Only a real switch (not a change found already in effect) restarts dwell.
                    let switched =
                        self.executor.last_switch(&op.miner).map(|(a, _)| a) == Some(*at);
                    if let Some(store) = self.records.store()
                        && switched
                        && let Err(e) = store.save_switch(&op.miner, *at, op.want != Setting::Sleep)
                    {
                        warn!(error = %e, "cannot store a switch");
                    }
                }
                Phase::Failed { reason, .. } => {
                    self.records.counters.failed += 1;
                    let detail = format!("{}: {reason}", op.want);
                    self.records
                        .audit(outcome_entry(now, op, AuditKind::Failed, detail));
                }
                Phase::Unresponsive { attempts, .. } => {
                    self.records.counters.unresponsive += 1;
                    let detail = format!("no final ack after {attempts} attempts");
                    self.records
                        .audit(outcome_entry(now, op, AuditKind::Unresponsive, detail));
                }
                _ => {}
            }
        }
        // Stored before it is logged: whoever reads the log finds it in the store.
        self.records.flush();
        for op in &changes {
            match &op.phase {
                Phase::Verified { .. } => {
                    info!(miner = %op.miner, want = ?op.want, "verified by telemetry");
                }
                Phase::Failed { reason, .. } => {
                    warn!(miner = %op.miner, want = ?op.want, %reason, "change failed");
                }
                Phase::Unresponsive { attempts, .. } => {
                    warn!(miner = %op.miner, attempts, "miner unresponsive");
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
