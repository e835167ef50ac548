//! The PostgreSQL store through the real binary against a real server: the schema made
//! and checked, runs saved, listed and resumed as with a directory, large states stored
//! once, tampering refused, and every bad URL or database a clear error with exit 2.

use crate::common::*;
use crate::postgres_server::Postgres;

/// A migrated database of the shared server.
fn migrated(ws: &Workspace) -> String {
    let url = Postgres::shared().database();
    let made = ws.superstep(&["db", "migrate", "--store", &url]);
    made.assert_code(0);
    assert_eq!(made.stdout.trim(), "schema version 3 created");
    url
}

#[test]
fn runs_save_list_and_resume_in_postgres_as_in_a_directory() {
    let ws = Workspace::new();
    let url = migrated(&ws);
    let again = ws.superstep(&["db", "migrate", "--store", &url]);
    again.assert_code(0);
    assert_eq!(again.stdout.trim(), "schema version 3: up to date");

    let pipeline = ws.pipeline();
    let run = ws.superstep(&[
        "run",
        pipeline.to_str().unwrap(),
        "--input",
        "\"hello world\"",
        "--events",
        "jsonl",
        "--store",
        &url,
    ]);
    run.assert_code(0);
    let saved = run.events_named("checkpoint_saved");
    assert_eq!(saved.len(), 4);
    assert!(
        saved
            .iter()
            .all(|s| s["location"].as_str().unwrap().contains(&url))
    );
    // Nothing went to the default directory.
    assert!(!ws.path().join("checkpoints").exists());

    let listed = ws.superstep(&["checkpoints", "list", "--json", "--store", &url]);
    listed.assert_code(0);
    let ids: Vec<String> = listed
        .stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .map(|entry| entry["checkpoint_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 4);
    // Newest first.
    let latest = ws.superstep(&["checkpoints", "latest", "--store", &url]);
    latest.assert_code(0);
    assert_eq!(latest.stdout.trim(), ids[0]);

    show_diff_and_export(&ws, &url, &ids, &run.outputs());

    // Each checkpoint before the end, resumed by a prefix of its id in a new process,
    // ends as the run ended; the store named by the environment this time.
    for id in &ids[1..] {
        let resumed = ws.superstep_env(
            &[("SUPERSTEP_STORE", &url)],
            &["resume", &id[..id.len() - 4], "--events", "jsonl"],
        );
        resumed.assert_code(0);
        assert_eq!(resumed.outputs(), run.outputs(), "resumed from {id}");
    }
    prune_keeps_the_latest(&ws, &url);
}

/// `checkpoints show`, `show --diff` and `export` of the pipeline's checkpoints `ids`
/// (newest first), as with a directory; the export resumes to `outputs`.
fn show_diff_and_export(ws: &Workspace, url: &str, ids: &[String], outputs: &[serde_json::Value]) {
    let shown = ws.superstep(&["checkpoints", "show", &ids[0], "--store", url]);
    shown.assert_code(0);
    assert!(shown.stdout.contains(&ids[0]));
    let diff = ws.superstep(&[
        "checkpoints",
        "show",
        &ids[3],
        "--diff",
        &ids[0],
        "--store",
        url,
    ]);
    diff.assert_code(0);
    assert!(diff.stdout.contains("upper"), "{}", diff.stdout);
    ws.superstep(&[
        "checkpoints",
        "export",
        &ids[1],
        "-o",
        "exported.json",
        "--store",
        url,
    ])
    .assert_code(0);
    let resumed = ws.superstep(&["resume", "exported.json", "--events", "jsonl"]);
    resumed.assert_code(0);
    assert_eq!(resumed.outputs(), outputs);
}

/// `checkpoints prune` deletes from the database and keeps the latest checkpoint.
fn prune_keeps_the_latest(ws: &Workspace, url: &str) {
    let count = || {
        let listed = ws.superstep(&["checkpoints", "list", "--json", "--store", url]);
        listed.stdout.lines().count()
    };
    let before = count();
    let latest = ws.superstep(&["checkpoints", "latest", "--store", url]);
    let pruned = ws.superstep(&["checkpoints", "prune", "--keep-last", "1", "--store", url]);
    pruned.assert_code(0);
    assert!(count() < before, "nothing pruned: {}", pruned.stdout);
    let kept = latest.stdout.trim();
    ws.superstep(&["checkpoints", "show", kept, "--store", url])
        .assert_code(0);
}

#[test]
fn large_states_are_stored_once_and_damage_is_refused() {
    let ws = Workspace::new();
    let url = migrated(&ws);
    let server = Postgres::shared();
    let manifest = ws.ring(4, 12, &[(1, 70_000)]);
    let mut args = ring_args(&manifest);
    args.extend(["--store".to_string(), url.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ws.superstep(&args).assert_code(0);
    let checkpoints: usize = server
        .query(&url, "SELECT count(*) FROM superstep_checkpoints")
        .parse()
        .unwrap();
    let blobs: usize = server
        .query(&url, "SELECT count(*) FROM superstep_blobs")
        .parse()
        .unwrap();
    assert!(checkpoints > 10, "{checkpoints} checkpoints");
    // Station n1 takes the token 3 times in 12 hops: its state takes 3 values, each
    // stored once however many checkpoints refer to it.
    assert_eq!(blobs, 3);
    let first = server.query(
        &url,
        "SELECT checkpoint_id FROM superstep_checkpoints ORDER BY depth LIMIT 1 OFFSET 2",
    );
    ws.superstep(&["resume", &first, "--store", &url])
        .assert_code(0);

    // A changed blob, then a changed document: refused, exit 2, the field named.
    server.query(
        &url,
        "UPDATE superstep_blobs SET bytes = bytes || '\\x00'::bytea",
    );
    ws.superstep(&["resume", &first, "--store", &url])
        .assert_code(2)
        .assert_stderr("is damaged");
    server.query(
        &url,
        &format!(
            "UPDATE superstep_checkpoints SET document = replace(encode(document, 'escape'), '\"superstep\":2', '\"superstep\":3')::bytea WHERE checkpoint_id = '{first}'"
        ),
    );
    ws.superstep(&["resume", &first, "--store", &url])
        .assert_code(2)
        .assert_stderr(&first);
}

#[test]
fn a_bad_url_or_database_is_a_clear_error() {
    let ws = Workspace::new();
    let server = Postgres::shared();
    let list = |url: &str| ws.superstep(&["checkpoints", "list", "--store", url]);

    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    list(&format!("postgres://superstep@127.0.0.1:{port}/none"))
        .assert_code(2)
        .assert_stderr("cannot connect to PostgreSQL");
    list("postgres://superstep@127.0.0.1:notaport/db")
        .assert_code(2)
        .assert_stderr("not a PostgreSQL URL");
    // A password never shows.
    let refused = list(&format!(
        "postgres://superstep:hunter2@127.0.0.1:{port}/none"
    ));
    refused.assert_code(2).assert_stderr("superstep:***@");
    assert!(!refused.stderr.contains("hunter2"));
    // A database that does not exist.
    list(&server.url("nowhere"))
        .assert_code(2)
        .assert_stderr("cannot connect to PostgreSQL");

    // A database without the schema: every command says to migrate, and writes nothing.
    let bare = server.database();
    list(&bare)
        .assert_code(2)
        .assert_stderr("has no superstep schema; create it with `superstep db migrate");
    let pipeline = ws.pipeline();
    let pipeline = pipeline.to_str().unwrap();
    ws.superstep(&["run", pipeline, "--input", "\"x\"", "--store", &bare])
        .assert_code(2)
        .assert_stderr("superstep db migrate");
    assert_eq!(
        server.query(
            &bare,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'superstep%'"
        ),
        "0"
    );

    // A database of a newer schema: refused by the store and by migrate, unchanged.
    let newer = migrated(&ws);
    server.query(&newer, "INSERT INTO superstep_schema (version) VALUES (99)");
    list(&newer)
        .assert_code(2)
        .assert_stderr("schema version 99, newer than this superstep knows (3)");
    ws.superstep(&["db", "migrate", "--store", &newer])
        .assert_code(2)
        .assert_stderr("newer than this superstep knows");
    assert_eq!(
        server.query(
            &newer,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM superstep_schema"
        ),
        "1,2,3,99"
    );

    // `db migrate` needs a database.
    ws.superstep(&["db", "migrate", "--store", "some/dir"])
        .assert_code(2)
        .assert_stderr("this command needs a PostgreSQL URL");
}
