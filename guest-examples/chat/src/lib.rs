//! `chat`: sends each incoming text to an OpenAI-compatible `/chat/completions`
//! endpoint and forwards the model's reply as kind `text`.
//!
//! Config: `base_url` (for example `https://api.openai.com/v1`), `model`, and
//! optionally `api_key_env` (the granted environment variable holding the key, sent as
//! a bearer token), `system` (a system prompt) and `max_redirects` (default 3). The host
//! must grant the endpoint's host in `allowed_hosts`. A failed call (status, timeout,
//! refused host) fails the handler with the reason; nothing is sent.
use serde::{Deserialize, Serialize};
use serde_json::json;
use superstep_guest::{Context, Executor, Incoming, Level};
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use wasi::io::streams::StreamError;

#[derive(Deserialize)]
struct Config {
    base_url: String,
    model: String,
    api_key_env: Option<String>,
    system: Option<String>,
    #[serde(default = "default_redirects")]
    max_redirects: u32,
}

fn default_redirects() -> u32 {
    3
}

#[derive(Default, Serialize, Deserialize)]
struct Chat {
    count: u64,
    last_input: Option<String>,
    last_output: Option<String>,
    /// Tokens the endpoint reported, summed over the calls.
    total_tokens: u64,
}

impl Executor for Chat {
    fn handle(&mut self, ctx: &Context, message: Incoming) -> Result<(), String> {
        let config: Config = ctx.config()?;
        let text: String = message.json()?;
        let mut messages = Vec::new();
        if let Some(system) = &config.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": text}));
        let body = serde_json::to_vec(&json!({"model": config.model, "messages": messages}))
            .map_err(|e| e.to_string())?;
        let key = match &config.api_key_env {
            Some(name) => Some(std::env::var(name).map_err(|_| {
                format!("the API key variable '{name}' is not granted (env in the manifest)")
            })?),
            None => None,
        };
        let mut url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        let mut redirects = 0;
        let response = loop {
            let response = post(&url, key.as_deref(), &body)?;
            match (response.status, &response.location) {
                (301 | 302 | 303 | 307 | 308, Some(location))
                    if redirects < config.max_redirects =>
                {
                    ctx.log(Level::Info, &format!("redirected to {location}"));
                    url = location.clone();
                    redirects += 1;
                }
                _ => break response,
            }
        };
        if response.status != 200 {
            let detail = String::from_utf8_lossy(&response.body);
            let detail: String = detail.chars().take(200).collect();
            return Err(format!(
                "the chat endpoint answered {}: {detail}",
                response.status
            ));
        }
        let reply: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|e| format!("the chat endpoint's answer is not JSON: {e}"))?;
        let content = reply["choices"][0]["message"]["content"]
            .as_str()
            .ok_or("the chat endpoint's answer has no choices[0].message.content")?
            .to_string();
        self.count += 1;
        self.total_tokens += reply["usage"]["total_tokens"].as_u64().unwrap_or(0);
        ctx.send("text", &content)?;
        self.last_input = Some(text);
        self.last_output = Some(content);
        Ok(())
    }
}

/// What came back from one request.
struct Response {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
}

/// POSTs `body` as JSON to `url` through `wasi:http` (the host checks the host name).
fn post(url: &str, key: Option<&str>, body: &[u8]) -> Result<Response, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("'{url}' is not an absolute URL"))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(format!("'{url}': unsupported scheme '{other}'")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let headers = Fields::new();
    let set = |name: &str, value: &[u8]| {
        headers
            .append(name, value)
            .map_err(|e| format!("header {name}: {e:?}"))
    };
    set("content-type", b"application/json")?;
    set("content-length", body.len().to_string().as_bytes())?;
    if let Some(key) = key {
        set("authorization", format!("Bearer {key}").as_bytes())?;
    }
    let request = OutgoingRequest::new(headers);
    request.set_method(&Method::Post).map_err(|()| "method")?;
    request.set_scheme(Some(&scheme)).map_err(|()| "scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| format!("'{url}': bad host '{authority}'"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| format!("'{url}': bad path '{path}'"))?;
    let outgoing = request.body().map_err(|()| "request body")?;
    {
        let stream = outgoing.write().map_err(|()| "request body stream")?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("sending the request: {}", stream_error(e)))?;
        }
    }
    let sent = outgoing_handler::handle(request, None).map_err(|e| describe(&e))?;
    OutgoingBody::finish(outgoing, None).map_err(|e| describe(&e))?;
    sent.subscribe().block();
    let response = sent
        .get()
        .ok_or("the response never arrived")?
        .map_err(|()| "the response was taken twice")?
        .map_err(|e| describe(&e))?;
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let incoming = response.consume().map_err(|()| "response body")?;
    let mut bytes = Vec::new();
    {
        let stream = incoming.stream().map_err(|()| "response body stream")?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(format!("reading the response: {}", stream_error(e))),
            }
        }
    }
    IncomingBody::finish(incoming);
    Ok(Response {
        status,
        location,
        body: bytes,
    })
}

fn stream_error(error: StreamError) -> String {
    match error {
        StreamError::Closed => "the stream closed".into(),
        StreamError::LastOperationFailed(e) => match wasi::http::types::http_error_code(&e) {
            Some(code) => describe(&code),
            None => e.to_debug_string(),
        },
    }
}

/// A readable reason for a `wasi:http` error code.
fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => {
            "the host refused the request (not in allowed_hosts)".into()
        }
        ErrorCode::ConnectionReadTimeout | ErrorCode::ConnectionTimeout => {
            "timed out (limits.http_timeout_ms)".into()
        }
        ErrorCode::HttpResponseBodySize(size) => format!(
            "the response is larger than limits.http_max_response_bytes ({})",
            size.map_or("?".into(), |s| s.to_string())
        ),
        ErrorCode::ConnectionLimitReached => {
            "too many requests in flight (limits.http_max_concurrent)".into()
        }
        ErrorCode::ConnectionRefused => "the connection was refused".into(),
        other => format!("{other:?}"),
    }
}

superstep_guest::export_executor!(Chat);
