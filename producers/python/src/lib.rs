//! `vigil._native`: the PyO3 face of `vigil_producer::sdk`. Types are converted here and
//! nothing else: options arrive as JSON text, events as the caller's dict, read straight into
//! the core's typed draft ([`dict`]); completion, signing, queueing and spooling are the Rust
//! core's.
//!
//! The interpreter lock is held for the fast path of `emit` (complete + queue, no I/O) and
//! released for everything that may wait: start (registry call), a spill to the spool, flush
//! and close.

mod dict;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use vigil_producer::sdk::{self, SdkEmitter, SdkError, SdkOptions};
use vigil_producer::{FlushReport, draft};
use vigil_schemas::Trace;
use vigil_schemas::model::Platform;

create_exception!(
    _native,
    VigilError,
    PyException,
    "Base of every Vigil SDK error."
);
create_exception!(_native, ConfigError, VigilError, "Invalid emitter options.");
create_exception!(
    _native,
    SigningKeyError,
    VigilError,
    "The signing key could not be read."
);
create_exception!(
    _native,
    SchemaRegistryError,
    VigilError,
    "No schema id: the registry refused or was unreachable with nothing cached."
);
create_exception!(
    _native,
    StartError,
    VigilError,
    "The emitter could not start."
);
create_exception!(
    _native,
    InvalidEventError,
    VigilError,
    "The event is not a VerificationEvent."
);
create_exception!(
    _native,
    EncodeError,
    VigilError,
    "The event could not be encoded or signed."
);
create_exception!(_native, ClosedError, VigilError, "The emitter is closed.");
create_exception!(
    _native,
    DroppedError,
    VigilError,
    "Queue full and the spool refused the event: it is lost, and counted."
);

fn to_py(e: SdkError) -> PyErr {
    let text = e.chain();
    match e {
        SdkError::Config(_) => ConfigError::new_err(text),
        SdkError::SigningKey(_) => SigningKeyError::new_err(text),
        SdkError::SchemaRegistry(_) => SchemaRegistryError::new_err(text),
        SdkError::Start(_) => StartError::new_err(text),
        SdkError::InvalidEvent(_) => InvalidEventError::new_err(text),
        SdkError::Encode(_) => EncodeError::new_err(text),
        SdkError::Closed => ClosedError::new_err(text),
        SdkError::Dropped(_) => DroppedError::new_err(text),
    }
}

/// The emitter a `vigil.Emitter` wraps.
/// Forks this process has been through, counted in the child by a `pthread_atfork` handler:
/// comparing it costs a load, where `getpid()` is a system call on every emit.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

fn fork_generation() -> u64 {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: the handler only increments an atomic, which is async-signal-safe, as a
        // child-side fork handler must be.
        unsafe {
            libc::pthread_atfork(None, None, Some(count_fork_in_child));
        }
    });
    FORKS.load(Ordering::Relaxed)
}

#[pyclass(module = "vigil._native", frozen)]
struct NativeEmitter {
    inner: std::sync::Mutex<Option<Arc<SdkEmitter>>>,
    /// The fork generation it was started in: in a forked child its threads do not exist, so
    /// the child must neither use nor drop it (dropping would wait for threads that are not
    /// there).
    generation: u64,
}

impl NativeEmitter {
    fn get(&self) -> PyResult<Arc<SdkEmitter>> {
        if fork_generation() != self.generation {
            return Err(ClosedError::new_err(
                "this emitter belongs to the parent process; a forked child starts its own",
            ));
        }
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner
            .clone()
            .ok_or_else(|| ClosedError::new_err("emitter is closed"))
    }
}

impl Drop for NativeEmitter {
    fn drop(&mut self) {
        let inner = self
            .inner
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if fork_generation() != self.generation {
            // A forked child's copy: its threads and broker connections are the parent's.
            std::mem::forget(inner);
        }
    }
}

fn draft_error(e: draft::DraftError) -> PyErr {
    to_py(SdkError::InvalidEvent(e))
}

fn report(r: FlushReport) -> (u64, u64) {
    (r.in_flight, r.spooled)
}

