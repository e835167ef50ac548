//! Storing a run: its workflow and components by digest, then its row, queued; with an
//! idempotency key, once per key.

use super::{RunQueue, bundle, notify};
use crate::db::failed;
use crate::error::{Result, invalid};
use crate::manifest::Manifest;
use crate::message::Message;
use deadpool_postgres::Transaction;

/// How a run is submitted beyond its workflow and input.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    /// A name for the workflow of the submitter's own (a server's catalog id).
    pub label: Option<String>,
    /// A key that makes a repeated submission return the first run, and a digest of
    /// what was submitted with it: the same key with another digest is refused.
    pub idempotency: Option<(String, String)>,
}

/// A run submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The run.
    pub run_id: String,
    /// Whether this submission stored it (false: one with the same key did).
    pub created: bool,
}

impl RunQueue {
    /// Stores a run of `manifest` (loaded and checked) on `input` as queued, with the
    /// workflow and every component it names (each stored once, by digest); returns the
    /// run's id.
    pub fn submit(&self, manifest: &Manifest, input: Message) -> Result<String> {
        let submitted = self.submit_with(manifest, input, Submission::default())?;
        Ok(submitted.run_id)
    }

    /// [`RunQueue::submit`] as `submission` says. A key already used returns its run,
    /// or is refused if it came with another digest.
    pub fn submit_with(
        &self,
        manifest: &Manifest,
        input: Message,
        submission: Submission,
    ) -> Result<Submitted> {
        let bundle = bundle::bundle(manifest)?;
        let run_id = uuid::Uuid::now_v7().to_string();
        let shown = self.shown();
        let stored = self.db.call(move |mut client| async move {
            let fail = |e| failed(&shown, "cannot submit the run", e);
            let transaction = client.transaction().await.map_err(fail)?;
            store_workflow(&transaction, &bundle).await.map_err(fail)?;
            let (key, digest) = submission.idempotency.unzip();
            let inserted = transaction
                .query_opt(
                    "INSERT INTO superstep_runs (run_id, workflow_digest, workflow, input_kind,
                         input, status, label, idempotency_key, request_digest)
                     VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8)
                     ON CONFLICT (idempotency_key) DO NOTHING RETURNING run_id",
                    &[
                        &run_id,
                        &bundle.digest,
                        &bundle.name,
                        &input.kind,
                        &input.body.as_ref(),
                        &submission.label,
                        &key,
                        &digest,
                    ],
                )
                .await
                .map_err(fail)?;
            if inserted.is_none() {
                let row = transaction
                    .query_one(
                        "SELECT run_id, request_digest FROM superstep_runs
                         WHERE idempotency_key = $1",
                        &[&key],
                    )
                    .await
                    .map_err(fail)?;
                let (earlier, earlier_digest): (String, Option<String>) = (row.get(0), row.get(1));
                if earlier_digest != digest {
                    return Err(invalid(format!(
                        "Idempotency-Key '{}' was used for another request (run {earlier})",
                        key.unwrap_or_default()
                    )));
                }
                return Ok(Submitted {
                    run_id: earlier,
                    created: false,
                });
            }
            notify(&transaction, &run_id).await.map_err(fail)?;
            transaction.commit().await.map_err(fail)?;
            Ok(Submitted {
                run_id,
                created: true,
            })
        })?;
        Ok(stored)
    }
}

/// Stores the workflow of `bundle` and the components it names that are not stored.
async fn store_workflow(
    transaction: &Transaction<'_>,
    bundle: &bundle::Bundle,
) -> std::result::Result<(), tokio_postgres::Error> {
    let digests: Vec<&str> = bundle.components.iter().map(|(d, _)| d.as_str()).collect();
    let present: Vec<String> = transaction
        .query(
            "SELECT digest FROM superstep_components WHERE digest = ANY($1)",
            &[&digests],
        )
        .await?
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
                .await?;
        }
    }
    transaction
        .execute(
            "INSERT INTO superstep_workflows (digest, name, manifest) VALUES ($1, $2, $3)
             ON CONFLICT (digest) DO NOTHING",
            &[&bundle.digest, &bundle.name, &bundle.manifest],
        )
        .await?;
    Ok(())
}
