//! Shared by the end-to-end tests (each includes it with `#[path]`): running the `autotune`
//! binary, reading its one JSON object or its one-line error, and the protobuf pieces of the small
//! ONNX models the tests build in code.
#![allow(dead_code)] // each test binary uses its own subset

use autotune_graph::proto;
use serde_json::Value;
use std::process::{Command, Output};

pub fn autotune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autotune")).args(args).output().expect("run autotune")
}

/// The one JSON value a successful `--json` run printed.
pub fn one_json(out: &Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout.clone()).expect("utf-8");
    let mut stream = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
    let value = stream.next().expect("one object").expect("valid JSON");
    assert!(stream.next().is_none(), "more than one JSON value on stdout: {stdout}");
    value
}

/// Exit code 1 and one `autotune: …` line on stderr containing `needle`.
pub fn fails_with_one_line(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("autotune: ") && stderr.contains(needle), "{stderr}");
}

/// An INTS attribute.
pub fn ints(name: &str, values: Vec<i64>) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.into()),
        r#type: Some(proto::attribute_proto::AttributeType::Ints as i32),
        ints: values,
        ..Default::default()
    }
}

/// A float32 graph input or output of a static shape.
pub fn float_info(name: &str, shape: &[i64]) -> proto::ValueInfoProto {
    proto::ValueInfoProto::float(name, Some(shape))
}
