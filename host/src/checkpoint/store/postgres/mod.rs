//! Checkpoints in PostgreSQL: one row per checkpoint holding the same signed document
//! as a checkpoint file, verified the same way when read; its large payloads stored
//! once as content-addressed blobs; journals as rows; listings, prefixes and the
//! latest checkpoint of a run answered by SQL. Saves of many runs commit in one
//! transaction (one WAL flush), each checkpoint behind a savepoint so that one that
//! fails fails alone.

mod save;

use super::super::blobs::{blob_ref, inline_blobs, split_off_blobs, verify};
use super::super::journal::JournalRecord;
use super::super::{Checkpoint, PrunePolicy, SigningKeys, Summary, plan_prune};
use super::{CheckpointStore, ListFilter, Listed, Pruned, sort_listing, until_failed};
use crate::db::{Database, failed};
use crate::error::{Result, host, invalid};
use bytes::Bytes;
use deadpool_postgres::GenericClient;
use save::{Row, holds, refusal, save_rows};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Whether `location` names a PostgreSQL database rather than a directory.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// Checkpoints in a PostgreSQL database whose schema `superstep db migrate` created.
pub struct PostgresStore {
    db: Arc<Database>,
    keys: Option<Arc<SigningKeys>>,
    /// Runs whose writes hold only while the run's epoch is this one (see
    /// [`PostgresStore::fence`]), by run id.
    fences: Arc<Mutex<HashMap<String, i64>>>,
}

impl PostgresStore {
    /// The store in the database at `url` (`postgres://user@host:port/database`),
    /// whose schema must be this build's ([`SCHEMA_VERSION`](crate::db::SCHEMA_VERSION)).
    /// A server that cannot be reached, a database without the schema or of another
    /// version: exit-code-2 errors that say what to do.
    pub fn connect(url: &str) -> Result<PostgresStore> {
        Ok(PostgresStore::on(Arc::new(Database::open(url)?)))
    }

    /// The store in `db`, opened already (its connections shared).
    pub(crate) fn on(db: Arc<Database>) -> PostgresStore {
        PostgresStore {
            db,
            keys: None,
            fences: Arc::default(),
        }
    }

    /// Fences run `run_id` at `epoch`: from now on its checkpoints and journal records
    /// are saved only in a transaction that finds the run's row at that epoch, so that
    /// a worker that lost the run to another writes nothing more of it.
    pub fn fence(&self, run_id: &str, epoch: i64) {
        let mut fences = self.fences.lock().expect("fence lock");
        fences.insert(run_id.to_string(), epoch);
    }

    /// Lifts the fence of run `run_id`.
    pub fn unfence(&self, run_id: &str) {
        self.fences.lock().expect("fence lock").remove(run_id);
    }

    fn fence_of(&self, run_id: &str) -> Option<i64> {
        self.fences.lock().expect("fence lock").get(run_id).copied()
    }

    /// The store, signing the checkpoints it saves with `keys` and requiring their
    /// signatures when it reads.
    pub fn with_signing_keys(mut self, keys: Option<SigningKeys>) -> PostgresStore {
        self.keys = keys.map(Arc::new);
        self
    }

    fn shown(&self) -> String {
        self.db.shown().to_string()
    }

    /// Where a checkpoint is, for events and listings.
    fn location_of(&self, id: &str) -> String {
        format!("{} checkpoint {id}", self.db.shown())
    }

    /// `checkpoint` as its row, its large payloads split off as blobs.
    fn row(&self, checkpoint: &Checkpoint) -> Result<Row> {
        let mut blobs = Vec::new();
        let document = split_off_blobs(checkpoint, |_, bytes| {
            let blob = blob_ref(&bytes);
            blobs.push((blob.clone(), bytes));
            Ok(blob)
        })?;
        let summary = serde_json::to_string(&document.summary()).map_err(host)?;
        Ok(Row {
            checkpoint_id: checkpoint.checkpoint_id.clone(),
            run_id: checkpoint.run_id.clone(),
            parent_id: checkpoint.parent_id.clone(),
            workflow: checkpoint.workflow.clone(),
            status: checkpoint.status.as_str(),
            superstep: checkpoint.superstep as i64,
            created_at: checkpoint.created_at.clone(),
            summary,
            document: document.encode_signed(self.keys.as_deref()),
            blobs,
            fence: self.fence_of(&checkpoint.run_id),
        })
    }

