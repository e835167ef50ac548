//! Runs as rows in PostgreSQL, for runs that outlive a process and move between hosts:
//! `superstep submit` stores a run (its workflow and components by digest) as queued;
//! a worker claims it with `FOR UPDATE SKIP LOCKED`, raising its epoch and taking a
//! lease that it renews; a run whose lease expired is claimed again by any worker,
//! which resumes it from its latest checkpoint. Writes of a run hold only at the epoch
//! its owner claimed (see [`PostgresStore::fence`](crate::checkpoint::PostgresStore::fence)).
//! A paused run waits in the database until `respond` stores answers and queues it
//! again. Each run's events are rows, in order. Changes are announced on the
//! `superstep_runs` channel (`LISTEN`), with the run id as payload.

mod bundle;

pub(crate) use bundle::materialize;

use crate::checkpoint::PostgresStore;
use crate::db::{Database, failed};
use crate::error::{Result, host, invalid};
use crate::manifest::Manifest;
use crate::message::Message;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The notification channel of run changes.
pub const CHANNEL: &str = "superstep_runs";

/// Where a run stands in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting for a worker (submitted, answered, or given back).
    Queued,
    /// Owned by a worker while its lease lasts.
    Running,
    /// Waiting for answers to its requests (`respond`).
    Paused,
    /// Done.
    Completed,
    /// Stopped by a failure; its last checkpoint stays valid.
    Failed,
}

impl RunStatus {
    /// The status as the database and the CLI write it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
        }
    }

    /// The status written `text`.
    pub fn parse(text: &str) -> Option<RunStatus> {
        [
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Paused,
            RunStatus::Completed,
            RunStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether the run is over: completed or failed.
    pub fn is_final(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed)
    }
}

/// A run as `runs list` and `runs show` show it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// The run's id (its checkpoints carry it too).
    pub run_id: String,
    /// The workflow's name.
    pub workflow: String,
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
    /// Answers stored and not yet delivered.
    pub answers_waiting: usize,
    /// When it was submitted (RFC 3339).
    pub submitted_at: String,
    /// When its row last changed (RFC 3339).
    pub updated_at: String,
}

/// A run a worker claimed: what it needs to start or resume it.
pub struct Claim {
    /// The run.
    pub run_id: String,
    /// The epoch the claim raised the run to: the worker's writes hold at it only.
    pub epoch: i64,
    /// The workflow's key, and its stored manifest (components named by digest).
    pub workflow_digest: String,
    /// The stored manifest's text.
    pub manifest: String,
    /// The run's input.
    pub input: Message,
    /// Answers to deliver before the run goes on, by request id.
    pub answers: Vec<(String, Message)>,
    /// The sequence number of the run's next event.
    pub next_event: i64,
    /// The run's latest checkpoint by lineage, and its status, if it has one.
    pub latest: Option<(String, String)>,
}

/// How a claimed run stopped, for [`RunQueue::finish`].
#[derive(Debug, Clone)]
pub struct RunEnd {
    /// The run.
    pub run_id: String,
    /// The epoch it was claimed at.
    pub epoch: i64,
    /// Where it stands now.
    pub status: RunStatus,
    /// Why it failed (or was given back).
    pub reason: Option<String>,
    /// How many of its stored answers were delivered when it started.
    pub delivered: usize,
}

