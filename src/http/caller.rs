//! Who is calling: the authorization of a request against the configured accounts, shared by
//! every face, and the event API's extractor, which answers a refusal with 401 or 403 in the
//! API's error shape before the handler runs. Each face maps [`Denied`] to its own shape.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};

use super::error::ApiError;
use crate::auth::{Access, Auth, AuthError, Caller};

/// Who may use what, shared by every worker.
#[derive(Clone)]
pub struct Guard {
    pub auth: Arc<Auth>,
    /// Who may use the event API.
    pub api: Access,
}

/// Why a request was not authorized.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The check itself could not run (the blocking pool is shutting down).
    #[error("the credentials could not be checked: {0}")]
    Unavailable(String),
}

impl Denied {
    /// The status every face answers it with, each in its own shape: 403 for a caller who
    /// may not, 401 for one not known, 503 when the check could not run.
    pub fn status(&self) -> actix_web::http::StatusCode {
        use actix_web::http::StatusCode;
        match self {
            Denied::Auth(AuthError::Forbidden { .. }) => StatusCode::FORBIDDEN,
            Denied::Auth(_) => StatusCode::UNAUTHORIZED,
            Denied::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Authorizes the caller of `request` for a part open to `access`.
pub fn authorize(
    request: &HttpRequest,
    auth: Arc<Auth>,
    access: Access,
) -> impl Future<Output = Result<Caller, Denied>> + 'static {
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    async move {
        if !auth.enabled() || access == Access::Anyone {
            return Ok(Caller { user: None });
        }
        // An argon2 verification takes tens of milliseconds: off the async threads.
        let authorized = web::block(move || auth.authorize(authorization.as_deref(), access))
            .await
            .map_err(|e| Denied::Unavailable(e.to_string()))?;
        Ok(authorized?)
    }
}

/// What an extractor of an authorized caller answers, in the shape of its error `E`: `rule` is
/// the part's auth and access found in the app data, `None` when the listener was built
/// without them (a bug, answered with `missing`).
pub fn extract<T: 'static, E: From<Denied> + 'static>(
    request: &HttpRequest,
    rule: Option<(Arc<Auth>, Access)>,
    missing: impl FnOnce() -> E,
    wrap: fn(Caller) -> T,
) -> Pin<Box<dyn Future<Output = Result<T, E>>>> {
    let Some((auth, access)) = rule else {
        let error = missing();
        return Box::pin(async move { Err(error) });
    };
    let authorized = authorize(request, auth, access);
    Box::pin(async move { Ok(wrap(authorized.await?)) })
}

/// An authorized caller of the event API.
pub struct ApiCaller(pub Caller);

impl FromRequest for ApiCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let rule = request
            .app_data::<web::Data<Guard>>()
            .map(|guard| (guard.auth.clone(), guard.api));
        extract(
            request,
            rule,
            || ApiError::Internal("no access rules configured".into()),
            ApiCaller,
        )
    }
}
