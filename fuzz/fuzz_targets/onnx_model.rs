//! The ONNX loader on arbitrary bytes: import, shape inference, folding, fusion and task
//! extraction, strict and partial (as model tuning loads), must answer with an error or a graph,
//! never a panic.
#![no_main]

use autotune_graph::{extract_tasks, load_bytes, LoadConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    for skip_unsupported in [false, true] {
        let config = LoadConfig { skip_unsupported, ..LoadConfig::default() };
        if let Ok(graph) = load_bytes(bytes, "fuzzed model", &config) {
            let _ = extract_tasks(&graph);
        }
    }
});
