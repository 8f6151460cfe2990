//! A serde `Deserializer` over the Python objects an event is written with (`dict`, `str`,
//! `int`, `float`, `bool`, `None`, `list`), so `emit` reads the caller's dict straight into the
//! core's typed draft (`vigil_producer::draft::complete_from`).
//!
//! It allocates no Python object: dicts are walked with `PyDict_Next`, strings are borrowed as
//! UTF-8. A general converter (pythonize) builds a key list and a value list per dict, and
//! those allocations run Python's cyclic collector inside `emit`, which showed at p99.

use std::fmt;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};
use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// Why a Python object is not the value the draft wants.
#[derive(Debug)]
pub(crate) struct ReadError(String);

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReadError {}

impl de::Error for ReadError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ReadError(msg.to_string())
    }
}

impl From<PyErr> for ReadError {
    fn from(e: PyErr) -> Self {
        ReadError(e.to_string())
    }
}

/// Reads one Python object.
pub(crate) struct PyReader<'a, 'py>(pub(crate) &'a Bound<'py, PyAny>);

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .qualname()
        .map_or_else(|_| "object".to_owned(), |n| n.to_string())
}

impl<'de> de::Deserializer<'de> for PyReader<'_, '_> {
    type Error = ReadError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        let obj = self.0;
        if obj.is_none() {
            visitor.visit_unit()
        } else if let Ok(s) = obj.cast::<PyString>() {
            visitor.visit_str(s.to_str()?)
        } else if obj.is_instance_of::<PyBool>() {
            visitor.visit_bool(obj.extract()?)
        } else if obj.is_instance_of::<PyInt>() {
            match obj.extract::<i64>() {
                Ok(v) => visitor.visit_i64(v),
                Err(_) => visitor.visit_u64(obj.extract()?),
            }
        } else if let Ok(d) = obj.cast::<PyDict>() {
            visitor.visit_map(DictAccess::new(d))
        } else if obj.is_instance_of::<PyFloat>() {
            visitor.visit_f64(obj.extract()?)
        } else if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
            let items = obj.try_iter()?.collect::<PyResult<Vec<_>>>()?;
            visitor.visit_seq(ItemsAccess {
                items: items.into_iter(),
            })
        } else if let Ok(m) = obj.cast::<PyMapping>() {
            // Another Mapping (the type hints allow any): copied into a dict, off the fast path.
            let d = PyDict::new(obj.py());
            d.update(m)?;
            visitor.visit_map(DictAccess::new(&d))
        } else {
            Err(ReadError(format!(
                "a Python {} cannot be part of an event",
                type_name(obj)
            )))
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        if self.0.is_none() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        // The schema's enums are symbols, written as strings.
        match self.0.cast::<PyString>() {
            Ok(s) => {
                let text: StrDeserializer<'_, ReadError> = s.to_str()?.into_deserializer();
                visitor.visit_enum(text)
            }
            Err(_) => Err(ReadError(format!(
                "expected a string naming a symbol, found a Python {}",
                type_name(self.0)
            ))),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
    }
}

/// A dict's items, walked in place.
struct DictAccess<'py> {
    iter: pyo3::types::iter::BoundDictIterator<'py>,
    value: Option<Bound<'py, PyAny>>,
}

impl<'py> DictAccess<'py> {
    fn new(dict: &Bound<'py, PyDict>) -> Self {
        DictAccess {
            iter: dict.iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for DictAccess<'_> {
    type Error = ReadError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ReadError> {
        match self.iter.next() {
            None => Ok(None),
            Some((key, value)) => {
                if !key.is_instance_of::<PyString>() {
                    return Err(ReadError(format!(
                        "event keys are strings, found a Python {}",
                        type_name(&key)
                    )));
                }
                self.value = Some(value);
                seed.deserialize(PyReader(&key)).map(Some)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ReadError> {
        match self.value.take() {
            Some(value) => seed.deserialize(PyReader(&value)),
            None => Err(ReadError("a value without its key".to_owned())),
        }
    }
}

/// A list's or tuple's items (no event field is one; they are read only to be refused with the
/// field's own message).
struct ItemsAccess<'py> {
    items: std::vec::IntoIter<Bound<'py, PyAny>>,
}

impl<'de> SeqAccess<'de> for ItemsAccess<'_> {
    type Error = ReadError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ReadError> {
        match self.items.next() {
            None => Ok(None),
            Some(item) => seed.deserialize(PyReader(&item)).map(Some),
        }
    }
}
