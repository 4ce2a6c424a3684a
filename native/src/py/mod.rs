//! `scheduler._native`: the Python face of the core modules. Each submodule registers its own classes and
//! functions; the types Python sees are in scheduler/_native.pyi.

use pyo3::prelude::*;

mod client;
mod codec;
mod index;

#[pyfunction]
fn murmur2(data: &[u8]) -> i32 {
    crate::murmur2::murmur2(data)
}

#[pyfunction]
fn partition_for(key: &[u8], partitions: u32) -> PyResult<u32> {
    if partitions < 1 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "partitions must be >= 1, got {partitions}"
        )));
    }
    Ok(crate::murmur2::partition_for(key, partitions))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(murmur2, m)?)?;
    m.add_function(wrap_pyfunction!(partition_for, m)?)?;
    client::register(m)?;
    codec::register(m)?;
    index::register(m)?;
    Ok(())
}
