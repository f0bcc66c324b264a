//! The HTTP API (axum): AxeOS-compatible endpoints with the field names ESP-Miner uses, so
//! pyasic and other Bitaxe tools can identify and read a hashwarden miner, and Prometheus
//! metrics. Reads come from the one-second snapshot; writes need the configured token and go
//! to the mining loop, which decides and applies them like fleet commands.
//!
//! No secrets in any response: no pool password, no token, no keys.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::local::{LocalAction, LocalRequest};
use crate::snapshot::Snapshot;

/// How long a write waits for the mining loop (a wake ramps voltages and clocks for seconds).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests larger than this are refused before they are parsed.
const MAX_BODY: usize = 16 * 1024;

#[derive(Clone)]
struct Api {
    snapshots: watch::Receiver<Snapshot>,
    /// `None` when no token is configured: the API is read-only.
    writes: Option<(String, mpsc::Sender<LocalRequest>)>,
    /// Bounds for `/api/system/asic`.
    board: &'static hashboard::board::BoardDescription,
}

/// Builds the router; `token` enables writes.
fn router(api: Api) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/api/system/info", get(system_info))
        .route("/api/system/asic", get(system_asic))
        .route("/api/system", axum::routing::patch(patch_system))
        .route("/api/system/{verb}", post(post_system))
        .route("/metrics", get(metrics))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// What a miner's HTTP API holds open at most: fleet tools (pyasic, a dashboard, Prometheus)
/// need a handful; one host gets a few; a request that stalls for 30 s is dropped.
const LIMITS: net_guard::Limits = net_guard::Limits {
    max_connections: 64,
    max_per_peer: 16,
    idle: std::time::Duration::from_secs(30),
};

/// Serves until the task is dropped.
pub async fn serve(
    address: SocketAddr,
    snapshots: watch::Receiver<Snapshot>,
    board: &'static hashboard::board::BoardDescription,
    writes: Option<(String, mpsc::Sender<LocalRequest>)>,
) {
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(e) => {
            warn!(%address, error = %e, "HTTP API not served");
            return;
        }
    };
    if let Ok(bound) = listener.local_addr() {
        info!(address = %bound, writable = writes.is_some(), "HTTP API listening");
    }
    let api = Api {
        snapshots,
        writes,
        board,
    };
    let listener = net_guard::GuardedListener::new(listener, LIMITS, "HTTP API");
    if let Err(e) = axum::serve(listener, router(api)).await {
        warn!(error = %e, "HTTP API stopped");
    }
}

/// `GET /`: a page for a person who types the miner's address, and what fleet tools read to
/// tell which firmware answers — "AxeOS" in it, since the API under it is AxeOS's (pyasic and
/// similar scanners pick the API by the landing page).
async fn landing(State(api): State<Api>) -> axum::response::Html<String> {
    let s = api.snapshots.borrow().clone();
    axum::response::Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <title>hashwarden {version} (AxeOS-compatible API)</title></head>\n\
         <body><h1>hashwarden {version}</h1>\n\
         <p>{board}, {chips}/{expected} {asic} chips up, {mode:?}: {ths:.3} TH/s at {watts:.0} W.</p>\n\
         <p>AxeOS API: <a href=\"/api/system/info\">/api/system/info</a>, \
         <a href=\"/api/system/asic\">/api/system/asic</a>; \
         Prometheus: <a href=\"/metrics\">/metrics</a>.</p></body></html>\n",
        version = crate::telemetry::firmware_version(),
        board = s.board,
        chips = s.chips_up,
        expected = s.chips_expected,
        asic = s.asic_model,
        mode = s.mode,
        ths = s.hashrate.s5,
        watts = s.power_w.unwrap_or(0.0),
    ))
}

/// ESP-Miner shows best difficulties with an SI suffix ("4.29G").
fn si(value: f64) -> String {
    const UNITS: [(f64, &str); 6] = [
        (1e18, "E"),
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
    ];
    UNITS.iter().find(|(scale, _)| value >= *scale).map_or_else(
        || format!("{value:.0}"),
        |(scale, unit)| format!("{:.2}{unit}", value / scale),
    )
}

