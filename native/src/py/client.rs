//! `ClientFast`: SchedulerClient.schedule()'s common case in one call. It accepts only arguments of the exact
//! plain types (str, bytes, None, int, timedelta, a tuple of header pairs) that pass every check of
//! `scheduler.client.ClientCore.build`, and returns (Schedule, record key, record value); for anything else it
//! returns None and Python takes its full path, which raises with the reason. So no input can get through here
//! that Python would refuse, and every refusal keeps Python's message.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFrozenSet, PyInt, PySet, PyString, PyTuple, PyType};
use pyo3::{intern, IntoPyObjectExt};

use super::codec::Codec;
use crate::client::{self, When};
use crate::codec::{self as wire, Header, Schedule};

#[pyclass(frozen, module = "scheduler._native")]
pub struct ClientFast {
    codec: Py<Codec>,
    /// Target topics the Python path has accepted (legal, allowed, known to exist); only these pass here.
    ready: Py<PySet>,
    horizon_ms: i64,
    max_payload: usize,
    producer: Option<Py<PyString>>,
    control_headers: Vec<String>,
    timedelta: Py<PyType>,
    /// The last timedelta seen and its whole milliseconds: a delay constant is read once (a timedelta is
    /// immutable, and holding it keeps its identity from being reused).
    last_delay: Mutex<Option<(Py<PyAny>, i64)>>,
}

/// A value of exactly one of the given types, else None ("let Python decide").
fn exact<'py, T: pyo3::PyTypeInfo>(obj: &Bound<'py, PyAny>) -> Option<Bound<'py, T>> {
    obj.cast_exact::<T>().ok().cloned()
}

fn opt_bytes<'py>(obj: &Option<Bound<'py, PyAny>>) -> Option<Option<Bound<'py, PyBytes>>> {
    match obj {
        None => Some(None),
        Some(o) if o.is_none() => Some(None),
        Some(o) => exact::<PyBytes>(o).map(Some),
    }
}

/// time.time_ns() // 10**6: the same wall clock as scheduler.client.now_ms.
fn clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl ClientFast {
    fn when(
        &self,
        at: &Option<Bound<'_, PyAny>>,
        delay: &Option<Bound<'_, PyAny>>,
    ) -> Option<When> {
        let at = at.as_ref().filter(|a| !a.is_none());
        let delay = delay.as_ref().filter(|d| !d.is_none());
        match (at, delay) {
            (Some(at), None) => Some(When::At(exact::<PyInt>(at)?.extract::<i64>().ok()?)),
            (None, Some(delay)) => {
                if !delay.get_type().is(self.timedelta.bind(delay.py())) {
                    return None;
                }
                let mut last = self.last_delay.try_lock().ok();
                if let Some(Some((seen, ms))) = last.as_deref() {
                    if seen.is(delay) {
                        return Some(When::DelayMs(*ms));
                    }
                }
                let py = delay.py();
                let part =
                    |name: &Bound<'_, PyString>| delay.getattr(name).ok()?.extract::<i64>().ok();
                let ms = client::delay_ms(
                    part(intern!(py, "days"))?,
                    part(intern!(py, "seconds"))?,
                    part(intern!(py, "microseconds"))?,
                )?;
                if let Some(last) = last.as_deref_mut() {
                    *last = Some((delay.clone().unbind(), ms));
                }
                Some(When::DelayMs(ms))
            }
            _ => None,
        }
    }
}

type Built<'py> = (Bound<'py, PyAny>, Bound<'py, PyString>, Vec<u8>);

