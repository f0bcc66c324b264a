//! Where market data comes from besides the `…/market` topic: the public endpoints operators
//! poll — mempool.space's mining API (difficulty, fees over the last 144 blocks, height, BTC
//! price) and Hashrate Index's hashprice — and a CSV file to replay. Each source becomes the same
//! `fleet_proto::Market` message, so every reading goes through the same plausibility guard.
//! The parsers are pure; [`poll`] is the one function here that does I/O.

use serde::Deserialize;
use serde_json::Value;

/// Why a source's answer was not used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    #[error("{0}: not the JSON shape this source answers with")]
    Shape(&'static str),
    #[error("{0}")]
    Fetch(String),
    #[error("line {line}: {reason}")]
    Csv { line: usize, reason: String },
}

/// A market source to poll.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Poll {
    /// `BASE/api/v1/mining/hashrate/3d`, `BASE/api/v1/mining/reward-stats/144`,
    /// `BASE/api/v1/prices`.
    Mempool { url: String },
    /// `BASE/v1/hashrateindex/hashprice?span=1D&bucket=15m&currency=USD&hashunit=PHS`, the
    /// account's API key (in a file only its owner may read) in the `X-Hi-Api-Key` header, as
    /// Hashrate Index's API documentation (`…/v1/hashrateindex/docs`) asks.
    HashrateIndex {
        url: String,
        api_key_file: Option<std::path::PathBuf>,
    },
}

/// What the Hashrate Index source asks for: a day of 15-minute points, in US dollars per PH/s
/// per day (the unit the agent plans in).
pub const HASHRATE_INDEX_QUERY: &str = "span=1D&bucket=15m&currency=USD&hashunit=PHS";

impl Poll {
    /// Reads what the source needs besides its URL (an API key), so a bad file is found at start.
    pub fn check(&self) -> Result<(), cli_common::keyfile::KeyError> {
        match self {
            Poll::HashrateIndex {
                api_key_file: Some(path),
                ..
            } => cli_common::keyfile::read_token(path).map(|_| ()),
            _ => Ok(()),
        }
    }
}

/// `[market] poll`: one source, or several polled together.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Sources {
    One(Poll),
    Many(Vec<Poll>),
}

impl Sources {
    pub fn list(&self) -> Vec<Poll> {
        match self {
            Sources::One(poll) => vec![poll.clone()],
            Sources::Many(polls) => polls.clone(),
        }
    }
}

fn number(value: &Value) -> Option<f64> {
    // Amounts in sats come as strings; everything else as numbers.
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// `…/mining/hashrate/{period}` → the current difficulty.
pub fn mempool_difficulty(body: &[u8]) -> Result<f64, SourceError> {
    let json: Value = serde_json::from_slice(body).map_err(|_| SourceError::Shape("hashrate"))?;
    number(&json["currentDifficulty"]).ok_or(SourceError::Shape("hashrate"))
}

/// `…/mining/reward-stats/144` → (fees per block in BTC, the newest block's height).
pub fn mempool_fees(body: &[u8]) -> Result<(f64, u64), SourceError> {
    let json: Value =
        serde_json::from_slice(body).map_err(|_| SourceError::Shape("reward-stats"))?;
    let start = number(&json["startBlock"]).ok_or(SourceError::Shape("reward-stats"))?;
    let end = number(&json["endBlock"]).ok_or(SourceError::Shape("reward-stats"))?;
    let fees_sats = number(&json["totalFee"]).ok_or(SourceError::Shape("reward-stats"))?;
    let blocks = end - start + 1.0;
    if !(blocks >= 1.0 && end >= 0.0 && end.is_finite()) {
        return Err(SourceError::Shape("reward-stats"));
    }
    Ok((fees_sats / blocks / 1e8, end as u64))
}

/// `…/prices` → BTC in USD.
pub fn mempool_price(body: &[u8]) -> Result<f64, SourceError> {
    let json: Value = serde_json::from_slice(body).map_err(|_| SourceError::Shape("prices"))?;
    number(&json["USD"]).ok_or(SourceError::Shape("prices"))
}

/// Hashrate Index `…/hashprice` → the newest (hashprice $/PH/day, unix s).
pub fn hashrate_index(body: &[u8]) -> Result<(f64, u64), SourceError> {
    let json: Value = serde_json::from_slice(body).map_err(|_| SourceError::Shape("hashprice"))?;
    json["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|point| Some((number(&point["price"])?, timestamp(&point["timestamp"])?)))
        .max_by_key(|&(_, at)| at)
        .ok_or(SourceError::Shape("hashprice"))
}

/// A timestamp as unix seconds: a number (seconds, or milliseconds when that large), or an
/// ISO 8601 UTC date-time (`2026-02-24T00:00:00Z`, fractions allowed).
fn timestamp(value: &Value) -> Option<u64> {
    if let Some(n) = number(value) {
        let n = n as u64;
        return Some(if n > 100_000_000_000 { n / 1000 } else { n });
    }
    let text = value.as_str()?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let time = time.split(['.', '+']).next()?;
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next().flatten().unwrap_or(0));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Days from 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hour * 3_600 + minute * 60 + second).ok()
}

