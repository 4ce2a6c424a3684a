//! Python bindings of crate::codec: `Codec` (built once by scheduler.codec with the fingerprints of the schema
//! files and the model's classes), `peek_due_ms`, and the errors `AvroError` / `UnknownFingerprint`.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

use crate::codec::{self, Command, DecodeError, ErrorKind, Header, Recurrence, Schedule};

pyo3::create_exception!(
    _native,
    AvroError,
    PyValueError,
    "A record that is not valid single-object Avro of the current schema."
);
pyo3::create_exception!(
    _native,
    UnknownFingerprint,
    AvroError,
    "A record of another writer schema than the current one (an older one, or unknown)."
);

const MAX_ID_BYTES: usize = 255;
const HORIZON_MS: i64 = 36525 * 86_400_000;
/// Headers that make a record Python's to decode: routed or relocated copies, the header protocol, and a
/// control command (whose value, even an envelope, is ignored).
const ROUTED: [&str; 4] = [
    "scheduler-forwarded-timestamp",
    "scheduler-target-topic",
    "scheduler-relocated-from",
    "scheduler-control",
];

/// AvroError (UnknownFingerprint for another writer's record) with the message, and the kind as `.kind`.
fn avro_error(py: Python<'_>, e: DecodeError) -> PyErr {
    let err = if e.kind == ErrorKind::UnknownFingerprint {
        UnknownFingerprint::new_err(e.to_string())
    } else {
        AvroError::new_err(e.to_string())
    };
    if let Err(failed) = err.value(py).setattr("kind", format!("{:?}", e.kind)) {
        return failed;
    }
    err
}

/// Bytes of a Python `bytes`, or an owned copy of any other buffer (bytearray, memoryview).
enum Buf<'py> {
    Bytes(Bound<'py, PyBytes>),
    Owned(Vec<u8>),
}

impl Buf<'_> {
    fn get(&self) -> &[u8] {
        match self {
            Buf::Bytes(b) => b.as_bytes(),
            Buf::Owned(v) => v,
        }
    }
}

fn buf<'py>(obj: Bound<'py, PyAny>) -> PyResult<Buf<'py>> {
    match obj.cast_into::<PyBytes>() {
        Ok(b) => Ok(Buf::Bytes(b)),
        Err(e) => Ok(Buf::Owned(e.into_inner().extract::<Vec<u8>>()?)),
    }
}

fn opt_buf<'py>(obj: Bound<'py, PyAny>) -> PyResult<Option<Buf<'py>>> {
    if obj.is_none() {
        Ok(None)
    } else {
        buf(obj).map(Some)
    }
}

fn text<'py>(obj: Bound<'py, PyAny>, what: &str) -> PyResult<Bound<'py, PyString>> {
    obj.cast_into::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a str")))
}

/// A scheduler.model.Schedule's attributes, held so that a `codec::Schedule` can borrow them.
struct Held<'py> {
    id: Bound<'py, PyString>,
    topic: Bound<'py, PyString>,
    due_ms: i64,
    payload: Option<Buf<'py>>,
    key: Option<Buf<'py>>,
    headers: Vec<(Bound<'py, PyString>, Option<Buf<'py>>)>,
    partition: Option<i32>,
    created_ms: i64,
    producer: Option<Bound<'py, PyString>>,
    recurrence: Option<HeldRecurrence<'py>>,
}

/// A scheduler.model.Recurrence's attributes: its strings held, its numbers read.
struct HeldRecurrence<'py> {
    cron: Option<Bound<'py, PyString>>,
    timezone: Bound<'py, PyString>,
    missed: Bound<'py, PyString>,
    overlap: Bound<'py, PyString>,
    /// every_ms, after_ms, starts_at, ends_at, max_runs, catch_up_ms, running_ms, buffered_ms
    optional: [Option<i64>; 8],
    paused: bool,
    /// occurrence_ms, runs, skipped
    counts: [i64; 3],
}

fn opt_int(obj: Bound<'_, PyAny>, what: &Bound<'_, PyString>) -> PyResult<Option<i64>> {
    if obj.is_none() {
        return Ok(None);
    }
    obj.extract()
        .map(Some)
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a 64-bit int or None")))
}