/// `GET /api/system/info`: AxeOS's field names and units (GH/s, W, mV, °C, %).
pub fn system_info_json(s: &Snapshot) -> Value {
    let pool = s.pools.iter().find(|p| p.alive).or(s.pools.first());
    let (host, port) = pool
        .and_then(|p| p.url.strip_prefix("stratum+tcp://"))
        .and_then(|hp| hp.trim_end_matches('/').rsplit_once(':'))
        .map_or(("", 0), |(h, p)| (h, p.parse::<u16>().unwrap_or(0)));
    json!({
        "ASICModel": s.asic_model,
        "asicCount": s.chips_expected,
        "deviceModel": s.board,
        "boardVersion": s.board,
        "hostname": s.board,
        "version": crate::telemetry::firmware_version(),
        "power": s.power_w.unwrap_or(0.0),
        "hashRate": s.hashrate.s5 * 1e3,
        "hashRate_1m": s.hashrate.m1 * 1e3,
        "hashRate_15m": s.hashrate.m15 * 1e3,
        "expectedHashrate": s.expected_ths * 1e3,
        "errorPercentage": error_percentage(s),
        "bestDiff": si(s.best_difficulty),
        "bestSessionDiff": si(s.best_difficulty),
        "temp": s.hottest_chip_c.or(s.board_temp_c).unwrap_or(0.0),
        "vrTemp": s.regulator_temp_c,
        "coreVoltage": s.core_mv,
        "coreVoltageActual": s.core_mv,
        "frequency": s.frequency_mhz,
        "fanspeed": s.fan.map_or(0.0, |(_, percent)| f64::from(percent)),
        "fanrpm": s.fan.map_or(0, |(rpm, _)| rpm),
        "autofanspeed": 1,
        "sharesAccepted": s.accepted,
        "sharesRejected": s.rejected,
        "uptimeSeconds": s.elapsed_s,
        "stratumURL": host,
        "stratumPort": port,
        "stratumUser": pool.map_or("", |p| p.user.as_str()),
        "isUsingFallbackStratum": s.pools.iter().position(|p| p.alive).is_some_and(|i| i > 0),
        "mode": s.mode,
    })
}

fn error_percentage(s: &Snapshot) -> f64 {
    let checked = s.nonces + s.hardware_errors;
    if checked == 0 {
        0.0
    } else {
        100.0 * s.hardware_errors as f64 / checked as f64
    }
}

async fn system_info(State(api): State<Api>) -> Json<Value> {
    Json(system_info_json(&api.snapshots.borrow()))
}

async fn system_asic(State(api): State<Api>) -> Json<Value> {
    let board = api.board;
    let snapshot = api.snapshots.borrow().clone();
    // The steps AxeOS offers, within what this board allows.
    let frequencies: Vec<f64> = (0..)
        .map(|i| board.min_frequency.mhz() + 25.0 * f64::from(i))
        .take_while(|mhz| *mhz <= board.max_frequency.mhz())
        .collect();
    let voltages: Vec<u32> = (board.min_core_mv..=board.max_core_mv)
        .step_by(50)
        .collect();
    Json(json!({
        "ASICModel": snapshot.asic_model,
        "deviceModel": board.name,
        "asicCount": board.chips_per_chain * board.chains,
        "defaultFrequency": board.default_frequency.mhz(),
        "frequencyOptions": frequencies,
        "defaultVoltage": board.default_core_mv,
        "voltageOptions": voltages,
    }))
}

