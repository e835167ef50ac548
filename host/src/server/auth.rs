//! The server's token: every API call and the page need it. It comes from
//! `SUPERSTEP_TOKEN` or is made at start; it is compared in constant time and never
//! logged. The API takes it only as `Authorization: Bearer <token>`, which a page of
//! another site cannot send (the server answers no CORS preflight); the page itself
//! also takes it as `?token=`, so that the printed URL opens it.

use super::problem::Problem;
use crate::error::{Result, invalid};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The variable that sets the token.
pub const TOKEN_ENV: &str = "SUPERSTEP_TOKEN";

/// The shortest token taken from the environment.
const MIN_TOKEN: usize = 16;

/// A secret that grants every call.
pub struct Token(String);

impl Token {
    /// The token `SUPERSTEP_TOKEN` sets, if it is set.
    pub fn from_env() -> Result<Option<Token>> {
        match std::env::var(TOKEN_ENV) {
            Ok(token) => Token::given(token, TOKEN_ENV).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(invalid(format!("{TOKEN_ENV}: not valid UTF-8")))
            }
        }
    }

    /// `token`, given by `origin`: at least 16 visible ASCII characters.
    pub fn given(token: String, origin: &str) -> Result<Token> {
        if token.len() < MIN_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(format!(
                "{origin}: at least {MIN_TOKEN} visible ASCII characters (no spaces)"
            )));
        }
        Ok(Token(token))
    }

    /// A new random token: 32 bytes from the system's generator, in hex.
    pub fn generate() -> Result<Token> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| crate::error::host(format!("cannot make a token: {e}")))?;
        Ok(Token(hex::encode(bytes)))
    }

    /// The token itself, for the one URL printed at start.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// Whether `given` is the token, compared in constant time.
    pub fn matches(&self, given: &str) -> bool {
        given.as_bytes().ct_eq(self.0.as_bytes()).into()
    }
}

/// Lets a request through only with the token: 401 and a JSON error otherwise.
pub async fn require(State(token): State<Arc<Token>>, request: Request, next: Next) -> Response {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let is_page = request.method() == Method::GET && !request.uri().path().starts_with("/v1/");
    let in_query = is_page
        .then(|| request.uri().query().and_then(query_token))
        .flatten();
    if bearer.or(in_query).is_some_and(|t| token.matches(t.trim())) {
        return next.run(request).await;
    }
    let problem = Problem::new(
        StatusCode::UNAUTHORIZED,
        "this server needs its token: Authorization: Bearer <token> (see the URL it printed at start, or SUPERSTEP_TOKEN)",
    );
    let mut response = problem.into_response();
    let challenge = header::HeaderValue::from_static("Bearer");
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge);
    response
}

/// The `token` parameter of a query string.
fn query_token(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_matches() {
        let token = Token::given("0123456789abcdef".into(), "test").unwrap();
        assert!(token.matches("0123456789abcdef"));
        assert!(!token.matches("0123456789abcdeF"));
        assert!(!token.matches("0123456789abcde"));
        assert!(!token.matches(""));
    }

    #[test]
    fn short_or_spaced_tokens_are_refused() {
        let short = Token::given("short".into(), "SUPERSTEP_TOKEN")
            .err()
            .unwrap();
        assert!(
            short
                .to_string()
                .starts_with("SUPERSTEP_TOKEN: at least 16")
        );
        assert!(Token::given("0123456789 abcdef".into(), "t").is_err());
    }

    #[test]
    fn generated_tokens_differ_and_are_long() {
        let (a, b) = (Token::generate().unwrap(), Token::generate().unwrap());
        assert_eq!(a.reveal().len(), 64);
        assert!(!a.matches(b.reveal()));
    }

    #[test]
    fn the_query_token_is_found_among_other_parameters() {
        assert_eq!(query_token("run=1&token=abc"), Some("abc"));
        assert_eq!(query_token("tokens=abc"), None);
    }
}
