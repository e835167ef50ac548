//! The database schema, versioned. `superstep db migrate` applies the migrations that a
//! database lacks, in order, in one transaction under an advisory lock (two migrations
//! at once wait for each other); a store opens only on a database of exactly the
//! version it was built for, and never changes the schema itself.

use super::failed;
use crate::error::{Result, invalid};
use deadpool_postgres::Object;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i32 = 3;

/// The migration to each version, from 1 up: migration `n` takes a database of version
/// `n` to `n + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [V1, V2, V3];

/// Checkpoints as rows: the document is the same signed bytes as a checkpoint file
/// (its large payloads as references to content-addressed blobs), beside the columns
/// that listings and lineage queries need; `depth` is the length of the chain of
/// parents when it was saved, so that the latest checkpoint of a run is one index
/// lookup. Journals are one row per record.
const V1: &str = "
CREATE TABLE superstep_checkpoints (
    checkpoint_id text PRIMARY KEY,
    run_id text NOT NULL,
    parent_id text,
    workflow text NOT NULL,
    status text NOT NULL,
    superstep bigint NOT NULL,
    created_at text NOT NULL,
    depth bigint NOT NULL,
    summary text NOT NULL,
    document bytea NOT NULL
);
CREATE INDEX superstep_checkpoints_by_run
    ON superstep_checkpoints (run_id, depth DESC, created_at DESC, checkpoint_id DESC);
CREATE INDEX superstep_checkpoints_by_time
    ON superstep_checkpoints (created_at DESC, checkpoint_id DESC);
CREATE TABLE superstep_blobs (
    digest text PRIMARY KEY,
    size bigint NOT NULL,
    bytes bytea NOT NULL
);
CREATE TABLE superstep_checkpoint_blobs (
    checkpoint_id text NOT NULL REFERENCES superstep_checkpoints ON DELETE CASCADE,
    digest text NOT NULL REFERENCES superstep_blobs,
    PRIMARY KEY (checkpoint_id, digest)
);
CREATE INDEX superstep_checkpoint_blobs_by_digest ON superstep_checkpoint_blobs (digest);
CREATE TABLE superstep_journal (
    base text NOT NULL,
    seq bigserial,
    record bytea NOT NULL,
    PRIMARY KEY (base, seq)
);
";