/// An error as AxeOS clients expect it: a status and a one-line message.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The writes' gate: a configured token, presented as `Authorization: Bearer <token>`.
fn authorised(
    api: &Api,
    headers: &HeaderMap,
) -> Result<mpsc::Sender<LocalRequest>, (StatusCode, &'static str)> {
    let Some((token, commands)) = &api.writes else {
        return Err((
            StatusCode::FORBIDDEN,
            "read-only: set [api] token in the configuration to allow writes",
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compared without an early exit, so the time taken says nothing about the token.
    let matches = presented.is_some_and(|p| {
        p.len() == token.len()
            && p.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if matches {
        Ok(commands.clone())
    } else {
        Err((StatusCode::UNAUTHORIZED, "missing or wrong token"))
    }
}

async fn request(commands: &mpsc::Sender<LocalRequest>, action: LocalAction) -> Response {
    let (reply, answer) = oneshot::channel();
    if commands.send(LocalRequest { action, reply }).await.is_err() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the miner is stopping");
    }
    match tokio::time::timeout(WRITE_TIMEOUT, answer).await {
        Ok(Ok(Ok(note))) => (
            StatusCode::OK,
            Json(json!({ "applied": true, "note": note })),
        )
            .into_response(),
        Ok(Ok(Err(reason))) => refuse(StatusCode::UNPROCESSABLE_ENTITY, reason),
        Ok(Err(_)) => refuse(StatusCode::SERVICE_UNAVAILABLE, "the miner is stopping"),
        Err(_) => refuse(
            StatusCode::GATEWAY_TIMEOUT,
            "still applying; check /api/system/info",
        ),
    }
}

/// What `PATCH /api/system` may change, as AxeOS names it.
pub fn patch_actions(body: &Value) -> Result<Vec<LocalAction>, String> {
    let object = body.as_object().ok_or("the body must be a JSON object")?;
    let mut actions = Vec::new();
    for (key, value) in object {
        let number = || {
            value
                .as_f64()
                .ok_or_else(|| format!("{key} must be a number"))
        };
        match key.as_str() {
            "frequency" => actions.push(LocalAction::Command(fleet_proto::Action::SetFrequency {
                mhz: number()?,
            })),
            "coreVoltage" => {
                let mv = number()?;
                if !(mv.is_finite() && (0.0..=u32::MAX as f64).contains(&mv)) {
                    return Err(format!("coreVoltage {mv} is not a voltage in mV"));
                }
                actions.push(LocalAction::Command(fleet_proto::Action::SetVoltage {
                    millivolts: mv.round() as u32,
                }));
            }
            "fanspeed" => actions.push(LocalAction::Fan(Some(number()? as f32))),
            "autofanspeed" => match value.as_u64() {
                Some(1) => actions.push(LocalAction::Fan(None)),
                // Manual is implied by a `fanspeed` in the same request.
                Some(0) => {}
                _ => return Err("autofanspeed must be 0 or 1".into()),
            },
            other => return Err(format!("{other} cannot be changed here")),
        }
    }
    if actions.is_empty() {
        return Err("nothing to change".into());
    }
    Ok(actions)
}

async fn patch_system(State(api): State<Api>, headers: HeaderMap, body: String) -> Response {
    let commands = match authorised(&api, &headers) {
        Ok(commands) => commands,
        Err((status, message)) => return refuse(status, message),
    };
    let body: Value = match serde_json::from_str(&body) {
        Ok(body) => body,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")),
    };
    let actions = match patch_actions(&body) {
        Ok(actions) => actions,
        Err(reason) => return refuse(StatusCode::BAD_REQUEST, reason),
    };
    let mut last = refuse(StatusCode::BAD_REQUEST, "nothing to change");
    for action in actions {
        last = request(&commands, action).await;
        if !last.status().is_success() {
            break;
        }
    }
    last
}

async fn post_system(
    State(api): State<Api>,
    Path(verb): Path<String>,
    headers: HeaderMap,
) -> Response {
    let action = match verb.as_str() {
        "pause" => fleet_proto::Action::Sleep,
        "resume" => fleet_proto::Action::Wake,
        "restart" => fleet_proto::Action::Reboot,
        "identify" => fleet_proto::Action::Identify,
        _ => return refuse(StatusCode::NOT_FOUND, format!("no such action: {verb}")),
    };
    match authorised(&api, &headers) {
        Ok(commands) => request(&commands, LocalAction::Command(action)).await,
        Err((status, message)) => refuse(status, message),
    }
}

async fn metrics(State(api): State<Api>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(&api.snapshots.borrow()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-zA-Z]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("frequency".to_string()),
                        Just("coreVoltage".to_string()),
                        Just("fanspeed".to_string()),
                        Just("autofanspeed".to_string()),
                        "[a-z]{1,8}"
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Any JSON body gets actions or a reason, never a panic; every action carries a number
        /// that came from the body.
        #[test]
        fn patch_bodies_never_panic(body in any_json()) {
            if let Ok(actions) = patch_actions(&body) {
                proptest::prop_assert!(!actions.is_empty());
                proptest::prop_assert!(body.as_object().is_some_and(|o| !o.is_empty()));
            }
        }
    }

    #[test]
    fn best_difficulties_read_like_axeos() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(999.0), "999");
        assert_eq!(si(4_294_967_296.0), "4.29G");
        assert_eq!(si(1_500_000.0), "1.50M");
    }

    #[test]
    fn patch_bodies_are_checked_field_by_field() {
        let actions = patch_actions(&json!({"frequency": 490, "coreVoltage": 1250})).expect("ok");
        assert_eq!(actions.len(), 2);
        assert!(matches!(
            actions[0],
            LocalAction::Command(fleet_proto::Action::SetVoltage { millivolts: 1250 })
                | LocalAction::Command(fleet_proto::Action::SetFrequency { .. })
        ));
        assert_eq!(
            patch_actions(&json!({"fanspeed": 80, "autofanspeed": 0})).expect("ok"),
            [LocalAction::Fan(Some(80.0))]
        );
        for bad in [
            json!([]),
            json!({}),
            json!({"frequency": "fast"}),
            json!({"coreVoltage": -5}),
            json!({"stratumPassword": "x"}),
            json!({"autofanspeed": 7}),
        ] {
            assert!(patch_actions(&bad).is_err(), "{bad}");
        }
    }
}
