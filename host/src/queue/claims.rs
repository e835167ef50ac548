//! What workers do with runs: claim them with a lease and an epoch, renew their
//! leases, and record how they stopped.

use super::{RunQueue, RunStatus, START_FROM, StoredAnswer, notify, start_from};
use crate::db::failed;
use crate::error::{Result, host};
use crate::message::{Message, RESPONSE_KIND};
use bytes::Bytes;
use std::time::Duration;

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
    /// The checkpoint the run goes on from (its latest claim's newest, or the one a
    /// resume named) and its status, if it has one.
    pub latest: Option<(String, String)>,
    /// Whether it was cancelled: stop it at its first barrier.
    pub stop_requested: bool,
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

/// What a renewal found.
#[derive(Debug, Default)]
pub struct Renewed {
    /// The runs no longer held (claimed by another worker meanwhile).
    pub lost: Vec<String>,
    /// The runs held that were cancelled: stop them at their next barrier.
    pub stop: Vec<String>,
}

/// A claimed run's row, as [`RunQueue::claim`] returns it.
fn claimed(row: &tokio_postgres::Row) -> Result<Claim> {
    let run_id: String = row.get(0);
    let answers: Vec<StoredAnswer> = serde_json::from_str(row.get(6))
        .map_err(|e| host(format!("run {run_id}: stored answers: {e}")))?;
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
                let kind = RESPONSE_KIND.to_string();
                (a.request_id, Message { kind, body })
            })
            .collect(),
        next_event: row.get(7),
        latest: start_from(row.get(8)).map(|(id, status, _)| (id, status)),
        stop_requested: row.get(9),
        run_id,
    })
}

impl RunQueue {
    /// Claims up to `most` of the oldest runs that are queued or whose owner's lease
    /// expired, for `worker`, each with a lease of `ttl`, in one statement.
    pub fn claim(&self, worker: &str, ttl: Duration, most: usize) -> Result<Vec<Claim>> {
        let (shown, worker) = (self.shown(), worker.to_string());
        let (ttl_ms, most) = (ttl.as_millis() as i64, most as i64);
        let rows = self.db.call(move |client| async move {
            client
                .query(
                    &format!(
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
                             {START_FROM}, r.stop_requested"
                    ),
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

    /// Renews `worker`'s leases on `held` runs (run id and epoch) for `ttl`; says which
    /// it no longer holds, and which were cancelled.
    pub fn renew(&self, worker: &str, held: &[(String, i64)], ttl: Duration) -> Result<Renewed> {
        if held.is_empty() {
            return Ok(Renewed::default());
        }
        let (shown, worker) = (self.shown(), worker.to_string());
        let (ids, epochs): (Vec<String>, Vec<i64>) = held.iter().cloned().unzip();
        let ttl_ms = ttl.as_millis() as i64;
        let renewed: Vec<(String, bool)> = self.db.call(move |client| async move {
            let rows = client
                .query(
                    "UPDATE superstep_runs r SET lease_until = now() + $3::bigint * interval '1 millisecond'
                     FROM unnest($1::text[], $2::bigint[]) AS h(run_id, epoch)
                     WHERE r.run_id = h.run_id AND r.epoch = h.epoch AND r.owner = $4
                         AND r.status = 'running'
                     RETURNING r.run_id, r.stop_requested",
                    &[&ids, &epochs, &ttl_ms, &worker],
                )
                .await
                .map_err(|e| failed(&shown, "cannot renew leases", e))?;
            Ok(rows.into_iter().map(|row| (row.get(0), row.get(1))).collect())
        })?;
        let lost = held
            .iter()
            .filter(|(id, _)| !renewed.iter().any(|(r, _)| r == id))
            .map(|(id, _)| id.clone())
            .collect();
        let stop = renewed
            .into_iter()
            .filter(|(_, stop)| *stop)
            .map(|(id, _)| id)
            .collect();
        Ok(Renewed { lost, stop })
    }

    /// Records how runs stopped (see [`RunEnd`]), all in one transaction: ends each
    /// one's lease and forgets the answers delivered to it. Per run, `false` (and
    /// nothing changed) if another worker claimed it meanwhile. A run given back
    /// (`Queued`) is claimed again by any worker, and so is a run that paused while
    /// answers to it were stored.
    pub fn finish(&self, ends: Vec<RunEnd>) -> Result<Vec<bool>> {
        let shown = self.shown();
        self.db.call(move |mut client| async move {
            let fail = |e| failed(&shown, "cannot record how runs ended", e);
            let transaction = client.transaction().await.map_err(fail)?;
            let mut recorded = Vec::with_capacity(ends.len());
            for end in &ends {
                let changed = transaction
                    .execute(
                        "UPDATE superstep_runs r SET responses = x.rest,
                             status = CASE WHEN $3 = 'paused' AND x.rest <> '[]'
                                 THEN 'queued' ELSE $3 END,
                             reason = $4, lease_until = NULL, stop_requested = false,
                             updated_at = now()
                         FROM (SELECT coalesce((SELECT jsonb_agg(a ORDER BY n)::text
                                 FROM jsonb_array_elements(responses::jsonb)
                                     WITH ORDINALITY AS x(a, n)
                                 WHERE n > $5), '[]') AS rest
                               FROM superstep_runs WHERE run_id = $1) x
                         WHERE r.run_id = $1 AND r.epoch = $2",
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
}
