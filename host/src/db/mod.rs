//! PostgreSQL: the database behind `--store postgres://...`, its versioned schema
//! ([`migrate`]), and the connection under the blocking APIs of the store and the run
//! queue: a pool of tokio-postgres connections driven by a small tokio runtime of its
//! own. Each call runs there as a task while the calling thread waits for its answer,
//! so a caller may be any thread, one of another runtime's too.

mod schema;

pub use schema::{Migrated, SCHEMA_VERSION};

use crate::error::{Error, Result, host, invalid};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use std::future::Future;
use std::time::Duration;
use tokio_postgres::NoTls;

/// How long connecting may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections at most, per store.
const POOL_SIZE: usize = 16;

/// Creates or upgrades the schema of the database at `url`: the migrations it lacks, in
/// one transaction under an advisory lock (two at once wait for each other); a database
/// newer than this build is refused, unchanged.
pub fn migrate(url: &str) -> Result<Migrated> {
    let db = Database::new(url)?;
    db.check_reachable()?;
    let shown = db.shown().to_string();
    db.call(move |client| async move { schema::migrate(client, &shown).await })
}

/// A pool of connections to one database, and the runtime that drives them.
pub(crate) struct Database {
    pool: Pool,
    /// For connections of their own (`LISTEN`).
    config: tokio_postgres::Config,
    runtime: Option<tokio::runtime::Runtime>,
    /// The URL without its password, for messages.
    shown: String,
}

impl Database {
    /// A pool for the database at `url`; nothing is connected yet.
    fn new(url: &str) -> Result<Database> {
        let shown = without_password(url);
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| invalid(format!("{shown}: not a PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = Manager::from_config(config.clone(), NoTls, recycling);
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| host(format!("{shown}: cannot make a connection pool: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("superstep-postgres")
            .enable_all()
            .build()
            .map_err(|e| host(format!("cannot start the database client: {e}")))?;
        Ok(Database {
            pool,
            config,
            runtime: Some(runtime),
            shown,
        })
    }

    /// The URL without its password.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// Runs `work` with a connection of the pool and waits for its result. A database
    /// that cannot be reached is a host error here: [`Database::check_reachable`] tells
    /// a wrong URL apart when a store opens.
    pub(crate) fn call<T, F>(&self, work: impl FnOnce(Object) -> F + Send + 'static) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let (pool, shown) = (self.pool.clone(), self.shown.clone());
        self.wait_for(async move {
            match pool.get().await {
                Ok(client) => work(client).await,
                Err(e) => Err(host(format!("{shown}: cannot connect: {e}"))),
            }
        })
    }

    /// The bytes in the first column of the row that `sql` selects with `key`, if
    /// there is one; `what` names the read in errors.
    pub(crate) fn bytes_of(
        &self,
        sql: &'static str,
        key: &str,
        what: &'static str,
    ) -> Result<Option<Vec<u8>>> {
        let (shown, key) = (self.shown.clone(), key.to_string());
        self.call(move |client| async move {
            let row = client
                .query_opt(sql, &[&key])
                .await
                .map_err(|e| failed(&shown, what, e))?;
            Ok(row.map(|row| row.get::<_, Vec<u8>>(0)))
        })
    }

    /// Runs `work` on the database's runtime and waits on this thread for its result.
    fn wait_for<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        self.runtime().spawn(async move {
            let _ = answer.send(work.await);
        });
        answered
            .recv()
            .unwrap_or_else(|_| Err(host(format!("{}: the database client stopped", self.shown))))
    }

    /// Connects once and checks the schema version: a URL whose server cannot be
    /// reached or refuses it, and a database without this build's schema, are bad input.
    pub(crate) fn open(url: &str) -> Result<Database> {
        let db = Database::new(url)?;
        db.check_reachable()?;
        let shown = db.shown().to_string();
        let version =
            db.call(move |client| async move { schema::version(&client, &shown).await })?;
        schema::check(version, db.shown())?;
        Ok(db)
    }

    /// Connects once: a URL whose server cannot be reached or refuses it is bad input.
    fn check_reachable(&self) -> Result<()> {
        let (pool, shown) = (self.pool.clone(), self.shown.clone());
        self.wait_for(async move {
            pool.get().await.map(drop).map_err(|e| {
                invalid(format!(
                    "{shown}: cannot connect to PostgreSQL: {e} (is the server running, and does the URL name its host, port, user and database?)"
                ))
            })
        })
    }

    /// Listens on `channel` on a connection of its own for as long as the database
    /// lives, calling `notified` with each notification's payload, and with `None`
    /// whenever the connection was lost and made again (notifications may have been
    /// missed meanwhile).
    pub(crate) fn listen(
        &self,
        channel: &'static str,
        notified: impl Fn(Option<String>) + Send + Sync + 'static,
    ) {
        let config = self.config.clone();
        self.runtime().spawn(async move {
            loop {
                if let Ok((client, mut connection)) = config.connect(NoTls).await {
                    let listening = async {
                        client.batch_execute(&format!("LISTEN {channel}")).await?;
                        notified(None);
                        Ok::<_, tokio_postgres::Error>(())
                    };
                    let messages = async {
                        while let Some(message) =
                            std::future::poll_fn(|cx| connection.poll_message(cx)).await
                        {
                            match message {
                                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                    notified(Some(n.payload().to_string()))
                                }
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                    };
                    let (_, ()) = tokio::join!(listening, messages);
                    drop(client);
                }
                // The server went away: try again in a moment.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("present until dropped")
    }
}

impl Drop for Database {
    /// Stops the runtime without waiting (the store may be dropped on another runtime's
    /// thread, where waiting is not allowed); no call is in flight by then.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `error` of the database while doing `what`, as a host error naming the database.
pub(crate) fn failed(shown: &str, what: &str, error: tokio_postgres::Error) -> Error {
    let detail = match error.as_db_error() {
        Some(db) => db.message().to_string(),
        None => error.to_string(),
    };
    host(format!("{shown}: {what}: {detail}"))
}

/// `url` with any password (in its user info or a `password=` parameter) replaced by
/// `***`.
pub fn without_password(url: &str) -> String {
    let url = match url.split_once('?') {
        Some((base, query)) => {
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("password", _)) => "password=***".to_string(),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{base}?{}", masked.join("&"))
        }
        None => url.to_string(),
    };
    let url = url.as_str();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows() {
        assert_eq!(
            without_password("postgres://me:secret@db.example:5432/runs"),
            "postgres://me:***@db.example:5432/runs"
        );
        assert_eq!(
            without_password("postgres://me@127.0.0.1/runs"),
            "postgres://me@127.0.0.1/runs"
        );
        assert_eq!(without_password("postgresql://h/db"), "postgresql://h/db");
        assert_eq!(
            without_password("postgres://h/db?sslmode=disable&password=secret"),
            "postgres://h/db?sslmode=disable&password=***"
        );
    }
}