impl<'py> HeldRecurrence<'py> {
    fn of(r: &Bound<'py, PyAny>) -> PyResult<Self> {
        let py = r.py();
        let cron = r.getattr(intern!(py, "cron"))?;
        // interned names: a getattr by &str would build the name's str object on every call
        let optional_names = [
            intern!(py, "every_ms"),
            intern!(py, "after_ms"),
            intern!(py, "starts_at"),
            intern!(py, "ends_at"),
            intern!(py, "max_runs"),
            intern!(py, "catch_up_ms"),
            intern!(py, "running_ms"),
            intern!(py, "buffered_ms"),
        ];
        let mut optional = [None; 8];
        for (slot, name) in optional.iter_mut().zip(optional_names) {
            *slot = opt_int(r.getattr(name)?, name)?;
        }
        let count_names = [
            intern!(py, "occurrence_ms"),
            intern!(py, "runs"),
            intern!(py, "skipped"),
        ];
        let mut counts = [0; 3];
        for (slot, name) in counts.iter_mut().zip(count_names) {
            *slot = r.getattr(name)?.extract().map_err(|_| {
                PyTypeError::new_err(format!("recurrence {name} must be a 64-bit int"))
            })?;
        }
        Ok(HeldRecurrence {
            cron: if cron.is_none() {
                None
            } else {
                Some(text(cron, "cron")?)
            },
            timezone: text(r.getattr(intern!(py, "timezone"))?, "timezone")?,
            missed: text(r.getattr(intern!(py, "missed"))?, "missed")?,
            overlap: text(r.getattr(intern!(py, "overlap"))?, "overlap")?,
            optional,
            paused: r
                .getattr(intern!(py, "paused"))?
                .extract()
                .map_err(|_| PyTypeError::new_err("recurrence paused must be a bool"))?,
            counts,
        })
    }

    fn view(&self) -> PyResult<Recurrence<'_>> {
        let [every_ms, after_ms, starts_at, ends_at, max_runs, catch_up_ms, running_ms, buffered_ms] =
            self.optional;
        let [occurrence_ms, runs, skipped] = self.counts;
        Ok(Recurrence {
            cron: self.cron.as_ref().map(|c| c.to_str()).transpose()?,
            every_ms,
            after_ms,
            timezone: self.timezone.to_str()?,
            starts_at,
            ends_at,
            max_runs,
            missed: self.missed.to_str()?,
            overlap: self.overlap.to_str()?,
            catch_up_ms,
            paused: self.paused,
            occurrence_ms,
            runs,
            skipped,
            running_ms,
            buffered_ms,
        })
    }
}

impl<'py> Held<'py> {
    fn of(s: &Bound<'py, PyAny>) -> PyResult<Self> {
        let py = s.py();
        let mut headers = Vec::new();
        for item in s.getattr(intern!(py, "headers"))?.try_iter()? {
            let (name, value): (Bound<'py, PyAny>, Bound<'py, PyAny>) = item?.extract()?;
            headers.push((text(name, "a header name")?, opt_buf(value)?));
        }
        let partition = s.getattr(intern!(py, "target_partition"))?;
        let producer = s.getattr(intern!(py, "producer"))?;
        let recurrence = s.getattr(intern!(py, "recurrence"))?;
        Ok(Held {
            id: text(s.getattr(intern!(py, "id"))?, "id")?,
            topic: text(s.getattr(intern!(py, "target_topic"))?, "target_topic")?,
            due_ms: s.getattr(intern!(py, "due_ms"))?.extract()?,
            payload: opt_buf(s.getattr(intern!(py, "payload"))?)?,
            key: opt_buf(s.getattr(intern!(py, "target_key"))?)?,
            headers,
            partition: if partition.is_none() {
                None
            } else {
                Some(partition.extract().map_err(|_| {
                    PyValueError::new_err(format!(
                        "target_partition {partition} is not a 32-bit int"
                    ))
                })?)
            },
            created_ms: s.getattr(intern!(py, "created_ms"))?.extract()?,
            producer: if producer.is_none() {
                None
            } else {
                Some(text(producer, "producer")?)
            },
            recurrence: if recurrence.is_none() {
                None
            } else {
                Some(HeldRecurrence::of(&recurrence)?)
            },
        })
    }

