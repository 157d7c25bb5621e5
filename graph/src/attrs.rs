//! Typed access to an ONNX node's attributes, with errors that name the node.

use crate::error::{GraphError, NodeRef};
use crate::proto::attribute_proto::AttributeType;
use crate::proto::{AttributeProto, TensorProto};

pub(crate) struct Attrs<'a> {
    node: &'a NodeRef,
    list: &'a [AttributeProto],
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a NodeRef, list: &'a [AttributeProto]) -> Attrs<'a> {
        Attrs { node, list }
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.list.iter().find(|a| a.name.as_deref() == Some(name))
    }

    fn kind(a: &AttributeProto) -> Option<AttributeType> {
        a.r#type.and_then(|t| AttributeType::try_from(t).ok())
    }

    fn wrong(&self, name: &str, want: &str) -> GraphError {
        GraphError::invalid(self.node, format!("attribute `{name}` is not {want}"))
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, GraphError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::kind(a).is_none_or(|k| k == AttributeType::Int) && a.i.is_some() => Ok(a.i),
            Some(_) => Err(self.wrong(name, "an integer")),
        }
    }

    pub fn int_or(&self, name: &str, default: i64) -> Result<i64, GraphError> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    pub fn float(&self, name: &str) -> Result<Option<f32>, GraphError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::kind(a).is_none_or(|k| k == AttributeType::Float) && a.f.is_some() => Ok(a.f),
            Some(_) => Err(self.wrong(name, "a float")),
        }
    }

    pub fn float_or(&self, name: &str, default: f32) -> Result<f32, GraphError> {
        Ok(self.float(name)?.unwrap_or(default))
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, GraphError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::kind(a).is_none_or(|k| k == AttributeType::Ints) => Ok(Some(a.ints.clone())),
            Some(_) => Err(self.wrong(name, "a list of integers")),
        }
    }

    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, GraphError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::kind(a).is_none_or(|k| k == AttributeType::Floats) => Ok(Some(a.floats.clone())),
            Some(_) => Err(self.wrong(name, "a list of floats")),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, GraphError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::kind(a).is_none_or(|k| k == AttributeType::String) && a.s.is_some() => {
                Ok(a.s.as_ref().map(|s| String::from_utf8_lossy(s).into_owned()))
            }
            Some(_) => Err(self.wrong(name, "a string")),
        }
    }

    pub fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>, GraphError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.t.is_some() => Ok(a.t.as_ref()),
            Some(_) => Err(self.wrong(name, "a tensor")),
        }
    }

    /// A list of non-negative integers (sizes, strides, pads).
    pub fn sizes(&self, name: &str) -> Result<Option<Vec<usize>>, GraphError> {
        self.ints(name)?
            .map(|v| {
                v.iter()
                    .map(|&x| {
                        usize::try_from(x).map_err(|_| self.wrong(name, "a list of non-negative integers"))
                    })
                    .collect()
            })
            .transpose()
    }
}
