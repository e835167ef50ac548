//! A run's events, in order, and notifications of changes to runs.

use super::{CHANNEL, RunQueue, notify};
use crate::db::failed;
use crate::error::Result;

impl RunQueue {
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

    /// Calls `changed` with each notification: the id of a run that changed
    /// (submitted, claimed back, ended, answered, cancelled, resumed), or
    /// [`STOP`](super::STOP) and the id of a run its owner must stop; and with `None`
    /// after a lost connection to the database came back, for as long as the queue
    /// lives.
    pub fn watch(&self, changed: impl Fn(Option<String>) + Send + Sync + 'static) {
        self.db.listen(CHANNEL, changed);
    }
}
