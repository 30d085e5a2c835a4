//! The run directory's summary.json held to its committed schema.

/// Validates a run directory's summary.json against docs/summary.schema.json; returns the
/// instance and the validator.
pub fn assert_matches_schema(
    run_dir: &std::path::Path,
) -> (serde_json::Value, jsonschema::Validator) {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/summary.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let instance: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema itself is valid");
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    (instance, validator)
}