/// A claimed run's row, as [`RunQueue::claim`] returns it.
fn claimed(row: &tokio_postgres::Row) -> Result<Claim> {
    let run_id: String = row.get(0);
    let answers: Vec<StoredAnswer> = serde_json::from_str(row.get(6))
        .map_err(|e| host(format!("run {run_id}: stored answers: {e}")))?;
    let latest: Option<String> = row.get(8);
    Ok(Claim {
        epoch: row.get(1),
        workflow_digest: row.get(2),
        manifest: row.get(3),
        input: Message {
            kind: row.get(4),
            body: Bytes::from(row.get::<_, Vec<u8>>(5)),
        },
        answers: answers
            .into_iter()
            .map(|a| {
                let body = Bytes::from(a.body.into_bytes());
                let kind = crate::message::RESPONSE_KIND.to_string();
                (a.request_id, Message { kind, body })
            })
            .collect(),
        next_event: row.get(7),
        latest: latest.and_then(|l| {
            let (id, status) = l.split_once(' ')?;
            Some((id.to_string(), status.to_string()))
        }),
        run_id,
    })
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

/// The columns of a [`RunRecord`], in its order.
const RECORD_COLUMNS: &str = "run_id, workflow, status, epoch, owner,
    to_char(lease_until AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), reason,
    responses,
    to_char(submitted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
    to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

fn record(row: &tokio_postgres::Row) -> RunRecord {
    let answers: Vec<StoredAnswer> = serde_json::from_str(row.get(7)).unwrap_or_default();
    RunRecord {
        run_id: row.get(0),
        workflow: row.get(1),
        status: RunStatus::parse(row.get(2)).unwrap_or(RunStatus::Failed),
        epoch: row.get(3),
        owner: row.get(4),
        lease_until: row.get(5),
        reason: row.get(6),
        answers_waiting: answers.len(),
        submitted_at: row.get(8),
        updated_at: row.get(9),
    }
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

    /// Stores a run of `manifest` (loaded and checked) on `input` as queued, with the
    /// workflow and every component it names (each stored once, by digest); returns the
    /// run's id.
    pub fn submit(&self, manifest: &Manifest, input: Message) -> Result<String> {
        let bundle = bundle::bundle(manifest)?;
        let run_id = uuid::Uuid::now_v7().to_string();
        let (shown, id) = (self.shown(), run_id.clone());
        self.db.call(move |mut client| async move {
            let fail = |e| failed(&shown, "cannot submit the run", e);
            let transaction = client.transaction().await.map_err(fail)?;
            let digests: Vec<&str> = bundle.components.iter().map(|(d, _)| d.as_str()).collect();
            let present: Vec<String> = transaction
                .query(
                    "SELECT digest FROM superstep_components WHERE digest = ANY($1)",
                    &[&digests],
                )
                .await
                .map_err(fail)?
                .into_iter()
                .map(|row| row.get(0))
                .collect();
            for (digest, bytes) in &bundle.components {
                if !present.contains(digest) {
                    transaction
                        .execute(
                            "INSERT INTO superstep_components (digest, bytes) VALUES ($1, $2)
                             ON CONFLICT (digest) DO NOTHING",
                            &[digest, bytes],
                        )
                        .await
                        .map_err(fail)?;
                }
            }
            transaction
                .execute(
                    "INSERT INTO superstep_workflows (digest, name, manifest) VALUES ($1, $2, $3)
                     ON CONFLICT (digest) DO NOTHING",
                    &[&bundle.digest, &bundle.name, &bundle.manifest],
                )
                .await
                .map_err(fail)?;
            transaction
                .execute(
                    "INSERT INTO superstep_runs
                         (run_id, workflow_digest, workflow, input_kind, input, status)
                     VALUES ($1, $2, $3, $4, $5, 'queued')",
                    &[
                        &id,
                        &bundle.digest,
                        &bundle.name,
                        &input.kind,
                        &input.body.as_ref(),
                    ],
                )
                .await
                .map_err(fail)?;
            notify(&transaction, &id).await.map_err(fail)?;
            transaction.commit().await.map_err(fail)
        })?;
        Ok(run_id)
    }

    /// Claims up to `most` of the oldest runs that are queued or whose owner's lease
    /// expired, for `worker`, each with a lease of `ttl`, in one statement.
    pub fn claim(&self, worker: &str, ttl: Duration, most: usize) -> Result<Vec<Claim>> {
        let (shown, worker) = (self.shown(), worker.to_string());
        let (ttl_ms, most) = (ttl.as_millis() as i64, most as i64);
        let rows = self.db.call(move |client| async move {
            client
                .query(
                    "UPDATE superstep_runs r SET status = 'running', epoch = epoch + 1,
                         owner = $1, lease_until = now() + $2::bigint * interval '1 millisecond',
                         updated_at = now()
                     FROM superstep_workflows w
                     WHERE w.digest = r.workflow_digest AND r.run_id IN (
                         SELECT run_id FROM superstep_runs
                         WHERE status = 'queued' OR (status = 'running' AND lease_until < now())
                         ORDER BY submitted_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                     RETURNING r.run_id, r.epoch, r.workflow_digest, w.manifest, r.input_kind,
                         r.input, r.responses,
                         (SELECT coalesce(max(seq) + 1, 0) FROM superstep_events e
                          WHERE e.run_id = r.run_id),
                         (SELECT checkpoint_id || ' ' || status FROM superstep_checkpoints c
                          WHERE c.run_id = r.run_id
                          ORDER BY depth DESC, created_at DESC, checkpoint_id DESC LIMIT 1)",
                    &[&worker, &ttl_ms, &most],
                )
                .await
                .map_err(|e| failed(&shown, "cannot claim runs", e))
        })?;
        rows.iter().map(claimed).collect()
    }

    /// The bytes of stored component `digest`.
    pub fn component(&self, digest: &str) -> Result<Vec<u8>> {
        let bytes = self.db.bytes_of(
            "SELECT bytes FROM superstep_components WHERE digest = $1",
            digest,
            "cannot read a component",
        )?;
        bytes.ok_or_else(|| host(format!("component {digest} is not stored")))
    }

    /// Renews `worker`'s leases on `held` runs (run id and epoch) for `ttl`; returns
    /// the runs it no longer holds (claimed by another worker meanwhile).
    pub fn renew(
        &self,
        worker: &str,
        held: &[(String, i64)],
        ttl: Duration,
    ) -> Result<Vec<String>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let (shown, worker) = (self.shown(), worker.to_string());
        let (ids, epochs): (Vec<String>, Vec<i64>) = held.iter().cloned().unzip();
        let ttl_ms = ttl.as_millis() as i64;
        let renewed: Vec<String> = self.db.call(move |client| async move {
            let rows = client
                .query(
                    "UPDATE superstep_runs r SET lease_until = now() + $3::bigint * interval '1 millisecond'
                     FROM unnest($1::text[], $2::bigint[]) AS h(run_id, epoch)
                     WHERE r.run_id = h.run_id AND r.epoch = h.epoch AND r.owner = $4
                         AND r.status = 'running'
                     RETURNING r.run_id",
                    &[&ids, &epochs, &ttl_ms, &worker],
                )
                .await
                .map_err(|e| failed(&shown, "cannot renew leases", e))?;
            Ok(rows.into_iter().map(|row| row.get(0)).collect())
        })?;
        Ok(held
            .iter()
            .filter(|(id, _)| !renewed.contains(id))
            .map(|(id, _)| id.clone())
            .collect())
    }

    /// Records how runs stopped (see [`RunEnd`]), all in one transaction: ends each
    /// one's lease and forgets the answers delivered to it. Per run, `false` (and
    /// nothing changed) if another worker claimed it meanwhile. A run given back
    /// (`Queued`) is claimed again by any worker.
    pub fn finish(&self, ends: Vec<RunEnd>) -> Result<Vec<bool>> {
        let shown = self.shown();
        self.db.call(move |mut client| async move {
            let fail = |e| failed(&shown, "cannot record how runs ended", e);
            let transaction = client.transaction().await.map_err(fail)?;
            let mut recorded = Vec::with_capacity(ends.len());
            for end in &ends {
                let changed = transaction
                    .execute(
                        "UPDATE superstep_runs SET status = $3, reason = $4, lease_until = NULL,
                             responses = coalesce((SELECT jsonb_agg(a ORDER BY n)::text
                                 FROM jsonb_array_elements(responses::jsonb)
                                     WITH ORDINALITY AS x(a, n)
                                 WHERE n > $5), '[]'),
                             updated_at = now()
                         WHERE run_id = $1 AND epoch = $2",
                        &[
                            &end.run_id,
                            &end.epoch,
                            &end.status.as_str(),
                            &end.reason,
                            &(end.delivered as i64),
                        ],
                    )
                    .await
                    .map_err(fail)?;
                if changed == 1 {
                    notify(&transaction, &end.run_id).await.map_err(fail)?;
                }
                recorded.push(changed == 1);
            }
            transaction.commit().await.map_err(fail)?;
            Ok(recorded)
        })
    }

    /// Stores `answers` (request id and JSON body) for the requests of paused run
    /// `run_id`, each of which must be among `pending` (the requests its latest
    /// checkpoint waits on) and not answered yet, and queues the run again. Refuses,
    /// changing nothing, a run that is not paused (or queued with answers) and an
    /// answer to a request that is not pending.
    pub fn respond(
        &self,
        run_id: &str,
        answers: Vec<(String, String)>,
        pending: Vec<String>,
    ) -> Result<()> {
        let (shown, id) = (self.shown(), run_id.to_string());
        let refused = self.db.call(move |mut client| async move {
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
                return Ok(Some(format!("no run '{id}' in {shown}")));
            };
            let status: String = row.get(0);
            let mut stored: Vec<StoredAnswer> = serde_json::from_str(row.get(1)).map_err(host)?;
            let answerable = status == "paused" || (status == "queued" && !stored.is_empty());
            if !answerable {
                return Ok(Some(format!(
                    "run {id} is {status}, not paused for input: nothing to answer"
                )));
            }
            for (request_id, body) in answers {
                if !pending.contains(&request_id) {
                    return Ok(Some(format!(
                        "request '{request_id}' is not pending in run {id}; pending: {}",
                        if pending.is_empty() {
                            "none".to_string()
                        } else {
                            pending.join(", ")
                        }
                    )));
                }
                if stored.iter().any(|a| a.request_id == request_id) {
                    return Ok(Some(format!(
                        "request '{request_id}' of run {id} is already answered"
                    )));
                }
                stored.push(StoredAnswer { request_id, body });
            }
            let stored = serde_json::to_string(&stored).map_err(host)?;
            transaction
                .execute(
                    "UPDATE superstep_runs SET responses = $2, status = 'queued',
                         updated_at = now() WHERE run_id = $1",
                    &[&id, &stored],
                )
                .await
                .map_err(fail)?;
            notify(&transaction, &id).await.map_err(fail)?;
            transaction.commit().await.map_err(fail)?;
            Ok(None)
        })?;
        match refused {
            Some(why) => Err(invalid(why)),
            None => Ok(()),
        }
    }

    /// The runs, newest first, of `status` and `workflow` if given.
    pub fn list(
        &self,
        status: Option<RunStatus>,
        workflow: Option<&str>,
    ) -> Result<Vec<RunRecord>> {
        let shown = self.shown();
        let status = status.map(|s| s.as_str().to_string());
        let workflow = workflow.map(str::to_string);
        self.db.call(move |client| async move {
            let rows = client
                .query(
                    &format!(
                        "SELECT {RECORD_COLUMNS} FROM superstep_runs
                         WHERE ($1::text IS NULL OR status = $1)
                             AND ($2::text IS NULL OR workflow = $2)
                         ORDER BY submitted_at DESC, run_id DESC"
                    ),
                    &[&status, &workflow],
                )
                .await
                .map_err(|e| failed(&shown, "cannot list runs", e))?;
            Ok(rows.iter().map(record).collect())
        })
    }

    /// Run `run_id`; refused (exit code 2) when there is none.
    pub fn get(&self, run_id: &str) -> Result<RunRecord> {
        let (shown, id) = (self.shown(), run_id.to_string());
        let found = self.db.call(move |client| async move {
            let row = client
                .query_opt(
                    &format!("SELECT {RECORD_COLUMNS} FROM superstep_runs WHERE run_id = $1"),
                    &[&id],
                )
                .await
                .map_err(|e| failed(&shown, "cannot read a run", e))?;
            Ok(row.as_ref().map(record))
        })?;
        found.ok_or_else(|| invalid(format!("no run '{run_id}' in {}", self.shown())))
    }

    /// Appends `events` (JSON, numbered from `first`) to the events of the run claimed
    /// at `epoch`; `false` (nothing written) if another worker claimed it meanwhile.
    /// Events are a record of what the run's checkpoints hold: their commit does not
    /// wait for the disk (`synchronous_commit` off), so a crash of the database may
    /// lose the last ones, never a checkpoint.
    pub fn append_events(
        &self,
        run_id: &str,
        epoch: i64,
        first: i64,
        events: Vec<String>,
    ) -> Result<bool> {
        let (shown, id) = (self.shown(), run_id.to_string());
        let seqs: Vec<i64> = (first..first + events.len() as i64).collect();
        self.db.call(move |mut client| async move {
            let fail = |e| failed(&shown, "cannot store events", e);
            let transaction = client.transaction().await.map_err(fail)?;
            transaction
                .batch_execute("SET LOCAL synchronous_commit TO off")
                .await
                .map_err(fail)?;
            let written = transaction
                .execute(
                    "INSERT INTO superstep_events (run_id, seq, epoch, event)
                     SELECT $1, s, $2, e FROM unnest($3::bigint[], $4::text[]) AS x(s, e)
                     WHERE EXISTS (SELECT 1 FROM superstep_runs WHERE run_id = $1 AND epoch = $2)
                     ON CONFLICT (run_id, seq) DO NOTHING",
                    &[&id, &epoch, &seqs, &events],
                )
                .await
                .map_err(fail)?;
            if written > 0 {
                notify(&transaction, &id).await.map_err(fail)?;
            }
            transaction.commit().await.map_err(fail)?;
            Ok(written > 0 || events.is_empty())
        })
    }

    /// The events of run `run_id` after sequence number `after` (from the first with
    /// `-1`), in order: sequence number, epoch and event JSON.
    pub fn events(&self, run_id: &str, after: i64) -> Result<Vec<(i64, i64, String)>> {
        let (shown, id) = (self.shown(), run_id.to_string());
        self.db.call(move |client| async move {
            let rows = client
                .query(
                    "SELECT seq, epoch, event FROM superstep_events
                     WHERE run_id = $1 AND seq > $2 ORDER BY seq",
                    &[&id, &after],
                )
                .await
                .map_err(|e| failed(&shown, "cannot read events", e))?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect())
        })
    }

    /// Calls `changed` with the id of each run that changes (submitted, claimed back,
    /// ended, answered), and with `None` after a lost connection to the database came
    /// back, for as long as the queue lives.
    pub fn watch(&self, changed: impl Fn(Option<String>) + Send + Sync + 'static) {
        self.db.listen(CHANNEL, changed);
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
