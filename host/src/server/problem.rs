//! What goes wrong with a request, as an HTTP status and a JSON body that names the
//! request's fault: `{"error": "...", "status": 409}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// A request that cannot be done, and why.
#[derive(Debug)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong, naming the run, request, checkpoint or field at fault.
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong, naming the run, request, checkpoint or field at fault.
    pub error: String,
    /// The HTTP status, repeated.
    pub status: u16,
}

impl Problem {
    /// 404: the thing named does not exist.
    pub fn not_found(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the thing named is not in a state that allows this.
    pub fn conflict(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, message)
    }

    /// 422: the request is well-formed HTTP but what it asks is wrong.
    pub fn unprocessable(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 500: the host could not do its part.
    pub fn internal(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// A problem with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Problem {
        Problem {
            status,
            message: message.into(),
        }
    }
}

/// A user's error (a manifest, checkpoint, input or response that is wrong) is the
/// request's fault: 422; the host's is 500.
impl From<crate::Error> for Problem {
    fn from(error: crate::Error) -> Problem {
        if error.is_invalid_input() {
            Problem::unprocessable(error.to_string())
        } else {
            Problem::internal(error.to_string())
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            status: self.status.as_u16(),
        };
        (self.status, Json(body)).into_response()
    }
}

/// A server result.
pub type Answer<T> = std::result::Result<T, Problem>;
