//! Inputs the fuzzers (`fuzz/`, see its README) found to crash the loader, kept as regression
//! tests: each must now load or be refused with an error, without a panic. A file's name says
//! what it exercised; `.onnx` files go through the model loader, `.pb` files through the
//! TensorProto reader.

use autotune_graph::{decode_tensor_proto, extract_tasks, load_bytes, LoadConfig};
use std::path::Path;

#[test]
fn every_input_the_fuzzers_found_loads_or_is_refused_without_a_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_crashes");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the crash folder") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        let what = path.display().to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("onnx") => {
                for skip_unsupported in [false, true] {
                    let config = LoadConfig { skip_unsupported, ..LoadConfig::default() };
                    if let Ok(graph) = load_bytes(&bytes, &what, &config) {
                        let _ = extract_tasks(&graph);
                    }
                }
            }
            Some("pb") => {
                let _ = decode_tensor_proto(&bytes, &what, None);
            }
            _ => panic!("{what}: name a crash input .onnx or .pb"),
        }
        n += 1;
    }
    assert!(n > 0, "no crash inputs in {}", dir.display());
}
