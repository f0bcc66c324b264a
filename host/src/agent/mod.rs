//! `hashwarden run`: the agent. It listens to the fleet, the market and the grid over MQTT,
//! plans every `plan_interval_s`, hands the plan's changes to the executor, and publishes the
//! signed commands the executor issues. Every input is checked where it enters (a payload that
//! does not parse, an implausible market reading) and refused with a logged reason; the state
//! it plans from is the last good one.

mod link;

use std::collections::BTreeMap;
use std::time::Duration;

use fleet_proto::{Ack, CommandSigner, GridSignal, Kind, MaestroTarget, MinerTopic, Name, topic};
use serde::Serialize;
use tracing::{info, warn};

use crate::executor::{Executor, ExecutorConfig, Phase};
use crate::fleet::FleetView;
use crate::grid::Grid;
use crate::market::{MarketGuard, MarketView, Plausibility, Reading};
use crate::planner::{Economics, Inputs, Setting, plan};
use crate::site::SiteConfig;
use crate::store::{AuditEntry, FleetRow, Store};

/// How often the fleet table for `hashwarden status` is rewritten, s.
const FLEET_TABLE_EVERY_S: u64 = 5;

/// How long a stopping agent waits for the broker to take its goodbye.
const GOODBYE_GRACE: Duration = Duration::from_secs(2);

/// What a run did, printed as one JSON line at the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub plans: u64,
    pub commands_sent: u64,
    pub verified: u64,
    pub failed: u64,
    pub unresponsive: u64,
    pub refused_messages: u64,
    pub miners: usize,
}

struct Agent {
    config: SiteConfig,
    site: Name,
    fleet: FleetView,
    executor: Executor,
    market: MarketGuard,
    grid: Grid,
    signer: CommandSigner,
    /// Durable history and the audit log; `None` only in unit tests.
    store: Option<Store>,
    /// The hashprice of the last plan, for the fleet table's margins.
    last_hashprice: Option<f64>,
    /// Market readings still to replay, oldest first.
    replay: std::collections::VecDeque<fleet_proto::Market>,
    metrics: crate::metrics::FleetMetrics,
    /// Audit entries written at the end of each round, in one transaction.
    audit_queue: Vec<AuditEntry>,
    /// When the fleet table was last written (unix s).
    fleet_saved_at: u64,
    /// When each command in flight was published (host monotonic clock), for its latency.
    sent_at: std::collections::HashMap<String, std::time::Instant>,
    /// Each miner's last reported phase, to log every change once.
    reported: BTreeMap<String, &'static str>,
    summary: Summary,
}

/// Serves the latest rendering on `GET /metrics` until aborted.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    rendered: tokio::sync::watch::Receiver<String>,
) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = rendered.borrow().clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    body,
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        warn!(error = %e, "metrics server stopped");
    }
}