    /// The checkpoints selected by `condition` (SQL over the checkpoint columns, with
    /// `params`), as a listing sorted as every store sorts it.
    fn select_listing(&self, condition: String, params: Vec<String>) -> Result<Vec<Listed>> {
        let shown = self.shown();
        let rows = self.db.call(move |client| async move {
            let sql = format!(
                "SELECT checkpoint_id, summary FROM superstep_checkpoints WHERE {condition}"
            );
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p as _).collect();
            let rows = client
                .query(&sql, &params)
                .await
                .map_err(|e| failed(&shown, "cannot list checkpoints", e))?;
            Ok(rows
                .into_iter()
                .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
                .collect::<Vec<_>>())
        })?;
        let mut listing: Vec<Listed> = rows
            .into_iter()
            .map(|(id, summary)| Listed {
                location: self.location_of(&id),
                summary: serde_json::from_str::<Summary>(&summary)
                    .map_err(|e| format!("the summary column cannot be read: {e}")),
                id,
            })
            .collect();
        sort_listing(&mut listing);
        Ok(listing)
    }
}

/// The first id after every id that starts with `prefix` (ids are ASCII, compared
/// byte by byte): `id >= prefix AND id < prefix_end(prefix)` selects them by index.
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0x7f {
            end.push(last + 1);
            return String::from_utf8(end).expect("ASCII");
        }
    }
    "\u{7f}".to_string()
}

impl CheckpointStore for PostgresStore {
    fn location(&self) -> String {
        self.shown()
    }

    fn signing_keys(&self) -> Option<&SigningKeys> {
        self.keys.as_deref()
    }

    fn save(&self, checkpoint: &Checkpoint) -> Result<String> {
        let mut saved = self.save_groups(&[vec![checkpoint]]);
        saved.remove(0).remove(0)
    }

    fn save_all(&self, checkpoints: &[&Checkpoint]) -> Vec<Result<String>> {
        self.save_groups(&[checkpoints.to_vec()]).remove(0)
    }

    /// Every group in one transaction (one commit, one WAL flush for all of them),
    /// each checkpoint behind a savepoint when there are several, so that one that
    /// cannot be saved ends only its own group.
    fn save_groups(&self, groups: &[Vec<&Checkpoint>]) -> Vec<Vec<Result<String>>> {
        let rows: Vec<Vec<Result<Row>>> = groups
            .iter()
            .map(|group| until_failed(group, |checkpoint| self.row(checkpoint)))
            .collect();
        let sizes: Vec<usize> = rows.iter().map(Vec::len).collect();
        let shown = self.shown();
        let saved = self.db.call(move |client| save_rows(client, rows, shown));
        match saved {
            Ok(saved) => saved
                .into_iter()
                .map(|group| {
                    group
                        .into_iter()
                        .map(|id| id.map(|id| self.location_of(&id)))
                        .collect()
                })
                .collect(),
            // Nothing was committed: each group fails at its first checkpoint.
            Err(error) => sizes
                .iter()
                .map(|&size| match size {
                    0 => Vec::new(),
                    _ => vec![Err(host(format!("{error:#}")))],
                })
                .collect(),
        }
    }

    fn load(&self, id: &str) -> Result<Checkpoint> {
        let document = self.db.bytes_of(
            "SELECT document FROM superstep_checkpoints WHERE checkpoint_id = $1",
            id,
            "cannot read a checkpoint",
        )?;
        let document =
            document.ok_or_else(|| invalid(format!("no checkpoint '{id}' in {}", self.shown())))?;
        let origin = self.location_of(id);
        let mut checkpoint = Checkpoint::decode_verified(&document, &origin, self.signing_keys())?;
        let mut digests: Vec<String> = checkpoint.blob_refs().map(|b| b.digest.clone()).collect();
        digests.sort();
        digests.dedup();
        if !digests.is_empty() {
            let blobs = self.blobs(digests)?;
            inline_blobs(&mut checkpoint, &origin, |blob| {
                let bytes = blobs
                    .get(&blob.digest)
                    .ok_or_else(|| format!("blob {} is missing (it was deleted)", blob.digest))?;
                verify(blob, bytes, &blob.digest)?;
                Ok(bytes.clone())
            })?;
        }
        Ok(checkpoint)
    }

    fn list(&self) -> Result<Vec<Listed>> {
        self.select_listing("true".into(), Vec::new())
    }

    fn list_matching(&self, filter: &ListFilter) -> Result<Vec<Listed>> {
        let mut conditions = vec!["true".to_string()];
        let mut params = Vec::new();
        if let Some(workflow) = &filter.workflow {
            params.push(workflow.clone());
            conditions.push(format!("workflow = ${}", params.len()));
        }
        if let Some(run) = &filter.run {
            params.extend([run.clone(), prefix_end(run)]);
            let (from, to) = (params.len() - 1, params.len());
            conditions.push(format!("run_id >= ${from} AND run_id < ${to}"));
        }
        if let Some(status) = filter.status {
            params.push(status.as_str().to_string());
            conditions.push(format!("status = ${}", params.len()));
        }
        self.select_listing(conditions.join(" AND "), params)
    }