    fn view(&self) -> PyResult<Schedule<'_>> {
        let mut headers: Vec<Header<'_>> = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            headers.push((name.to_str()?, value.as_ref().map(Buf::get)));
        }
        Ok(Schedule {
            id: self.id.to_str()?,
            target_topic: self.topic.to_str()?,
            due_ms: self.due_ms,
            payload: self.payload.as_ref().map(Buf::get),
            target_key: self.key.as_ref().map(Buf::get),
            headers,
            target_partition: self.partition,
            created_ms: self.created_ms,
            producer: self.producer.as_ref().map(|p| p.to_str()).transpose()?,
            recurrence: self
                .recurrence
                .as_ref()
                .map(HeldRecurrence::view)
                .transpose()?,
        })
    }
}

/// The default zone and the policy words as interned strings (one per process, not one per decoded record).
fn word<'py>(py: Python<'py>, text: &str) -> Bound<'py, PyString> {
    match text {
        "UTC" => intern!(py, "UTC").clone(),
        "latest" => intern!(py, "latest").clone(),
        "skip" => intern!(py, "skip").clone(),
        "all" => intern!(py, "all").clone(),
        "allow" => intern!(py, "allow").clone(),
        "buffer_one" => intern!(py, "buffer_one").clone(),
        _ => PyString::new(py, text),
    }
}

fn opt_bytes<'py>(py: Python<'py>, b: Option<&[u8]>) -> Bound<'py, PyAny> {
    match b {
        None => py.None().into_bound(py),
        Some(b) => PyBytes::new(py, b).into_any(),
    }
}

/// The wire format of the current schemas, for Python.
#[pyclass(frozen, module = "scheduler._native")]
pub struct Codec {
    pub(crate) command_fp: [u8; 8],
    state_fp: [u8; 8],
    schedule: Builder,
    recurrence: Builder,
    cancel_cls: Py<PyAny>,
    pause_cls: Py<PyAny>,
    resume_cls: Py<PyAny>,
    done_cls: Py<PyAny>,
    backfill_cls: Py<PyAny>,
}

/// A frozen dataclass of scheduler.model and, when it is a plain one with the expected fields in this order,
/// object.__new__ and its slots' setters (`direct`).
struct Builder {
    cls: Py<PyAny>,
    direct: Option<Direct>,
}

impl Builder {
    fn of(cls: Bound<'_, PyAny>, fields: &[&str]) -> PyResult<Self> {
        Ok(Builder {
            direct: direct(&cls, fields)?,
            cls: cls.unbind(),
        })
    }

    /// An instance of the field values in order, as calling the class would build it.
    fn build<'py, const N: usize>(
        &self,
        py: Python<'py>,
        fields: [Bound<'py, PyAny>; N],
    ) -> PyResult<Bound<'py, PyAny>> {
        let cls = self.cls.bind(py);
        let Some((alloc, setters)) = &self.direct else {
            return cls.call1(PyTuple::new(py, fields)?);
        };
        // What object.__new__(cls) and the frozen dataclass's __init__ (object.__setattr__ per field) do,
        // without the Python frame: the class's tp_alloc, then each field's slot descriptor's setter (what
        // object.__setattr__ finds first on the class, these being in its own __dict__).
        // SAFETY: cls is a live type whose tp_alloc this is; it returns a new reference or NULL with an error.
        let raw = unsafe { alloc(cls.as_ptr().cast(), 0) };
        if raw.is_null() {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: raw is a new, owned, non-null reference.
        let obj = unsafe { Bound::from_owned_ptr(py, raw) };
        for ((descr, set), value) in setters.iter().zip(fields.iter()) {
            // SAFETY: live references; the setter borrows them, checks obj's type, and sets an error on -1.
            if unsafe { set(descr.as_ptr(), obj.as_ptr(), value.as_ptr()) } < 0 {
                return Err(PyErr::fetch(py));
            }
        }
        Ok(obj)
    }
}

/// The class's tp_alloc (what object.__new__ calls) and, per field, its slot's member descriptor with that
/// descriptor's setter (what object.__setattr__ finds on the class and calls).
type Direct = (
    pyo3::ffi::allocfunc,
    Vec<(Py<PyAny>, pyo3::ffi::descrsetfunc)>,
);

