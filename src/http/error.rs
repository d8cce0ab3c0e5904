//! Refusals: the one error type every face answers with ([`Refusal`]), the one table from each
//! error to its HTTP status ([`Status`]), and the error body of annals' own API
//! (`{"error": "...", "status": N}`). A face chooses only its body shape ([`Shape`]); the status
//! and the `WWW-Authenticate` challenge of a 401 are the same everywhere.

use std::fmt;
use std::marker::PhantomData;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};

use super::body::BodyError;
use super::refstack::multipart::MultipartError;
use crate::auth::AuthError;
use crate::domain::gros::GrosError;
use crate::domain::inventory::InventoryError;
use crate::domain::results::ResultsError;
use crate::domain::scan::{EnginesError, ScanRejection};
use crate::domain::sshkey::SshKeysError;
use crate::domain::testrun::{InvalidCloud, InvalidStatus, TestRunsError};
use crate::domain::workflow::ExecutionsError;

/// The `WWW-Authenticate` challenge of every 401.
pub const CHALLENGE: &str = r#"Basic realm="annals", Bearer realm="annals""#;

/// The HTTP status an error is answered with, whatever the face: each error kind has its one
/// row here, and no face maps it again.
pub trait Status: std::error::Error + 'static {
    fn status(&self) -> StatusCode;
}

impl Status for BodyError {
    fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TimedOut { .. } => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Why a request was not authorized ([`super::caller::authorize`]).
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The check itself could not run (the blocking pool is shutting down).
    #[error("the credentials could not be checked: {0}")]
    Unavailable(String),
}

