//! The graph command and --help.

use crate::common::*;

#[test]
fn graph_renders_mermaid_and_dot_with_kind_labels() {
    let ws = Workspace::new();
    let manifest = ws.pipeline();
    let mermaid = ws.superstep(&["graph", manifest.to_str().unwrap()]);
    mermaid.assert_code(0);
    assert!(mermaid.stdout.starts_with("flowchart LR\n"));
    assert!(
        mermaid.stdout.contains("n3([\"upper\"])"),
        "{}",
        mermaid.stdout
    );
    assert!(
        mermaid.stdout.contains("n3 -->|\"text\"| n2"),
        "{}",
        mermaid.stdout
    );
    let dot = ws.superstep(&["graph", manifest.to_str().unwrap(), "--format", "dot"]);
    dot.assert_code(0);
    assert!(
        dot.stdout
            .contains("\"upper\" -> \"reverse\" [label=\"text\"];"),
        "{}",
        dot.stdout
    );
}

#[test]
fn help_lists_every_command_and_the_exit_codes() {
    let ws = Workspace::new();
    let help = ws.superstep(&["--help"]);
    help.assert_code(0);
    for command in [
        "run",
        "resume",
        "checkpoints",
        "validate",
        "graph",
        "Exit codes: 0 completed, 1 run failed, 2",
    ] {
        assert!(help.stdout.contains(command), "{command}: {}", help.stdout);
    }
    let bad = ws.superstep(&["frobnicate"]);
    bad.assert_code(2);
}

#[test]
fn compiled_components_are_cached_and_damaged_entries_replaced() {
    let ws = Workspace::new();
    let cache = ws.path().join("cache");
    let manifest = ws.pipeline();
    let home = ws.path().join("home");
    let run = |cache: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_superstep"));
        command
            .args([
                "run",
                manifest.to_str().unwrap(),
                "--input",
                "\"hello world\"",
                "--events",
                "quiet",
            ])
            .env("HOME", &home)
            .env_remove("XDG_CACHE_HOME")
            .env_remove(superstep::COMPILE_CACHE_ENV)
            .current_dir(ws.path());
        if let Some(cache) = cache {
            command.env(superstep::COMPILE_CACHE_ENV, cache);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            "\"dlrow olleh\"\n"
        );
    };
    let entries = || -> std::collections::BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
        std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_str().unwrap().to_string();
                let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
                (name, (std::fs::read(&path).unwrap(), modified))
            })
            .collect()
    };
    run(Some(cache.to_str().unwrap()));
    let first = entries();
    assert_eq!(
        first.len(),
        4,
        "one entry per component: {:?}",
        first.keys()
    );
    assert!(first.keys().all(|name| name.ends_with(".cwasm")));

    // A valid entry is loaded, not rewritten.
    run(Some(cache.to_str().unwrap()));
    assert_eq!(entries(), first);

    // A damaged entry is ignored and replaced; the run is unaffected.
    let (name, (bytes, _)) = first.iter().next().unwrap();
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(cache.join(name), &damaged).unwrap();
    std::fs::write(cache.join(name.replace(".cwasm", "-x.cwasm")), b"foreign").unwrap();
    run(Some(cache.to_str().unwrap()));
    assert_eq!(
        &entries()[name].0,
        bytes,
        "rewritten with the valid artifact"
    );

    // Off: nothing is written; by default the cache is under $HOME/.cache.
    run(Some("off"));
    assert!(!home.exists());
    run(None);
    let default = home.join(".cache/superstep/compiled");
    assert_eq!(std::fs::read_dir(default).unwrap().count(), 4);
}
