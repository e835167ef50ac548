//! Runs as `runs list`, `runs show` and the server show them.

use super::{RunQueue, RunStatus, START_FROM, StoredAnswer, start_from};
use crate::db::failed;
use crate::error::{Result, invalid};
use serde::Serialize;

/// A run as `runs list` and `runs show` show it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// The run's id (its checkpoints carry it too).
    pub run_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The submitter's name for the workflow (a server's catalog id), if it gave one.
    pub label: Option<String>,
    /// Where it stands.
    pub status: RunStatus,
    /// Raised on every claim: which owner's writes hold.
    pub epoch: i64,
    /// The worker that owns (or last owned) it.
    pub owner: Option<String>,
    /// Until when its owner's lease lasts (RFC 3339), while running.
    pub lease_until: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
    /// The requests whose answers are stored and not yet delivered (shown as their
    /// count, `answers_waiting`).
    #[serde(rename = "answers_waiting", serialize_with = "count")]
    pub answered: Vec<String>,
    /// The checkpoint it goes on from: its latest, or the one it was resumed from.
    pub checkpoint: Option<String>,
    /// The supersteps that checkpoint completed.
    pub superstep: Option<u64>,
    /// Whether a cancel waits for its owner to stop it.
    pub stop_requested: bool,
    /// When it was submitted (RFC 3339).
    pub submitted_at: String,
    /// When its row last changed (RFC 3339).
    pub updated_at: String,
}

/// Serialises a list as its length.
fn count<S: serde::Serializer>(items: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(items.len() as u64)
}

/// Which runs a listing shows; every field unset shows all.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs of the workflow with this name.
    pub workflow: Option<String>,
    /// Only runs submitted with this label.
    pub label: Option<String>,
}

/// The columns of a [`RunRecord`], in its order, of the row `r`.
fn record_columns() -> String {
    let time = |column: &str| {
        format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
    };
    format!(
        "r.run_id, r.workflow, r.label, r.status, r.epoch, r.owner, {}, r.reason, r.responses,
         {START_FROM}, r.stop_requested, {}, {}",
        time("r.lease_until"),
        time("r.submitted_at"),
        time("r.updated_at")
    )
}

fn record(row: &tokio_postgres::Row) -> RunRecord {
    let answers: Vec<StoredAnswer> = serde_json::from_str(row.get(8)).unwrap_or_default();
    let checkpoint = start_from(row.get(9));
    RunRecord {
        run_id: row.get(0),
        workflow: row.get(1),
        label: row.get(2),
        status: RunStatus::parse(row.get(3)).unwrap_or(RunStatus::Failed),
        epoch: row.get(4),
        owner: row.get(5),
        lease_until: row.get(6),
        reason: row.get(7),
        answered: answers.into_iter().map(|a| a.request_id).collect(),
        superstep: checkpoint.as_ref().map(|(_, _, superstep)| *superstep),
        checkpoint: checkpoint.map(|(id, _, _)| id),
        stop_requested: row.get(10),
        submitted_at: row.get(11),
        updated_at: row.get(12),
    }
}

impl RunQueue {
    /// The runs `filter` selects, newest first.
    pub fn list(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let shown = self.shown();
        let status = filter.status.map(|s| s.as_str().to_string());
        let (workflow, label) = (filter.workflow.clone(), filter.label.clone());
        self.db.call(move |client| async move {
            let rows = client
                .query(
                    &format!(
                        "SELECT {} FROM superstep_runs r
                         WHERE ($1::text IS NULL OR r.status = $1)
                             AND ($2::text IS NULL OR r.workflow = $2)
                             AND ($3::text IS NULL OR r.label = $3)
                         ORDER BY r.submitted_at DESC, r.run_id DESC",
                        record_columns()
                    ),
                    &[&status, &workflow, &label],
                )
                .await
                .map_err(|e| failed(&shown, "cannot list runs", e))?;
            Ok(rows.iter().map(record).collect())
        })
    }

    /// Run `run_id`, if there is one.
    pub fn find(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let (shown, id) = (self.shown(), run_id.to_string());
        self.db.call(move |client| async move {
            let row = client
                .query_opt(
                    &format!(
                        "SELECT {} FROM superstep_runs r WHERE r.run_id = $1",
                        record_columns()
                    ),
                    &[&id],
                )
                .await
                .map_err(|e| failed(&shown, "cannot read a run", e))?;
            Ok(row.as_ref().map(record))
        })
    }

    /// Run `run_id`; refused (exit code 2) when there is none.
    pub fn get(&self, run_id: &str) -> Result<RunRecord> {
        self.find(run_id)?
            .ok_or_else(|| invalid(format!("no run '{run_id}' in {}", self.shown())))
    }
}
