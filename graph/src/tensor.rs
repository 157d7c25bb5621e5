//! Constant tensors (initializers, folded values) and ONNX `TensorProto` files.
//!
//! Values are held in one of three wide storages: `f32`, `f64`, or `i64` for every integer type
//! and bool (the [`ElemType`] says which ONNX type it is). Runtime activations are f32; the other
//! types appear in shape arithmetic (Shape, Gather, Concat of int64 shapes) and are folded away.

use crate::error::GraphError;
use crate::proto;
use prost::Message;
use std::path::Path;

/// Element type of a tensor (the ONNX types this build can hold).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElemType {
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    /// Held as i64: values above `i64::MAX` wrap.
    U64,
    Bool,
}

impl ElemType {
    /// From ONNX's `TensorProto.DataType` number.
    pub fn from_onnx(code: i32) -> Option<ElemType> {
        use proto::tensor_proto::DataType as D;
        Some(match D::try_from(code).ok()? {
            D::Float => ElemType::F32,
            D::Double => ElemType::F64,
            D::Int8 => ElemType::I8,
            D::Int16 => ElemType::I16,
            D::Int32 => ElemType::I32,
            D::Int64 => ElemType::I64,
            D::Uint8 => ElemType::U8,
            D::Uint16 => ElemType::U16,
            D::Uint32 => ElemType::U32,
            D::Uint64 => ElemType::U64,
            D::Bool => ElemType::Bool,
            _ => return None,
        })
    }

    /// ONNX's `TensorProto.DataType` number.
    pub fn onnx_code(self) -> i32 {
        use proto::tensor_proto::DataType as D;
        (match self {
            ElemType::F32 => D::Float,
            ElemType::F64 => D::Double,
            ElemType::I8 => D::Int8,
            ElemType::I16 => D::Int16,
            ElemType::I32 => D::Int32,
            ElemType::I64 => D::Int64,
            ElemType::U8 => D::Uint8,
            ElemType::U16 => D::Uint16,
            ElemType::U32 => D::Uint32,
            ElemType::U64 => D::Uint64,
            ElemType::Bool => D::Bool,
        }) as i32
    }

    /// Name of an ONNX data type number, for messages (`FLOAT16`, `STRING`…).
    pub fn onnx_name(code: i32) -> String {
        proto::tensor_proto::DataType::try_from(code)
            .map_or_else(|_| format!("data type {code}"), |d| d.as_str_name().to_string())
    }

    pub fn is_float(self) -> bool {
        matches!(self, ElemType::F32 | ElemType::F64)
    }

    pub fn size_bytes(self) -> usize {
        match self {
            ElemType::I8 | ElemType::U8 | ElemType::Bool => 1,
            ElemType::I16 | ElemType::U16 => 2,
            ElemType::F32 | ElemType::I32 | ElemType::U32 => 4,
            ElemType::F64 | ElemType::I64 | ElemType::U64 => 8,
        }
    }

    /// Brings an i64 into this integer type's range the way a C cast would (wrapping).
    pub fn wrap_int(self, v: i64) -> i64 {
        match self {
            ElemType::I8 => i64::from(v as i8),
            ElemType::I16 => i64::from(v as i16),
            ElemType::I32 => i64::from(v as i32),
            ElemType::U8 => i64::from(v as u8),
            ElemType::U16 => i64::from(v as u16),
            ElemType::U32 => i64::from(v as u32),
            ElemType::Bool => i64::from(v != 0),
            _ => v,
        }
    }
}