/// 403 for a caller who may not, 401 for one not known, 503 when the check could not run.
impl Status for Denied {
    fn status(&self) -> StatusCode {
        match self {
            Denied::Auth(AuthError::Forbidden { .. }) => StatusCode::FORBIDDEN,
            Denied::Auth(_) => StatusCode::UNAUTHORIZED,
            Denied::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl Status for EnginesError {
    fn status(&self) -> StatusCode {
        match self {
            EnginesError::UnknownEngine(_) => StatusCode::NOT_FOUND,
            EnginesError::Busy(_) | EnginesError::EngineError(_) | EnginesError::NotRecorded(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            EnginesError::Invalid(_) => StatusCode::BAD_REQUEST,
            EnginesError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            EnginesError::Rejected(rejection) => match rejection {
                ScanRejection::NoAssets
                | ScanRejection::TooManyAssets(_)
                | ScanRejection::DatatypeNotAllowed { .. } => StatusCode::BAD_REQUEST,
                ScanRejection::AlreadyExists(_)
                | ScanRejection::NotRunning(_)
                | ScanRejection::NotEnded(_) => StatusCode::CONFLICT,
                ScanRejection::Unknown | ScanRejection::Cleaned => StatusCode::NOT_FOUND,
            },
            // Patrowl engines answer a scan not yet ended with 200 and `status: error`, and
            // PatrowlManager reads the body's status.
            EnginesError::NotEnded(..) => StatusCode::OK,
            EnginesError::Model(_)
            | EnginesError::Blob(_)
            | EnginesError::Report(_)
            | EnginesError::Store(_)
            | EnginesError::Admission(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl Status for ExecutionsError {
    fn status(&self) -> StatusCode {
        match self {
            ExecutionsError::UnknownWorkflow(_) | ExecutionsError::NotFound(_) => {
                StatusCode::NOT_FOUND
            }
            ExecutionsError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ExecutionsError::Inputs(_) => StatusCode::BAD_REQUEST,
            ExecutionsError::NotRecorded(_)
            | ExecutionsError::Model(_)
            | ExecutionsError::Store(_)
            | ExecutionsError::Codec(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl Status for SshKeysError {
    fn status(&self) -> StatusCode {
        match self {
            SshKeysError::NotFound => StatusCode::NOT_FOUND,
            SshKeysError::NotRecorded(_) | SshKeysError::Stopped(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            SshKeysError::Generation(_) | SshKeysError::Secret(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl Status for InventoryError {
    fn status(&self) -> StatusCode {
        match self {
            InventoryError::Rejected(_) => StatusCode::CONFLICT,
            InventoryError::NotRecorded(_) => StatusCode::SERVICE_UNAVAILABLE,
            InventoryError::Model(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl Status for TestRunsError {
    fn status(&self) -> StatusCode {
        match self {
            TestRunsError::UnknownRun
            | TestRunsError::Unparseable(_)
            | TestRunsError::Rejected(_) => StatusCode::BAD_REQUEST,
            TestRunsError::UnknownUpload(_) => StatusCode::NOT_FOUND,
            TestRunsError::NotRecorded(_) | TestRunsError::Stopped(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            TestRunsError::Blob(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl Status for ResultsError {
    fn status(&self) -> StatusCode {
        match self {
            ResultsError::Invalid(_)
            | ResultsError::Signature(_)
            | ResultsError::PastLastPage(_) => StatusCode::BAD_REQUEST,
            ResultsError::NotFound(_) => StatusCode::NOT_FOUND,
            ResultsError::NotRecorded(_) | ResultsError::Stopped(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ResultsError::Rejected(_) | ResultsError::Blob(_) | ResultsError::Model(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// As the controller scripts answer them; the agent daemon answers its own failures otherwise
/// ([`Shape::status`]).
impl Status for GrosError {
    fn status(&self) -> StatusCode {
        match self {
            GrosError::UnknownProject(_)
            | GrosError::NoSalts(_)
            | GrosError::NoScrape(_)
            | GrosError::NotRegistered(_) => StatusCode::NOT_FOUND,
            GrosError::OutsideNetworks(_) => StatusCode::FORBIDDEN,
            GrosError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GrosError::Locked(_)
            | GrosError::ScrapeRunning
            | GrosError::TooManyScrapes(_)
            | GrosError::FailedAtOnce(_)
            | GrosError::CannotStart(_)
            | GrosError::Secret(_)
            | GrosError::NotRecorded(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A request whose form, cloud or status does not parse.
macro_rules! bad_request {
    ($($error:ty),*) => {$(
        impl Status for $error {
            fn status(&self) -> StatusCode {
                StatusCode::BAD_REQUEST
            }
        }
    )*};
}

bad_request!(MultipartError, InvalidCloud, InvalidStatus);

/// A face's body shape for a refusal: the one thing faces differ in.
pub trait Shape: Sized + 'static {
    /// What a refusal carries besides its error in this face (Patrowl: the page it answers
    /// for); `()` for most.
    type Context: Default + fmt::Debug + 'static;

    /// The context of a refusal to `request` before its handler ran (an extractor's).
    fn context(_request: &actix_web::HttpRequest) -> Self::Context {
        Self::Context::default()
    }

    /// The answer to `refusal`, whose `response` already has its status and, for a 401, its
    /// challenge.
    fn answer(refusal: &Refusal<Self>, response: HttpResponseBuilder) -> HttpResponse;

    /// The status the face answers `error` with, [`Status`] giving `status`: the same in every
    /// face, unless the face's protocol answers an error otherwise.
    fn status(_error: &(dyn std::error::Error + 'static), status: StatusCode) -> StatusCode {
        status
    }

    /// The 405 of a method a route does not take, from a message naming the path and the
    /// method ([`super::only`]).
    fn wrong_method(message: String) -> Refusal<Self> {
        Refusal::method_not_allowed(message)
    }
}

/// A face whose every refusal is one JSON body made of its status and its message: its
/// [`Shape`] follows.
pub trait JsonShape: Sized + 'static {
    fn body(status: StatusCode, message: String) -> serde_json::Value;
}

impl<F: JsonShape> Shape for F {
    type Context = ();

    fn answer(refusal: &Refusal<F>, mut response: HttpResponseBuilder) -> HttpResponse {
        response.json(F::body(refusal.status, refusal.to_string()))
    }
}

/// Why a face refused a request: the error, typed (a service's, a denied caller's, a body's, or
/// a message of the handler's own), with its status from [`Status`], answered in the shape `F`.
pub struct Refusal<F: Shape> {
    status: StatusCode,
    error: Box<dyn std::error::Error + 'static>,
    pub context: F::Context,
    face: PhantomData<F>,
}

/// A refusal the handler words itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Message(pub String);

impl<F: Shape, E: Status> From<E> for Refusal<F> {
    fn from(error: E) -> Self {
        Refusal {
            status: F::status(&error, error.status()),
            error: Box::new(error),
            context: F::Context::default(),
            face: PhantomData,
        }
    }
}

impl<F: Shape> Refusal<F> {
    /// A refusal with this status and these words.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            error: Box::new(Message(message.into())),
            context: F::Context::default(),
            face: PhantomData,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::NOT_FOUND, message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::METHOD_NOT_ALLOWED, message)
    }

    /// annals failed; the message says how.
    pub fn internal(message: impl fmt::Display) -> Self {
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }

    /// The error refused with, for a face whose body depends on its kind.
    pub fn error(&self) -> &(dyn std::error::Error + 'static) {
        self.error.as_ref()
    }
}

impl<F: Shape> fmt::Display for Refusal<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<F: Shape> fmt::Debug for Refusal<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refusal")
            .field("status", &self.status)
            .field("error", &self.error)
            .field("context", &self.context)
            .finish()
    }
}

impl<F: Shape> std::error::Error for Refusal<F> {
    // Its `Display` is its error's, so its source is its error's source.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl<F: Shape> ResponseError for Refusal<F> {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((actix_web::http::header::WWW_AUTHENTICATE, CHALLENGE));
        }
        F::answer(self, response)
    }
}

/// The event API's shape: `{"error": "...", "status": N}`.
pub struct Api;

impl Shape for Api {
    type Context = ();

    fn answer(refusal: &Refusal<Api>, mut response: HttpResponseBuilder) -> HttpResponse {
        response.json(ErrorBody {
            error: refusal.to_string(),
            status: refusal.status.as_u16(),
        })
    }
}

/// A refusal of the event API (and of the API's routes to come).
pub type ApiError = Refusal<Api>;

/// The body of every error of the event API (and of the API's routes to come).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": "limit 5000 is over the limit of 1000", "status": 400}))]
pub struct ErrorBody {
    /// What went wrong, in words meant for the person reading them.
    pub error: String,
    /// The HTTP status code again, for clients that only keep the body.
    pub status: u16,
}
