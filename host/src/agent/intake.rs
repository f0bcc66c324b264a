//! What comes in: every message off the broker, and the replay files' readings as their time
//! comes — each checked where it enters and refused with a logged reason, the agent's state
//! changed only by what passes.

use fleet_proto::feed::FeedKind;
use fleet_proto::{Ack, GridSignal, Kind, MaestroTarget, MinerTopic, topic};
use tracing::{info, warn};

use super::{Agent, unix_now};
use crate::enrol::Opened;
use crate::market::Reading;
use crate::metrics::Counters;
use crate::store::{AuditEntry, AuditKind};

/// How far from the median a polled reading may lie and still agree, unless the site says.
const DEFAULT_QUORUM_SPREAD: f64 = 0.1;

/// Which refused reports get a log line: an unknown miner's first, and forgeries at most one line
/// per kind every ten seconds (with the count of those not logged) — a flood of forged reports
/// is counted in `hashwarden_messages_refused_total`, not written out line by line.
#[derive(Debug, Default)]
pub(super) struct RefusalLog {
    /// Bad envelopes or signatures; another key than the one enrolled; a key already taken.
    forgeries: [net_guard::Throttle; 3],
}

impl RefusalLog {
    /// `Some(count not logged since the last line of its kind)` when `refusal` gets a line.
    fn admit(&mut self, refusal: &crate::enrol::Refused) -> Option<u64> {
        use crate::enrol::Refused;
        let slot = match refusal {
            Refused::Envelope { .. } => 0,
            Refused::OtherKey { .. } => 1,
            Refused::KeyTaken { .. } => 2,
            Refused::Unenrolled { first, .. } | Refused::Full { first, .. } => {
                return first.then_some(0);
            }
        };
        self.forgeries[slot].admit(tokio::time::Instant::now())
    }
}

impl Agent {
    /// Another agent of the group came or went: the fleet's split changes with it, and each
    /// agent now hears a miner's telemetry only every `size`-th report.
    fn peer_presence(&mut self, instance: &str, payload: &[u8]) {
        let Some(group) = &mut self.group else {
            return;
        };
        if group.presence(
            instance,
            payload == fleet_proto::messages::ONLINE.as_bytes(),
        ) {
            let size = group.size();
            info!(
                peer = instance,
                agents = size,
                "agent group changed; the fleet is split anew"
            );
            self.fleet
                .set_silent_after(crate::fleet::SILENT_AFTER_S * size as u64);
        }
    }

    /// The messages already waiting, at most `limit` (a flood must not hold the round off for
    /// ever). A round reads them first: it judges ack timeouts and verification by what the
    /// miners have said, so an agent behind on its queue does not retry a command whose ack it
    /// holds unread — under load, those retries are what would bury it.
    pub(super) fn take_queued(
        &mut self,
        incoming: &mut tokio::sync::mpsc::Receiver<super::link::Incoming>,
        limit: usize,
    ) {
        for _ in 0..limit {
            let Ok(message) = incoming.try_recv() else {
                return;
            };
            self.take_message(message, unix_now());
        }
    }

    /// One message off the link: a miner's report with the verdict the verifier thread gave its
    /// signature, anything else as it came.
    pub(super) fn take_message(&mut self, message: super::link::Incoming, now: u64) {
        let super::link::Incoming {
            topic,
            payload,
            checked,
        } = message;
        match (checked, MinerTopic::parse(&topic)) {
            (Some(checked), Ok(t)) if t.site == self.site => {
                let opened = self.enrolment.open_checked(t.miner.as_str(), checked, now);
                self.take_opened(t.miner.as_str(), t.kind, &topic, opened, now);
            }
            _ => self.take_at(&topic, &payload, now),
        }
    }

    /// A message on `topic_name` not taken, counted and logged with `what` it was and why.
    fn refuse(&mut self, topic_name: &str, what: &str, reason: String) {
        self.records.counters.refused_messages += 1;
        warn!(topic = topic_name, what, %reason, "message refused");
    }