/// A CSV of timestamped rows: a header naming the columns (one of them `at`, unix seconds), then
/// one row per line; `#` starts a comment line. Rows come out in time order.
struct Table<'a> {
    columns: Vec<&'a str>,
    /// (1-based line number, fields, `at`)
    rows: Vec<(usize, Vec<&'a str>, u64)>,
}

impl<'a> Table<'a> {
    fn parse(text: &'a str) -> Result<Self, SourceError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        let (header_line, header) = lines.next().ok_or(SourceError::Csv {
            line: 1,
            reason: "empty: a header line is needed".into(),
        })?;
        let columns: Vec<&str> = header.split(',').map(str::trim).collect();
        let at = columns
            .iter()
            .position(|c| *c == "at")
            .ok_or(SourceError::Csv {
                line: header_line + 1,
                reason: "no `at` column".into(),
            })?;
        let mut rows = Vec::new();
        for (n, line) in lines {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let bad = |reason: String| SourceError::Csv {
                line: n + 1,
                reason,
            };
            if fields.len() != columns.len() {
                return Err(bad(format!(
                    "{} fields, the header has {}",
                    fields.len(),
                    columns.len()
                )));
            }
            let at_s = fields[at]
                .parse::<u64>()
                .map_err(|_| bad(format!("at {:?} is not unix seconds", fields[at])))?;
            rows.push((n + 1, fields, at_s));
        }
        rows.sort_by_key(|(_, _, at)| *at);
        Ok(Self { columns, rows })
    }

    fn has(&self, name: &str) -> bool {
        self.columns.contains(&name)
    }

    /// A numeric field of a row; `None` when the column is absent or the field empty.
    fn number(
        &self,
        row: &(usize, Vec<&str>, u64),
        name: &str,
    ) -> Result<Option<f64>, SourceError> {
        let (line, fields, _) = row;
        match self
            .columns
            .iter()
            .position(|c| *c == name)
            .and_then(|i| fields.get(i))
        {
            None | Some(&"") => Ok(None),
            Some(text) => text.parse::<f64>().map(Some).map_err(|_| SourceError::Csv {
                line: *line,
                reason: format!("{name} {text:?} is not a number"),
            }),
        }
    }
}

/// A market replay file. Columns: `at` and either `hashprice` or all of `difficulty`, `height`,
/// `fees_per_block_btc`, `btc_usd`.
pub fn csv(text: &str) -> Result<Vec<fleet_proto::Market>, SourceError> {
    let table = Table::parse(text)?;
    table
        .rows
        .iter()
        .map(|row| {
            Ok(fleet_proto::Market {
                v: fleet_proto::command::VERSION,
                at: row.2,
                hashprice_usd_per_ph_day: table.number(row, "hashprice")?,
                difficulty: table.number(row, "difficulty")?,
                height: table.number(row, "height")?.map(|h| h as u64),
                fees_per_block_btc: table.number(row, "fees_per_block_btc")?,
                btc_usd: table.number(row, "btc_usd")?,
            })
        })
        .collect()
}

/// A power price replay file: columns `at` and `usd_per_kwh`.
pub fn power_csv(text: &str) -> Result<Vec<fleet_proto::PowerPrice>, SourceError> {
    let table = Table::parse(text)?;
    if !table.has("usd_per_kwh") {
        return Err(SourceError::Csv {
            line: 1,
            reason: "no `usd_per_kwh` column".into(),
        });
    }
    table
        .rows
        .iter()
        .map(|row| {
            let price = table.number(row, "usd_per_kwh")?.ok_or(SourceError::Csv {
                line: row.0,
                reason: "usd_per_kwh is empty".into(),
            })?;
            Ok(fleet_proto::PowerPrice {
                v: fleet_proto::command::VERSION,
                at: row.2,
                usd_per_kwh: price,
            })
        })
        .collect()
}

