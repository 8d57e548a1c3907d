//! Wire contracts: JSON Schema documents (draft 2020-12) for every event kind and reference
//! table, generated from the field tables in [`crate::records`].
//!
//! The committed copies live in `schemas/contracts/*.json` for producers on the platform side;
//! a test regenerates them and fails when they differ (run the schemas tests with
//! `PHARMWATCH_BLESS=1` to rewrite them after changing a field table).

use serde_json::{Map, Value, json};

use crate::records::{EventKind, FieldSpec, FieldType, ReferenceKind};

/// Base of the `$id` of every contract.
pub const CONTRACT_ID_BASE: &str = "https://pharmwatch.invalid/contracts/";

fn property(spec: &FieldSpec) -> Value {
    let mut p = Map::new();
    let ty = match spec.ty {
        FieldType::Text | FieldType::Timestamp | FieldType::Date => "string",
        FieldType::Int => "integer",
        FieldType::Float => "number",
        FieldType::Bool => "boolean",
    };
    if spec.nullable {
        p.insert("type".into(), json!([ty, "null"]));
    } else {
        p.insert("type".into(), json!(ty));
    }
    match spec.ty {
        FieldType::Timestamp => {
            p.insert("format".into(), json!("date-time"));
        }
        FieldType::Date => {
            p.insert("format".into(), json!("date"));
        }
        _ => {}
    }
    if spec.name == "quantity" || spec.name.ends_with("_defects") {
        p.insert("minimum".into(), json!(0));
    }
    if spec.name == "unit_price" || spec.name == "reference_price" {
        p.insert("minimum".into(), json!(0));
    }
    if spec.name.ends_with("enterprise_id")
        || spec.name == "buyer_id"
        || spec.name == "supplier_id"
        || spec.name == "manufacturer_id"
        || spec.name == "parent_id"
    {
        p.insert(
            "pattern".into(),
            json!("^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"),
        );
    }
    if !spec.allowed.is_empty() {
        p.insert("enum".into(), json!(spec.allowed));
    }
    p.insert("description".into(), json!(spec.description));
    Value::Object(p)
}

fn schema(id: &str, title: &str, description: &str, fields: &[FieldSpec]) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|s| (s.name.to_string(), property(s)))
        .collect();
    let required: Vec<&str> = fields
        .iter()
        .filter(|s| !s.nullable)
        .map(|s| s.name)
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("{CONTRACT_ID_BASE}{id}.json"),
        "title": title,
        "description": description,
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": properties,
    })
}

/// The contract of an event kind.
pub fn event_contract(kind: EventKind) -> Value {
    schema(
        kind.as_str(),
        kind.as_str(),
        kind.description(),
        kind.fields(),
    )
}

/// The contract of a reference table (one row).
pub fn reference_contract(kind: ReferenceKind) -> Value {
    schema(
        kind.as_str(),
        kind.as_str(),
        kind.description(),
        kind.fields(),
    )
}

/// Every contract as `(file name, pretty JSON text)`.
pub fn all_contracts() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for k in EventKind::ALL {
        out.push((format!("{}.json", k.as_str()), pretty(&event_contract(*k))));
    }
    for k in ReferenceKind::ALL {
        out.push((
            format!("{}.json", k.as_str()),
            pretty(&reference_contract(*k)),
        ));
    }
    out
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn committed_contracts_match_the_field_tables() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contracts");
        let bless = std::env::var_os("PHARMWATCH_BLESS").is_some();
        for (name, text) in all_contracts() {
            let path = dir.join(&name);
            if bless {
                std::fs::write(&path, &text).unwrap();
                continue;
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; run with PHARMWATCH_BLESS=1 to write it",
                    path.display()
                )
            });
            assert_eq!(
                committed, text,
                "{name} is stale; rerun with PHARMWATCH_BLESS=1"
            );
        }
    }

    #[test]
    fn sales_contract_requires_the_mandatory_fields_only() {
        let c = event_contract(EventKind::Sales);
        let req: Vec<&str> = c["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(req.contains(&"event_time"));
        assert!(req.contains(&"unit_price"));
        assert!(!req.contains(&"buyer_id"));
        assert_eq!(c["properties"]["event_time"]["format"], "date-time");
        assert_eq!(
            c["properties"]["buyer_id"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(c["additionalProperties"], false);
    }
}