const SCHEDULE_FIELDS: [&str; 10] = [
    "id",
    "target_topic",
    "due_ms",
    "payload",
    "target_key",
    "headers",
    "target_partition",
    "created_ms",
    "producer",
    "recurrence",
];

const RECURRENCE_FIELDS: [&str; 16] = [
    "cron",
    "every_ms",
    "after_ms",
    "timezone",
    "starts_at",
    "ends_at",
    "max_runs",
    "missed",
    "overlap",
    "catch_up_ms",
    "paused",
    "occurrence_ms",
    "runs",
    "skipped",
    "running_ms",
    "buffered_ms",
];

/// Build instances field by field only if that is exactly what calling the class would do.
fn direct(schedule: &Bound<'_, PyAny>, expected: &[&str]) -> PyResult<Option<Direct>> {
    let py = schedule.py();
    let fields: Vec<String> = schedule.getattr(intern!(py, "__match_args__"))?.extract()?;
    if fields != expected || schedule.hasattr(intern!(py, "__post_init__"))? {
        return Ok(None);
    }
    let object_new = py
        .import("builtins")?
        .getattr("object")?
        .getattr("__new__")?;
    if !schedule.getattr(intern!(py, "__new__"))?.is(&object_new) {
        return Ok(None);
    }
    let Ok(cls) = schedule.cast::<pyo3::types::PyType>() else {
        return Ok(None);
    };
    // SAFETY: a live type object; PyType_GetSlot returns its tp_alloc (every type has one) or NULL.
    let slot = unsafe { pyo3::ffi::PyType_GetSlot(cls.as_type_ptr(), pyo3::ffi::Py_tp_alloc) };
    if slot.is_null() {
        return Ok(None);
    }
    // SAFETY: the Py_tp_alloc slot holds an allocfunc.
    let alloc: pyo3::ffi::allocfunc = unsafe { std::mem::transmute(slot) };
    let own = cls.getattr(intern!(py, "__dict__"))?;
    let mut setters = Vec::with_capacity(expected.len());
    for &name in expected {
        let descr = own.get_item(name)?;
        let kind = descr.get_type();
        if kind.name()? != "member_descriptor" {
            return Ok(None); // not a plain slot: only calling the class is sure to be right
        }
        // SAFETY: a live type object; the slot is its tp_descr_set or NULL.
        let set =
            unsafe { pyo3::ffi::PyType_GetSlot(kind.as_type_ptr(), pyo3::ffi::Py_tp_descr_set) };
        if set.is_null() {
            return Ok(None);
        }
        // SAFETY: the Py_tp_descr_set slot holds a descrsetfunc.
        let set: pyo3::ffi::descrsetfunc = unsafe { std::mem::transmute(set) };
        setters.push((descr.unbind(), set));
    }
    Ok(Some((alloc, setters)))
}

impl Codec {
    fn schedule<'py>(&self, py: Python<'py>, s: &Schedule<'_>) -> PyResult<Bound<'py, PyAny>> {
        let headers = PyTuple::new(
            py,
            s.headers
                .iter()
                .map(|(name, value)| {
                    PyTuple::new(
                        py,
                        [PyString::new(py, name).into_any(), opt_bytes(py, *value)],
                    )
                })
                .collect::<PyResult<Vec<_>>>()?,
        )?;
        self.new_schedule(
            py,
            [
                PyString::new(py, s.id).into_any(),
                PyString::new(py, s.target_topic).into_any(),
                s.due_ms.into_bound_py_any(py)?,
                opt_bytes(py, s.payload),
                opt_bytes(py, s.target_key),
                headers.into_any(),
                s.target_partition.into_bound_py_any(py)?,
                s.created_ms.into_bound_py_any(py)?,
                s.producer.into_bound_py_any(py)?,
                match &s.recurrence {
                    None => py.None().into_bound(py),
                    Some(r) => self.recurrence(py, r)?,
                },
            ],
        )
    }