    /// One incoming message, at `now`.
    pub(super) fn take_at(&mut self, topic_name: &str, payload: &[u8], now: u64) {
        if let Some(instance) = topic_name.strip_prefix(self.peer_prefix.as_str()) {
            self.peer_presence(instance, payload);
            return;
        }
        if let Ok(miner_topic) = MinerTopic::parse(topic_name) {
            if miner_topic.site != self.site {
                return;
            }
            self.take_report(
                miner_topic.miner.as_str(),
                miner_topic.kind,
                topic_name,
                payload,
                now,
            );
        } else if let Some(kind) = self.feed_kind(topic_name) {
            match self.feeds.open(kind, payload, now) {
                Ok(Some(reading)) => self.take_feed(kind, reading, now),
                // The reading already taken, heard again (a retained message on reconnect).
                Ok(None) => {}
                Err(refusal) => self.refuse(topic_name, kind.as_str(), refusal.to_string()),
            }
        } else if topic_name == topic::MAESTRO_TARGET {
            match serde_json::from_slice::<MaestroTarget>(payload) {
                Ok(target) => self.grid.maestro(target, now),
                Err(e) => self.refuse(topic_name, "maestro", e.to_string()),
            }
        }
    }

    /// A miner's message: its status as the broker keeps it, anything else only when signed by
    /// the miner's enrolled device key.
    fn take_report(&mut self, miner: &str, kind: Kind, topic_name: &str, payload: &[u8], now: u64) {
        match kind {
            // The agent's own commands, heard back: nothing to take.
            Kind::Cmd => {}
            // Unsigned: the broker publishes the last will. An unknown miner's is held.
            Kind::Status => {
                let online = payload == fleet_proto::messages::ONLINE.as_bytes();
                if self.enrolment.status(miner, online)
                    && let Err(e) = self.fleet.ingest(miner, kind, payload, now)
                {
                    self.refuse(topic_name, "status", e.to_string());
                }
            }
            Kind::State | Kind::Telemetry | Kind::Ack => {
                self.take_enrolled(miner, kind, topic_name, payload, now)
            }
        }
    }

    /// A state, telemetry or ack: taken only when its miner's enrolled key signed it.
    fn take_enrolled(
        &mut self,
        miner: &str,
        kind: Kind,
        topic_name: &str,
        payload: &[u8],
        now: u64,
    ) {
        let opened = self.enrolment.open(miner, topic_name, payload, now);
        self.take_opened(miner, kind, topic_name, opened, now);
    }

    /// A report as the enrolment book opened it: its miner's word, or a refusal to count.
    fn take_opened(
        &mut self,
        miner: &str,
        kind: Kind,
        topic_name: &str,
        opened: Result<Opened, crate::enrol::Refused>,
        now: u64,
    ) {
        let payload = match opened {
            Ok(Opened::Report(payload)) => payload,
            Ok(Opened::Enrolled { payload, status }) => {
                self.enrolled(now);
                // Its `status` as held while it was unknown; with none held (a site coming up
                // all at once outgrows what is held of strangers) its signed word now is proof
                // enough that it is up, until its status or its silence says otherwise.
                let status = if status.unwrap_or(true) {
                    "online"
                } else {
                    "offline"
                };
                let _ = self
                    .fleet
                    .ingest(miner, Kind::Status, status.as_bytes(), now);
                payload
            }
            Err(refusal) => {
                self.records.counters.refused_messages += 1;
                if let Some(unlogged) = self.refusals.admit(&refusal) {
                    warn!(topic = topic_name, %refusal, unlogged, "report refused");
                }
                return;
            }
        };
        self.take_signed(miner, kind, payload.as_bytes(), now);
    }

