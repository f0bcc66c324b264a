//! The agent's helpers that run beside its loop: the HTTP listener (the dashboard, metrics,
//! images being rolled out) and the market poller.

use std::time::Duration;

use tracing::warn;

use super::unix_now;

/// What the agent's HTTP listener serves, each kept current by the loop.
#[derive(Debug)]
pub struct Served {
    /// Prometheus text for `/metrics`.
    pub metrics: tokio::sync::watch::Receiver<String>,
    /// The dashboard's JSON document (`/api/dashboard`, and pushed on `/events`).
    pub dashboard: tokio::sync::watch::Receiver<String>,
    /// The images of the rollouts under way (`/images/<sha256>.img`).
    pub images: super::Shelf,
}

/// The dashboard page and its script: plain HTML and a small canvas chart of our own, built into
/// the binary — nothing is fetched at run time.
const DASHBOARD_HTML: &str = include_str!("dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");

/// What the agent's HTTP listener holds open at most: dashboards (each an event stream, kept alive
/// by a comment every 15 s, so never idle), Prometheus and miners fetching images. Bounded so a
/// flood of connections cannot take the file descriptors the embedded broker needs.
const LIMITS: net_guard::Limits = net_guard::Limits {
    max_connections: 256,
    max_per_peer: 32,
    idle: Duration::from_secs(60),
};

/// Serves the dashboard (`/`, `/dashboard.js`, `/api/dashboard`, `/events`), `/metrics` and the
/// rollouts' images until aborted.
pub async fn serve_http(listener: tokio::net::TcpListener, served: Served) {
    use axum::http::header::CONTENT_TYPE;
    use axum::response::IntoResponse;
    use axum::routing::get;
    let Served {
        metrics,
        dashboard,
        images,
    } = served;
    let image = get(
        move |axum::extract::Path(file): axum::extract::Path<String>| {
            let image = images.lock().ok().and_then(|s| s.get(&file).cloned());
            async move {
                match image {
                    Some(bytes) => {
                        ([(CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
                    }
                    None => axum::http::StatusCode::NOT_FOUND.into_response(),
                }
            }
        },
    );
    let current = dashboard.clone();
    let document = get(move || {
        let body = current.borrow().clone();
        async move { ([(CONTENT_TYPE, "application/json")], body) }
    });
    let events = get(move || {
        let mut changes = dashboard.clone();
        // The current document first, then each new one: a page that connects mid-curtailment
        // is drawn at once.
        changes.mark_changed();
        let stream = futures_util::stream::unfold(changes, |mut changes| async move {
            changes.changed().await.ok()?;
            let data = changes.borrow_and_update().clone();
            let event = axum::response::sse::Event::default().data(data);
            Some((Ok::<_, std::convert::Infallible>(event), changes))
        });
        async move {
            axum::response::sse::Sse::new(stream)
                .keep_alive(axum::response::sse::KeepAlive::default())
        }
    });
    let prometheus = get(move || {
        let body = metrics.borrow().clone();
        async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
    });
    let app = axum::Router::new()
        .route("/", get(|| async { axum::response::Html(DASHBOARD_HTML) }))
        .route(
            "/dashboard.js",
            get(|| async { ([(CONTENT_TYPE, "text/javascript")], DASHBOARD_JS) }),
        )
        .route("/api/dashboard", document)
        .route("/events", events)
        .route("/metrics", prometheus)
        .route("/images/{file}", image);
    let listener = net_guard::GuardedListener::new(listener, LIMITS, "agent HTTP");
    if let Err(e) = axum::serve(listener, app).await {
        warn!(error = %e, "HTTP listener stopped");
    }
}

/// What one round of polling every source gave, source by source.
pub(super) type Polled = Vec<Result<fleet_proto::Market, crate::sources::SourceError>>;

/// Polls every source every `every`, off the loop (the client blocks), all of a round together.
pub(super) fn spawn_poller(
    sources: Vec<crate::sources::Poll>,
    every: Duration,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::Receiver<Polled>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let task = tokio::spawn(async move {
        loop {
            let round = sources.iter().cloned().map(|source| {
                tokio::task::spawn_blocking(move || crate::sources::poll(&source, unix_now()))
            });
            let mut polled = Vec::with_capacity(sources.len());
            for handle in round.collect::<Vec<_>>() {
                let Ok(result) = handle.await else { return };
                polled.push(result);
            }
            if tx.send(polled).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
    (task, rx)
}
