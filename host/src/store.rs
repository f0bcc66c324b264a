//! The agent's store (SQLite, bundled): what must outlive the process — each miner's last switch
//! (so a restarted agent keeps dwell times and does not flap the fleet), the signing key's last
//! sequence number, the operator's overrides, and an audit log of every decision, command, ack
//! and verification, which `hashwarden status` and `hashwarden explain` read while the agent runs
//! (WAL: readers do not block the writer).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::planner::{Manual, Setting};

/// 2: the audit log's `wanted` column (the setting an entry is about, as data).
const SCHEMA_VERSION: i64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: schema version {found}, this agent knows {SCHEMA_VERSION}")]
    Version { path: PathBuf, found: i64 },
}

/// What an audit entry records. Stored as its name, so `hashwarden explain`, `follow` and SQL
/// readers agree on one spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// The plan changed what a miner should run.
    Planned,
    /// A signed command went out.
    Sent,
    /// A miner answered a command.
    Ack,
    /// A change showed in the miner's own reports.
    Verified,
    /// A change the miner refused or could not make.
    Failed,
    /// No final answer after every attempt.
    Unresponsive,
    /// The operator set a miner by hand.
    Override,
    /// Another agent of the group owns the miner now; its change went with it.
    HandedOver,
    /// A firmware rollout's step.
    Update,
    /// A miner showed another setting than the one verified, by itself: the change goes again.
    Drifted,
    /// A miner's device key was enrolled at first sight.
    Enrolled,
}

impl AuditKind {
    pub const ALL: [AuditKind; 11] = [
        AuditKind::Planned,
        AuditKind::Sent,
        AuditKind::Ack,
        AuditKind::Verified,
        AuditKind::Failed,
        AuditKind::Unresponsive,
        AuditKind::Override,
        AuditKind::HandedOver,
        AuditKind::Update,
        AuditKind::Drifted,
        AuditKind::Enrolled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Planned => "planned",
            AuditKind::Sent => "sent",
            AuditKind::Ack => "ack",
            AuditKind::Verified => "verified",
            AuditKind::Failed => "failed",
            AuditKind::Unresponsive => "unresponsive",
            AuditKind::Override => "override",
            AuditKind::HandedOver => "handed over",
            AuditKind::Update => "update",
            AuditKind::Drifted => "drifted",
            AuditKind::Enrolled => "enrolled",
        }
    }

    /// A change's final outcome: what `curtail --wait` follows.
    pub fn is_outcome(self) -> bool {
        matches!(
            self,
            AuditKind::Verified | AuditKind::Failed | AuditKind::Unresponsive
        )
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl rusqlite::types::ToSql for AuditKind {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for AuditKind {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        AuditKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| {
                rusqlite::types::FromSqlError::Other(format!("audit kind {text:?}").into())
            })
    }
}

/// One miner as the last plan saw it: what `hashwarden status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetRow {
    pub miner: String,
    pub online: bool,
    pub mode: String,
    pub hashrate_ths: f64,
    pub power_w: f64,
    pub j_per_th: Option<f64>,
    pub breakeven: Option<f64>,
    /// Hashprice less breakeven, $/PH/day.
    pub margin: Option<f64>,
    pub target: Setting,
    pub reason: String,
    pub last_seen: u64,
    /// How its device key was enrolled: `config` or `first-seen`.
    #[serde(default)]
    pub enrolment: Option<String>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: u64,
    pub miner: String,
    pub kind: AuditKind,
    /// The setting the entry is about (a plan's target, a change's outcome, an override), where
    /// it is about one.
    pub wanted: Option<Setting>,
    /// For people: what happened, in words.
    pub detail: String,
}

impl AuditEntry {
    pub fn new(at: u64, miner: &str, kind: AuditKind, detail: String) -> Self {
        Self {
            at,
            miner: miner.to_string(),
            kind,
            wanted: None,
            detail,
        }
    }