    /// A miner enrolled at first sight: logged, audited, queued for the store (the next start
    /// knows it).
    fn enrolled(&mut self, now: u64) {
        for new in self.enrolment.take_new() {
            info!(miner = %new.miner, key = %new.public_key, "device key enrolled at first sight");
            self.records.audit(AuditEntry::new(
                now,
                &new.miner,
                AuditKind::Enrolled,
                format!("device key {} enrolled at first sight", new.public_key),
            ));
            self.records.enrolled(new);
        }
    }

    /// A report its miner signed.
    fn take_signed(&mut self, miner: &str, kind: Kind, payload: &[u8], now: u64) {
        let refused = |counters: &mut Counters, what: &str, reason: String| {
            counters.refused_messages += 1;
            warn!(miner, what, %reason, "message refused");
        };
        if kind != Kind::Ack {
            if let Err(e) = self.fleet.ingest(miner, kind, payload, now) {
                refused(&mut self.records.counters, "miner message", e.to_string());
            }
            return;
        }
        match serde_json::from_slice::<Ack>(payload) {
            Ok(mut ack) => {
                // Whatever the miner says goes into logs, the audit log and
                // `hashwarden explain`: printable, bounded.
                ack.reason = ack.reason.as_deref().map(crate::plausible::printable);
                ack.id = ack.id.as_deref().map(crate::plausible::printable);
                self.records.audit(AuditEntry::new(
                    now,
                    miner,
                    AuditKind::Ack,
                    format!(
                        "{} {:?}{}",
                        ack.id.as_deref().unwrap_or("-"),
                        ack.status,
                        ack.reason
                            .as_deref()
                            .map_or(String::new(), |r| format!(": {r}"))
                    ),
                ));
                if ack.status != fleet_proto::AckStatus::Accepted
                    && let Some(sent) = ack.id.as_ref().and_then(|id| self.sent_at.remove(id))
                {
                    self.metrics.latency(sent.elapsed().as_secs_f64());
                }
                self.executor.on_ack(miner, &ack, now);
                self.rollout_ack(miner, &ack, now);
            }
            Err(e) => refused(&mut self.records.counters, "ack", e.to_string()),
        }
    }

    /// Which of the site's input topics `topic_name` is, if one.
    fn feed_kind(&self, topic_name: &str) -> Option<FeedKind> {
        [FeedKind::Market, FeedKind::Power, FeedKind::Grid]
            .into_iter()
            .find(|kind| topic_name == kind.topic(&self.site))
    }

    /// A reading the feed gate let through, to its guard.
    fn take_feed(&mut self, kind: FeedKind, reading: serde_json::Value, now: u64) {
        let refused = |counters: &mut Counters, reason: String| {
            counters.refused_messages += 1;
            warn!(what = kind.as_str(), %reason, "reading refused");
        };
        match kind {
            FeedKind::Market => match serde_json::from_value::<fleet_proto::Market>(reading) {
                Ok(market) => self.take_market(&market, "the market topic", now),
                Err(e) => refused(&mut self.records.counters, e.to_string()),
            },
            FeedKind::Power => match serde_json::from_value::<fleet_proto::PowerPrice>(reading) {
                Ok(price) => self.take_power(&price, "the power topic", now),
                Err(e) => refused(&mut self.records.counters, e.to_string()),
            },
            // Never routed here: `feed_kind` knows only the site's inputs.
            FeedKind::Heartbeat => {}
            FeedKind::Grid => match serde_json::from_value::<GridSignal>(reading) {
                Ok(signal) => match self.grid.signal(signal, now) {
                    Ok(()) => {
                        info!(cap_kw = ?signal.cap_kw, from = ?signal.from, until = ?signal.until, "grid signal");
                        if let Some((cap, from)) = self.grid.scheduled(now) {
                            info!(%cap, from, "grid cap announced ahead: shedding starts in time for it");
                        }
                    }
                    Err(reason) => refused(&mut self.records.counters, reason),
                },
                Err(e) => refused(&mut self.records.counters, e.to_string()),
            },
        }
    }

