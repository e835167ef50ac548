//! `superstep db`: the PostgreSQL database behind `--store postgres://...`.

use super::{EXIT_OK, say};
use clap::{Args, Subcommand};
use superstep::checkpoint::is_postgres_url;
use superstep::error::{Result, invalid};

/// What `superstep db` does.
#[derive(Subcommand)]
pub(super) enum DbCommand {
    /// Create the schema in a database, or upgrade it to this superstep's version. Safe
    /// to run again, and from several hosts at once.
    Migrate(MigrateArgs),
}

/// `superstep db migrate`.
#[derive(Args)]
pub(super) struct MigrateArgs {
    /// The database: postgres://user@host:port/database.
    #[arg(long = "store", env = "SUPERSTEP_STORE", value_name = "URL")]
    store: String,
}

/// Runs a `db` command.
pub(super) fn execute(command: DbCommand) -> Result<u8> {
    match command {
        DbCommand::Migrate(args) => migrate(args),
    }
}

/// `store` if it is a PostgreSQL URL: the commands of runs in the database need one.
pub(super) fn postgres_url(store: &str) -> Result<String> {
    if !is_postgres_url(store) {
        return Err(invalid(format!(
            "--store {store}: this command needs a PostgreSQL URL (postgres://user@host:port/database)"
        )));
    }
    Ok(store.to_string())
}

fn migrate(args: MigrateArgs) -> Result<u8> {
    let migrated = superstep::db::migrate(&postgres_url(&args.store)?)?;
    match migrated.from {
        Some(from) if from == migrated.to => say!("schema version {from}: up to date")?,
        Some(from) => say!("schema version {from} -> {}", migrated.to)?,
        None => say!("schema version {} created", migrated.to)?,
    }
    Ok(EXIT_OK)
}
