//! Identifier checks at the pipeline's edges: an enterprise id given by a person or a file is
//! validated before it is used, and the error names the field.

use crate::error::{CoreError, Result};

/// Validates `enterprise_id` as a unified social credit code (统一社会信用代码).
pub fn validate_enterprise_id(enterprise_id: &str) -> Result<()> {
    pharmwatch_schemas::ids::validate_credit_code(enterprise_id).map_err(|e| {
        CoreError::InvalidField {
            field: "enterprise_id".to_string(),
            reason: format!("not a valid unified social credit code (统一社会信用代码): {e}"),
        }
    })
}
