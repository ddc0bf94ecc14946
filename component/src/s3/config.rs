//! S3-compatible storage for `POST /api/upload-random`: its configuration, from Spin variables.
//! This is the seam where issue 4 adds the S3 client and the upload itself.

use crate::errors::{ApiError, ErrorCode};
use crate::platform::Variables;

/// The Spin variables no upload can work without; spin.toml defaults them to "". (The
/// endpoint, region and path style have usable defaults.)
const REQUIRED_VARIABLES: [&str; 3] = ["s3_bucket", "s3_access_key_id", "s3_secret_access_key"];

/// 503 naming every required variable that is empty or undefined (never a value: two are
/// secrets).
pub fn require_configuration(variables: &dyn Variables) -> Result<(), ApiError> {
    let missing: Vec<&str> = REQUIRED_VARIABLES
        .into_iter()
        .filter(|name| {
            variables
                .get(name)
                .is_none_or(|value| value.trim().is_empty())
        })
        .collect();
    let Some(first) = missing.first() else {
        return Ok(());
    };
    let plural = if missing.len() == 1 { "" } else { "s" };
    let message = format!(
        "S3 is not configured: set the Spin variable{plural} {} (e.g. SPIN_VARIABLE_{}).",
        missing.join(", "),
        first.to_ascii_uppercase()
    );
    Err(ApiError::new(ErrorCode::NotConfigured, message))
}