    fn recurrence<'py>(&self, py: Python<'py>, r: &Recurrence<'_>) -> PyResult<Bound<'py, PyAny>> {
        let int = |n: i64| n.into_bound_py_any(py);
        let opt = |n: Option<i64>| n.into_bound_py_any(py);
        self.recurrence.build(
            py,
            [
                r.cron.into_bound_py_any(py)?,
                opt(r.every_ms)?,
                opt(r.after_ms)?,
                word(py, r.timezone).into_any(),
                opt(r.starts_at)?,
                opt(r.ends_at)?,
                opt(r.max_runs)?,
                word(py, r.missed).into_any(),
                word(py, r.overlap).into_any(),
                opt(r.catch_up_ms)?,
                r.paused.into_bound_py_any(py)?,
                int(r.occurrence_ms)?,
                int(r.runs)?,
                int(r.skipped)?,
                opt(r.running_ms)?,
                opt(r.buffered_ms)?,
            ],
        )
    }

    /// A scheduler.model.Schedule of the ten field values in order, as calling the class would build it.
    pub(crate) fn new_schedule<'py>(
        &self,
        py: Python<'py>,
        fields: [Bound<'py, PyAny>; 10],
    ) -> PyResult<Bound<'py, PyAny>> {
        self.schedule.build(py, fields)
    }

    /// The model's value of any decoded command.
    fn command<'py>(&self, py: Python<'py>, c: &Command<'_>) -> PyResult<Bound<'py, PyAny>> {
        match c {
            Command::Schedule(s) => self.schedule(py, s),
            Command::Cancel(id) => self.cancel_cls.bind(py).call1((*id,)),
            Command::Pause(id) => self.pause_cls.bind(py).call1((*id,)),
            Command::Resume(id) => self.resume_cls.bind(py).call1((*id,)),
            Command::Done {
                id,
                fire_id,
                finished_ms,
            } => self.done_cls.bind(py).call1((*id, *fire_id, *finished_ms)),
            Command::Backfill { id, from_ms, to_ms } => {
                self.backfill_cls.bind(py).call1((*id, *from_ms, *to_ms))
            }
        }
    }

    /// The accepted Avro schedule of one consumed record with its state record, a Cancel, or None: the record
    /// needs Python (header protocol, routing headers, another writer schema, or a reject with its message).
    fn intake_one<'py>(&self, record: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = record.py();
        let key = record.getattr(intern!(py, "key"))?;
        let Ok(key) = key.cast_into::<PyBytes>() else {
            return Ok(None);
        };
        let key = key.as_bytes();
        if key.is_empty() || key.len() > MAX_ID_BYTES {
            return Ok(None);
        }
        let Ok(sid) = std::str::from_utf8(key) else {
            return Ok(None);
        };
        let value = record.getattr(intern!(py, "value"))?;
        let headers = record.getattr(intern!(py, "headers"))?;
        if value.is_none() {
            // a tombstone is a cancel, unless its headers make it a control command: Python reads them
            let bare = headers.is_none() || headers.len().is_ok_and(|n| n == 0);
            return Ok(if bare {
                Some(self.cancel_cls.bind(py).call1((sid,))?)
            } else {
                None
            });
        }
        let Ok(value) = value.cast_into::<PyBytes>() else {
            return Ok(None);
        };
        let value = value.as_bytes();
        if value.len() < 2 || value[..2] != codec::MAGIC {
            return Ok(None);
        }
        if !headers.is_none() {
            let Ok(list) = headers.cast_into::<PyList>() else {
                return Ok(None);
            };
            for item in list.iter() {
                let Ok(pair) = item.cast_into::<PyTuple>() else {
                    return Ok(None);
                };
                let Ok(name) = pair.get_item(0) else {
                    return Ok(None);
                };
                let Ok(name) = name.cast_into::<PyString>() else {
                    return Ok(None);
                };
                let Ok(name) = name.to_str() else {
                    return Ok(None);
                };
                if ROUTED.contains(&name) {
                    return Ok(None);
                }
            }
        }
        let Ok(command) = codec::decode_command(value, &self.command_fp) else {
            return Ok(None);
        };
        match command {
            Command::Cancel(id) if id == sid => Ok(Some(self.cancel_cls.bind(py).call1((sid,))?)),
            // a recurring schedule is validated and armed by the scheduler's intake: Python decides
            Command::Schedule(s) if s.id == sid && s.recurrence.is_none() => {
                let Ok(ts) = record
                    .getattr(intern!(py, "timestamp_ms"))?
                    .extract::<i64>()
                else {
                    return Ok(None);
                };
                let sane = codec::is_legal_topic(s.target_topic)
                    && s.target_partition.is_none_or(|p| p >= 0)
                    && 0 <= s.due_ms
                    && s.due_ms <= ts.saturating_add(HORIZON_MS);
                if !sane {
                    return Ok(None);
                }
                let Ok(version) = record.getattr(intern!(py, "offset"))?.extract::<i64>() else {
                    return Ok(None);
                };
                let state = codec::encode_state(&s, version, &self.state_fp);
                let pair = [self.schedule(py, &s)?, PyBytes::new(py, &state).into_any()];
                Ok(Some(PyTuple::new(py, pair)?.into_any()))
            }
            _ => Ok(None),
        }
    }
}