/// A grid events file: columns `at` (when the cap starts), `until` (unix s) and `cap_kw`.
pub fn grid_csv(text: &str) -> Result<Vec<(u64, u64, f64)>, SourceError> {
    let table = Table::parse(text)?;
    table
        .rows
        .iter()
        .map(|row| {
            let bad = |reason: &str| SourceError::Csv {
                line: row.0,
                reason: reason.into(),
            };
            let until = table
                .number(row, "until")?
                .filter(|u| *u >= 0.0)
                .ok_or_else(|| bad("until (unix s) is needed"))? as u64;
            let cap_kw = table
                .number(row, "cap_kw")?
                .filter(|c| c.is_finite() && *c >= 0.0)
                .ok_or_else(|| bad("cap_kw (a number of kW, 0 or more) is needed"))?;
            if until <= row.2 {
                return Err(bad("until must come after at"));
            }
            Ok((row.2, until, cap_kw))
        })
        .collect()
}

/// One poll of `source` (blocking: run it off the agent's loop). `now` stamps sources that give
/// no time of their own.
pub fn poll(source: &Poll, now: u64) -> Result<fleet_proto::Market, SourceError> {
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(20))
        .build();
    let get_with = |url: String, headers: &[(&str, &str)]| -> Result<Vec<u8>, SourceError> {
        let mut request = agent.get(&url);
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let response = request
            .call()
            .map_err(|e| SourceError::Fetch(format!("{url}: {e}")))?;
        let mut body = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(response.into_reader(), 1 << 20),
            &mut body,
        )
        .map_err(|e| SourceError::Fetch(format!("{url}: {e}")))?;
        Ok(body)
    };
    let get = |url: String| get_with(url, &[]);
    let base = |url: &str| url.trim_end_matches('/').to_string();
    match source {
        Poll::Mempool { url } => {
            let base = base(url);
            let difficulty =
                mempool_difficulty(&get(format!("{base}/api/v1/mining/hashrate/3d"))?)?;
            let (fees, height) =
                mempool_fees(&get(format!("{base}/api/v1/mining/reward-stats/144"))?)?;
            let btc_usd = mempool_price(&get(format!("{base}/api/v1/prices"))?)?;
            Ok(fleet_proto::Market {
                v: fleet_proto::command::VERSION,
                at: now,
                hashprice_usd_per_ph_day: None,
                difficulty: Some(difficulty),
                height: Some(height),
                fees_per_block_btc: Some(fees),
                btc_usd: Some(btc_usd),
            })
        }
        Poll::HashrateIndex { url, api_key_file } => {
            let key = api_key_file
                .as_ref()
                .map(|path| cli_common::keyfile::read_token(path))
                .transpose()
                .map_err(|e| SourceError::Fetch(e.to_string()))?;
            let headers: Vec<(&str, &str)> = key
                .as_deref()
                .map(|key| ("X-Hi-Api-Key", key))
                .into_iter()
                .collect();
            let url = format!(
                "{}/v1/hashrateindex/hashprice?{HASHRATE_INDEX_QUERY}",
                base(url)
            );
            let (hashprice, at) = hashrate_index(&get_with(url, &headers)?)?;
            Ok(fleet_proto::Market {
                v: fleet_proto::command::VERSION,
                at,
                hashprice_usd_per_ph_day: Some(hashprice),
                difficulty: None,
                height: None,
                fees_per_block_btc: None,
                btc_usd: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Payloads in the shapes the economics reference gives for mempool.space's mining API (sats
    /// as strings) and Hashrate Index, with the February 2026 record low's figures.
    pub(super) const HASHRATE: &str = r#"{"hashrates":[],"difficulty":[{"time":1771545600,"height":935000,"difficulty":144.5e12,"adjustment":-0.02}],"currentHashrate":1.034e21,"currentDifficulty":144500000000000}"#;
    pub(super) const REWARDS: &str = r#"{"startBlock":934857,"endBlock":935000,"totalReward":"45288000000","totalFee":"288000000","totalTx":"512345"}"#;
    pub(super) const PRICES: &str = r#"{"time":1771891200,"USD":63000,"EUR":58000}"#;
    pub(super) const HASHPRICE: &str = r#"{"data":[{"price":27.9,"timestamp":"2026-02-23T00:00:00Z"},{"price":27.58,"timestamp":"2026-02-24T00:00:00.000Z"}]}"#;

    #[test]
    fn mempool_answers_give_the_record_low() {
        let difficulty = mempool_difficulty(HASHRATE.as_bytes()).expect("parses");
        let (fees, height) = mempool_fees(REWARDS.as_bytes()).expect("parses");
        let btc_usd = mempool_price(PRICES.as_bytes()).expect("parses");
        assert_eq!(difficulty, 144.5e12);
        assert_eq!(height, 935_000);
        assert!((fees - 0.02).abs() < 1e-9, "{fees}");
        let reading = crate::market::Reading::from_message(&fleet_proto::Market {
            v: 1,
            at: 0,
            hashprice_usd_per_ph_day: None,
            difficulty: Some(difficulty),
            height: Some(height),
            fees_per_block_btc: Some(fees),
            btc_usd: Some(btc_usd),
        })
        .expect("complete");
        assert!((reading.hashprice.0 - 27.58).abs() < 0.01);
    }

    #[test]
    fn hashrate_index_gives_its_newest_point() {
        let (price, at) = hashrate_index(HASHPRICE.as_bytes()).expect("parses");
        assert_eq!(price, 27.58);
        // 2026-02-24T00:00:00Z
        assert_eq!(at, 1_771_891_200);
        let numeric = r#"{"data":[{"price":30.1,"timestamp":1771891200000}]}"#;
        assert_eq!(
            hashrate_index(numeric.as_bytes()),
            Ok((30.1, 1_771_891_200))
        );
    }

    #[test]
    fn other_shapes_are_refused_by_name() {
        for (body, what) in [
            ("{}", "hashrate"),
            ("[1,2]", "hashrate"),
            ("not json", "hashrate"),
        ] {
            assert_eq!(
                mempool_difficulty(body.as_bytes()),
                Err(SourceError::Shape(what))
            );
        }
        assert!(mempool_fees(br#"{"startBlock":10,"endBlock":5,"totalFee":"1"}"#).is_err());
        assert!(mempool_price(br#"{"EUR":1}"#).is_err());
        assert!(hashrate_index(br#"{"data":[{"price":1,"timestamp":"yesterday"}]}"#).is_err());
        assert!(hashrate_index(br#"{"data":[]}"#).is_err());
    }

    #[test]
    fn a_csv_replays_in_time_order_and_says_which_line_is_wrong() {
        let text = "# the crash\nat,hashprice\n1771891200,27.58\n1767225600,36.9\n\n";
        let readings = csv(text).expect("parses");
        assert_eq!(
            readings.iter().map(|m| m.at).collect::<Vec<_>>(),
            [1_767_225_600, 1_771_891_200]
        );
        assert_eq!(readings[1].hashprice_usd_per_ph_day, Some(27.58));
        let network = "at,difficulty,height,fees_per_block_btc,btc_usd\n1771891200,144.5e12,935000,0.02,63000\n";
        let market = &csv(network).expect("parses")[0];
        assert_eq!(
            (market.height, market.btc_usd),
            (Some(935_000), Some(63_000.0))
        );
        for (bad, line) in [
            ("at,hashprice\n1,2\nx,3\n", 3),
            ("at,hashprice\n1,2,3\n", 2),
            ("hashprice\n2\n", 1),
            ("at,hashprice\n1,cheap\n", 2),
            ("", 1),
        ] {
            match csv(bad) {
                Err(SourceError::Csv { line: l, .. }) => assert_eq!(l, line, "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_power_price_csv_needs_its_column_and_keeps_negative_prices() {
        let text = "at,usd_per_kwh\n1771894800,-0.012\n1771891200,0.043\n";
        let prices = power_csv(text).expect("parses");
        assert_eq!(
            prices
                .iter()
                .map(|p| (p.at, p.usd_per_kwh))
                .collect::<Vec<_>>(),
            [(1_771_891_200, 0.043), (1_771_894_800, -0.012)]
        );
        for (bad, line) in [
            ("at,price\n1,0.04\n", 1),
            ("at,usd_per_kwh\n1,\n", 2),
            ("at,usd_per_kwh\n1,4 cents\n", 2),
        ] {
            match power_csv(bad) {
                Err(SourceError::Csv { line: l, .. }) => assert_eq!(l, line, "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_body_is_parsed_or_refused(body in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = mempool_difficulty(&body);
            let _ = mempool_fees(&body);
            let _ = mempool_price(&body);
            let _ = hashrate_index(&body);
            let _ = csv(&String::from_utf8_lossy(&body));
            let _ = power_csv(&String::from_utf8_lossy(&body));
        }
    }
}

#[cfg(test)]
mod http_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{address}")
    }

    /// The poller against a local server answering like mempool.space and Hashrate Index.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn polling_local_servers_in_the_public_shapes() {
        let base = serve(
            Router::new()
                .route(
                    "/api/v1/mining/hashrate/3d",
                    get(|| async { super::tests::HASHRATE }),
                )
                .route(
                    "/api/v1/mining/reward-stats/144",
                    get(|| async { super::tests::REWARDS }),
                )
                .route("/api/v1/prices", get(|| async { super::tests::PRICES }))
                .route("/v1/hashrateindex/hashprice", get(hashrate_index_api)),
        )
        .await;
        let mempool = Poll::Mempool {
            url: format!("{base}/"),
        };
        let dir = std::env::temp_dir().join(format!("hw-sources-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let key_file = dir.join("hashrate-index.key");
        std::fs::write(&key_file, format!("{API_KEY}\n")).expect("writes");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let index = Poll::HashrateIndex {
            url: base.clone(),
            api_key_file: Some(key_file.clone()),
        };
        assert!(index.check().is_ok());
        let keyless = Poll::HashrateIndex {
            url: base.clone(),
            api_key_file: None,
        };
        let refused = tokio::task::spawn_blocking(move || poll(&keyless, 42))
            .await
            .expect("joins");
        assert!(
            matches!(&refused, Err(SourceError::Fetch(e)) if e.contains("401")),
            "{refused:?}"
        );
        let (m, h) = tokio::task::spawn_blocking(move || (poll(&mempool, 42), poll(&index, 42)))
            .await
            .expect("joins");
        let m = m.expect("mempool polled");
        assert_eq!(
            (m.at, m.difficulty, m.height),
            (42, Some(144.5e12), Some(935_000))
        );
        let h = h.expect("hashrate index polled");
        assert_eq!(
            (h.at, h.hashprice_usd_per_ph_day),
            (1_771_891_200, Some(27.58))
        );

        let broken = serve(
            Router::new()
                .route(
                    "/api/v1/mining/hashrate/3d",
                    get(|| async { "{\"oops\":1}" }),
                )
                .route(
                    "/v1/hashrateindex/hashprice",
                    get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "down") }),
                ),
        )
        .await;
        let (m, h) = tokio::task::spawn_blocking(move || {
            (
                poll(
                    &Poll::Mempool {
                        url: broken.clone(),
                    },
                    0,
                ),
                poll(
                    &Poll::HashrateIndex {
                        url: broken,
                        api_key_file: None,
                    },
                    0,
                ),
            )
        })
        .await
        .expect("joins");
        assert_eq!(m, Err(SourceError::Shape("hashrate")));
        assert!(matches!(h, Err(SourceError::Fetch(e)) if e.contains("500")));
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let exposed = Poll::HashrateIndex {
            url: "http://unused.invalid".into(),
            api_key_file: Some(key_file),
        };
        assert!(exposed.check().is_err(), "a key others can read is refused");
        let _ = std::fs::remove_dir_all(&dir);
    }

    const API_KEY: &str = "hi.0123456789abcdef";

    /// Hashrate Index's hashprice endpoint as its documentation describes it: the account's key
    /// in `X-Hi-Api-Key`, the currency and hash unit asked for; 401 without a key.
    async fn hashrate_index_api(
        headers: axum::http::HeaderMap,
        query: axum::extract::Query<std::collections::HashMap<String, String>>,
    ) -> (StatusCode, &'static str) {
        let keyed = headers
            .get("x-hi-api-key")
            .is_some_and(|key| key.as_bytes() == API_KEY.as_bytes());
        if !keyed {
            return (StatusCode::UNAUTHORIZED, "{\"error\":\"invalid api key\"}");
        }
        let asked = |name: &str, value: &str| query.get(name).map(String::as_str) == Some(value);
        if asked("currency", "USD") && asked("hashunit", "PHS") && query.contains_key("span") {
            (StatusCode::OK, super::tests::HASHPRICE)
        } else {
            (StatusCode::BAD_REQUEST, "{\"error\":\"bad parameters\"}")
        }
    }
}