    fn delete(&self, id: &str) -> Result<()> {
        let (shown, wanted) = (self.shown(), id.to_string());
        let deleted = self.db.call(move |client| async move {
            client
                .execute(
                    "DELETE FROM superstep_checkpoints WHERE checkpoint_id = $1",
                    &[&wanted],
                )
                .await
                .map_err(|e| failed(&shown, "cannot delete a checkpoint", e))
        })?;
        match deleted {
            0 => Err(invalid(format!("no checkpoint '{id}' in {}", self.shown()))),
            _ => Ok(()),
        }
    }

    /// In one transaction, with the fence check of the base checkpoint's run.
    fn append_journal(&self, base: &str, records: &[JournalRecord]) -> Result<()> {
        let lines: Vec<Vec<u8>> = records
            .iter()
            .map(|r| r.encode(self.signing_keys()))
            .collect();
        let fences = self.fences.clone();
        let (shown, base) = (self.shown(), base.to_string());
        self.db.call(move |mut client| async move {
            let what = format!("the journal of {base}");
            let transaction = client
                .transaction()
                .await
                .map_err(|e| failed(&shown, "cannot append to a journal", e))?;
            // The journal's run is its base checkpoint's.
            if !fences.lock().expect("fence lock").is_empty() {
                let run = transaction
                    .query_opt(
                        "SELECT run_id FROM superstep_checkpoints WHERE checkpoint_id = $1",
                        &[&base],
                    )
                    .await
                    .map_err(|e| failed(&shown, "cannot append to a journal", e))?
                    .map(|row| row.get::<_, String>(0));
                let fence = run.and_then(|run| {
                    let epoch = *fences.lock().expect("fence lock").get(&run)?;
                    Some((run, epoch))
                });
                if let Some((run, epoch)) = fence {
                    holds(&transaction, &run, epoch)
                        .await
                        .map_err(|e| refusal(&shown, &what, &run, e))?;
                }
            }
            transaction
                .execute(
                    "INSERT INTO superstep_journal (base, record) SELECT $1, unnest($2::bytea[])",
                    &[&base, &lines],
                )
                .await
                .map_err(|e| failed(&shown, &format!("cannot append to {what}"), e))?;
            transaction
                .commit()
                .await
                .map_err(|e| failed(&shown, &format!("cannot append to {what}"), e))
        })
    }

    fn read_journal(&self, base: &str) -> Result<Vec<JournalRecord>> {
        let (shown, wanted) = (self.shown(), base.to_string());
        let lines = self.db.call(move |client| async move {
            let rows = client
                .query(
                    "SELECT record FROM superstep_journal WHERE base = $1 ORDER BY seq",
                    &[&wanted],
                )
                .await
                .map_err(|e| failed(&shown, "cannot read a journal", e))?;
            Ok(rows
                .into_iter()
                .flat_map(|r| r.get::<_, Vec<u8>>(0))
                .collect::<Vec<u8>>())
        })?;
        let origin = format!("{} journal of {base}", self.shown());
        JournalRecord::decode_all(&lines, &origin, self.signing_keys())
    }

    fn remove_journal(&self, base: &str) -> Result<()> {
        let (shown, base) = (self.shown(), base.to_string());
        self.db.call(move |client| async move {
            client
                .execute("DELETE FROM superstep_journal WHERE base = $1", &[&base])
                .await
                .map(drop)
                .map_err(|e| failed(&shown, &format!("cannot delete the journal of {base}"), e))
        })
    }

    fn ids(&self) -> Result<Vec<String>> {
        self.ids_starting_with("")
    }

    fn ids_starting_with(&self, prefix: &str) -> Result<Vec<String>> {
        let shown = self.shown();
        let (from, to) = (prefix.to_string(), prefix_end(prefix));
        self.db.call(move |client| async move {
            let rows = client
                .query(
                    "SELECT checkpoint_id FROM superstep_checkpoints
                     WHERE checkpoint_id >= $1 AND checkpoint_id < $2",
                    &[&from, &to],
                )
                .await
                .map_err(|e| failed(&shown, "cannot list checkpoint ids", e))?;
            Ok(rows.into_iter().map(|r| r.get(0)).collect())
        })
    }

