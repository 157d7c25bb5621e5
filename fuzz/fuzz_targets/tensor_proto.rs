//! `autotune run --input FILE`'s reader on arbitrary bytes: a tensor or an error, never a panic.
#![no_main]

use autotune_graph::decode_tensor_proto;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok((_, tensor)) = decode_tensor_proto(bytes, "fuzzed tensor", None) {
        let _ = tensor.to_f32();
    }
});
