//! Who is calling: the authorization of a request against the configured accounts, shared by
//! every face, and the [`Authorized`] extractor, which answers a refusal with 401, 403 or 503 in
//! the face's own shape before the handler runs; [`Visit`] adds the face's data to it, and
//! [`Sent`] the body, read after it.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::http::header::AUTHORIZATION;
use actix_web::web::Bytes;
use actix_web::{web, FromRequest, HttpRequest};

use super::body::read_body;
use super::error::{Api, Denied, Refusal, Shape};
use crate::auth::{Access, Auth, Caller};
use crate::runtime::cpu_bound;

/// Who may use what, shared by every worker.
#[derive(Clone)]
pub struct Guard {
    pub auth: Arc<Auth>,
    /// Who may use the event API.
    pub api: Access,
}

/// What every guarded face's handlers share about their callers: the accounts, the face's
/// access rule and the largest body its handlers read.
pub struct Gate {
    pub auth: Arc<Auth>,
    /// Who may use the face once any account exists.
    pub access: Access,
    /// The largest request body, in bytes.
    pub max_body: usize,
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
        // Credentials seen before (good or bad) are answered at once; an argon2 verification
        // takes tens of milliseconds: off the async threads, a few at a time.
        if let Some(known) = auth.known(authorization.as_deref(), access) {
            return Ok(known?);
        }
        let authorized = cpu_bound(move || auth.authorize(authorization.as_deref(), access))
            .await
            .map_err(|e| Denied::Unavailable(e.to_string()))?;
        Ok(authorized?)
    }
}

/// A face whose routes are open to the callers its access rule lets in.
pub trait Guarded: Shape {
    /// The face's auth and access rule, from the request's app data; `None` when the listener
    /// was built without them (a bug, answered with [`Guarded::missing`]).
    fn rule(request: &HttpRequest) -> Option<(Arc<Auth>, Access)>;

    /// The refusal of a request to a listener built without the face's rule.
    fn missing() -> Refusal<Self>;

    /// The largest body the face's handlers read, in bytes, from the request's app data;
    /// `None` as for [`Guarded::rule`], or for a face that reads no body.
    fn max_body(_request: &HttpRequest) -> Option<usize> {
        None
    }
}

/// Makes a face's state [`Guarded`] by its `gate` field ([`Gate`]):
/// `guarded!(Face, "the words of a refusal when the listener was built without it")`; with
/// `, FaceError, |status, message| body`, also its refusals `FaceError`, each answered with the
/// JSON `body` ([`JsonShape`](super::error::JsonShape)).
macro_rules! guarded {
    ($face:ident, $missing:expr, $error:ident, |$status:pat_param, $message:ident| $body:expr) => {
        /// A refusal, in the face's shape.
        pub type $error = $crate::http::error::Refusal<$face>;

        impl $crate::http::error::JsonShape for $face {
            fn body($status: actix_web::http::StatusCode, $message: String) -> serde_json::Value {
                $body
            }
        }

        guarded!($face, $missing);
    };
    ($face:ty, $missing:expr) => {
        impl $crate::http::caller::Guarded for $face {
            fn rule(
                request: &actix_web::HttpRequest,
            ) -> Option<(std::sync::Arc<$crate::auth::Auth>, $crate::auth::Access)> {
                let face = request.app_data::<actix_web::web::Data<$face>>()?;
                Some((face.gate.auth.clone(), face.gate.access))
            }

            fn missing() -> $crate::http::error::Refusal<$face> {
                $crate::http::error::Refusal::internal($missing)
            }

            fn max_body(request: &actix_web::HttpRequest) -> Option<usize> {
                let face = request.app_data::<actix_web::web::Data<$face>>()?;
                Some(face.gate.max_body)
            }
        }
    };
}
pub(crate) use guarded;

/// A caller face `F`'s access rule lets in, or with `ADMIN` an admin: every handler of a
/// guarded face takes one, so that none is served before its caller is authorized.
pub struct Authorized<F, const ADMIN: bool = false>(pub Caller, pub PhantomData<fn() -> F>);

impl<F: Guarded, const ADMIN: bool> FromRequest for Authorized<F, ADMIN> {
    type Error = Refusal<F>;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Refusal<F>>>>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let Some((auth, access)) = F::rule(request) else {
            let error = F::missing();
            return Box::pin(async move { Err(error) });
        };
        let access = if ADMIN { Access::Admin } else { access };
        let authorized = authorize(request, auth, access);
        // The refusal's context (Patrowl's page) is worked out only for a refusal.
        let request = request.clone();
        Box::pin(async move {
            let caller = authorized.await.map_err(|denied| {
                let mut refusal = Refusal::from(denied);
                refusal.context = F::context(&request);
                refusal
            })?;
            Ok(Authorized(caller, PhantomData))
        })
    }
}

/// Face `F`'s data and a caller its access rule lets in, or with `ADMIN` an admin: what every
/// handler of a guarded face starts from.
pub struct Visit<F, const ADMIN: bool = false> {
    pub caller: Caller,
    pub face: web::Data<F>,
}

/// An admin and the face's data, for a face's destructive routes.
pub type Admin<F> = Visit<F, true>;

impl<F: Guarded, const ADMIN: bool> FromRequest for Visit<F, ADMIN> {
    type Error = Refusal<F>;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Refusal<F>>>>>;

    fn from_request(request: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let authorized = Authorized::<F, ADMIN>::from_request(request, payload);
        let face = request.app_data::<web::Data<F>>().cloned();
        Box::pin(async move {
            let Authorized(caller, _) = authorized.await?;
            let face = face.ok_or_else(F::missing)?;
            Ok(Visit { caller, face })
        })
    }
}

/// What [`Visit`] gives, and the request's body, of at most the face's `max_body` bytes, read
/// only once the caller is let in: the start of every handler that takes a body under the
/// face's usual limit.
pub struct Sent<F> {
    pub caller: Caller,
    pub face: web::Data<F>,
    pub body: Bytes,
}

impl<F: Guarded> FromRequest for Sent<F> {
    type Error = Refusal<F>;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Refusal<F>>>>>;

    fn from_request(request: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let visit = Visit::<F>::from_request(request, payload);
        let payload = web::Payload::from_request(request, payload);
        let request = request.clone();
        Box::pin(async move {
            let Visit { caller, face } = visit.await?;
            // Taking the payload out of the request cannot fail.
            let payload = payload.await.map_err(Refusal::internal)?;
            let limit = F::max_body(&request).ok_or_else(F::missing)?;
            let body = read_body(&request, payload, limit).await?;
            Ok(Sent { caller, face, body })
        })
    }
}

impl Guarded for Api {
    fn rule(request: &HttpRequest) -> Option<(Arc<Auth>, Access)> {
        request
            .app_data::<web::Data<Guard>>()
            .map(|guard| (guard.auth.clone(), guard.api))
    }

    fn missing() -> Refusal<Api> {
        Refusal::internal("no access rules configured")
    }
}

/// An authorized caller of the event API.
pub type ApiCaller = Authorized<Api>;
