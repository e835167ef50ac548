//! What clients ask of a run: answers to its requests, a cancel, a resume. Each is one
//! transaction on the run's row, refused (nothing changed) when the run cannot take it.

use super::{CHANNEL, RunQueue, STOP, StoredAnswer, notify};
use crate::db::failed;
use crate::error::{Result, host, invalid};

/// Why a run refused what was asked of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// There is no such run.
    NoRun,
    /// The run cannot take it where it stands; the text says why.
    Conflict(String),
}

impl RunQueue {
    /// Stores `answers` (request id and JSON body) for requests of run `run_id`, each
    /// of which must be among `pending` (the requests its checkpoint waits on) and not
    /// answered yet. A paused run is queued again; a running, queued or cancelled one
    /// gets them when it next goes on. Refuses, changing nothing, a completed or failed
    /// run and an answer to a request that is not pending.
    pub fn respond(
        &self,
        run_id: &str,
        answers: Vec<(String, String)>,
        pending: Vec<String>,
    ) -> Result<()> {
        match self.answer(run_id, answers, pending)? {
            None => Ok(()),
            Some(Refusal::NoRun) => Err(invalid(format!("no run '{run_id}' in {}", self.shown()))),
            Some(Refusal::Conflict(why)) => Err(invalid(why)),
        }
    }

    /// [`RunQueue::respond`], saying why it refused.
    pub fn answer(
        &self,
        run_id: &str,
        answers: Vec<(String, String)>,
        pending: Vec<String>,
    ) -> Result<Option<Refusal>> {
        let (shown, id) = (self.shown(), run_id.to_string());
        self.db.call(move |mut client| async move {
            let fail = |e| failed(&shown, "cannot store the answers", e);
            let transaction = client.transaction().await.map_err(fail)?;
            let row = transaction
                .query_opt(
                    "SELECT status, responses FROM superstep_runs WHERE run_id = $1 FOR UPDATE",
                    &[&id],
                )
                .await
                .map_err(fail)?;
            let Some(row) = row else {
                return Ok(Some(Refusal::NoRun));
            };
            let status: String = row.get(0);
            let mut stored: Vec<StoredAnswer> = serde_json::from_str(row.get(1)).map_err(host)?;
            if status == "completed" || status == "failed" {
                return Ok(Some(Refusal::Conflict(format!(
                    "run {id} is {status}: nothing to answer"
                ))));
            }
            for (request_id, body) in answers {
                if let Some(why) = unanswerable(&id, &request_id, &pending, &stored) {
                    return Ok(Some(Refusal::Conflict(why)));
                }
                stored.push(StoredAnswer { request_id, body });
            }
            let stored = serde_json::to_string(&stored).map_err(host)?;
            transaction
                .execute(
                    "UPDATE superstep_runs SET responses = $2,
                         status = CASE WHEN status = 'paused' THEN 'queued' ELSE status END,
                         updated_at = now() WHERE run_id = $1",
                    &[&id, &stored],
                )
                .await
                .map_err(fail)?;
            notify(&transaction, &id).await.map_err(fail)?;
            transaction.commit().await.map_err(fail)?;
            Ok(None)
        })
    }

    /// Cancels run `run_id`: a queued one at once, a running one at its next barrier
    /// (its owner is told). Refuses a run that is neither.
    pub fn cancel(&self, run_id: &str) -> Result<Option<Refusal>> {
        let (shown, id) = (self.shown(), run_id.to_string());
        self.db.call(move |mut client| async move {
            let fail = |e| failed(&shown, "cannot cancel the run", e);
            let transaction = client.transaction().await.map_err(fail)?;
            let row = transaction
                .query_opt(
                    "UPDATE superstep_runs SET stop_requested = (status = 'running'),
                         status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                         updated_at = now()
                     WHERE run_id = $1 AND status IN ('queued', 'running') RETURNING status",
                    &[&id],
                )
                .await
                .map_err(fail)?;
            let Some(row) = row else {
                return Ok(Some(
                    refusal(&transaction, &id, "not running")
                        .await
                        .map_err(fail)?,
                ));
            };
            if row.get::<_, String>(0) == "running" {
                let stop = format!("{STOP}{id}");
                transaction
                    .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &stop])
                    .await
                    .map_err(fail)?;
            }
            notify(&transaction, &id).await.map_err(fail)?;
            transaction.commit().await.map_err(fail)?;
            Ok(None)
        })
    }

    /// Queues run `run_id` to go on from `checkpoint` (one of its own, checked by the
    /// caller; an older one starts a branch), or from its latest when `None`. Refuses
    /// a run that is queued or running.
    pub fn resume(&self, run_id: &str, checkpoint: Option<String>) -> Result<Option<Refusal>> {
        let (shown, id) = (self.shown(), run_id.to_string());
        self.db.call(move |mut client| async move {
            let fail = |e| failed(&shown, "cannot resume the run", e);
            let transaction = client.transaction().await.map_err(fail)?;
            let changed = transaction
                .execute(
                    "UPDATE superstep_runs SET status = 'queued', resume_from = $2,
                         resume_epoch = epoch, stop_requested = false, reason = NULL,
                         updated_at = now()
                     WHERE run_id = $1 AND status NOT IN ('queued', 'running')",
                    &[&id, &checkpoint],
                )
                .await
                .map_err(fail)?;
            if changed == 0 {
                let why = "running: cancel it first";
                return Ok(Some(refusal(&transaction, &id, why).await.map_err(fail)?));
            }
            notify(&transaction, &id).await.map_err(fail)?;
            transaction.commit().await.map_err(fail)?;
            Ok(None)
        })
    }
}

/// Why run `id` refused: there is none, or its status and `why`.
async fn refusal(
    transaction: &deadpool_postgres::Transaction<'_>,
    id: &str,
    why: &str,
) -> std::result::Result<Refusal, tokio_postgres::Error> {
    let row = transaction
        .query_opt(
            "SELECT status FROM superstep_runs WHERE run_id = $1",
            &[&id],
        )
        .await?;
    Ok(match row {
        None => Refusal::NoRun,
        Some(row) => Refusal::Conflict(format!("run {id} is {}, {why}", row.get::<_, String>(0))),
    })
}

/// Why `request_id` cannot be answered in run `run_id`, if it cannot.
fn unanswerable(
    run_id: &str,
    request_id: &str,
    pending: &[String],
    stored: &[StoredAnswer],
) -> Option<String> {
    if !pending.iter().any(|p| p == request_id) {
        let pending = if pending.is_empty() {
            "none".to_string()
        } else {
            pending.join(", ")
        };
        return Some(format!(
            "request '{request_id}' is not pending in run {run_id} (never asked, or already answered); pending: {pending}"
        ));
    }
    if stored.iter().any(|a| a.request_id == request_id) {
        return Some(format!(
            "request '{request_id}' of run {run_id} is already answered"
        ));
    }
    None
}