/// Polls `source` every `every`, off the loop (the client blocks).
fn spawn_poller(
    source: crate::sources::Poll,
    every: Duration,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::Receiver<Result<fleet_proto::Market, crate::sources::SourceError>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let task = tokio::spawn(async move {
        loop {
            let source = source.clone();
            let polled =
                tokio::task::spawn_blocking(move || crate::sources::poll(&source, unix_now()))
                    .await;
            let Ok(polled) = polled else { return };
            if tx.send(polled).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
    (task, rx)
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs the agent until `stop` resolves (or for `duration`).
pub async fn run(
    config: SiteConfig,
    duration: Option<Duration>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Summary, String> {
    let section = config
        .agent
        .clone()
        .ok_or("the site has no [agent] section: mqtt_url, key_file, key_id")?;
    let site = Name::new(&config.site.name).map_err(|e| format!("site.name: {e}"))?;
    let signer = crate::keys::load(&section.key_file, &section.key_id)
        .map_err(|e| format!("agent.key_file: {e}"))?;
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
    let poller = config.market.poll.clone().map(|source| {
        let every = Duration::from_secs_f64(config.market.poll_interval_s.unwrap_or(300.0));
        spawn_poller(source, every)
    });
    let mut agent = Agent::new(config, site.clone(), signer, section.maestro, unix_now())?;
    agent.attach(store)?;
    agent.replay = replay.into();
    let (poller_task, mut polled) = match poller {
        Some((task, rx)) => (Some(task), Some(rx)),
        None => (None, None),
    };
    let (metrics_tx, metrics_rx) = tokio::sync::watch::channel(String::new());
    let metrics_server = match section.metrics_listen {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|e| format!("agent.metrics_listen {address}: {e}"))?;
            info!(%address, "metrics on /metrics");
            Some(tokio::spawn(serve_metrics(listener, metrics_rx)))
        }
        None => None,
    };
    let mut link = link::spawn(&section, &site)?;
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
            Some(message) = link.incoming.recv() => agent.take(&message.topic, &message.payload),
            Some(polled) = async {
                match &mut polled {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match polled {
                Ok(market) => agent.take_market(&market, "the poller", unix_now()),
                Err(e) => warn!(error = %e, "market poll failed; the last good reading stands"),
            },
            _ = ticks.tick() => {
                for (miner, payload) in agent.round(unix_now()) {
                    link.command(&MinerTopic::new(&agent.site, &miner, Kind::Cmd).to_string(), payload).await;
                }
                metrics_tx.send_replace(agent.metrics.render());
            }
            () = &mut stop => break,
            () = &mut deadline => break,
        }
    }
    agent.flush_audit();
    for task in [poller_task, metrics_server].into_iter().flatten() {
        task.abort();
    }
    link.finish(GOODBYE_GRACE).await;
    agent.summary.miners = agent.fleet.len();
    Ok(agent.summary)
}

impl Agent {
    fn new(
        config: SiteConfig,
        site: Name,
        signer: CommandSigner,
        maestro: bool,
        now: u64,
    ) -> Result<Self, String> {
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
        Ok(Self {
            grid: Grid::new(config.cap(), maestro, now),
            executor: Executor::new(site.clone(), ExecutorConfig::default(), seq_floor),
            config,
            site,
            fleet: FleetView::default(),
            market,
            signer,
            store: None,
            last_hashprice: None,
            replay: std::collections::VecDeque::new(),
            metrics: crate::metrics::FleetMetrics::default(),
            audit_queue: Vec::new(),
            fleet_saved_at: 0,
            sent_at: std::collections::HashMap::new(),
            reported: BTreeMap::new(),
            summary: Summary::default(),
        })
    }

    /// Takes up where the last run left off: switch history (dwell survives a restart) and
    /// sequence numbers above every one the key has used.
    fn attach(&mut self, store: Store) -> Result<(), String> {
        if let Some(last) = store.last_seq().map_err(|e| e.to_string())? {
            let floor = self.executor.next_seq().max(last + 1);
            self.executor = Executor::new(self.site.clone(), ExecutorConfig::default(), floor);
        }
        for (miner, at, on) in store.switches().map_err(|e| e.to_string())? {
            self.executor.restore_switch(&miner, at, on);
        }
        self.store = Some(store);
        Ok(())
    }

    /// Writes `entry` to the audit log (a store error is logged: the fleet must not stop for
    /// a full disk).
    fn audit(&mut self, at: u64, miner: &str, kind: &str, detail: String) {
        if self.store.is_some() {
            self.audit_queue.push(AuditEntry {
                at,
                miner: miner.to_string(),
                kind: kind.to_string(),
                detail,
            });
        }
    }

    /// Writes the queued audit entries in one transaction (a store error is logged: the fleet
    /// must not stop for a full disk).
    fn flush_audit(&mut self) {
        if self.audit_queue.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.audit_queue);
        if let Some(store) = &mut self.store
            && let Err(e) = store.audit_all(&entries)
        {
            warn!(error = %e, entries = entries.len(), "audit log write failed");
        }
    }

    /// One incoming message.
    fn take(&mut self, topic_name: &str, payload: &[u8]) {
        self.take_at(topic_name, payload, unix_now());
    }

    fn take_at(&mut self, topic_name: &str, payload: &[u8], now: u64) {
        let refused = |summary: &mut Summary, what: &str, reason: String| {
            summary.refused_messages += 1;
            warn!(topic = topic_name, what, %reason, "message refused");
        };
        if let Ok(miner_topic) = MinerTopic::parse(topic_name) {
            if miner_topic.site != self.site {
                return;
            }
            let miner = miner_topic.miner.as_str();
            if miner_topic.kind == Kind::Ack {
                match serde_json::from_slice::<Ack>(payload) {
                    Ok(ack) => {
                        self.audit(
                            now,
                            miner,
                            "ack",
                            format!(
                                "{} {:?}{}",
                                ack.id.as_deref().unwrap_or("-"),
                                ack.status,
                                ack.reason
                                    .as_deref()
                                    .map_or(String::new(), |r| format!(": {r}"))
                            ),
                        );
                        if ack.status != fleet_proto::AckStatus::Accepted
                            && let Some(sent) =
                                ack.id.as_ref().and_then(|id| self.sent_at.remove(id))
                        {
                            self.metrics.latency(sent.elapsed().as_secs_f64());
                        }
                        self.executor.on_ack(miner, &ack, now);
                    }
                    Err(e) => refused(&mut self.summary, "ack", e.to_string()),
                }
            } else if let Err(e) = self.fleet.ingest(miner, miner_topic.kind, payload, now) {
                refused(&mut self.summary, "miner message", e.to_string());
            }
        } else if topic_name == topic::market(&self.site) {
            match serde_json::from_slice::<fleet_proto::Market>(payload) {
                Ok(market) => self.take_market(&market, "the market topic", now),
                Err(e) => refused(&mut self.summary, "market", e.to_string()),
            }
        } else if topic_name == topic::grid(&self.site) {
            match serde_json::from_slice::<GridSignal>(payload) {
                Ok(signal) => {
                    info!(cap_kw = ?signal.cap_kw, until = ?signal.until, "grid signal");
                    self.grid.signal(signal);
                }
                Err(e) => refused(&mut self.summary, "grid", e.to_string()),
            }
        } else if topic_name == topic::MAESTRO_TARGET {
            match serde_json::from_slice::<MaestroTarget>(payload) {
                Ok(target) => self.grid.maestro(target, now),
                Err(e) => refused(&mut self.summary, "maestro", e.to_string()),
            }
        }
    }

    /// A market reading from any source, through the plausibility guard.
    fn take_market(&mut self, market: &fleet_proto::Market, source: &str, now: u64) {
        let taken = Reading::from_message(market)
            .and_then(|reading| self.market.offer(reading, now).map(|()| reading));
        match taken {
            Ok(reading) => info!(hashprice = %reading.hashprice, source, "market reading taken"),
            Err(reason) => {
                self.summary.refused_messages += 1;
                warn!(source, %reason, "market reading refused");
            }
        }
    }

    /// The replay's readings whose time has come, newest last.
    fn replay(&mut self, now: u64) {
        let due = self.replay.iter().take_while(|m| m.at <= now).count();
        let readings: Vec<fleet_proto::Market> = self.replay.drain(..due).collect();
        if let Some(latest) = readings.last() {
            self.take_market(latest, "the replay file", now);
        }
    }

    /// One planning round at `now`: the plan's changes to the executor, and the signed commands
    /// to publish, by miner.
    fn round(&mut self, now: u64) -> Vec<(Name, Vec<u8>)> {
        self.replay(now);
        let mut machines = self.fleet.machines(now);
        let overrides = match &self.store {
            Some(store) => store.overrides(now).unwrap_or_else(|e| {
                warn!(error = %e, "cannot read the overrides");
                Vec::new()
            }),
            None => Vec::new(),
        };
        for machine in &mut machines {
            machine.manual = overrides
                .iter()
                .find(|(miner, _)| *miner == machine.id)
                .map(|(_, manual)| *manual);
            if let Some((at, on)) = self.executor.last_switch(&machine.id) {
                machine.last_switch_at = Some(at);
                if on {
                    machine.last_wake_at = Some(at);
                }
            }
            // A change on its way counts as made: the plan must not flip it back meanwhile.
            if let Some(op) = self.executor.op(&machine.id)
                && matches!(
                    op.phase,
                    Phase::Queued | Phase::Sent { .. } | Phase::Applied { .. }
                )
            {
                if (op.want == Setting::Sleep) != (machine.setting == Setting::Sleep) {
                    machine.last_switch_at = Some(op.due);
                }
                machine.setting = op.want;
            }
        }
        let economics = match self.market.view(now) {
            MarketView::Current { hashprice, .. } => Some(Economics {
                hashprice,
                power_price: self.config.tariff.price_at(now),
                pool_fee: self.config.site.pool_fee,
            }),
            MarketView::Expired { .. } => None,
        };
        let cap = self.grid.cap(now).map(|(watts, _)| watts);
        let plan = plan(&Inputs {
            now,
            economics,
            cap,
            policy: &self.config.policy,
            machines: &machines,
        });
        self.summary.plans += 1;
        for (machine, decision) in machines.iter().zip(&plan.decisions) {
            if !decision.changes() {
                continue;
            }
            let baseline = self.fleet.get(&machine.id).and_then(|h| h.power());
            if self
                .executor
                .op(&machine.id)
                .is_none_or(|op| op.want != decision.to)
            {
                self.audit(
                    now,
                    &machine.id,
                    "planned",
                    format!(
                        "{:?} -> {:?} at {}: {}",
                        decision.from, decision.to, decision.at, decision.reason
                    ),
                );
                info!(miner = %machine.id, from = ?decision.from, to = ?decision.to, at = decision.at, reason = %decision.reason, "planned");
            }
            self.executor.want(
                &machine.id,
                decision.from,
                decision.to,
                decision.at,
                baseline,
                machine.full.watts,
            );
        }
        self.last_hashprice = economics.map(|e| e.hashprice.0);
        // The fleet table is for people: every few seconds is fresh enough, and rewriting ten
        // thousand rows each half second would slow the round that carries a curtailment.
        if now >= self.fleet_saved_at + FLEET_TABLE_EVERY_S {
            self.save_fleet(&machines, &plan, now);
            self.fleet_saved_at = now;
        }
        self.metrics
            .plan(&plan, &machines, economics.map(|e| e.power_price.0));
        let commands = self.executor.tick(now, &self.fleet);
        if let (Some(store), Some(last)) = (&self.store, commands.iter().map(|c| c.seq).max())
            && let Err(e) = store.save_seq(last)
        {
            warn!(error = %e, "cannot store the sequence number");
        }
        self.report(now);
        let mut out = Vec::new();
        self.sync_counters();
        for command in commands {
            match self.signer.sign(&command) {
                Ok(signed) => match serde_json::to_vec(&signed) {
                    Ok(bytes) => {
                        self.summary.commands_sent += 1;
                        // Bounded: a fleet that never answers must not grow this without end.
                        if self.sent_at.len() < 100_000 {
                            self.sent_at
                                .insert(command.id.clone(), std::time::Instant::now());
                        }
                        info!(miner = %command.miner, id = %command.id, action = ?command.action, "command sent");
                        self.audit(
                            now,
                            command.miner.as_str(),
                            "sent",
                            format!("{} {:?} seq {}", command.id, command.action, command.seq),
                        );
                        out.push((command.miner.clone(), bytes));
                    }
                    Err(e) => warn!(error = %e, "cannot encode a command"),
                },
                Err(e) => warn!(error = %e, "cannot sign a command"),
            }
        }
        self.sync_counters();
        self.flush_audit();
        out
    }

    fn sync_counters(&mut self) {
        let s = &self.summary;
        self.metrics.commands_sent = s.commands_sent;
        self.metrics.verified = s.verified;
        self.metrics.failed = s.failed;
        self.metrics.unresponsive = s.unresponsive;
        self.metrics.refused_messages = s.refused_messages;
    }

    /// The fleet table for `hashwarden status`, as this plan saw it.
    fn save_fleet(
        &mut self,
        machines: &[crate::planner::Machine],
        plan: &crate::planner::Plan,
        now: u64,
    ) {
        let Some(store) = &mut self.store else {
            return;
        };
        let rows: Vec<FleetRow> = machines
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
                }
            })
            .collect();
        if let Err(e) = store.save_fleet(&rows, now) {
            warn!(error = %e, "cannot store the fleet table");
        }
    }

    /// Logs each op's phase change once, records it, and counts outcomes.
    fn report(&mut self, now: u64) {
        let mut changes = Vec::new();
        for op in self.executor.ops() {
            let phase = match &op.phase {
                Phase::Queued => "queued",
                Phase::Sent { .. } => "sent",
                Phase::Applied { .. } => "applied",
                Phase::Verified { .. } => "verified",
                Phase::Failed { .. } => "failed",
                Phase::Unresponsive { .. } => "unresponsive",
            };
            if self.reported.get(&op.miner) == Some(&phase) {
                continue;
            }
            self.reported.insert(op.miner.clone(), phase);
            changes.push(op.clone());
        }
        for op in &changes {
            match &op.phase {
                Phase::Verified { at } => {
                    self.summary.verified += 1;
                    let power = self.fleet.get(&op.miner).and_then(|h| h.power());
                    self.audit(
                        now,
                        &op.miner,
                        "verified",
                        format!("{:?}; power now {power:?}", op.want),
                    );
                    // Only a real switch (not a change found already in effect) restarts dwell.
                    let switched =
                        self.executor.last_switch(&op.miner).map(|(a, _)| a) == Some(*at);
                    if let Some(store) = &self.store
                        && switched
                        && let Err(e) = store.save_switch(&op.miner, *at, op.want != Setting::Sleep)
                    {
                        warn!(error = %e, "cannot store a switch");
                    }
                }
                Phase::Failed { reason } => {
                    self.summary.failed += 1;
                    self.audit(now, &op.miner, "failed", format!("{:?}: {reason}", op.want));
                }
                Phase::Unresponsive { attempts } => {
                    self.summary.unresponsive += 1;
                    self.audit(
                        now,
                        &op.miner,
                        "unresponsive",
                        format!("no final ack after {attempts} attempts"),
                    );
                }
                _ => {}
            }
        }
        // Stored before it is logged: whoever reads the log finds it in the store.
        self.flush_audit();
        for op in &changes {
            match &op.phase {
                Phase::Verified { .. } => {
                    info!(miner = %op.miner, want = ?op.want, "verified by telemetry");
                }
                Phase::Failed { reason } => {
                    warn!(miner = %op.miner, want = ?op.want, %reason, "change failed");
                }
                Phase::Unresponsive { attempts } => {
                    warn!(miner = %op.miner, attempts, "miner unresponsive");
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_proto::examples;

    const NOW: u64 = 1_771_900_000;

    fn agent(extra: &str) -> Agent {
        let text = format!(
            "[site]\nname = \"tx-west\"\n[tariff]\nkind = \"fixed\"\nprice = 0.06\n\
             [policy]\nmin_on_s = 0\nmin_off_s = 0\nrestore_cooldown_s = 0\n{extra}"
        );
        let config = SiteConfig::parse(std::path::Path::new("site.toml"), &text).expect("valid");
        let site = Name::new("tx-west").expect("valid");
        Agent::new(
            config,
            site,
            CommandSigner::from_seed("h", &[3; 32]),
            false,
            NOW,
        )
        .expect("starts")
    }

    fn example(suffix: &str) -> Vec<u8> {
        examples::payload(suffix).expect("a documented example")
    }

    /// The documented S19 XP (21.6 J/TH) as miner `m1`, online and mining.
    fn hear_miner(agent: &mut Agent) {
        let t = |kind| format!("hashwarden/v1/tx-west/m1/{kind}");
        agent.take_at(&t("status"), b"online", NOW);
        agent.take_at(&t("state"), &example("/state"), NOW);
        agent.take_at(&t("telemetry"), &example("/telemetry"), NOW);
    }

    fn market(hashprice: f64, at: u64) -> Vec<u8> {
        format!("{{\"v\":1,\"at\":{at},\"hashprice_usd_per_ph_day\":{hashprice}}}").into_bytes()
    }

    fn actions(sent: &[(Name, Vec<u8>)]) -> Vec<String> {
        sent.iter()
            .map(|(miner, bytes)| {
                let signed: fleet_proto::SignedCommand =
                    serde_json::from_slice(bytes).expect("a signed command");
                let command: serde_json::Value =
                    serde_json::from_str(&signed.payload).expect("json");
                format!("{miner}:{}", command["action"].as_str().unwrap_or(""))
            })
            .collect()
    }

    #[test]
    fn a_market_drop_sleeps_the_machine_with_a_signed_command() {
        let mut agent = agent("");
        hear_miner(&mut agent);
        // No market yet: the safe policy keeps it as it is.
        assert!(agent.round(NOW + 1).is_empty());
        agent.take_at("hashwarden/v1/tx-west/market", &market(40.0, NOW), NOW);
        assert!(agent.round(NOW + 2).is_empty(), "profitable at $40");
        agent.take_at(
            "hashwarden/v1/tx-west/market",
            &market(25.0, NOW + 3),
            NOW + 3,
        );
        let sent = agent.round(NOW + 3);
        assert_eq!(actions(&sent), ["m1:sleep"]);
        // Verifiable by the miners: signed by the agent's key.
        let signed: fleet_proto::SignedCommand =
            serde_json::from_slice(&sent[0].1).expect("signed");
        assert_eq!(signed.key_id, "h");
        // In flight: nothing more is sent, and the plan does not flip it back.
        assert!(agent.round(NOW + 4).is_empty());
    }

    #[test]
    fn bad_inputs_are_counted_and_change_nothing() {
        let mut agent = agent("");
        hear_miner(&mut agent);
        agent.take_at("hashwarden/v1/tx-west/market", &market(40.0, NOW), NOW);
        for (topic, payload) in [
            ("hashwarden/v1/tx-west/market", market(0.0, NOW + 1)),
            ("hashwarden/v1/tx-west/market", market(400.0, NOW + 1)),
            ("hashwarden/v1/tx-west/market", market(25.0, NOW + 9_999)),
            ("hashwarden/v1/tx-west/market", b"{".to_vec()),
            ("hashwarden/v1/tx-west/grid", b"[]".to_vec()),
            ("maestro/target", b"{\"target\":\"x\"}".to_vec()),
            ("hashwarden/v1/tx-west/m1/telemetry", b"\xff".to_vec()),
            ("hashwarden/v1/tx-west/m1/ack", b"null".to_vec()),
        ] {
            agent.take_at(topic, &payload, NOW + 1);
        }
        assert_eq!(agent.summary.refused_messages, 8);
        assert!(agent.round(NOW + 2).is_empty(), "still $40, still mining");
        // Another site's messages are not this agent's.
        agent.take_at("hashwarden/v1/other/m9/status", b"online", NOW + 2);
        assert_eq!(agent.fleet.len(), 1);
    }

    #[test]
    fn a_replayed_reading_is_taken_when_its_time_comes() {
        let mut agent = agent("");
        hear_miner(&mut agent);
        let reading = |at: u64, hashprice: f64| fleet_proto::Market {
            v: 1,
            at,
            hashprice_usd_per_ph_day: Some(hashprice),
            difficulty: None,
            height: None,
            fees_per_block_btc: None,
            btc_usd: None,
        };
        agent.replay = vec![reading(NOW - 10, 40.0), reading(NOW + 100, 25.0)].into();
        assert!(agent.round(NOW).is_empty(), "$40 now");
        assert!(agent.round(NOW + 99).is_empty());
        // Still reporting (a miner silent for a minute counts as offline).
        agent.take_at(
            "hashwarden/v1/tx-west/m1/telemetry",
            &example("/telemetry"),
            NOW + 99,
        );
        assert_eq!(actions(&agent.round(NOW + 100)), ["m1:sleep"]);
        assert!(agent.replay.is_empty());
    }

    #[test]
    fn wakes_go_out_in_staggered_batches_most_efficient_first() {
        let mut agent = agent("batch_size = 1\nbatch_interval_s = 30\n");
        // Two sleeping machines: the documented S19 XP (21.6 J/TH) and a 30 J/TH one.
        let mut state: fleet_proto::State =
            serde_json::from_slice(&example("/state")).expect("parses");
        state.mode = fleet_proto::Mode::Sleeping;
        let mut telemetry: fleet_proto::Telemetry =
            serde_json::from_slice(&example("/telemetry")).expect("parses");
        telemetry.mode = fleet_proto::Mode::Sleeping;
        telemetry.power_w = 20.0;
        for (miner, watts) in [("m1", 3_031.0), ("m2", 4_230.0)] {
            let mut state = state.clone();
            state.nameplate.power_w = watts;
            let t = |kind| format!("hashwarden/v1/tx-west/{miner}/{kind}");
            agent.take_at(&t("status"), b"online", NOW);
            agent.take_at(
                &t("state"),
                &serde_json::to_vec(&state).expect("encodes"),
                NOW,
            );
            agent.take_at(
                &t("telemetry"),
                &serde_json::to_vec(&telemetry).expect("encodes"),
                NOW,
            );
        }
        agent.take_at("hashwarden/v1/tx-west/market", &market(60.0, NOW), NOW);
        let first = agent.round(NOW);
        assert_eq!(actions(&first), ["m1:wake"], "the efficient one first");
        let signed: fleet_proto::SignedCommand =
            serde_json::from_slice(&first[0].1).expect("signed");
        let id =
            serde_json::from_str::<serde_json::Value>(&signed.payload).expect("json")["id"].clone();
        let ack = format!(
            "{{\"v\":1,\"id\":{id},\"miner\":\"m1\",\"status\":\"applied\",\"reason\":null,\"at\":{NOW}}}"
        );
        agent.take_at("hashwarden/v1/tx-west/m1/ack", ack.as_bytes(), NOW + 1);
        assert!(
            agent.round(NOW + 29).is_empty(),
            "the next batch waits its interval"
        );
        for miner in ["m1", "m2"] {
            let t = format!("hashwarden/v1/tx-west/{miner}/telemetry");
            agent.take_at(
                &t,
                &serde_json::to_vec(&telemetry).expect("encodes"),
                NOW + 29,
            );
        }
        assert_eq!(actions(&agent.round(NOW + 30)), ["m2:wake"]);
    }

    #[test]
    fn a_grid_cap_sleeps_a_profitable_machine() {
        let mut agent = agent("");
        hear_miner(&mut agent);
        agent.take_at("hashwarden/v1/tx-west/market", &market(40.0, NOW), NOW);
        let cap = format!(
            "{{\"v\":1,\"at\":{NOW},\"cap_kw\":1.0,\"until\":{}}}",
            NOW + 600
        );
        agent.take_at("hashwarden/v1/tx-west/grid", cap.as_bytes(), NOW + 1);
        assert_eq!(actions(&agent.round(NOW + 1)), ["m1:sleep"]);
    }
}