#[pymethods]
impl ClientFast {
    #[new]
    #[pyo3(signature = (codec, ready, horizon_ms, max_payload, producer, control_headers))]
    fn new(
        py: Python<'_>,
        codec: Py<Codec>,
        ready: Py<PySet>,
        horizon_ms: i64,
        max_payload: usize,
        producer: Option<Py<PyString>>,
        control_headers: &Bound<'_, PyFrozenSet>,
    ) -> PyResult<Self> {
        let control_headers = control_headers
            .iter()
            .map(|h| h.extract::<String>())
            .collect::<PyResult<Vec<_>>>()?;
        let timedelta = py
            .import("datetime")?
            .getattr("timedelta")?
            .cast_into::<PyType>()?;
        Ok(ClientFast {
            codec,
            ready,
            horizon_ms,
            max_payload,
            producer,
            control_headers,
            timedelta: timedelta.unbind(),
            last_delay: Mutex::new(None),
        })
    }

    /// (Schedule, record key, record value) for `schedule(schedule_id, topic=, value=, key=, headers=, at=,
    /// delay=, partition=)` (None for an option not given), or None: take the Python path. `now_ms` is the
    /// clock's (time.time_ns() // 10**6) unless given.
    #[pyo3(signature = (schedule_id, topic, value, key, headers, at, delay, partition, now_ms=None))]
    #[allow(clippy::too_many_arguments)]
    fn prepare<'py>(
        &self,
        schedule_id: &Bound<'py, PyAny>,
        topic: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        at: &Bound<'py, PyAny>,
        delay: &Bound<'py, PyAny>,
        partition: &Bound<'py, PyAny>,
        now_ms: Option<i64>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let py = schedule_id.py();
        let args = [topic, value, key, headers, at, delay, partition];
        let Some((schedule, sid, value)) = self.build(schedule_id, args, now_ms)? else {
            return Ok(None);
        };
        let key = PyBytes::new(py, sid.to_str()?.as_bytes());
        let out = [
            schedule,
            key.into_any(),
            PyBytes::new(py, &value).into_any(),
        ];
        Ok(Some(PyTuple::new(py, out)?))
    }

    /// `prepare`, then `produce(scheduled, value, key, -1, on_delivery)` (a confluent_kafka Producer's, the key
    /// as the id's str) and the Schedule; None when nothing was sent: the Python path must decide, or the
    /// queue is full (BufferError). Other exceptions of produce propagate (nothing was queued then either).
    #[allow(clippy::too_many_arguments)]
    fn send<'py>(
        &self,
        produce: &Bound<'py, PyAny>,
        scheduled: &Bound<'py, PyAny>,
        on_delivery: &Bound<'py, PyAny>,
        schedule_id: &Bound<'py, PyAny>,
        topic: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
        key: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        at: &Bound<'py, PyAny>,
        delay: &Bound<'py, PyAny>,
        partition: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = schedule_id.py();
        let args = [topic, value, key, headers, at, delay, partition];
        let Some((schedule, sid, value)) = self.build(schedule_id, args, None)? else {
            return Ok(None);
        };
        let value = PyBytes::new(py, &value);
        match produce.call1((scheduled, value, sid, -1, on_delivery)) {
            Ok(_) => Ok(Some(schedule)),
            Err(e) if e.is_instance_of::<PyBufferError>(py) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl ClientFast {
    /// The options in schedule()'s order: topic, value, key, headers, at, delay, partition.
    fn build<'py>(
        &self,
        schedule_id: &Bound<'py, PyAny>,
        args: [&Bound<'py, PyAny>; 7],
        now_ms: Option<i64>,
    ) -> PyResult<Option<Built<'py>>> {
        let py = schedule_id.py();
        let Some(sid) = exact::<PyString>(schedule_id) else {
            return Ok(None);
        };
        let Ok(id) = sid.to_str() else {
            return Ok(None); // not UTF-8 encodable (a lone surrogate): Python says so
        };
        if !client::id_ok(id) {
            return Ok(None);
        }
        let some = |a: &Bound<'py, PyAny>| (!a.is_none()).then(|| a.clone());
        let [topic, value, key, headers, at, delay, partition] = args;
        let (key, headers, at, delay, partition) = (
            some(key),
            some(headers),
            some(at),
            some(delay),
            some(partition),
        );
        let Some(topic) = exact::<PyString>(topic) else {
            return Ok(None);
        };
        if !self.ready.bind(py).contains(&topic)? {
            return Ok(None);
        }
        let value = Some(value.clone());
        let (Some(payload), Some(target_key)) = (opt_bytes(&value), opt_bytes(&key)) else {
            return Ok(None);
        };
        let partition = match partition.filter(|p| !p.is_none()) {
            None => None,
            Some(p) => {
                let Some(p) = exact::<PyInt>(&p) else {
                    return Ok(None);
                };
                match p.extract::<i64>() {
                    Ok(n) if client::partition_ok(n) => Some((p, n as i32)),
                    _ => return Ok(None),
                }
            }
        };
        let Some(when) = self.when(&at, &delay) else {
            return Ok(None);
        };
        let now = now_ms.unwrap_or_else(clock_ms);
        let Some(due) = client::due_ms(when, now, self.horizon_ms) else {
            return Ok(None);
        };
        // headers: None, or a tuple of (non-empty str name, bytes | None) tuples that the client does not own
        let mut pairs: Vec<(Bound<'py, PyString>, Option<Bound<'py, PyBytes>>)> = Vec::new();
        let header_tuple = match headers.filter(|h| !h.is_none()) {
            None => PyTuple::empty(py),
            Some(h) => {
                let Some(h) = exact::<PyTuple>(&h) else {
                    return Ok(None);
                };
                for pair in h.iter() {
                    let Some(pair) = exact::<PyTuple>(&pair) else {
                        return Ok(None);
                    };
                    if pair.len() != 2 {
                        return Ok(None);
                    }
                    let Some(name) = exact::<PyString>(&pair.get_item(0)?) else {
                        return Ok(None);
                    };
                    let Some(hvalue) = opt_bytes(&Some(pair.get_item(1)?)) else {
                        return Ok(None);
                    };
                    pairs.push((name, hvalue));
                }
                h
            }
        };
        let mut view: Vec<Header<'_>> = Vec::with_capacity(pairs.len());
        for (name, hvalue) in &pairs {
            let Ok(name) = name.to_str() else {
                return Ok(None);
            };
            if name.is_empty() || self.control_headers.iter().any(|c| c == name) {
                return Ok(None);
            }
            view.push((name, hvalue.as_ref().map(|b| b.as_bytes())));
        }
        let payload_view = payload.as_ref().map(|b| b.as_bytes());
        let key_view = target_key.as_ref().map(|b| b.as_bytes());
        if client::payload_size(payload_view, key_view, &view) > self.max_payload {
            return Ok(None);
        }
        let producer = self.producer.as_ref().map(|p| p.bind(py));
        let producer_str = producer.map(|p| p.to_str()).transpose()?;
        let codec = self.codec.get();
        let record_value = wire::encode_schedule(
            &Schedule {
                id,
                target_topic: topic.to_str()?,
                due_ms: due,
                payload: payload_view,
                target_key: key_view,
                headers: view,
                target_partition: partition.as_ref().map(|(_, n)| *n),
                created_ms: now,
                producer: producer_str,
                recurrence: None,
            },
            &codec.command_fp,
        );
        let none = || py.None().into_bound(py);
        let schedule = codec.new_schedule(
            py,
            [
                sid.clone().into_any(),
                topic.into_any(),
                due.into_bound_py_any(py)?,
                payload.map_or_else(none, Bound::into_any),
                target_key.map_or_else(none, Bound::into_any),
                header_tuple.into_any(),
                partition.map_or_else(none, |(p, _)| p.into_any()),
                now.into_bound_py_any(py)?,
                producer.map_or_else(none, |p| p.clone().into_any()),
                none(),
            ],
        )?;
        Ok(Some((schedule, sid, record_value)))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ClientFast>()
}
