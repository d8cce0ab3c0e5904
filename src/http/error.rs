//! The error body of annals' own API: `{"error": "...", "status": N}`. Each face with a
//! protocol of its own maps errors to that protocol's shape in its own module.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// The `WWW-Authenticate` challenge of every 401.
pub const CHALLENGE: &str = r#"Basic realm="annals", Bearer realm="annals""#;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: a bad parameter, a bad stream id.
    #[error("{0}")]
    BadRequest(String),
    /// No or wrong credentials: answered with `WWW-Authenticate`.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// annals failed; the message says how.
    #[error("{0}")]
    Internal(String),
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(error: crate::auth::AuthError) -> Self {
        match error {
            crate::auth::AuthError::Forbidden { .. } => ApiError::Forbidden(error.to_string()),
            _ => ApiError::Unauthorized(error.to_string()),
        }
    }
}

impl From<super::caller::Denied> for ApiError {
    fn from(denied: super::caller::Denied) -> Self {
        match denied {
            super::caller::Denied::Auth(error) => error.into(),
            super::caller::Denied::Unavailable(reason) => ApiError::Internal(reason),
        }
    }
}

impl ApiError {
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(error.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::Unauthorized(_) = self {
            response.insert_header((actix_web::http::header::WWW_AUTHENTICATE, CHALLENGE));
        }
        response.json(ErrorBody {
            error: self.to_string(),
            status: self.status_code().as_u16(),
        })
    }
}

/// The body of every error of the event API (and of the API's routes to come).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": "limit 5000 is over the limit of 1000", "status": 400}))]
pub struct ErrorBody {
    /// What went wrong, in words meant for the person reading them.
    pub error: String,
    /// The HTTP status code again, for clients that only keep the body.
    pub status: u16,
}
