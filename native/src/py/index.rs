//! Python bindings of crate::index: `DueIndex` and the rebuild's `replay_state`, one call per consumed batch.

use pyo3::exceptions::{PyMemoryError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::index::{Corrupt, Full, WINDOWS};
use crate::murmur2::partition_for;

static CORRUPT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn corrupt_error(py: Python<'_>, why: Corrupt) -> PyErr {
    match CORRUPT.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("scheduler.errors")?
            .getattr("CorruptStateRecord")?
            .unbind())
    }) {
        Ok(cls) => match cls.bind(py).call1((why.message(),)) {
            Ok(exc) => PyErr::from_value(exc),
            Err(err) => err,
        },
        Err(err) => err,
    }
}

fn full_error(_: Full) -> PyErr {
    PyMemoryError::new_err(
        "a due index partition is at its addressable size (16 GiB of state records, records under 256 MiB): \
         add partitions to the scheduled and state topics",
    )
}

/// Pending schedules of one partition: id -> state record, found by due time; no Python object per schedule.
#[pyclass(module = "scheduler._native", name = "DueIndex")]
#[derive(Default)]
pub struct PyDueIndex {
    inner: crate::index::DueIndex,
}

impl PyDueIndex {
    fn put_one(&mut self, py: Python<'_>, id: &[u8], record: &[u8]) -> PyResult<()> {
        match self.inner.put(id, record).map_err(full_error)? {
            Ok(()) => Ok(()),
            Err(why) => Err(corrupt_error(py, why)),
        }
    }
}

fn pairs<'py, 'a>(
    py: Python<'py>,
    items: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for (id, record) in items {
        out.append(PyTuple::new(
            py,
            [PyBytes::new(py, id), PyBytes::new(py, record)],
        )?)?;
    }
    Ok(out)
}

#[pymethods]
impl PyDueIndex {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, schedule_id: &Bound<'_, PyAny>) -> bool {
        match schedule_id.cast::<PyBytes>() {
            Ok(b) => self.inner.contains(b.as_bytes()),
            Err(_) => false,
        }
    }

    fn get<'py>(&self, py: Python<'py>, schedule_id: &[u8]) -> Option<Bound<'py, PyBytes>> {
        self.inner.get(schedule_id).map(|r| PyBytes::new(py, r))
    }

    /// Every (id, record), in no particular order.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        pairs(py, self.inner.items())?
            .try_iter()
            .map(Bound::into_any)
    }

    /// Insert or replace; a record whose due does not read raises CorruptStateRecord (and is never due).
    fn put(&mut self, py: Python<'_>, schedule_id: &[u8], record: &[u8]) -> PyResult<()> {
        self.put_one(py, schedule_id, record)
    }

    fn remove<'py>(&mut self, py: Python<'py>, schedule_id: &[u8]) -> Option<Bound<'py, PyBytes>> {
        self.inner.remove(schedule_id).map(|r| PyBytes::new(py, &r))
    }

    /// Committed state writes, (id, record) or (id, None) for a removal, in one call; a corrupt record is
    /// raised after every other write is applied.
    fn apply(&mut self, py: Python<'_>, writes: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut first_error = None;
        for item in writes.try_iter()? {
            let item = item?;
            let (id, record): (Bound<'_, PyBytes>, Option<Bound<'_, PyBytes>>) = item.extract()?;
            match record {
                None => {
                    self.inner.remove(id.as_bytes());
                }
                Some(record) => {
                    if let Err(err) = self.put_one(py, id.as_bytes(), record.as_bytes()) {
                        first_error.get_or_insert(err);
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// How many of the pending schedules are recurring (their state records carry a recurrence).
    fn recurring(&self) -> usize {
        self.inner.recurring()
    }

    fn next_due_ms(&self) -> Option<i64> {
        self.inner.next_due_ms()
    }

    /// Up to `max_count` (id, record) with due <= now, earliest first, ties in put order; nothing is removed.
    fn due<'py>(
        &self,
        py: Python<'py>,
        now_ms: i64,
        max_count: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        pairs(
            py,
            self.inner
                .due(now_ms, usize::try_from(max_count).unwrap_or(0)),
        )
    }

    /// Up to `max_count` (id, record) with after_ms < due <= until_ms (after_ms None: no lower bound), earliest
    /// first, ties in put order; nothing is removed.
    #[pyo3(signature = (after_ms, until_ms, max_count))]
    fn due_between<'py>(
        &self,
        py: Python<'py>,
        after_ms: Option<i64>,
        until_ms: i64,
        max_count: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        pairs(
            py,
            self.inner
                .due_between(after_ms, until_ms, usize::try_from(max_count).unwrap_or(0)),
        )
    }

    /// How many are due at or before now (overdue when now is the clock).
    fn count_due(&self, now_ms: i64) -> usize {
        self.inner.count_due(now_ms)
    }

    /// Schedules due within each window from now, overdue ones in every window.
    fn count_due_within<'py>(&self, py: Python<'py>, now_ms: i64) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (label, span) in WINDOWS {
            out.set_item(label, self.inner.count_due(now_ms.saturating_add(span)))?;
        }
        Ok(out)
    }

    /// Bytes held, by part: record_bytes, arena_used, arena_dead, arena_chunks, table, order.
    fn memory<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.inner.memory();
        let out = PyDict::new(py);
        out.set_item("record_bytes", m.record_bytes)?;
        out.set_item("arena_used", m.arena_used)?;
        out.set_item("arena_dead", m.arena_dead)?;
        out.set_item("arena_chunks", m.arena_chunks)?;
        out.set_item("table", m.table)?;
        out.set_item("order", m.order)?;
        Ok(out)
    }
}