    /// The same entry, about `setting`.
    pub fn about(self, setting: Setting) -> Self {
        Self {
            wanted: Some(setting),
            ..self
        }
    }
}

/// A `wanted` column's text: the setting as JSON, which the store reads back exactly.
fn wanted_column(wanted: Option<Setting>) -> Option<String> {
    wanted.and_then(|setting| serde_json::to_string(&setting).ok())
}

/// An audit row as the queries below select it.
fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    let wanted: Option<String> = r.get(3)?;
    Ok(AuditEntry {
        at: r.get::<_, i64>(0)?.max(0) as u64,
        miner: r.get(1)?,
        kind: r.get(2)?,
        wanted: wanted.and_then(|text| serde_json::from_str(&text).ok()),
        detail: r.get(4)?,
    })
}

/// A rollout as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRollout {
    pub id: i64,
    pub request: crate::rollout::Request,
    pub progress: Option<crate::rollout::Rollout>,
    pub finished: bool,
}

#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    db: Connection,
}

/// How long opening the store keeps trying while another process holds it.
const OPEN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15);

impl Store {
    /// Opens (creating, or migrating) the store at `path`. Two processes opening a new file at
    /// the same moment — the agent starting while `flash` or `curtail` runs — can find it locked
    /// in a way SQLite's busy timeout does not wait out (it refuses at once what would deadlock):
    /// the open is tried again, briefly, until the other is done.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let started = std::time::Instant::now();
        loop {
            match Self::open_once(path) {
                Err(StoreError::Sqlite {
                    source: rusqlite::Error::SqliteFailure(e, _),
                    ..
                }) if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && started.elapsed() < OPEN_PATIENCE =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                opened => return opened,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Self, StoreError> {
        let fail = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let db = Connection::open(path).map_err(fail)?;
        // First: every statement after this one waits for a writer in another process (the
        // running agent, while `flash` or `curtail` opens the same file) instead of failing at
        // once — setting the journal mode included.
        db.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(fail)?;
        // WAL lets `status` read while the agent writes; FULL syncs every commit, so a killed
        // agent loses nothing it reported.
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS switches (
                 miner TEXT PRIMARY KEY, at INTEGER NOT NULL, on_ INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS overrides (
                 miner TEXT PRIMARY KEY, setting TEXT NOT NULL, until INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS fleet (
                 miner TEXT PRIMARY KEY, row TEXT NOT NULL, updated_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS market (
                 id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL,
                 hashprice REAL NOT NULL, difficulty REAL);
             CREATE TABLE IF NOT EXISTS audit (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,
                 miner TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL,
                 wanted TEXT);
             CREATE INDEX IF NOT EXISTS audit_by_miner ON audit (miner, id);
             CREATE TABLE IF NOT EXISTS enrolled (
                 miner TEXT PRIMARY KEY, public_key TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS unenrolled (miner TEXT PRIMARY KEY, row TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS rollouts (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, created_at INTEGER NOT NULL,
                 request TEXT NOT NULL, state TEXT, finished INTEGER NOT NULL DEFAULT 0);",
        )
        .map_err(fail)?;
        let store = Self {
            path: path.to_path_buf(),
            db,
        };
        match store.meta("schema")? {
            None => store.set_meta("schema", SCHEMA_VERSION)?,
            Some(SCHEMA_VERSION) => {}
            // Version 1 lacked the audit log's `wanted` column: its entries read as about no
            // setting.
            Some(1) => {
                store
                    .db
                    .execute_batch("ALTER TABLE audit ADD COLUMN wanted TEXT;")
                    .map_err(store.fail())?;
                store.set_meta("schema", SCHEMA_VERSION)?;
            }
            Some(found) => {
                return Err(StoreError::Version {
                    path: path.to_path_buf(),
                    found,
                });
            }
        }
        Ok(store)
    }

    fn fail(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn meta(&self, key: &str) -> Result<Option<i64>, StoreError> {
        self.db
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.fail())
    }

    fn set_meta(&self, key: &str, value: i64) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(self.fail())
    }

    /// The last good market reading: retained messages die with an embedded broker, and a
    /// restarted agent must not plan blind until the feed speaks again.
    pub fn save_market(&self, reading: &crate::market::Reading) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO market (id, at, hashprice, difficulty) VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET at = excluded.at,
                     hashprice = excluded.hashprice, difficulty = excluded.difficulty",
                params![reading.at as i64, reading.hashprice.0, reading.difficulty],
            )
            .map(|_| ())
            .map_err(self.fail())
    }

    pub fn last_market(&self) -> Result<Option<crate::market::Reading>, StoreError> {
        self.db
            .query_row(
                "SELECT at, hashprice, difficulty FROM market WHERE id = 1",
                [],
                |r| {
                    Ok(crate::market::Reading {
                        at: r.get::<_, i64>(0)?.max(0) as u64,
                        hashprice: crate::units::UsdPerPhDay(r.get(1)?),
                        difficulty: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(self.fail())
    }

    /// The last command sequence number used, if any.
    pub fn last_seq(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.meta("last_seq")?.map(|v| v as u64))
    }

    pub fn save_seq(&self, seq: u64) -> Result<(), StoreError> {
        self.set_meta("last_seq", seq as i64)
    }

    pub fn save_switch(&self, miner: &str, at: u64, on: bool) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO switches (miner, at, on_) VALUES (?1, ?2, ?3)
                 ON CONFLICT (miner) DO UPDATE SET at = excluded.at, on_ = excluded.on_",
                params![miner, at as i64, on],
            )
            .map(|_| ())
            .map_err(self.fail())
    }

    /// Every miner's last switch: (miner, at, on).
    pub fn switches(&self) -> Result<Vec<(String, u64, bool)>, StoreError> {
        let mut query = self
            .db
            .prepare("SELECT miner, at, on_ FROM switches ORDER BY miner")
            .map_err(self.fail())?;
        let rows = query
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get(2)?,
                ))
            })
            .map_err(self.fail())?;
        rows.collect::<Result<_, _>>().map_err(self.fail())
    }