    /// Two index lookups: the run (the one `run` names, or the one that saved last),
    /// then its checkpoint written by its latest claim (see [`PostgresStore::fence`])
    /// with the longest chain of parents.
    fn latest(&self, run: Option<&str>) -> Result<Option<Summary>> {
        let shown = self.shown();
        let run = run.map(|prefix| (prefix.to_string(), prefix_end(prefix)));
        let summary = self.db.call(move |client| async move {
            let fail = |e| failed(&shown, "cannot find the latest checkpoint", e);
            let run_id = match &run {
                Some((from, to)) => {
                    client
                        .query_opt(
                            "SELECT run_id FROM superstep_checkpoints
                             WHERE run_id >= $1 AND run_id < $2
                             ORDER BY created_at, superstep, checkpoint_id LIMIT 1",
                            &[from, to],
                        )
                        .await
                }
                None => {
                    client
                        .query_opt(
                            "SELECT run_id FROM superstep_checkpoints
                             ORDER BY created_at DESC, checkpoint_id DESC LIMIT 1",
                            &[],
                        )
                        .await
                }
            }
            .map_err(fail)?;
            let Some(run_id) = run_id.map(|row| row.get::<_, String>(0)) else {
                return Ok(None);
            };
            let row = client
                .query_one(
                    "SELECT summary FROM superstep_checkpoints WHERE run_id = $1
                     ORDER BY epoch DESC, depth DESC, created_at DESC, checkpoint_id DESC LIMIT 1",
                    &[&run_id],
                )
                .await
                .map_err(fail)?;
            Ok(Some(row.get::<_, String>(0)))
        })?;
        summary
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| host(format!("{}: a summary cannot be read: {e}", self.shown())))
            })
            .transpose()
    }

    /// The checkpoints `policy` selects, journals left without their checkpoint and
    /// blobs no checkpoint refers to, all deleted in one transaction.
    fn prune(&self, policy: &PrunePolicy, now: SystemTime, dry_run: bool) -> Result<Pruned> {
        let listing = self.list()?;
        let doomed = plan_prune(&listing, policy, now);
        let mut pruned = Pruned {
            deleted: doomed.clone(),
            blobs_deleted: 0,
            leftovers_deleted: 0,
            listed: listing.len(),
            damaged: listing.iter().filter(|l| l.summary.is_err()).count(),
        };
        if dry_run {
            return Ok(pruned);
        }
        let shown = self.shown();
        let (blobs, journals) = self.db.call(move |mut client| async move {
            let fail = |e| failed(&shown, "cannot prune", e);
            let transaction = client.transaction().await.map_err(fail)?;
            transaction
                .execute(
                    "DELETE FROM superstep_checkpoints WHERE checkpoint_id = ANY($1)",
                    &[&doomed],
                )
                .await
                .map_err(fail)?;
            let journals = transaction
                .execute(
                    "DELETE FROM superstep_journal j WHERE NOT EXISTS
                     (SELECT 1 FROM superstep_checkpoints c WHERE c.checkpoint_id = j.base)",
                    &[],
                )
                .await
                .map_err(fail)?;
            let blobs = transaction
                .execute(
                    "DELETE FROM superstep_blobs b WHERE NOT EXISTS
                     (SELECT 1 FROM superstep_checkpoint_blobs l WHERE l.digest = b.digest)",
                    &[],
                )
                .await
                .map_err(fail)?;
            transaction.commit().await.map_err(fail)?;
            Ok((blobs, journals))
        })?;
        pruned.blobs_deleted = blobs as usize;
        pruned.leftovers_deleted = journals as usize;
        Ok(pruned)
    }
}

impl PostgresStore {
    /// The blobs with `digests` that are stored, by digest.
    fn blobs(&self, digests: Vec<String>) -> Result<HashMap<String, Bytes>> {
        let shown = self.shown();
        self.db.call(move |client| async move {
            let rows = client
                .query(
                    "SELECT digest, bytes FROM superstep_blobs WHERE digest = ANY($1)",
                    &[&digests],
                )
                .await
                .map_err(|e| failed(&shown, "cannot read blobs", e))?;
            Ok(rows
                .into_iter()
                .map(|row| (row.get(0), Bytes::from(row.get::<_, Vec<u8>>(1))))
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_range_holds_exactly_the_ids_that_start_with_it() {
        let ids = ["0190-a", "0190-b", "0191-0", "019", "0190", "018z"];
        for prefix in ["0190", "019", "0190-a", ""] {
            let end = prefix_end(prefix);
            for id in ids {
                let in_range = *id >= *prefix && *id < *end.as_str();
                assert_eq!(in_range, id.starts_with(prefix), "{id} for '{prefix}'");
            }
        }
    }
}
