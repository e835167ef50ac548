//! Manifest errors as files: each `tests/manifests/invalid/<case>.toml` must be refused,
//! with a message that contains `<case>.expected` (where `<manifest>` stands for the
//! file's path). A new check of the manifest gets a new pair of files here.

use std::path::Path;
use superstep::Manifest;

#[test]
fn every_invalid_manifest_is_refused_with_its_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/manifests/invalid");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 20,
        "{} cases in {}",
        cases.len(),
        dir.display()
    );
    let mut wrong = Vec::new();
    for case in &cases {
        let expected = std::fs::read_to_string(case.with_extension("expected"))
            .unwrap_or_else(|e| panic!("{}: no .expected beside it: {e}", case.display()));
        let expected = expected.trim_end_matches('\n');
        let absolute = std::path::absolute(case).unwrap();
        let message = match Manifest::load(case) {
            Ok(_) => "(accepted)".to_string(),
            Err(error) => {
                format!("{error:#}").replace(&absolute.display().to_string(), "<manifest>")
            }
        };
        if !message.contains(expected) {
            wrong.push(format!(
                "{}:\n  expected: {expected}\n  got:      {message}",
                case.display()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
