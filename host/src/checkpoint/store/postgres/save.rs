//! Saving checkpoints as rows: each checkpoint's blobs stored once, its row with its
//! depth in the lineage, its links to its blobs; a run's fence checked in the same
//! transaction; the groups of many runs in one transaction, a savepoint each.

use crate::db::failed;
use crate::error::{Result, host};
use crate::message::BlobRef;
use bytes::Bytes;
use deadpool_postgres::GenericClient;

/// A checkpoint as its row holds it, made on the saving thread.
pub(super) struct Row {
    pub(super) checkpoint_id: String,
    pub(super) run_id: String,
    pub(super) parent_id: Option<String>,
    pub(super) workflow: String,
    pub(super) status: &'static str,
    pub(super) superstep: i64,
    pub(super) created_at: String,
    pub(super) summary: String,
    pub(super) document: Vec<u8>,
    pub(super) blobs: Vec<(BlobRef, Bytes)>,
    /// The epoch the run's row must have for the row to be saved.
    pub(super) fence: Option<i64>,
}

/// Why a checkpoint or journal record was not saved.
pub(super) enum Refused {
    Database(tokio_postgres::Error),
    /// The run's epoch moved on: another worker owns it now.
    Fenced,
}

impl From<tokio_postgres::Error> for Refused {
    fn from(error: tokio_postgres::Error) -> Refused {
        Refused::Database(error)
    }
}

/// Saves `row` in `transaction`: its blobs that are not stored yet (those that are
/// stay locked until the commit, so that no prune removes them meanwhile), the row
/// (its depth one more than its parent's), and its links to its blobs.
async fn insert(transaction: &impl GenericClient, row: &Row) -> std::result::Result<(), Refused> {
    if let Some(epoch) = row.fence {
        holds(transaction, &row.run_id, epoch).await?;
    }
    if !row.blobs.is_empty() {
        let digests: Vec<&str> = row.blobs.iter().map(|(b, _)| b.digest.as_str()).collect();
        let present = transaction
            .query(
                "SELECT digest FROM superstep_blobs WHERE digest = ANY($1) FOR KEY SHARE",
                &[&digests],
            )
            .await?;
        let present: Vec<String> = present.into_iter().map(|r| r.get(0)).collect();
        for (blob, bytes) in &row.blobs {
            if !present.contains(&blob.digest) {
                transaction
                    .execute(
                        "INSERT INTO superstep_blobs (digest, size, bytes) VALUES ($1, $2, $3)
                         ON CONFLICT (digest) DO NOTHING",
                        &[&blob.digest, &(blob.size as i64), &bytes.as_ref()],
                    )
                    .await?;
            }
        }
    }
    let statement = transaction
        .prepare_cached(
            "INSERT INTO superstep_checkpoints
                 (checkpoint_id, run_id, parent_id, workflow, status, superstep, created_at,
                  depth, summary, document, epoch)
             VALUES ($1, $2, $3, $4, $5, $6, $7,
                 COALESCE((SELECT depth + 1 FROM superstep_checkpoints WHERE checkpoint_id = $3), 0),
                 $8, $9, $10)
             ON CONFLICT (checkpoint_id) DO UPDATE SET
                 run_id = EXCLUDED.run_id, parent_id = EXCLUDED.parent_id,
                 workflow = EXCLUDED.workflow, status = EXCLUDED.status,
                 superstep = EXCLUDED.superstep, created_at = EXCLUDED.created_at,
                 depth = EXCLUDED.depth, summary = EXCLUDED.summary,
                 document = EXCLUDED.document, epoch = EXCLUDED.epoch",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &row.checkpoint_id,
                &row.run_id,
                &row.parent_id,
                &row.workflow,
                &row.status,
                &row.superstep,
                &row.created_at,
                &row.summary,
                &row.document,
                &row.fence.unwrap_or(0),
            ],
        )
        .await?;
    if !row.blobs.is_empty() {
        let digests: Vec<&str> = row.blobs.iter().map(|(b, _)| b.digest.as_str()).collect();
        transaction
            .execute(
                "INSERT INTO superstep_checkpoint_blobs (checkpoint_id, digest)
                 SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
                &[&row.checkpoint_id, &digests],
            )
            .await?;
    }
    Ok(())
}

/// Checks that run `run_id` is at `epoch`, and keeps its row so until the transaction
/// ends: a claim by another worker waits for it, and then fences it out.
pub(super) async fn holds(
    transaction: &impl GenericClient,
    run_id: &str,
    epoch: i64,
) -> std::result::Result<(), Refused> {
    let row = transaction
        .query_opt(
            "SELECT 1 FROM superstep_runs WHERE run_id = $1 AND epoch = $2 FOR SHARE",
            &[&run_id, &epoch],
        )
        .await?;
    row.map(drop).ok_or(Refused::Fenced)
}

/// The error of `refused` while saving `what` of run `run_id`.
pub(super) fn refusal(shown: &str, what: &str, run_id: &str, refused: Refused) -> crate::Error {
    match refused {
        Refused::Database(e) => failed(shown, &format!("cannot save {what}"), e),
        Refused::Fenced => host(format!(
            "{what} not saved: run {run_id} was taken over by another worker (its epoch moved on)"
        )),
    }
}

/// Saves the groups of `rows` in one transaction (see
/// [`PostgresStore::save_groups`]); per group, the ids saved, then the error that
/// ended it if any.
pub(super) async fn save_rows(
    mut client: deadpool_postgres::Object,
    rows: Vec<Vec<Result<Row>>>,
    shown: String,
) -> Result<Vec<Vec<Result<String>>>> {
    let fail = |what: &'static str| {
        let shown = shown.clone();
        move |e| failed(&shown, what, e)
    };
    let alone = rows.iter().map(Vec::len).sum::<usize>() == 1;
    let mut transaction = client
        .transaction()
        .await
        .map_err(fail("cannot begin a save"))?;
    let mut saved = Vec::with_capacity(rows.len());
    for group in rows {
        let mut results = Vec::with_capacity(group.len());
        for row in group {
            let row = match row {
                Ok(row) => row,
                Err(error) => {
                    results.push(Err(error));
                    break;
                }
            };
            let what = format!("checkpoint {}", row.checkpoint_id);
            if alone {
                insert(&transaction, &row)
                    .await
                    .map_err(|e| refusal(&shown, &what, &row.run_id, e))?;
                results.push(Ok(row.checkpoint_id));
                continue;
            }
            let savepoint = transaction
                .savepoint("checkpoint")
                .await
                .map_err(fail("cannot begin a save"))?;
            match insert(&savepoint, &row).await {
                Ok(()) => {
                    savepoint.commit().await.map_err(fail("cannot save"))?;
                    results.push(Ok(row.checkpoint_id));
                }
                Err(e) => {
                    savepoint.rollback().await.map_err(fail("cannot save"))?;
                    results.push(Err(refusal(&shown, &what, &row.run_id, e)));
                    break;
                }
            }
        }
        saved.push(results);
    }
    transaction
        .commit()
        .await
        .map_err(fail("cannot commit checkpoints"))?;
    Ok(saved)
}