/// Flat row-major values.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// Every integer type and bool.
    I64(Vec<i64>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A constant tensor: element type, shape and flat row-major values.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: ElemType,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn f32(shape: Vec<usize>, values: Vec<f32>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        Tensor { dtype: ElemType::F32, shape, data: TensorData::F32(values) }
    }

    pub fn i64(shape: Vec<usize>, values: Vec<i64>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        Tensor { dtype: ElemType::I64, shape, data: TensorData::I64(values) }
    }

    /// A tensor of `dtype` whose values are given as f64 (ints are truncated toward zero, bools
    /// are `!= 0`).
    pub fn from_f64(dtype: ElemType, shape: Vec<usize>, values: impl IntoIterator<Item = f64>) -> Tensor {
        let data =
            match dtype {
                ElemType::F32 => TensorData::F32(values.into_iter().map(|v| v as f32).collect()),
                ElemType::F64 => TensorData::F64(values.into_iter().collect()),
                _ => TensorData::I64(
                    values
                        .into_iter()
                        .map(|v| {
                            if dtype == ElemType::Bool {
                                i64::from(v != 0.0)
                            } else {
                                dtype.wrap_int(v as i64)
                            }
                        })
                        .collect(),
                ),
            };
        Tensor { dtype, shape, data }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The values as f32 (exact for f32 tensors).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as f64 (exact for every type but i64 beyond 2^53).
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// The values as i64 (floats truncated toward zero).
    pub fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::F64(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I64(v) => v.clone(),
        }
    }

    /// The same values with another shape (same element count).
    pub fn reshaped(&self, shape: Vec<usize>) -> Tensor {
        Tensor { dtype: self.dtype, shape, data: self.data.clone() }
    }

    /// Picks elements by flat index (the building block of every shape op on constants).
    pub fn gather_flat(&self, shape: Vec<usize>, index: impl Iterator<Item = usize>) -> Tensor {
        let data = match &self.data {
            TensorData::F32(v) => TensorData::F32(index.map(|i| v[i]).collect()),
            TensorData::F64(v) => TensorData::F64(index.map(|i| v[i]).collect()),
            TensorData::I64(v) => TensorData::I64(index.map(|i| v[i]).collect()),
        };
        Tensor { dtype: self.dtype, shape, data }
    }

    /// Decodes an ONNX `TensorProto`. `model_dir` resolves external data (`data_location =
    /// EXTERNAL`); without it such a tensor is an error.
    pub fn from_proto(t: &proto::TensorProto, model_dir: Option<&Path>) -> Result<Tensor, GraphError> {
        let name = t.name.clone().unwrap_or_default();
        let bad = |reason: String| GraphError::TensorData { tensor: name.clone(), reason };
        let code = t.data_type.unwrap_or(0);
        let dtype = ElemType::from_onnx(code)
            .ok_or_else(|| bad(format!("element type {} is not supported", ElemType::onnx_name(code))))?;
        let mut shape = Vec::with_capacity(t.dims.len());
        for &d in &t.dims {
            shape.push(usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}")))?);
        }
        let len = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| bad(format!("shape {shape:?} has more elements than memory can hold")))?;
        if t.segment.is_some() {
            return Err(bad("segmented tensors are not supported".into()));
        }
        let external = t.data_location == Some(proto::tensor_proto::DataLocation::External as i32);
        let raw: Option<Vec<u8>> =
            if external { Some(read_external(t, model_dir).map_err(bad)?) } else { t.raw_data.clone() };
        let data = if let Some(raw) = raw {
            decode_raw(dtype, &raw, len).map_err(bad)?
        } else {
            match dtype {
                ElemType::F32 => TensorData::F32(t.float_data.clone()),
                ElemType::F64 => TensorData::F64(t.double_data.clone()),
                ElemType::I64 => TensorData::I64(t.int64_data.clone()),
                ElemType::U32 | ElemType::U64 => {
                    TensorData::I64(t.uint64_data.iter().map(|&v| v as i64).collect())
                }
                ElemType::I8
                | ElemType::I16
                | ElemType::I32
                | ElemType::U8
                | ElemType::U16
                | ElemType::Bool => {
                    TensorData::I64(t.int32_data.iter().map(|&v| dtype.wrap_int(i64::from(v))).collect())
                }
            }
        };
        if data.len() != len {
            return Err(bad(format!("holds {} values but its shape {shape:?} needs {len}", data.len())));
        }
        Ok(Tensor { dtype, shape, data })
    }

    /// Encodes as an ONNX `TensorProto` (raw little-endian data) named `name`.
    pub fn to_proto(&self, name: &str) -> proto::TensorProto {
        let mut raw = Vec::with_capacity(self.len() * self.dtype.size_bytes());
        match &self.data {
            TensorData::F32(v) => v.iter().for_each(|x| raw.extend_from_slice(&x.to_le_bytes())),
            TensorData::F64(v) => v.iter().for_each(|x| raw.extend_from_slice(&x.to_le_bytes())),
            TensorData::I64(v) => {
                let width = self.dtype.size_bytes();
                v.iter().for_each(|x| raw.extend_from_slice(&x.to_le_bytes()[..width]))
            }
        }
        proto::TensorProto {
            dims: self.shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(self.dtype.onnx_code()),
            name: Some(name.to_string()),
            raw_data: Some(raw),
            ..Default::default()
        }
    }
}

/// Reads a serialized ONNX `TensorProto` (the `input_0.pb` / `output_0.pb` files of the ONNX
/// backend tests). Returns its name (empty when unnamed) and value.
pub fn read_tensor_proto(path: &Path) -> Result<(String, Tensor), GraphError> {
    let bytes = std::fs::read(path).map_err(|source| GraphError::Io { path: path.to_path_buf(), source })?;
    decode_tensor_proto(&bytes, &path.display().to_string(), path.parent())
}

/// As [`read_tensor_proto`], from bytes already read (`what` names them in errors). External
/// data is looked up in `data_dir`; with `None` a tensor that has some is refused.
pub fn decode_tensor_proto(
    bytes: &[u8],
    what: &str,
    data_dir: Option<&Path>,
) -> Result<(String, Tensor), GraphError> {
    let t = proto::TensorProto::decode(bytes).map_err(|e| GraphError::NotOnnx {
        what: what.to_string(),
        reason: format!("not a serialized TensorProto ({e})"),
    })?;
    let tensor = Tensor::from_proto(&t, data_dir)?;
    Ok((t.name.unwrap_or_default(), tensor))
}

