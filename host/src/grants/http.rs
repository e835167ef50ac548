//! Outbound HTTP for executors (`wasi:http/outgoing-handler`). Every request is checked
//! against the executor's `allowed_hosts` before anything reaches the network (redirects
//! are new requests, checked the same way) and runs under the executor's HTTP limits:
//! a timeout, a maximum response size and a maximum of concurrent requests.

use crate::limits::Limits;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Resolves the `allowed_hosts` entries.
pub(crate) fn parse(entries: &[String]) -> Result<Arc<[HostPattern]>, String> {
    entries
        .iter()
        .enumerate()
        .map(|(n, entry)| {
            HostPattern::parse(entry).map_err(|why| format!("allowed_hosts[{n}]: {why}"))
        })
        .collect()
}

/// Whether an executor allowed `hosts` reaches outside its sandbox: when it may make
/// any request at all.
pub(crate) fn reaches_outside(hosts: &[HostPattern]) -> bool {
    !hosts.is_empty()
}

/// Gives a linker `wasi:http/outgoing-handler`, whose requests each instance's
/// [`HttpPolicy`] checks.
pub(crate) fn add_to_linker<T: wasmtime_wasi_http::WasiHttpView + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> anyhow::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(linker)?;
    Ok(())
}

/// One `allowed_hosts` entry: `[scheme://]host[:port]`. The host may be `*` (any) or
/// start with `*.` (any subdomain, not the domain itself); the port may be `*`. Without
/// a port, the scheme's default port (80 or 443); without a scheme, http or https.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: Option<String>,
    host: String,
    port: Option<u16>,
    any_port: bool,
}

impl HostPattern {
    /// Parses one entry; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => {
                let scheme = scheme.to_ascii_lowercase();
                if scheme != "http" && scheme != "https" {
                    return Err(format!("'{text}': the scheme must be http or https"));
                }
                (Some(scheme), rest)
            }
            None => (None, text),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "'{text}': only [scheme://]host[:port], without a path or credentials"
            ));
        }
        // An IPv6 address is bracketed: `[::1]:8080`.
        let split = match rest.find(']') {
            Some(end) if rest.starts_with('[') => rest[end..].find(':').map(|i| end + i),
            _ => rest.rfind(':'),
        };
        let (host, port) = match split {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let host = host.to_ascii_lowercase();
        let valid_host = host == "*"
            || (!host.is_empty()
                && host
                    .strip_prefix("*.")
                    .unwrap_or(&host)
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c)));
        if !valid_host {
            return Err(format!(
                "'{text}': '{host}' is not a host name, address or wildcard"
            ));
        }
        let (port, any_port) = match port {
            None => (None, false),
            Some("*") => (None, true),
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => (Some(port), false),
                _ => return Err(format!("'{text}': '{port}' is not a port")),
            },
        };
        Ok(HostPattern {
            scheme,
            host,
            port,
            any_port,
        })
    }

    /// Whether a request to `scheme://host:port` matches.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host_ok = match self.host.strip_prefix('*') {
            Some("") => true,
            Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
            None => host == self.host,
        };
        let default_port = if scheme == "http" { 80 } else { 443 };
        let port_ok = self.any_port || self.port.unwrap_or(default_port) == port;
        scheme_ok && host_ok && port_ok
    }
}

/// The wasi-http hooks of one executor instance: its allowlist and HTTP limits. What
/// it refuses is noted for the run's log.
pub struct HttpPolicy {
    allowed: Arc<[HostPattern]>,
    timeout: Duration,
    max_response_bytes: u64,
    max_concurrent: usize,
    in_flight: Arc<AtomicUsize>,
    notes: Vec<String>,
    /// What keys this superstep's requests: `<run>:<superstep>:<executor>`.
    key: String,
    /// Requests sent in this superstep.
    calls: u64,
    /// The status of the last response of 400 or more in this superstep, until taken
    /// (0: none).
    error_status: Arc<AtomicU16>,
    /// The W3C `traceparent` of the call under way, for its requests.
    traceparent: Option<http::HeaderValue>,
}

/// The header that keys an outbound request, for providers that drop duplicates.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The W3C Trace Context header.
const TRACEPARENT: &str = "traceparent";