    /// A market reading from any source, through the plausibility guard.
    pub(super) fn take_market(&mut self, market: &fleet_proto::Market, source: &str, now: u64) {
        match Reading::from_message(market) {
            Ok(reading) => self.take_reading(reading, source, now),
            Err(reason) => {
                self.records.counters.refused_messages += 1;
                warn!(source, %reason, "market reading refused");
            }
        }
    }

    fn take_reading(&mut self, reading: Reading, source: &str, now: u64) {
        let taken = self.market.offer(reading, now).map(|()| reading);
        match taken {
            Ok(reading) => {
                info!(hashprice = %reading.hashprice, source, "market reading taken");
                if let Some(store) = self.records.store()
                    && let Err(e) = store.save_market(&reading)
                {
                    warn!(error = %e, "market reading not stored");
                }
            }
            Err(reason) => {
                self.records.counters.refused_messages += 1;
                warn!(source, %reason, "market reading refused");
            }
        }
    }

    /// One round of the pollers: a single source's reading through the guard; several sources'
    /// quorum (`market::quorum`) — their median when most agree, and when they do not, no
    /// reading at all (the safe policy applies until they agree again).
    pub(super) fn take_polled(&mut self, polled: super::tasks::Polled, now: u64) {
        let mut readings = Vec::with_capacity(polled.len());
        for result in polled {
            match result
                .map_err(|e| e.to_string())
                .and_then(|market| Reading::from_message(&market).map_err(|e| e.to_string()))
            {
                Ok(reading) => readings.push(reading),
                Err(e) => warn!(error = %e, "market poll failed"),
            }
        }
        if self
            .config
            .market
            .poll
            .as_ref()
            .is_some_and(|s| s.list().len() == 1)
        {
            match readings.first() {
                Some(reading) => self.take_reading(*reading, "the poller", now),
                None => warn!("market poll failed; the last good reading stands"),
            }
            return;
        }
        let spread = self
            .config
            .market
            .quorum_spread
            .unwrap_or(DEFAULT_QUORUM_SPREAD);
        match crate::market::quorum(&readings, now, &self.market.limits(), spread) {
            crate::market::Quorum::Agreed { reading, outliers } => {
                if outliers > 0 {
                    warn!(outliers, hashprice = %reading.hashprice, "market sources: outvoted some");
                }
                self.take_reading(reading, "the pollers' quorum", now);
            }
            crate::market::Quorum::Disagree { lowest, highest } => {
                warn!(%lowest, %highest, "market sources disagree: the safe policy applies until they agree");
                self.market.doubt();
            }
            crate::market::Quorum::Nothing => {
                warn!("no market source answered; the last good reading stands");
            }
        }
    }

    /// A power price from the feed, through its guard.
    fn take_power(&mut self, price: &fleet_proto::PowerPrice, source: &str, now: u64) {
        match self.power.offer(price.at, price.usd_per_kwh, now) {
            Ok(()) => info!(usd_per_kwh = price.usd_per_kwh, source, "power price taken"),
            Err(reason) => {
                self.records.counters.refused_messages += 1;
                warn!(source, %reason, "power price refused");
            }
        }
    }

    /// The replay's readings whose time has come, newest last.
    pub(super) fn replay(&mut self, now: u64) {
        let due = self.replay.iter().take_while(|m| m.at <= now).count();
        let readings: Vec<fleet_proto::Market> = self.replay.drain(..due).collect();
        if let Some(latest) = readings.last() {
            self.take_market(latest, "the replay file", now);
        }
        let due = self.power_replay.iter().take_while(|p| p.at <= now).count();
        let prices: Vec<fleet_proto::PowerPrice> = self.power_replay.drain(..due).collect();
        if let Some(latest) = prices.last() {
            self.take_power(latest, "the power replay file", now);
        }
    }
}