/// Writes `tensor` as a serialized ONNX `TensorProto` named `name`.
pub fn write_tensor_proto(path: &Path, name: &str, tensor: &Tensor) -> Result<(), GraphError> {
    std::fs::write(path, tensor.to_proto(name).encode_to_vec())
        .map_err(|source| GraphError::Io { path: path.to_path_buf(), source })
}

fn decode_raw(dtype: ElemType, raw: &[u8], len: usize) -> Result<TensorData, String> {
    let width = dtype.size_bytes();
    if raw.len() != len * width {
        return Err(format!("raw data has {} bytes, {} expected", raw.len(), len * width));
    }
    let chunks = raw.chunks_exact(width);
    let word = |c: &[u8]| -> [u8; 8] {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        w
    };
    Ok(match dtype {
        ElemType::F32 => {
            TensorData::F32(chunks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }
        ElemType::F64 => TensorData::F64(chunks.map(|c| f64::from_le_bytes(word(c))).collect()),
        ElemType::I8 => TensorData::I64(chunks.map(|c| i64::from(c[0] as i8)).collect()),
        ElemType::I16 => {
            TensorData::I64(chunks.map(|c| i64::from(i16::from_le_bytes([c[0], c[1]]))).collect())
        }
        ElemType::I32 => {
            TensorData::I64(chunks.map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect())
        }
        ElemType::I64 | ElemType::U64 => {
            TensorData::I64(chunks.map(|c| i64::from_le_bytes(word(c))).collect())
        }
        ElemType::U8 => TensorData::I64(chunks.map(|c| i64::from(c[0])).collect()),
        ElemType::Bool => TensorData::I64(chunks.map(|c| i64::from(c[0] != 0)).collect()),
        ElemType::U16 => {
            TensorData::I64(chunks.map(|c| i64::from(u16::from_le_bytes([c[0], c[1]]))).collect())
        }
        ElemType::U32 => {
            TensorData::I64(chunks.map(|c| i64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect())
        }
    })
}

fn read_external(t: &proto::TensorProto, model_dir: Option<&Path>) -> Result<Vec<u8>, String> {
    let dir = model_dir.ok_or("its data is in an external file, which needs the model's folder")?;
    let field = |key: &str| {
        t.external_data.iter().find(|e| e.key.as_deref() == Some(key)).and_then(|e| e.value.clone())
    };
    let location = field("location").ok_or("external data without a location")?;
    let offset: u64 = field("offset").map_or(Ok(0), |v| v.parse()).map_err(|_| "bad external data offset")?;
    let length: Option<u64> =
        field("length").map(|v| v.parse()).transpose().map_err(|_| "bad external data length")?;
    let path = dir.join(&location);
    if !path.starts_with(dir) || location.contains("..") {
        return Err(format!("external data location `{location}` leaves the model's folder"));
    }
    let bytes =
        std::fs::read(&path).map_err(|e| format!("cannot read external data {}: {e}", path.display()))?;
    let start = usize::try_from(offset).map_err(|_| "external data offset too large")?;
    let end = match length {
        Some(l) => start.saturating_add(usize::try_from(l).map_err(|_| "external data length too large")?),
        None => bytes.len(),
    };
    bytes
        .get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format!("external data {} is shorter than offset + length", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_round_trip_keeps_type_shape_and_values() {
        let t = Tensor::f32(vec![2, 2], vec![1.0, -2.5, 3.0, 0.0]);
        assert_eq!(Tensor::from_proto(&t.to_proto("x"), None).ok(), Some(t));
        let i = Tensor::from_f64(ElemType::I32, vec![3], [1.0, -7.0, 300.0]);
        let back = Tensor::from_proto(&i.to_proto("i"), None).ok();
        assert_eq!(back, Some(i));
        let b = Tensor::from_f64(ElemType::Bool, vec![2], [0.0, 2.0]);
        assert_eq!(b.data, TensorData::I64(vec![0, 1]));
    }

    #[test]
    fn typed_fields_decode_and_short_data_is_an_error() {
        let p = proto::TensorProto {
            dims: vec![2],
            data_type: Some(ElemType::I64.onnx_code()),
            int64_data: vec![4, 5],
            ..Default::default()
        };
        assert_eq!(Tensor::from_proto(&p, None).ok(), Some(Tensor::i64(vec![2], vec![4, 5])));
        let short = proto::TensorProto { dims: vec![3], ..p };
        assert!(Tensor::from_proto(&short, None).is_err());
        let f16 = proto::TensorProto { data_type: Some(10), ..Default::default() };
        let err = Tensor::from_proto(&f16, None).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("FLOAT16"), "{err}");
    }
}