impl HttpPolicy {
    /// The policy for an executor granted `allowed` hosts under `limits`.
    pub fn new(allowed: Arc<[HostPattern]>, limits: &Limits) -> HttpPolicy {
        HttpPolicy {
            allowed,
            timeout: Duration::from_millis(limits.http_timeout_ms),
            max_response_bytes: limits.http_max_response_bytes,
            max_concurrent: limits.http_max_concurrent as usize,
            in_flight: Arc::new(AtomicUsize::new(0)),
            notes: Vec::new(),
            key: String::new(),
            calls: 0,
            error_status: Arc::new(AtomicU16::new(0)),
            traceparent: None,
        }
    }

    /// Starts a superstep whose requests are keyed `key`: each request that does not
    /// carry an `Idempotency-Key` of its own gets `<key>:<n>`, n counting the
    /// executor's requests in the superstep from 1. A superstep run again after a crash
    /// sends the same keys, so that a provider that honours them can drop a repeat of a
    /// call that was in flight when its host died.
    pub fn begin(&mut self, key: String) {
        self.key = key;
        self.calls = 0;
        self.error_status.store(0, Ordering::Relaxed);
    }

    /// Sets the `traceparent` header that the requests of the call under way carry
    /// (unless the guest sets its own): the call's span, so that the server's spans
    /// join the run's trace.
    pub fn set_traceparent(&mut self, traceparent: Option<&str>) {
        self.traceparent = traceparent.and_then(|t| http::HeaderValue::from_str(t).ok());
    }

    /// Takes the status of the last response of 400 or more in this superstep.
    pub fn take_error_status(&mut self) -> Option<u16> {
        Some(self.error_status.swap(0, Ordering::AcqRel)).filter(|&status| status != 0)
    }

    /// Takes the notes of refused requests since the last call.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn refuse(&mut self, note: String, error: Error) -> SendFuture {
        self.notes.push(note);
        Box::new(async move { Err(error) })
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> SendFuture {
        drop(fut);
        self.calls += 1;
        if !request.headers().contains_key(IDEMPOTENCY_KEY)
            && let Ok(key) = http::HeaderValue::from_str(&format!("{}:{}", self.key, self.calls))
        {
            request.headers_mut().insert(IDEMPOTENCY_KEY, key);
        }
        if let Some(traceparent) = &self.traceparent
            && !request.headers().contains_key(TRACEPARENT)
        {
            request
                .headers_mut()
                .insert(TRACEPARENT, traceparent.clone());
        }
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        let target = format!("{scheme}://{host}:{port}");
        if !self.allowed.iter().any(|p| p.allows(&scheme, &host, port)) {
            return self.refuse(
                format!("HTTP request to {target} refused: the host is not in allowed_hosts"),
                Error::HttpRequestDenied,
            );
        }
        let in_flight = RequestSlot::enter(&self.in_flight);
        if in_flight.count > self.max_concurrent {
            let limit = self.max_concurrent;
            return self.refuse(
                format!(
                    "HTTP request to {target} refused: limits.http_max_concurrent = {limit} requests are in flight"
                ),
                Error::ConnectionLimitReached,
            );
        }
        // The guest may ask for shorter timeouts, never for longer ones.
        let timeout = self.timeout;
        let cap = |asked: Option<Duration>| Some(asked.map_or(timeout, |t| t.min(timeout)));
        let options = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: cap(options.connect_timeout),
            first_byte_timeout: cap(options.first_byte_timeout),
            between_bytes_timeout: cap(options.between_bytes_timeout),
        };
        let max = self.max_response_bytes;
        let error_status = self.error_status.clone();
        Box::new(async move {
            let sent = wasmtime_wasi_http::default_send_request(request, Some(options));
            let (response, io) = tokio::time::timeout(timeout, sent)
                .await
                .map_err(|_| Error::ConnectionReadTimeout)??;
            if response.status().as_u16() >= 400 {
                error_status.store(response.status().as_u16(), Ordering::Release);
            }
            let declared = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|len| len > max) {
                return Err(Error::HttpResponseBodySize(declared));
            }
            let response = response.map(|body| {
                CappedBody {
                    inner: body.boxed_unsync(),
                    left: max,
                    max,
                    _in_flight: in_flight,
                }
                .boxed_unsync()
            });
            Ok((response, Box::new(io) as IoFuture))
        })
    }
}

/// Counts a request as in flight until its response body is dropped.
struct RequestSlot {
    counter: Arc<AtomicUsize>,
    count: usize,
}

