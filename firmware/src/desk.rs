//! The miner's side of the command contract: verify, remember, decide, acknowledge.
//!
//! A command goes through [`CommandDesk::receive`] (signature, expiry, replay; the sequence
//! number is made durable before anything is applied, so a crash cannot reopen it), the daemon
//! applies the decided change to the board, then reports back through [`CommandDesk::finish`]
//! which makes the new intent durable. Every outcome is an ack with a reason.

use fleet_proto::command::VERSION;
use fleet_proto::{Ack, AckStatus, Action, CommandVerifier, Name, Verdict};
use tracing::{info, warn};

use crate::control::{self, Current, Decision, Intent};
use crate::persist::{DurableState, LastCommand, PersistError, Store, TunedChain};

/// What the daemon should do with a received command.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// Nothing to apply; publish the ack.
    Answered(Ack),
    /// Publish `accepted`, make `decision`'s change, then call [`CommandDesk::finish`].
    Apply {
        accepted: Ack,
        id: String,
        action: Action,
        decision: Decision,
    },
}

/// Also the keeper of the operator's intent for local (HTTP API) changes; without a fleet link
/// it has no verifier, and without a data directory nothing is persisted.
#[derive(Debug)]
pub struct CommandDesk {
    miner: Name,
    verifier: Option<CommandVerifier>,
    store: Option<Store>,
    intent: Intent,
    /// Each chain's last tune, kept with the intent.
    tuned: Vec<TunedChain>,
}

impl CommandDesk {
    /// Restores the intent and sequence numbers from `store`.
    pub fn open(
        miner: Name,
        mut verifier: CommandVerifier,
        store: Store,
    ) -> Result<Self, PersistError> {
        let state = store.load()?;
        for last in &state.commands {
            verifier.restore(&last.key_id, last.seq, &last.id);
        }
        Ok(Self {
            miner,
            verifier: Some(verifier),
            store: Some(store),
            intent: state.intent,
            tuned: state.tuned,
        })
    }

    /// A desk for a daemon with no fleet link: local changes, kept in `store` when there is one.
    pub fn local(store: Option<Store>) -> Result<Self, PersistError> {
        let state = match &store {
            Some(store) => store.load()?,
            None => DurableState::default(),
        };
        Ok(Self {
            // Only ever named in acks, and a desk without a verifier sends none.
            miner: Name::new("local").unwrap_or_else(|_| unreachable!("a valid name")),
            verifier: None,
            store,
            intent: state.intent,
            tuned: state.tuned,
        })
    }

    pub fn intent(&self) -> Intent {
        self.intent
    }

    fn ack(&self, id: Option<String>, status: AckStatus, reason: Option<String>, at: u64) -> Ack {
        Ack {
            v: VERSION,
            id,
            miner: self.miner.clone(),
            status,
            reason,
            at,
        }
    }