/// One consumed batch of the state topic into the indexes it rebuilds.
///
/// `targets` maps each partition being replayed to (its index, its misplaced dict). Per message: errors and
/// partitions not in `targets` are skipped; a record whose id lives in another partition (murmur2(id) %
/// `partitions`) goes to the misplaced dict (a tombstone takes it out); the rest are put or removed. Returns the
/// number of records replayed per partition and the corrupt records as (key, partition, offset, reason).
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn replay_state<'py>(
    py: Python<'py>,
    messages: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyDict>,
    partitions: u32,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyList>)> {
    if partitions < 1 {
        return Err(PyValueError::new_err(format!(
            "partitions must be >= 1, got {partitions}"
        )));
    }
    let mut resolved: Vec<(i64, Bound<'py, PyDueIndex>, Bound<'py, PyDict>, usize)> = Vec::new();
    for (p, target) in targets.iter() {
        let (index, misplaced): (Bound<'py, PyDueIndex>, Bound<'py, PyDict>) = target.extract()?;
        resolved.push((p.extract()?, index, misplaced, 0));
    }
    let corrupt = PyList::empty(py);
    for msg in messages.try_iter()? {
        let msg = msg?;
        if !msg.call_method0(intern!(py, "error"))?.is_none() {
            continue;
        }
        let partition: Option<i64> = msg.call_method0(intern!(py, "partition"))?.extract()?;
        let partition = partition.unwrap_or(0);
        let Some((_, index, misplaced, count)) = resolved.iter_mut().find(|t| t.0 == partition)
        else {
            continue;
        };
        *count += 1;
        let key = msg.call_method0(intern!(py, "key"))?;
        let Ok(key) = key.cast::<PyBytes>() else {
            continue;
        };
        let value = msg.call_method0(intern!(py, "value"))?;
        let value = if value.is_none() {
            None
        } else {
            Some(value.cast_into::<PyBytes>()?)
        };
        if i64::from(partition_for(key.as_bytes(), partitions)) != partition {
            match value {
                None => {
                    misplaced.call_method1(intern!(py, "pop"), (key, py.None()))?;
                }
                Some(value) => misplaced.set_item(key, value)?,
            }
            continue;
        }
        let mut index = index.borrow_mut();
        match value {
            None => {
                index.inner.remove(key.as_bytes());
            }
            Some(value) => match index
                .inner
                .put(key.as_bytes(), value.as_bytes())
                .map_err(full_error)?
            {
                Ok(()) => {}
                Err(why) => {
                    let offset: i64 = msg.call_method0(intern!(py, "offset"))?.extract()?;
                    corrupt.append((key, partition, offset, why.message()))?;
                }
            },
        }
    }
    let counts = PyDict::new(py);
    for (p, _, _, n) in resolved.into_iter().filter(|t| t.3 > 0) {
        counts.set_item(p, n)?;
    }
    Ok((counts, corrupt))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDueIndex>()?;
    m.add_function(wrap_pyfunction!(replay_state, m)?)?;
    m.add("DUE_WINDOWS", WINDOWS.to_vec())?;
    Ok(())
}
