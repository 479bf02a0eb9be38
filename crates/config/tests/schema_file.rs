//! The shipped `config.schema.json` (repository root) must be exactly what `json_schema()`
//! generates, so editors validate against what the loader accepts.
//! Regenerate with: `UPDATE_SCHEMA=1 cargo test -p acg-config --test schema_file`.

use std::path::PathBuf;

fn shipped_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config.schema.json")
}

fn generated() -> String {
    let schema = acg_config::json_schema();
    format!(
        "{}\n",
        serde_json::to_string_pretty(&schema).expect("schema serializes")
    )
}

#[test]
fn shipped_schema_is_up_to_date() {
    let path = shipped_path();
    let expected = generated();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &expected).expect("write config.schema.json");
        return;
    }
    let shipped = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        shipped == expected,
        "{} is out of date with the config types.\nRegenerate it with:\n    UPDATE_SCHEMA=1 cargo test -p acg-config --test schema_file",
        path.display()
    );
}

#[test]
fn schema_forbids_unknown_keys() {
    let schema = acg_config::json_schema();
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
    for (name, def) in schema["definitions"].as_object().expect("definitions") {
        if def.get("properties").is_some() {
            assert_eq!(
                def["additionalProperties"],
                serde_json::json!(false),
                "{name} accepts unknown keys"
            );
        }
    }
    let required: Vec<&str> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(required, ["agents", "connectors"]);
}