    fn save(&self, intent: Intent) -> Result<(), PersistError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let commands = self
            .verifier
            .iter()
            .flat_map(CommandVerifier::accepted)
            .map(|(key_id, seq, id)| LastCommand {
                key_id: key_id.to_string(),
                seq,
                id: id.to_string(),
            })
            .collect();
        store.save(&DurableState {
            v: 0,
            intent,
            commands,
            tuned: self.tuned.clone(),
        })
    }

    /// Checks `bytes` from `…/cmd` at unix time `now` against the machine at `current`.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        now: u64,
        current: Current,
        board: &hashboard::board::BoardDescription,
    ) -> Received {
        let Some(verifier) = &mut self.verifier else {
            return Received::Answered(self.ack(
                None,
                AckStatus::Rejected,
                Some("this miner takes no fleet commands".into()),
                now,
            ));
        };
        let command = match verifier.check(bytes, now) {
            Verdict::Reject { id, reason } => {
                warn!(id = id.as_deref().unwrap_or("?"), %reason, "command rejected");
                return Received::Answered(self.ack(
                    id,
                    AckStatus::Rejected,
                    Some(reason.to_string()),
                    now,
                ));
            }
            Verdict::Duplicate { id } => {
                info!(%id, "command seen before; nothing new done");
                return Received::Answered(self.ack(Some(id), AckStatus::Duplicate, None, now));
            }
            Verdict::Accept(command) => command,
        };
        let id = command.id.clone();
        // The sequence number is spent whatever happens next: a crash must not reopen it.
        if let Err(e) = self.save(self.intent) {
            warn!(%id, error = %e, "cannot persist the command's sequence number");
            return Received::Answered(self.ack(
                Some(id),
                AckStatus::Failed,
                Some(format!("cannot persist state: {e}")),
                now,
            ));
        }
        info!(%id, action = ?command.action, "command accepted");
        let decision = control::decide(self.intent, current, &command.action, board);
        Received::Apply {
            accepted: self.ack(Some(id.clone()), AckStatus::Accepted, None, now),
            id,
            action: command.action,
            decision,
        }
    }

    /// After the board change: makes `intent` durable on success and says how it went.
    pub fn finish(
        &mut self,
        id: String,
        outcome: Result<(Intent, Option<String>), String>,
        now: u64,
    ) -> Ack {
        match outcome {
            Ok((intent, note)) => match self.save(intent) {
                Ok(()) => {
                    self.intent = intent;
                    info!(%id, note = note.as_deref().unwrap_or(""), "command applied");
                    self.ack(Some(id), AckStatus::Applied, note, now)
                }
                Err(e) => {
                    // Applied, but a reboot would forget it: the host must know.
                    self.intent = intent;
                    warn!(%id, error = %e, "applied but not persisted");
                    self.ack(
                        Some(id),
                        AckStatus::Failed,
                        Some(format!("applied, but cannot persist it: {e}")),
                        now,
                    )
                }
            },
            Err(reason) => {
                warn!(%id, %reason, "command failed");
                self.ack(Some(id), AckStatus::Failed, Some(reason), now)
            }
        }
    }

    /// A local (HTTP API) change, already authenticated: decided like a fleet command.
    pub fn decide_local(
        &self,
        action: &Action,
        current: Current,
        board: &hashboard::board::BoardDescription,
    ) -> Decision {
        control::decide(self.intent, current, action, board)
    }

    /// After a local change was made: the new intent, durable like a command's.
    pub fn commit(&mut self, intent: Intent) -> Result<(), PersistError> {
        self.set_intent(intent)
    }

    /// The chains' last tunes, as stored.
    pub fn tuned(&self) -> &[TunedChain] {
        &self.tuned
    }

    /// A chain finished tuning: its profile replaces the one it had, durably.
    pub fn save_tuned(&mut self, tuned: TunedChain) -> Result<(), PersistError> {
        self.tuned.retain(|t| t.chain != tuned.chain);
        self.tuned.push(tuned);
        self.tuned.sort_by_key(|t| t.chain);
        self.save(self.intent)
    }

    /// The failsafe's own change of intent (not a command): durable like one.
    pub fn set_intent(&mut self, intent: Intent) -> Result<(), PersistError> {
        self.intent = intent;
        self.save(intent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{Change, SleepCause};
    use fleet_proto::examples::example_command;
    use fleet_proto::{CommandSigner, TrustedKeys};
    use hashboard::board::BM1397_HASHBOARD_12 as BOARD;

    const NOW: u64 = 1_767_225_610;
    const CURRENT: Current = Current {
        frequency: BOARD.default_frequency,
        core_mv: BOARD.default_core_mv,
    };

    fn host() -> CommandSigner {
        CommandSigner::from_seed("host-2026a", &[7; 32])
    }

    fn desk(dir: &std::path::Path) -> CommandDesk {
        let mut keys = TrustedKeys::default();
        keys.trust("host-2026a", &host().public_key())
            .expect("valid");
        let miner = Name::new("s19xp-r04-017").expect("valid");
        let verifier =
            CommandVerifier::new(Name::new("tx-west").expect("valid"), miner.clone(), keys);
        CommandDesk::open(miner, verifier, Store::open(dir).expect("opens")).expect("loads")
    }

    fn signed(action: Action, seq: u64) -> Vec<u8> {
        serde_json::to_vec(&host().sign(&example_command(action, seq)).expect("signs"))
            .expect("encodes")
    }

    fn apply(desk: &mut CommandDesk, bytes: &[u8]) -> (Ack, Ack) {
        match desk.receive(bytes, NOW, CURRENT, &BOARD) {
            Received::Apply {
                accepted,
                id,
                decision: Decision::Apply { intent, note, .. },
                ..
            } => (accepted, desk.finish(id, Ok((intent, note)), NOW)),
            other => panic!("not applied: {other:?}"),
        }
    }

    #[test]
    fn a_sleep_survives_a_restart_and_its_replay_is_refused() {
        let dir = std::env::temp_dir().join(format!("hw-desk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sleep = signed(Action::Sleep, 42);
        {
            let mut desk = desk(&dir);
            let (accepted, applied) = apply(&mut desk, &sleep);
            assert_eq!(accepted.status, AckStatus::Accepted);
            assert_eq!(applied.status, AckStatus::Applied);
            assert_eq!(applied.id.as_deref(), Some("cmd-000042"));
        }
        // "Reboot": a new desk from the same directory.
        let mut desk = desk(&dir);
        assert_eq!(desk.intent().sleeping, Some(SleepCause::Command));
        match desk.receive(&sleep, NOW, CURRENT, &BOARD) {
            Received::Answered(ack) => assert_eq!(ack.status, AckStatus::Duplicate),
            other => panic!("{other:?}"),
        }
        let (_, applied) = apply(&mut desk, &signed(Action::Wake, 43));
        assert_eq!(applied.status, AckStatus::Applied);
        assert_eq!(desk.intent().sleeping, None);
        // The old sleep, replayed after the wake, is refused and changes nothing.
        match desk.receive(&sleep, NOW, CURRENT, &BOARD) {
            Received::Answered(ack) => {
                assert_eq!(ack.status, AckStatus::Rejected);
                assert_eq!(
                    ack.reason.as_deref(),
                    Some("replayed: sequence 42 was already used")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(desk.intent().sleeping, None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_change_keeps_the_old_intent() {
        let dir = std::env::temp_dir().join(format!("hw-desk-fail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut desk = desk(&dir);
        let Received::Apply {
            id,
            decision: Decision::Apply { change, .. },
            ..
        } = desk.receive(&signed(Action::Sleep, 1), NOW, CURRENT, &BOARD)
        else {
            panic!("accepted");
        };
        assert_eq!(change, Change::Sleep);
        let ack = desk.finish(id, Err("regulator did not answer".into()), NOW);
        assert_eq!(ack.status, AckStatus::Failed);
        assert_eq!(ack.reason.as_deref(), Some("regulator did not answer"));
        assert_eq!(desk.intent(), Intent::default());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
