//! Every stock scenario under scenarios/ validates, so a format change cannot silently break
//! the drills users run.

use std::path::Path;

#[test]
fn every_stock_scenario_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(error) = loadgen::scenario::load(&path) {
                panic!("{} does not validate:\n{error}", path.display());
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected the stock scenarios in {}",
        dir.display()
    );
}
