//! Runs as rows in PostgreSQL, for runs that outlive a process and move between hosts:
//! `superstep submit` (or a server) stores a run (its workflow and components by
//! digest) as queued; a worker claims it with `FOR UPDATE SKIP LOCKED`, raising its
//! epoch and taking a lease that it renews; a run whose lease expired is claimed again
//! by any worker, which resumes it where it stands: from the checkpoint of its latest
//! claim that saved one, or the one a resume named until a claim has saved. Writes of a
//! run hold only at the epoch its owner claimed (see
//! [`PostgresStore::fence`](crate::checkpoint::PostgresStore::fence)). A paused run
//! waits in the database until answers are stored and it is queued again; a cancel
//! asks its owner to stop it at its next barrier. Each run's events are rows, in
//! order. Changes are announced on the `superstep_runs` channel (`LISTEN`): the
//! payload is the run's id, or `stop:<run id>` when its owner must stop it.
//!
//! | module | what |
//! | --- | --- |
//! | `submit` | storing a run with its workflow, once per idempotency key |
//! | `claims` | what workers do: claim, renew, finish |
//! | `control` | what clients ask of a run: answers, cancel, resume |
//! | `records` | runs as `runs list` and the server show them |
//! | `events` | a run's events, and notifications of changes |
//! | `bundle` | a workflow and its components as stored |

mod bundle;
mod claims;
mod control;
mod events;
mod records;
mod submit;

pub(crate) use bundle::materialize;
pub use claims::{Claim, Renewed, RunEnd};
pub use control::Refusal;
pub use records::{RunFilter, RunRecord};
pub use submit::{Submission, Submitted};

use crate::checkpoint::PostgresStore;
use crate::db::Database;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The notification channel of run changes.
pub const CHANNEL: &str = "superstep_runs";

/// The prefix of a notification that asks a run's owner to stop it.
pub const STOP: &str = "stop:";

/// Where a run stands: in the queue, and as the server shows any run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting for a worker (submitted, answered, resumed, or given back).
    Queued,
    /// Owned by a worker while its lease lasts.
    Running,
    /// Waiting for answers to its requests (`respond`).
    Paused,
    /// Stopped at a barrier because it was cancelled; resumable.
    Cancelled,
    /// Done.
    Completed,
    /// Stopped by a failure; its last checkpoint stays valid.
    Failed,
}

impl RunStatus {
    /// Every status.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Paused,
        RunStatus::Cancelled,
        RunStatus::Completed,
        RunStatus::Failed,
    ];

    /// The status as the database and the CLI write it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
        }
    }

    /// The status written `text`.
    pub fn parse(text: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the run is over: completed or failed.
    pub fn is_final(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed)
    }

    /// Whether the run is being run or waits to be: it cannot be resumed now.
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

/// The checkpoint a run (the row `r`) goes on from, as `<id> <status> <superstep>`:
/// after a resume from an older checkpoint (`resume_from`, asked at `resume_epoch`),
/// that one until a later claim has saved a checkpoint; otherwise the checkpoint of the
/// highest epoch (the latest claim that saved one), then the longest chain.
pub(crate) const START_FROM: &str = "coalesce(
    (SELECT c.checkpoint_id || ' ' || c.status || ' ' || c.superstep
     FROM superstep_checkpoints c
     WHERE c.run_id = r.run_id AND (r.resume_from IS NULL OR c.epoch > r.resume_epoch)
     ORDER BY c.epoch DESC, c.depth DESC, c.created_at DESC, c.checkpoint_id DESC LIMIT 1),
    (SELECT c.checkpoint_id || ' ' || c.status || ' ' || c.superstep
     FROM superstep_checkpoints c WHERE c.checkpoint_id = r.resume_from))";

/// A checkpoint as [`START_FROM`] gives it: id, status, superstep.
pub(crate) fn start_from(text: Option<String>) -> Option<(String, String, u64)> {
    let text = text?;
    let mut parts = text.split(' ');
    let id = parts.next()?.to_string();
    let status = parts.next()?.to_string();
    let superstep = parts.next()?.parse().ok()?;
    Some((id, status, superstep))
}

/// One answer as the run's row keeps it.
#[derive(Serialize, Deserialize)]
struct StoredAnswer {
    request_id: String,
    body: String,
}

/// The run queue of one database.
pub struct RunQueue {
    db: Arc<Database>,
}

impl RunQueue {
    /// The queue in the database at `url`, whose schema must be this build's.
    pub fn connect(url: &str) -> Result<RunQueue> {
        Ok(RunQueue {
            db: Arc::new(Database::open(url)?),
        })
    }

    fn shown(&self) -> String {
        self.db.shown().to_string()
    }

    /// The checkpoints of the queue's database, over the queue's connections.
    pub fn checkpoints(&self) -> PostgresStore {
        PostgresStore::on(self.db.clone())
    }
}

/// Announces a change of run `run_id` when the transaction commits.
async fn notify(
    transaction: &deadpool_postgres::Transaction<'_>,
    run_id: &str,
) -> std::result::Result<(), tokio_postgres::Error> {
    transaction
        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &run_id])
        .await
        .map(drop)
}
