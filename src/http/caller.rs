//! The caller of an event API route: an extractor that authorizes the request against the
//! configured accounts before the handler runs, answering 401 or 403 in the API's error shape.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};

use super::error::ApiError;
use crate::auth::{Access, Auth, Caller};

/// Who may use what, shared by every worker.
pub struct Guard {
    pub auth: Arc<Auth>,
    /// Who may use the event API.
    pub api: Access,
}

/// An authorized caller of the event API.
pub struct ApiCaller(pub Caller);

impl FromRequest for ApiCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let guard = request.app_data::<web::Data<Guard>>().cloned();
        let authorization = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            let guard =
                guard.ok_or_else(|| ApiError::Internal("no access rules configured".into()))?;
            if !guard.auth.enabled() {
                return Ok(ApiCaller(Caller { user: None }));
            }
            // An argon2 verification takes tens of milliseconds: off the async threads.
            let authorized =
                web::block(move || guard.auth.authorize(authorization.as_deref(), guard.api))
                    .await
                    .map_err(ApiError::internal)?;
            Ok(ApiCaller(authorized?))
        })
    }
}
