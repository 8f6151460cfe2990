//! Trace context for events: taken from the current `tracing` span when a span up the stack
//! carries `trace_id` (and optionally `span_id`) fields, else a fresh W3C trace.
//!
//! Install [`TraceContextLayer`] in the application's subscriber; spans created like
//! `tracing::info_span!("verify", trace_id = %tid, span_id = %sid)` then flow into every event
//! emitted inside them.

use rand::RngCore;
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use vigil_schemas::Trace;

/// Records `trace_id` / `span_id` span fields so [`current_trace`] can find them.
#[derive(Debug, Default, Clone, Copy)]
pub struct TraceContextLayer;

#[derive(Debug, Default, Clone)]
struct TraceFields {
    trace_id: Option<String>,
    span_id: Option<String>,
}

impl Visit for TraceFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, format!("{value:?}").trim_matches('"').to_owned());
    }
}

impl TraceFields {
    fn set(&mut self, field: &Field, value: String) {
        match field.name() {
            "trace_id" => self.trace_id = Some(value),
            "span_id" => self.span_id = Some(value),
            _ => {}
        }
    }
}

impl<S> Layer<S> for TraceContextLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = TraceFields::default();
        attrs.record(&mut fields);
        if fields.trace_id.is_some()
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(fields);
        }
    }
}

/// Returns the trace context of the current span (or its nearest ancestor carrying one), with
/// a fresh span id when the span named none, or a new trace when there is no context at all.
pub fn current_trace() -> Trace {
    span_trace().unwrap_or_else(new_trace)
}

/// Returns a span of its own in the trace `parent` names, child of `parent`'s span: what a
/// service makes of an incoming `traceparent` ([`Trace::from_traceparent`]).
pub fn child_span(parent: &Trace) -> Trace {
    Trace {
        trace_id: parent.trace_id.clone(),
        span_id: random_hex(8),
        parent_span_id: Some(parent.span_id.clone()),
    }
}

/// Returns a new random W3C trace context.
pub fn new_trace() -> Trace {
    Trace::new(random_hex(16), random_hex(8))
}

/// Returns the trace context of the current span or an ancestor, if one carries it.
pub fn span_trace() -> Option<Trace> {
    // Taken outside `get_default`: inside it the dispatcher is borrowed and a nested lookup
    // (which `Span::current` is) sees no subscriber at all.
    let current = tracing::Span::current();
    if !tracing::dispatcher::has_been_set() && current.is_none() {
        return None;
    }
    let found = tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let span = registry.span(&current.id()?)?;
        span.scope()
            .find_map(|s| s.extensions().get::<TraceFields>().cloned())
    });
    match found {
        Some(TraceFields {
            trace_id: Some(trace_id),
            span_id,
        }) if is_hex(&trace_id, 32) => {
            let span_id = span_id
                .filter(|s| is_hex(s, 16))
                .unwrap_or_else(|| random_hex(8));
            Some(Trace::new(
                trace_id.to_ascii_lowercase(),
                span_id.to_ascii_lowercase(),
            ))
        }
        _ => None,
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    // An all-zero id is invalid in W3C trace context.
    if buf.iter().all(|b| *b == 0) {
        buf[0] = 1;
    }
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn takes_the_trace_of_the_enclosing_span() {
        let subscriber = tracing_subscriber::registry().with(TraceContextLayer);
        tracing::subscriber::with_default(subscriber, || {
            let tid = "4bf92f3577b34da6a3ce929d0e0e4736";
            let outer =
                tracing::info_span!("request", trace_id = tid, span_id = "00f067aa0ba902b7");
            let _o = outer.enter();
            let inner = tracing::info_span!("verify");
            let _i = inner.enter();
            let t = current_trace();
            assert_eq!(t.trace_id, tid);
            assert_eq!(t.span_id, "00f067aa0ba902b7");
        });
    }

    #[test]
    fn starts_a_new_trace_without_context() {
        let t = current_trace();
        assert!(is_hex(&t.trace_id, 32) && is_hex(&t.span_id, 16), "{t:?}");
        assert_ne!(current_trace().trace_id, t.trace_id);
    }
}
