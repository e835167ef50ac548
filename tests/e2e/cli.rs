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