/// Runs as rows, for `submit` and workers: each names its workflow, stored with its
/// components by digest so that a worker on any host can run it; `epoch` goes up on
/// every claim and fences the writes of an owner that lost its lease; `responses` are
/// answers waiting for a worker to deliver them. Events are rows, in order per run.
const V2: &str = "
CREATE TABLE superstep_components (
    digest text PRIMARY KEY,
    bytes bytea NOT NULL
);
CREATE TABLE superstep_workflows (
    digest text PRIMARY KEY,
    name text NOT NULL,
    manifest text NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE superstep_runs (
    run_id text PRIMARY KEY,
    workflow_digest text NOT NULL REFERENCES superstep_workflows,
    workflow text NOT NULL,
    input_kind text NOT NULL,
    input bytea NOT NULL,
    status text NOT NULL,
    epoch bigint NOT NULL DEFAULT 0,
    owner text,
    lease_until timestamptz,
    reason text,
    responses text NOT NULL DEFAULT '[]',
    submitted_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX superstep_runs_to_claim ON superstep_runs (submitted_at)
    WHERE status IN ('queued', 'running');
CREATE TABLE superstep_events (
    run_id text NOT NULL REFERENCES superstep_runs ON DELETE CASCADE,
    seq bigint NOT NULL,
    epoch bigint NOT NULL,
    event text NOT NULL,
    PRIMARY KEY (run_id, seq)
);
";

/// Version 3: what a server needs of runs. A run started through the API keeps the
/// catalog id it was started under (`label`) and its `Idempotency-Key`; a cancel is
/// asked for in `stop_requested`; a resume from an older checkpoint is `resume_from`,
/// asked at `resume_epoch`. A checkpoint keeps the epoch of the claim that wrote it
/// (0 when no worker did): a run goes on from its checkpoint of the highest epoch,
/// then the longest chain, so that a branch resumed later wins over an older,
/// longer one.
const V3: &str = "
ALTER TABLE superstep_runs
    ADD COLUMN label text,
    ADD COLUMN idempotency_key text UNIQUE,
    ADD COLUMN request_digest text,
    ADD COLUMN stop_requested boolean NOT NULL DEFAULT false,
    ADD COLUMN resume_from text,
    ADD COLUMN resume_epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE superstep_checkpoints ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
DROP INDEX superstep_checkpoints_by_run;
CREATE INDEX superstep_checkpoints_by_run ON superstep_checkpoints
    (run_id, epoch DESC, depth DESC, created_at DESC, checkpoint_id DESC);
";

/// Any number: the key of the advisory lock that migrations take.
const MIGRATION_LOCK: i64 = 0x5355_5045_5253_5445;

/// The schema version of the database `client` is connected to; `None` if it has no
/// superstep schema.
pub(super) async fn version(client: &Object, shown: &str) -> Result<Option<i32>> {
    let exists = client
        .query_one("SELECT to_regclass('superstep_schema') IS NOT NULL", &[])
        .await
        .map_err(|e| failed(shown, "cannot read the schema version", e))?;
    if !exists.get::<_, bool>(0) {
        return Ok(None);
    }
    let row = client
        .query_one("SELECT max(version) FROM superstep_schema", &[])
        .await
        .map_err(|e| failed(shown, "cannot read the schema version", e))?;
    Ok(row.get::<_, Option<i32>>(0))
}

/// Refuses a database whose schema is not [`SCHEMA_VERSION`], saying what to do.
pub(super) fn check(version: Option<i32>, shown: &str) -> Result<()> {
    match version {
        Some(SCHEMA_VERSION) => Ok(()),
        None => Err(invalid(format!(
            "{shown}: the database has no superstep schema; create it with `superstep db migrate --store {shown}`"
        ))),
        Some(older) if older < SCHEMA_VERSION => Err(invalid(format!(
            "{shown}: the database has superstep schema version {older}, this superstep needs {SCHEMA_VERSION}; upgrade it with `superstep db migrate --store {shown}`"
        ))),
        Some(newer) => Err(invalid(format!(
            "{shown}: the database has superstep schema version {newer}, newer than this superstep knows ({SCHEMA_VERSION}); use a superstep as new as the database"
        ))),
    }
}

/// What a migration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The version before (`None`: no schema).
    pub from: Option<i32>,
    /// The version now.
    pub to: i32,
}

/// Brings the database up to [`SCHEMA_VERSION`], all in one transaction; refuses a
/// database newer than that, changing nothing.
pub(super) async fn migrate(mut client: Object, shown: &str) -> Result<Migrated> {
    let fail = |what: &'static str| move |e| failed(shown, what, e);
    let transaction = client
        .transaction()
        .await
        .map_err(fail("cannot begin the migration"))?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail("cannot take the migration lock"))?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS superstep_schema (
                 version integer PRIMARY KEY,
                 migrated_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(fail("cannot create the schema version table"))?;
    let row = transaction
        .query_one("SELECT max(version) FROM superstep_schema", &[])
        .await
        .map_err(fail("cannot read the schema version"))?;
    let from: Option<i32> = row.get(0);
    let current = from.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return check(from, shown).map(|()| unreachable!("a newer schema is refused"));
    }
    for (at, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = at as i32 + 1;
        transaction
            .batch_execute(migration)
            .await
            .map_err(|e| failed(shown, &format!("migration to version {version} failed"), e))?;
        transaction
            .execute(
                "INSERT INTO superstep_schema (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(fail("cannot record the schema version"))?;
    }
    transaction
        .commit()
        .await
        .map_err(fail("cannot commit the migration"))?;
    Ok(Migrated {
        from,
        to: SCHEMA_VERSION,
    })
}
