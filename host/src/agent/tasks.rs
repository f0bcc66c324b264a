//! The agent's helpers that run beside its loop: the HTTP listener (metrics, images being
//! rolled out) and the market poller.

use std::time::Duration;

use tracing::warn;

use super::unix_now;

/// Serves the latest rendering on `GET /metrics`, and the images of the rollouts under way on
/// `GET /images/<sha256>.img`, until aborted.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    rendered: tokio::sync::watch::Receiver<String>,
    shelf: super::Shelf,
) {
    let images = axum::routing::get(
        move |axum::extract::Path(file): axum::extract::Path<String>| {
            let image = shelf.lock().ok().and_then(|s| s.get(&file).cloned());
            async move {
                use axum::response::IntoResponse;
                match image {
                    Some(bytes) => (
                        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
                        bytes,
                    )
                        .into_response(),
                    None => axum::http::StatusCode::NOT_FOUND.into_response(),
                }
            }
        },
    );
    let app = axum::Router::new().route("/images/{file}", images).route(
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
        warn!(error = %e, "HTTP listener stopped");
    }
}

/// Polls `source` every `every`, off the loop (the client blocks).
pub(super) fn spawn_poller(
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
