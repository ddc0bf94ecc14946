//! Every error the API answers: `{"error":{"code":"snake_case_code","message":"..."}}` with the
//! status its code implies.
//!
//! 400 means the request itself is malformed (unparseable JSON, a bad path or query
//! parameter); 422 means a well-formed JSON body whose content breaks the schema.

use serde::Serialize;
use utoipa::ToSchema;

use crate::http::Response;
use crate::platform::StoreError;

/// What went wrong, for programs; the status code follows from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not valid JSON.
    InvalidJson,
    /// 400: a path or query parameter is missing, malformed or out of range.
    InvalidParameter,
    /// 400: the body broke off, or was not framed as its headers said.
    InvalidBody,
    /// 404: no such path, or no such greeting.
    NotFound,
    /// 405: the path exists, the method does not (see the `Allow` header).
    MethodNotAllowed,
    /// 409: other writers kept changing the greeting while it was replaced.
    Conflict,
    /// 413: the body is larger than [`BODY_MAX_BYTES`](crate::limits::BODY_MAX_BYTES).
    PayloadTooLarge,
    /// 415: a JSON body without `content-type: application/json`.
    UnsupportedMediaType,
    /// 422: valid JSON that breaks the schema (unknown field, wrong type, bad length).
    ValidationFailed,
    /// 500: a bug or a corrupt stored record.
    InternalError,
    /// 502: S3 answered with an error; the message has S3's code (`NoSuchBucket`, ...).
    UpstreamError,
    /// 502: S3 could not be reached (connection refused, DNS, TLS, not an allowed host).
    UpstreamUnavailable,
    /// 503: the key-value store cannot be reached.
    StoreUnavailable,
    /// 503: a Spin variable the route needs is not set, or makes no sense.
    NotConfigured,
    /// 504: S3 did not answer in time.
    UpstreamTimeout,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidJson | Self::InvalidParameter | Self::InvalidBody => 400,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::ValidationFailed => 422,
            Self::InternalError => 500,
            Self::UpstreamError | Self::UpstreamUnavailable => 502,
            Self::StoreUnavailable | Self::NotConfigured => 503,
            Self::UpstreamTimeout => 504,
        }
    }
}

/// An error answer: a code and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApiError {
    pub code: ErrorCode,
    #[schema(example = "No greeting has the id 01JD3X2K8Q5V7R9T1M4N6P8S0W.")]
    pub message: String,
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ApiError,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn into_response(self) -> Response {
        Response::json(self.code.status(), &ErrorBody { error: self })
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::new(
            ErrorCode::StoreUnavailable,
            format!("The key-value store is unavailable: {}", error.0),
        )
    }
}