#[pymethods]
impl Codec {
    /// `command_fingerprint` and `state_fingerprint` are computed from the schema files: ValueError unless they
    /// are the ones this layout is written for. `model` is scheduler.model (its Schedule, Recurrence, Cancel,
    /// Pause, Resume, Done and Backfill classes build the decoded values).
    #[new]
    fn new(
        command_fingerprint: &[u8],
        state_fingerprint: &[u8],
        model: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        codec::check_fingerprints(command_fingerprint, state_fingerprint)
            .map_err(PyValueError::new_err)?;
        let cls = |name: &str| model.getattr(name).map(Bound::unbind);
        Ok(Codec {
            command_fp: codec::COMMAND_FINGERPRINT,
            state_fp: codec::STATE_FINGERPRINT,
            schedule: Builder::of(model.getattr("Schedule")?, &SCHEDULE_FIELDS)?,
            recurrence: Builder::of(model.getattr("Recurrence")?, &RECURRENCE_FIELDS)?,
            cancel_cls: cls("Cancel")?,
            pause_cls: cls("Pause")?,
            resume_cls: cls("Resume")?,
            done_cls: cls("Done")?,
            backfill_cls: cls("Backfill")?,
        })
    }

    fn encode_schedule<'py>(
        &self,
        py: Python<'py>,
        schedule: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let held = Held::of(schedule)?;
        Ok(PyBytes::new(
            py,
            &codec::encode_schedule(&held.view()?, &self.command_fp),
        ))
    }

    fn encode_cancel<'py>(&self, py: Python<'py>, schedule_id: &str) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &codec::encode_cancel(schedule_id, &self.command_fp))
    }

    fn encode_state<'py>(
        &self,
        py: Python<'py>,
        schedule: &Bound<'py, PyAny>,
        version: i64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let held = Held::of(schedule)?;
        Ok(PyBytes::new(
            py,
            &codec::encode_state(&held.view()?, version, &self.state_fp),
        ))
    }

    /// (Schedule, version); AvroError for garbage, UnknownFingerprint for another writer schema.
    fn decode_state<'py>(&self, py: Python<'py>, value: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
        let (s, version) =
            codec::decode_state(value, &self.state_fp).map_err(|e| avro_error(py, e))?;
        PyTuple::new(py, [self.schedule(py, &s)?, version.into_bound_py_any(py)?])
    }

    /// The on-time step of an `every` schedule's state record (codec::step_on_time): (next state record or
    /// None when the schedule ends, the fired occurrence's at_ms, run, skipped so far), or None when the
    /// Python engine must decide (any other case, or a record of another writer schema).
    fn step_on_time<'py>(
        &self,
        py: Python<'py>,
        record: &[u8],
        now_ms: i64,
        grace_ms: i64,
        catch_up_ms: i64,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some(on) = codec::step_on_time(record, now_ms, grace_ms, catch_up_ms, &self.state_fp)
        else {
            return Ok(None);
        };
        let next = match &on.next {
            None => py.None().into_bound(py),
            Some(b) => PyBytes::new(py, b).into_any(),
        };
        let items = [
            next,
            on.at_ms.into_bound_py_any(py)?,
            on.run.into_bound_py_any(py)?,
            on.skipped.into_bound_py_any(py)?,
        ];
        PyTuple::new(py, items).map(Some)
    }

    /// The same state record with a new due time and Recurrence (the rest copied, no Schedule built); None
    /// for a record of another writer schema or one that does not decode (the caller encodes it in Python).
    fn restate<'py>(
        &self,
        py: Python<'py>,
        record: &[u8],
        due_ms: i64,
        recurrence: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let held = HeldRecurrence::of(recurrence)?;
        Ok(codec::restate(record, due_ms, held.view()?, &self.state_fp)
            .map(|b| PyBytes::new(py, &b)))
    }

    /// `decode_state` of every state record of a tick's fires in one call: (Schedule, version) each, or None
    /// for one it cannot read (Python decodes that one alone, for an older writer schema or the error's words).
    fn decode_states<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for value in values.try_iter()? {
            let value = value?;
            let decoded = match value.cast::<PyBytes>() {
                Ok(raw) => match codec::decode_state(raw.as_bytes(), &self.state_fp) {
                    Ok((s, version)) => {
                        PyTuple::new(py, [self.schedule(py, &s)?, version.into_bound_py_any(py)?])?
                            .into_any()
                    }
                    Err(_) => py.None().into_bound(py),
                },
                Err(_) => py.None().into_bound(py),
            };
            out.append(decoded)?;
        }
        Ok(out)
    }

    /// The envelope's command (its id unchecked against the key); errors as `decode_state`.
    fn decode_envelope<'py>(&self, py: Python<'py>, value: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let command =
            codec::decode_command(value, &self.command_fp).map_err(|e| avro_error(py, e))?;
        self.command(py, &command)
    }

    /// The envelope of a Pause, Resume, Done or Backfill (scheduler.model's); TypeError for anything else.
    fn encode_control<'py>(
        &self,
        py: Python<'py>,
        command: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let id = text(command.getattr(intern!(py, "id"))?, "id")?;
        let id = id.to_str()?;
        let value = if command.is_instance(self.pause_cls.bind(py))? {
            codec::encode_control(&Command::Pause(id), &self.command_fp)
        } else if command.is_instance(self.resume_cls.bind(py))? {
            codec::encode_control(&Command::Resume(id), &self.command_fp)
        } else if command.is_instance(self.done_cls.bind(py))? {
            let fire_id = text(command.getattr(intern!(py, "fire_id"))?, "fire_id")?;
            let done = Command::Done {
                id,
                fire_id: fire_id.to_str()?,
                finished_ms: command.getattr(intern!(py, "finished_ms"))?.extract()?,
            };
            codec::encode_control(&done, &self.command_fp)
        } else if command.is_instance(self.backfill_cls.bind(py))? {
            let backfill = Command::Backfill {
                id,
                from_ms: command.getattr(intern!(py, "from_ms"))?.extract()?,
                to_ms: command.getattr(intern!(py, "to_ms"))?.extract()?,
            };
            codec::encode_control(&backfill, &self.command_fp)
        } else {
            return Err(PyTypeError::new_err(
                "encode_control takes a Pause, Resume, Done or Backfill",
            ));
        };
        Ok(PyBytes::new(py, &value))
    }

    /// One entry per consumed record (objects with key, value, headers, timestamp_ms, offset): a
    /// (Schedule, state record) the codec accepts, a Cancel, or None where Python must decide.
    fn intake<'py>(
        &self,
        py: Python<'py>,
        records: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for record in records.try_iter()? {
            let taken = self.intake_one(&record?)?;
            out.append(taken)?;
        }
        Ok(out)
    }
}

/// The due time of a state record of any state schema; AvroError if it has none.
#[pyfunction]
fn peek_due_ms(py: Python<'_>, value: &[u8]) -> PyResult<i64> {
    codec::peek_due_ms(value).map_err(|e| avro_error(py, e))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Codec>()?;
    m.add_function(wrap_pyfunction!(peek_due_ms, m)?)?;
    m.add("AvroError", py.get_type::<AvroError>())?;
    m.add("UnknownFingerprint", py.get_type::<UnknownFingerprint>())?;
    m.add("STRICTER_THAN_FASTAVRO", stricter_kinds())?;
    Ok(())
}

/// The error kinds (AvroError.kind) fastavro would read without complaint.
fn stricter_kinds() -> Vec<String> {
    [
        ErrorKind::VarintTooLong,
        ErrorKind::NegativeLength,
        ErrorKind::BadUnion,
        ErrorKind::IntOutOfRange,
        ErrorKind::BadBoolean,
    ]
    .into_iter()
    .filter(|k| k.stricter_than_fastavro())
    .map(|k| format!("{k:?}"))
    .collect()
}
