//! `GET /v1/runs/{id}/events`: a run's events as Server-Sent Events, each with its
//! sequence in the run as `id:`. A client that reconnects with `Last-Event-ID` gets
//! exactly the events after that one. Between them, a `status` event without an id
//! says where the run stands whenever that changes (`{"status": "paused"}`): clients
//! that follow only the numbered events ignore it, as `EventSource.onmessage` does.
//! The stream ends once the run has completed or failed and every event is sent; for
//! a paused or cancelled run it stays open, as the run may go on.

use super::{AppState, blocking, check_run_id};
use crate::server::problem::{Answer, ErrorBody, Problem};
use crate::server::runs::{RunEvent, RunStatus, Runs};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use utoipa::IntoParams;

/// Where to start.
#[derive(Deserialize, IntoParams)]
pub struct After {
    /// Only events after this sequence number (as `Last-Event-ID`, which wins when
    /// both are given).
    after: Option<u64>,
}

/// How long a follower waits for news before looking anyway (a safety net for a
/// notification lost with a database connection).
const LOOK_AGAIN: Duration = Duration::from_secs(15);

/// The run's events, then each new one as it comes, as Server-Sent Events: `id:` is
/// the event's sequence number, `data:` the event as JSON (its `event` field names
/// it).
#[utoipa::path(get, path = "/v1/runs/{run_id}/events", tag = "runs",
    params(("run_id" = String, Path, description = "The run"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Only events after this one"),
        After),
    responses(
        (status = 200, description = "The events", content_type = "text/event-stream", body = String),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    Query(start): Query<After>,
    headers: HeaderMap,
) -> Answer<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    check_run_id(&run_id)?;
    let after = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    Problem::unprocessable("Last-Event-ID: the sequence number of an event")
                })?,
        ),
        None => start.after,
    };
    let runs = state.runs.clone();
    let id = run_id.clone();
    blocking(move || runs.get(&id)).await?;
    let follow = Follow {
        watch: state.runs.watch(&run_id),
        runs: state.runs.clone(),
        run_id,
        after,
        status: None,
        ready: VecDeque::new(),
        done: false,
    };
    let events = futures_util::stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await?;
        Some((Ok(event), follow))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// A client following a run.
struct Follow {
    runs: Arc<dyn Runs>,
    run_id: String,
    /// The last event read.
    after: Option<u64>,
    watch: watch::Receiver<u64>,
    /// The status last sent.
    status: Option<RunStatus>,
    /// Read but not yet sent.
    ready: VecDeque<Event>,
    /// Whether the run is over and every event read.
    done: bool,
}

impl Follow {
    /// The next event to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            self.watch.borrow_and_update();
            let (runs, run_id, after) = (self.runs.clone(), self.run_id.clone(), self.after);
            // The status before the events: a run over by then has all its events in.
            let read = blocking(move || {
                let status = runs.get(&run_id)?.status;
                Ok((status, runs.events_after(&run_id, after)?))
            });
            let (status, events) = read.await.ok()?;
            self.take(events);
            if self.status != Some(status) {
                self.status = Some(status);
                let data = serde_json::json!({ "status": status }).to_string();
                self.ready
                    .push_back(Event::default().event("status").data(data));
            }
            self.done = status.is_final();
            if self.ready.is_empty() && !self.done {
                let news = tokio::time::timeout(LOOK_AGAIN, self.watch.changed()).await;
                if matches!(news, Ok(Err(_))) {
                    return None;
                }
            }
        }
    }

    /// Queues `events` to send.
    fn take(&mut self, events: Vec<RunEvent>) {
        for event in events {
            self.after = Some(event.seq);
            let sent = Event::default()
                .id(event.seq.to_string())
                .data(&*event.json);
            self.ready.push_back(sent);
        }
    }
}