#[pymethods]
impl NativeEmitter {
    /// Starts an emitter from options JSON (see `vigil.Emitter`).
    #[new]
    fn new(py: Python<'_>, options_json: &str, sdk_version: &str) -> PyResult<Self> {
        let options = SdkOptions::from_json(options_json).map_err(to_py)?;
        let emitter = py
            .detach(|| SdkEmitter::start(&options, Platform::Python, sdk_version))
            .map_err(to_py)?;
        Ok(Self {
            inner: std::sync::Mutex::new(Some(Arc::new(emitter))),
            generation: fork_generation(),
        })
    }

    /// Completes, signs and queues one event given as a `dict` with the Avro field names
    /// (read straight into the core's typed draft); never waits for the broker. With
    /// `trace_id` and `parent_span_id` (the current trace context), an event without a `trace`
    /// gets a span of its own in that trace.
    #[pyo3(signature = (event, trace_id=None, parent_span_id=None))]
    fn emit(
        &self,
        py: Python<'_>,
        event: &Bound<'_, PyAny>,
        trace_id: Option<&str>,
        parent_span_id: Option<&str>,
    ) -> PyResult<()> {
        let emitter = self.get()?;
        let event = draft::complete_from(dict::PyReader(event), Some(emitter.defaults()))
            .map_err(draft_error)?;
        let parent = trace_id.zip(parent_span_id).map(|(t, s)| Trace::new(t, s));
        match emitter
            .try_emit_event(event, parent.as_ref())
            .map_err(to_py)?
        {
            None => Ok(()),
            Some(full) => py.detach(|| emitter.spill(full)).map_err(to_py),
        }
    }

    /// Waits up to `timeout` seconds; returns `(in_flight, spooled)`.
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<(u64, u64)> {
        let emitter = self.get()?;
        let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
        Ok(report(py.detach(|| emitter.flush(timeout))))
    }

    /// Closes (flushes, spools the rest); returns `(in_flight, spooled)`. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<(u64, u64)> {
        if fork_generation() != self.generation {
            return Ok((0, 0));
        }
        let taken = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match taken {
            Some(emitter) => Ok(report(py.detach(|| emitter.close()))),
            None => Ok((0, 0)),
        }
    }

    /// The metrics in the Prometheus text format.
    fn metrics_text(&self) -> PyResult<String> {
        Ok(self.get()?.metrics_text())
    }

    /// `(emitted, delivered, spooled, dropped)` counters.
    fn counters(&self) -> PyResult<(u64, u64, u64, u64)> {
        let emitter = self.get()?;
        let m = emitter.metrics();
        let dropped = m.dropped_total();
        Ok((m.emitted(), m.delivered(), m.spooled(), dropped))
    }
}

/// A signed record as Python sees it: `(key, value, [(header name, header value)])`.
type PyRecord<'py> = (
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Vec<(String, Bound<'py, PyBytes>)>,
);

/// Signs an event `dict` with a PEM key without an emitter, reading it as `emit` does:
/// `(key, value, [(name, value)])`.
#[pyfunction]
fn sign_record<'py>(
    py: Python<'py>,
    event: &Bound<'py, PyAny>,
    signing_key_pem: &str,
    key_id: &str,
    schema_id: u32,
) -> PyResult<PyRecord<'py>> {
    let event = draft::complete_from(dict::PyReader(event), None).map_err(draft_error)?;
    let r = sdk::sign_event(&event, signing_key_pem, key_id, schema_id).map_err(to_py)?;
    let headers = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), PyBytes::new(py, v)))
        .collect();
    Ok((
        PyBytes::new(py, &r.key),
        PyBytes::new(py, &r.value),
        headers,
    ))
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<NativeEmitter>()?;
    m.add_function(wrap_pyfunction!(sign_record, m)?)?;
    m.add("VigilError", py.get_type::<VigilError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("SigningKeyError", py.get_type::<SigningKeyError>())?;
    m.add("SchemaRegistryError", py.get_type::<SchemaRegistryError>())?;
    m.add("StartError", py.get_type::<StartError>())?;
    m.add("InvalidEventError", py.get_type::<InvalidEventError>())?;
    m.add("EncodeError", py.get_type::<EncodeError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    m.add("DroppedError", py.get_type::<DroppedError>())?;
    m.add("SDK_VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