impl RequestSlot {
    fn enter(counter: &Arc<AtomicUsize>) -> RequestSlot {
        let count = counter.fetch_add(1, Ordering::SeqCst) + 1;
        RequestSlot {
            counter: counter.clone(),
            count,
        }
    }
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that fails once it passes `max` bytes.
struct CappedBody {
    inner: WasiBody,
    left: u64,
    max: u64,
    _in_flight: RequestSlot,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > self.left {
                return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(self.max)))));
            }
            self.left -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::{HostPattern, HttpPolicy};
    use crate::limits::Limits;
    use http_body_util::{BodyExt, Empty};
    use wasmtime_wasi_http::WasiHttpHooks;

    fn request(url: &str) -> http::Request<wasmtime_wasi_http::WasiBody> {
        let body = Empty::new().map_err(|never| match never {}).boxed_unsync();
        http::Request::post(url).body(body).unwrap()
    }

    fn allows(pattern: &str, scheme: &str, host: &str, port: u16) -> bool {
        HostPattern::parse(pattern)
            .unwrap()
            .allows(scheme, host, port)
    }

    #[test]
    fn patterns_match_scheme_host_and_port() {
        assert!(allows(
            "https://api.openai.com",
            "https",
            "api.openai.com",
            443
        ));
        assert!(!allows(
            "https://api.openai.com",
            "http",
            "api.openai.com",
            80
        ));
        assert!(!allows(
            "https://api.openai.com",
            "https",
            "api.openai.com",
            8443
        ));
        assert!(allows("http://127.0.0.1:8080", "http", "127.0.0.1", 8080));
        assert!(!allows("http://127.0.0.1:8080", "http", "127.0.0.1", 8081));
        assert!(allows("*.example.com", "https", "a.b.example.com", 443));
        assert!(allows("*.example.com", "http", "api.example.com", 80));
        assert!(!allows("*.example.com", "https", "example.com", 443));
        assert!(!allows("*.example.com", "https", "evil-example.com", 443));
        assert!(allows("http://localhost:*", "http", "localhost", 1234));
        assert!(allows("https://*", "https", "anything.test", 443));
        assert!(allows(
            "HTTPS://API.Example.COM/",
            "https",
            "api.example.com",
            443
        ));
        assert!(allows("http://[::1]:8080", "http", "[::1]", 8080));
    }

    #[test]
    fn the_policy_refuses_unlisted_hosts_and_requests_past_the_concurrency_limit() {
        let allowed = [HostPattern::parse("http://127.0.0.1:9").unwrap()];
        let limits = Limits {
            http_max_concurrent: 1,
            ..Limits::default()
        };
        let mut policy = HttpPolicy::new(allowed.into(), &limits);
        // Not polled, the first request stays in flight.
        let first = policy.send_request(
            request("http://127.0.0.1:9/a"),
            None,
            Box::new(async { Ok(()) }),
        );
        let _second = policy.send_request(
            request("http://127.0.0.1:9/b"),
            None,
            Box::new(async { Ok(()) }),
        );
        let _elsewhere = policy.send_request(
            request("http://localhost:9/"),
            None,
            Box::new(async { Ok(()) }),
        );
        assert_eq!(
            policy.take_notes(),
            [
                "HTTP request to http://127.0.0.1:9 refused: limits.http_max_concurrent = 1 requests are in flight",
                "HTTP request to http://localhost:9 refused: the host is not in allowed_hosts",
            ]
        );
        drop(first);
        let _third = policy.send_request(
            request("http://127.0.0.1:9/c"),
            None,
            Box::new(async { Ok(()) }),
        );
        assert!(
            policy.take_notes().is_empty(),
            "the first request's slot is free again"
        );
    }

    #[test]
    fn bad_patterns_say_why() {
        for (pattern, why) in [
            ("ftp://example.com", "the scheme must be http or https"),
            ("https://example.com/v1", "without a path"),
            ("https://user@example.com", "without a path or credentials"),
            ("https://example.com:http", "is not a port"),
            ("https://example.com:0", "is not a port"),
            ("https://exa mple.com", "is not a host name"),
            ("", "is not a host name"),
        ] {
            let error = HostPattern::parse(pattern).unwrap_err();
            assert!(error.contains(why), "{pattern}: {error}");
        }
    }
}