    pub fn set_override(&self, miner: &str, manual: Manual) -> Result<(), StoreError> {
        let setting = serde_json::to_string(&manual.setting).unwrap_or_default();
        self.db
            .execute(
                "INSERT INTO overrides (miner, setting, until) VALUES (?1, ?2, ?3)
                 ON CONFLICT (miner) DO UPDATE SET setting = excluded.setting,
                                                   until = excluded.until",
                params![miner, setting, manual.until as i64],
            )
            .map(|_| ())
            .map_err(self.fail())
    }

    pub fn clear_override(&self, miner: &str) -> Result<(), StoreError> {
        self.db
            .execute("DELETE FROM overrides WHERE miner = ?1", [miner])
            .map(|_| ())
            .map_err(self.fail())
    }

    /// Overrides still in force at `now`.
    pub fn overrides(&self, now: u64) -> Result<Vec<(String, Manual)>, StoreError> {
        let mut query = self
            .db
            .prepare("SELECT miner, setting, until FROM overrides WHERE until > ?1 ORDER BY miner")
            .map_err(self.fail())?;
        let rows = query
            .query_map([now as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)? as u64,
                ))
            })
            .map_err(self.fail())?;
        let mut out = Vec::new();
        for row in rows {
            let (miner, setting, until) = row.map_err(self.fail())?;
            // A row this agent did not write is skipped rather than obeyed half-understood.
            if let Ok(setting) = serde_json::from_str::<Setting>(&setting) {
                out.push((miner, Manual { setting, until }));
            }
        }
        Ok(out)
    }

    /// The fleet table as of the last plan, one row per miner, in one transaction.
    pub fn save_fleet(&mut self, rows: &[FleetRow], at: u64) -> Result<(), StoreError> {
        self.write_rows(
            None,
            "INSERT INTO fleet (miner, row, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (miner) DO UPDATE SET row = excluded.row,
                                               updated_at = excluded.updated_at",
            rows,
            |statement, row| {
                let json = serde_json::to_string(row).unwrap_or_default();
                statement.execute(params![row.miner, json, at as i64])
            },
        )
    }

    /// `sql` once for each of `rows` (`execute` binds one), after `clear` if given, all in one
    /// transaction: a table of a whole fleet is one commit, not one per miner.
    fn write_rows<R>(
        &mut self,
        clear: Option<&str>,
        sql: &str,
        rows: &[R],
        execute: impl Fn(&mut rusqlite::CachedStatement<'_>, &R) -> rusqlite::Result<usize>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let fail = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.db.transaction().map_err(fail)?;
        if let Some(clear) = clear {
            tx.execute(clear, []).map_err(fail)?;
        }
        {
            let mut statement = tx.prepare_cached(sql).map_err(fail)?;
            for row in rows {
                execute(&mut statement, row).map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)
    }

    /// Device keys enrolled at first sight, in one transaction: a restarted agent must not take
    /// the next voice on those topics for the miners'.
    pub fn save_enrolled(
        &mut self,
        enrolments: &[crate::enrol::NewEnrolment],
    ) -> Result<(), StoreError> {
        self.write_rows(
            None,
            "INSERT INTO enrolled (miner, public_key, at) VALUES (?1, ?2, ?3)
             ON CONFLICT (miner) DO UPDATE SET public_key = excluded.public_key,
                                               at = excluded.at",
            enrolments,
            |statement, new| statement.execute(params![new.miner, new.public_key, new.at as i64]),
        )
    }

    /// Keys enrolled at first sight: (miner, public key, when), by miner.
    pub fn enrolled(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let mut query = self
            .db
            .prepare("SELECT miner, public_key, at FROM enrolled ORDER BY miner")
            .map_err(self.fail())?;
        let rows = query
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
            })
            .map_err(self.fail())?;
        rows.collect::<Result<_, _>>().map_err(self.fail())
    }

    /// Replaces the list of miners heard of but not enrolled, for `hashwarden enrolment`.
    pub fn save_unenrolled(&mut self, held: &[crate::enrol::Unenrolled]) -> Result<(), StoreError> {
        self.write_rows(
            Some("DELETE FROM unenrolled"),
            "INSERT INTO unenrolled (miner, row) VALUES (?1, ?2)",
            held,
            |statement, miner| {
                let json = serde_json::to_string(miner).unwrap_or_default();
                statement.execute(params![miner.miner, json])
            },
        )
    }

    /// Miners heard of but not enrolled, by name.
    pub fn unenrolled(&self) -> Result<Vec<crate::enrol::Unenrolled>, StoreError> {
        self.json_rows("SELECT row FROM unenrolled ORDER BY miner")
    }

    /// The JSON rows `sql` selects, each read as a `T`; a row this build cannot read (another
    /// version wrote it) is skipped.
    fn json_rows<T: serde::de::DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>, StoreError> {
        let mut query = self.db.prepare(sql).map_err(self.fail())?;
        let rows = query
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.fail())?;
        let mut out = Vec::new();
        for row in rows {
            if let Ok(row) = serde_json::from_str(&row.map_err(self.fail())?) {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// The fleet table, by miner.
    pub fn fleet(&self) -> Result<Vec<FleetRow>, StoreError> {
        self.json_rows("SELECT row FROM fleet ORDER BY miner")
    }

    pub fn audit(&mut self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.audit_all(std::slice::from_ref(entry))
    }

    /// Many entries in one transaction: one sync for a whole round of a large fleet instead of
    /// one per entry.
    pub fn audit_all(&mut self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.write_rows(
            None,
            "INSERT INTO audit (at, miner, kind, wanted, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            entries,
            |statement, entry| {
                statement.execute(params![
                    entry.at as i64,
                    entry.miner,
                    entry.kind,
                    wanted_column(entry.wanted),
                    entry.detail
                ])
            },
        )
    }

    /// Queues a firmware rollout for the running agent; its id.
    pub fn request_rollout(
        &self,
        request: &crate::rollout::Request,
        now: u64,
    ) -> Result<i64, StoreError> {
        let json = serde_json::to_string(request).unwrap_or_default();
        self.db
            .execute(
                "INSERT INTO rollouts (created_at, request) VALUES (?1, ?2)",
                params![now as i64, json],
            )
            .map_err(self.fail())?;
        Ok(self.db.last_insert_rowid())
    }

    /// The rollouts not yet finished, oldest first: each one's id, request and progress (none
    /// before the agent has taken it up). A row that no longer parses is left out.
    pub fn open_rollouts(&self) -> Result<Vec<StoredRollout>, StoreError> {
        self.rollouts_where("finished = 0", None)
    }

    /// The ids of the rollouts not yet finished, oldest first: cheap enough for every round.
    pub fn open_rollout_ids(&self) -> Result<Vec<i64>, StoreError> {
        let mut query = self
            .db
            .prepare("SELECT id FROM rollouts WHERE finished = 0 ORDER BY id")
            .map_err(self.fail())?;
        let ids = query
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(self.fail())?;
        ids.collect::<Result<_, _>>().map_err(self.fail())
    }

    pub fn rollout(&self, id: i64) -> Result<Option<StoredRollout>, StoreError> {
        Ok(self.rollouts_where("id = ?1", Some(id))?.into_iter().next())
    }

    fn rollouts_where(
        &self,
        condition: &str,
        id: Option<i64>,
    ) -> Result<Vec<StoredRollout>, StoreError> {
        let mut query = self
            .db
            .prepare(&format!(
                "SELECT id, request, state, finished FROM rollouts WHERE {condition} ORDER BY id"
            ))
            .map_err(self.fail())?;
        let read = |r: &rusqlite::Row<'_>| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, bool>(3)?,
            ))
        };
        let rows = match id {
            Some(id) => query.query_map([id], read),
            None => query.query_map([], read),
        }
        .map_err(self.fail())?;
        let mut out = Vec::new();
        for row in rows {
            let (id, request, state, finished) = row.map_err(self.fail())?;
            let Ok(request) = serde_json::from_str(&request) else {
                continue;
            };
            out.push(StoredRollout {
                id,
                request,
                progress: state.and_then(|s| serde_json::from_str(&s).ok()),
                finished,
            });
        }
        Ok(out)
    }

    /// A rollout's progress; `finished` once nothing more will happen.
    pub fn save_rollout(
        &self,
        id: i64,
        progress: &crate::rollout::Rollout,
        finished: bool,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(progress).unwrap_or_default();
        self.db
            .execute(
                "UPDATE rollouts SET state = ?2, finished = ?3 WHERE id = ?1",
                params![id, json, finished],
            )
            .map(|_| ())
            .map_err(self.fail())
    }

    /// The audit log's newest entry id (0 when empty): a mark to read outcomes after.
    pub fn audit_mark(&self) -> Result<i64, StoreError> {
        self.db
            .query_row("SELECT COALESCE(MAX(id), 0) FROM audit", [], |r| r.get(0))
            .map_err(self.fail())
    }

    /// Final outcomes (`verified`, `failed`, `unresponsive`) logged after `mark`, oldest first.
    pub fn outcomes_after(&self, mark: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let mut query = self
            .db
            .prepare(
                "SELECT at, miner, kind, wanted, detail FROM audit WHERE id > ?1
                 AND kind IN ('verified', 'failed', 'unresponsive') ORDER BY id",
            )
            .map_err(self.fail())?;
        let rows = query.query_map([mark], audit_row).map_err(self.fail())?;
        rows.collect::<Result<_, _>>().map_err(self.fail())
    }

    /// The last `limit` entries for `miner` (all miners when `None`), oldest first.
    pub fn history(
        &self,
        miner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut query = self
            .db
            .prepare(
                "SELECT at, miner, kind, wanted, detail FROM audit
                 WHERE ?1 IS NULL OR miner = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(self.fail())?;
        let rows = query
            .query_map(params![miner, limit as i64], audit_row)
            .map_err(self.fail())?;
        let mut entries: Vec<AuditEntry> = rows.collect::<Result<_, _>>().map_err(self.fail())?;
        entries.reverse();
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Watts;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hw-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir.join("agent.db")
    }

    #[test]
    fn what_is_stored_is_there_after_a_reopen() {
        let path = scratch("reopen");
        {
            let mut store = Store::open(&path).expect("opens");
            assert_eq!(store.last_seq().expect("reads"), None);
            store.save_seq(1_771_900_000_123).expect("saves");
            store.save_switch("m1", 1_000, false).expect("saves");
            store.save_switch("m1", 2_000, true).expect("saves");
            assert_eq!(store.last_market().expect("reads"), None);
            for hashprice in [31.0, 27.58] {
                let reading = crate::market::Reading {
                    at: 1_771_900_000,
                    hashprice: crate::units::UsdPerPhDay(hashprice),
                    difficulty: Some(144.5e12),
                };
                store.save_market(&reading).expect("saves");
            }
            store
                .set_override(
                    "m2",
                    Manual {
                        setting: Setting::PowerTarget(Watts(1_500.0)),
                        until: 5_000,
                    },
                )
                .expect("saves");
            for (i, kind) in [AuditKind::Planned, AuditKind::Sent, AuditKind::Verified]
                .into_iter()
                .enumerate()
            {
                let entry = AuditEntry::new(1_000 + i as u64, "m1", kind, format!("step {i}"));
                store.audit(&entry.about(Setting::Sleep)).expect("audits");
            }
        }
        let store = Store::open(&path).expect("reopens");
        assert_eq!(store.last_seq().expect("reads"), Some(1_771_900_000_123));
        let market = store.last_market().expect("reads").expect("kept");
        assert_eq!(
            market.hashprice.0, 27.58,
            "the latest reading replaces the one before"
        );
        assert_eq!(market.difficulty, Some(144.5e12));
        assert_eq!(
            store.switches().expect("reads"),
            [("m1".to_string(), 2_000, true)]
        );
        let overrides = store.overrides(4_999).expect("reads");
        assert_eq!(overrides.len(), 1);
        assert_eq!(overrides[0].1.setting, Setting::PowerTarget(Watts(1_500.0)));
        assert!(store.overrides(5_000).expect("reads").is_empty(), "expired");
        store.clear_override("m2").expect("clears");
        assert!(store.overrides(0).expect("reads").is_empty());
        let history = store.history(Some("m1"), 2).expect("reads");
        assert_eq!(
            history.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            ["sent", "verified"],
            "the last two, oldest first"
        );
        assert!(
            history.iter().all(|e| e.wanted == Some(Setting::Sleep)),
            "the setting is read back as it was written"
        );
        assert!(store.history(Some("m9"), 10).expect("reads").is_empty());
    }

    #[test]
    fn a_store_of_schema_1_gains_the_wanted_column_and_keeps_its_log() {
        let path = scratch("schema1");
        {
            let db = Connection::open(&path).expect("creates");
            db.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                 INSERT INTO meta VALUES ('schema', 1);
                 CREATE TABLE audit (
                     id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,
                     miner TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
                 INSERT INTO audit (at, miner, kind, detail)
                     VALUES (7, 'm1', 'verified', 'Sleep; power now Some(Watts(0.0))');",
            )
            .expect("a version-1 store");
        }
        let mut store = Store::open(&path).expect("migrates");
        let entry = AuditEntry::new(8, "m1", AuditKind::Failed, "full: no".into());
        store
            .audit(&entry.clone().about(Setting::Full))
            .expect("writes");
        let history = store.history(Some("m1"), 10).expect("reads");
        assert_eq!(history.len(), 2);
        assert_eq!(
            (history[0].kind, history[0].wanted),
            (AuditKind::Verified, None)
        );
        assert_eq!(history[1], entry.about(Setting::Full));
        drop(store);
        Store::open(&path).expect("opens again at version 2");
    }

    #[test]
    fn an_audit_kind_is_stored_by_its_name_and_read_back() {
        let path = scratch("kinds");
        let mut store = Store::open(&path).expect("opens");
        for (i, kind) in AuditKind::ALL.into_iter().enumerate() {
            store
                .audit(&AuditEntry::new(i as u64, "m1", kind, String::new()))
                .expect("writes");
        }
        let kinds: Vec<AuditKind> = store
            .history(None, 100)
            .expect("reads")
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, AuditKind::ALL);
        let names: Vec<String> = store
            .db
            .prepare("SELECT kind FROM audit ORDER BY id")
            .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
            .expect("reads");
        assert_eq!(names[7], "handed over");
    }

    #[test]
    fn a_rollout_is_queued_taken_up_and_finished_across_reopens() {
        use crate::rollout::{Image, Request, Rollout, Staging};
        use fleet_proto::image::{Manifest, Version};
        let path = scratch("rollouts");
        let manifest = Manifest {
            format: 1,
            version: Version(0, 9, 0),
            boards: vec!["bm1397-hashboard-12".into()],
            size: 10,
            sha256: "ab".repeat(32),
            key_id: "release".into(),
            built_at: 0,
        };
        let request = Request {
            image_path: "/srv/fw.img".into(),
            manifest: manifest.clone(),
            key_id: "release".into(),
            public_key: "cd".repeat(32),
            miners: vec!["m1".into(), "m2".into()],
            staging: Staging::default(),
        };
        let id = {
            let store = Store::open(&path).expect("opens");
            store.request_rollout(&request, 1_000).expect("queues")
        };
        let store = Store::open(&path).expect("reopens");
        assert_eq!(store.open_rollout_ids().expect("reads"), [id]);
        let queued = store.rollout(id).expect("reads").expect("there");
        assert_eq!(queued.request, request);
        assert_eq!((queued.progress, queued.finished), (None, false));
        let image = Image {
            version: manifest.version,
            sha256: manifest.sha256,
            boards: manifest.boards,
            url: "http://agent:9100/images/x.img".into(),
        };
        let progress = Rollout::new(image, Staging::default(), &request.miners);
        store.save_rollout(id, &progress, false).expect("saves");
        assert_eq!(
            store.rollout(id).expect("reads").and_then(|r| r.progress),
            Some(progress.clone())
        );
        store.save_rollout(id, &progress, true).expect("saves");
        assert!(store.open_rollout_ids().expect("reads").is_empty());
        assert!(store.open_rollouts().expect("reads").is_empty());
        assert!(
            store
                .rollout(id)
                .expect("reads")
                .is_some_and(|r| r.finished)
        );
    }

    #[test]
    fn a_store_from_another_schema_or_not_a_database_is_refused() {
        let path = scratch("schema");
        Store::open(&path)
            .expect("opens")
            .set_meta("schema", 99)
            .expect("sets");
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::Version { found: 99, .. })
        ));
        let junk = scratch("junk");
        std::fs::write(
            &junk,
            b"this is not sqlite, and it is long enough to have a header",
        )
        .expect("writes");
        let message = Store::open(&junk).expect_err("refused").to_string();
        assert!(message.contains("agent.db"), "{message}");
    }

    #[test]
    fn processes_opening_a_new_store_at_once_all_get_it() {
        // The agent starting while `flash` runs: both create and set up the same new file.
        let dir = std::env::temp_dir().join(format!("hw-store-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch");
        for round in 0..20 {
            let path = dir.join(format!("agent-{round}.db"));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || Store::open(&path).map(|_| ()))
                })
                .collect();
            for opener in openers {
                let opened = opener.join().expect("joins");
                assert!(opened.is_ok(), "round {round}: {opened:?}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
