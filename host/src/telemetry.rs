//! OpenTelemetry traces: a span per run, per superstep and per executor call, exported
//! over OTLP/HTTP once [`Telemetry::otlp`] is installed (until then the engine makes no
//! spans at all), and the W3C `traceparent` of a call's span for the HTTP requests the
//! executor makes during it.
//!
//! | span | parent | attributes (`superstep.*`) |
//! | --- | --- | --- |
//! | `workflow run` | none | `run_id`, `workflow`, `from_checkpoint`, `outcome` |
//! | `superstep` | the run | `run_id`, `number`, `executors`, `checkpoint_id`, `outcome` |
//! | `executor call` | the superstep | `run_id`, `number`, `executor`, `component_digest`, `attempts`, `outcome` |

use crate::error::Result;
use crate::error::invalid;
use opentelemetry::global::BoxedTracer;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The variable that names the OTLP endpoint when `--otlp` is not given.
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The tracer of the process, once telemetry is installed.
static TRACER: OnceLock<BoxedTracer> = OnceLock::new();

/// Traces exported over OTLP/HTTP from this process; [`Telemetry::shutdown`] sends
/// what is left.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports the spans of every run of this process to the OTLP/HTTP collector at
    /// `endpoint` (its base URL: spans go to `<endpoint>/v1/traces`, in batches, as
    /// protobuf), as service `superstep`. Plain `http://` only. Once per process.
    pub fn otlp(endpoint: &str) -> Result<Telemetry> {
        let bad = |why: String| invalid(format!("OTLP endpoint {endpoint}: {why}"));
        if !endpoint.starts_with("http://") {
            return Err(bad(
                "spans go over plain HTTP: give an http:// endpoint (such as a local OpenTelemetry Collector)".into(),
            ));
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("superstep")
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = BoxedTracer::new(Box::new(provider.tracer("superstep")));
        TRACER
            .set(tracer)
            .map_err(|_| bad("telemetry is already installed in this process".into()))?;
        Ok(Telemetry { provider })
    }

    /// Sends the spans not sent yet, and stops exporting.
    pub fn shutdown(self) -> Result<()> {
        self.provider
            .shutdown()
            .map_err(|e| invalid(format!("OpenTelemetry: spans not sent: {e}")))
    }
}

/// A span being recorded, in its context (`None` when telemetry is not installed). A
/// span dropped before it is ended (a run abandoned mid-superstep) ends then.
#[derive(Default)]
pub(crate) struct Traced(Option<Context>);

impl Traced {
    /// A new root span of a run that sets out from checkpoint `from` (none for a
    /// fresh run).
    pub(crate) fn run(run_id: &str, workflow: &str, from: Option<&str>) -> Traced {
        if TRACER.get().is_none() {
            return Traced(None);
        }
        let mut attributes = vec![
            KeyValue::new("superstep.run_id", run_id.to_string()),
            KeyValue::new("superstep.workflow", workflow.to_string()),
        ];
        if let Some(from) = from {
            attributes.push(KeyValue::new("superstep.from_checkpoint", from.to_string()));
        }
        Traced::start("workflow run", &Context::new(), attributes)
    }

    /// A child span named `name` of this one, with `attributes`.
    pub(crate) fn child(&self, name: &'static str, attributes: Vec<KeyValue>) -> Traced {
        match &self.0 {
            Some(parent) => Traced::start(name, parent, attributes),
            None => Traced(None),
        }
    }

    fn start(name: &'static str, parent: &Context, attributes: Vec<KeyValue>) -> Traced {
        let Some(tracer) = TRACER.get() else {
            return Traced(None);
        };
        let mut span = tracer.start_with_context(name, parent);
        span.set_attributes(attributes);
        Traced(Some(parent.with_span(span)))
    }

    /// Whether spans are recorded (telemetry is installed).
    pub(crate) fn is_recording(&self) -> bool {
        self.0.is_some()
    }

    /// Sets an attribute of the span.
    pub(crate) fn set(&self, attribute: KeyValue) {
        if let Some(cx) = &self.0 {
            cx.span().set_attribute(attribute);
        }
    }

    /// Ends the span with `outcome` (`superstep.outcome`); `error` marks it failed.
    pub(crate) fn end(&mut self, outcome: &'static str, error: Option<&str>) {
        if let Some(cx) = self.0.take() {
            let span = cx.span();
            span.set_attribute(KeyValue::new("superstep.outcome", outcome));
            if let Some(error) = error {
                span.set_status(Status::error(error.to_string()));
            }
            span.end();
        }
    }

    /// The W3C `traceparent` header value of the span.
    pub(crate) fn traceparent(&self) -> Option<String> {
        let cx = self.0.as_ref()?;
        let mut headers = HashMap::new();
        TraceContextPropagator::new().inject_context(cx, &mut headers);
        headers.remove("traceparent")
    }
}
