//! Runs in a PostgreSQL database's queue: started here, run by the workers of every
//! host on the database (this server's own, with `--workers`), answered, resumed and
//! cancelled from any server on it. Events are the database's rows; news of a run
//! comes by `LISTEN`.

use super::{
    NewRun, RequestView, RunDetail, RunEvent, RunSummary, Runs, Started, Watchers, checkpoint_of,
    outputs,
};
use crate::checkpoint::{Checkpoint, CheckpointStore, SigningKeys};
use crate::error::Result;
use crate::message::Message;
use crate::queue::{Refusal, RunFilter, RunQueue, RunRecord, RunStatus, STOP, Submission};
use crate::server::catalog::SharedCatalog;
use crate::server::problem::{Answer, Problem};
use std::sync::Arc;
use tokio::sync::watch;

/// Runs in a database's queue.
pub struct QueuedRuns {
    catalog: SharedCatalog,
    queue: RunQueue,
    store: Arc<dyn CheckpointStore>,
    watchers: Arc<Watchers>,
}

impl QueuedRuns {
    /// The runs of the database at `url` (its schema this build's), of `catalog`'s
    /// workflows; checkpoints are signed and verified with the environment's keys.
    pub fn connect(url: &str, catalog: SharedCatalog) -> Result<QueuedRuns> {
        let queue = RunQueue::connect(url)?;
        let store = Arc::new(
            queue
                .checkpoints()
                .with_signing_keys(SigningKeys::from_env()?),
        );
        let watchers = Arc::new(Watchers::default());
        let heard = watchers.clone();
        queue.watch(move |payload| match payload {
            Some(payload) => heard.notify(payload.strip_prefix(STOP).unwrap_or(&payload)),
            None => heard.notify_all(),
        });
        Ok(QueuedRuns {
            catalog,
            queue,
            store,
            watchers,
        })
    }

    fn record(&self, run_id: &str) -> Answer<RunRecord> {
        self.queue
            .find(run_id)?
            .ok_or_else(|| Problem::not_found(format!("no run '{run_id}'")))
    }

    /// The checkpoint the run goes on from, if it has one.
    fn checkpoint(&self, record: &RunRecord) -> Answer<Option<Checkpoint>> {
        let Some(id) = &record.checkpoint else {
            return Ok(None);
        };
        Ok(Some(self.store.load(id)?))
    }
}

/// The requests `checkpoint` waits on, those `record` holds answers to left out.
fn waiting(record: &RunRecord, checkpoint: Option<&Checkpoint>) -> Vec<RequestView> {
    let Some(checkpoint) = checkpoint else {
        return Vec::new();
    };
    checkpoint
        .pending_requests
        .iter()
        .filter(|r| !record.answered.contains(&r.request_id))
        .map(RequestView::from)
        .collect()
}

impl Runs for QueuedRuns {
    fn start(&self, new: NewRun) -> Answer<Started> {
        let manifest = self.catalog.manifest(&new.workflow)?;
        let submission = Submission {
            label: Some(new.workflow.clone()),
            idempotency: new.idempotency.map(|i| (i.key, i.request)),
        };
        let submitted = self.queue.submit_with(manifest, new.input, submission)?;
        Ok(Started {
            run_id: submitted.run_id,
            created: submitted.created,
        })
    }

    fn list(&self, status: Option<RunStatus>, workflow: Option<&str>) -> Answer<Vec<RunSummary>> {
        let filter = RunFilter {
            status,
            workflow: None,
            label: workflow.map(str::to_string),
        };
        Ok(self.queue.list(&filter)?.iter().map(summary).collect())
    }

    fn get(&self, run_id: &str) -> Answer<RunSummary> {
        Ok(summary(&self.record(run_id)?))
    }

    fn pending(&self, run_id: &str) -> Answer<Vec<RequestView>> {
        let record = self.record(run_id)?;
        Ok(waiting(&record, self.checkpoint(&record)?.as_ref()))
    }

    fn events_after(&self, run_id: &str, after: Option<u64>) -> Answer<Vec<RunEvent>> {
        let after = after.map_or(-1, |seq| i64::try_from(seq).unwrap_or(i64::MAX));
        let events = self.queue.events(run_id, after)?;
        Ok(events
            .into_iter()
            .map(|(seq, _, json)| RunEvent {
                seq: seq as u64,
                json: json.into(),
            })
            .collect())
    }

    fn watch(&self, run_id: &str) -> watch::Receiver<u64> {
        self.watchers.watch(run_id)
    }

    fn respond(&self, run_id: &str, request_id: &str, response: Message) -> Answer<()> {
        let record = self.record(run_id)?;
        let pending = waiting(&record, self.checkpoint(&record)?.as_ref());
        let pending = pending.into_iter().map(|r| r.request_id).collect();
        let body = String::from_utf8_lossy(&response.body).into_owned();
        let answers = vec![(request_id.to_string(), body)];
        refused(run_id, self.queue.answer(run_id, answers, pending)?)
    }

    fn resume(&self, run_id: &str, checkpoint: Option<&str>) -> Answer<String> {
        let record = self.record(run_id)?;
        let from = match checkpoint {
            Some(id) => Some(checkpoint_of(&*self.store, run_id, id)?.checkpoint_id),
            None => None,
        };
        let Some(resumed) = from.clone().or(record.checkpoint) else {
            return Err(Problem::conflict(format!("run {run_id} has no checkpoint")));
        };
        refused(run_id, self.queue.resume(run_id, from)?)?;
        Ok(resumed)
    }

    fn cancel(&self, run_id: &str) -> Answer<()> {
        refused(run_id, self.queue.cancel(run_id)?)
    }

    fn store(&self) -> Arc<dyn CheckpointStore> {
        self.store.clone()
    }

    /// The run's row read once, and its checkpoint loaded once for both its pending
    /// requests and its outputs.
    fn detail(&self, run_id: &str) -> Answer<RunDetail> {
        let record = self.record(run_id)?;
        let checkpoint = self.checkpoint(&record)?;
        Ok(RunDetail {
            run: summary(&record),
            pending: waiting(&record, checkpoint.as_ref()),
            outputs: checkpoint.as_ref().map(outputs).unwrap_or_default(),
        })
    }
}

/// A refusal as a problem: 404 for no run, 409 for one that cannot take it.
fn refused(run_id: &str, refusal: Option<Refusal>) -> Answer<()> {
    match refusal {
        None => Ok(()),
        Some(Refusal::NoRun) => Err(Problem::not_found(format!("no run '{run_id}'"))),
        Some(Refusal::Conflict(why)) => Err(Problem::conflict(why)),
    }
}

fn summary(record: &RunRecord) -> RunSummary {
    RunSummary {
        run_id: record.run_id.clone(),
        workflow: record
            .label
            .clone()
            .unwrap_or_else(|| record.workflow.clone()),
        status: record.status,
        superstep: record.superstep,
        last_checkpoint: record.checkpoint.clone(),
        reason: record.reason.clone(),
        created_at: record.submitted_at.clone(),
        updated_at: record.updated_at.clone(),
    }
}
