//! `--device cuda:N` from the command line. Without a CUDA driver (this CI): every command that
//! takes a device says so in one line and exits 1, before doing anything. With one, the device is
//! described from its attributes (the GPU tests of bench/gpu/run_on_device.sh go further).

#[path = "support/cli.rs"]
mod cli;
#[path = "../runtime/tests/support/small_model.rs"]
mod small_model;

use cli::{autotune, fails_with_one_line};

#[test]
fn cuda_without_a_driver_is_one_line_and_exit_1() {
    if autotune_codegen::cuda::driver_available().is_ok() {
        println!("skipped: this machine has a CUDA driver, so cuda:0 is not refused here");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("small.onnx");
    std::fs::write(&model, small_model::bytes(1)).expect("write model");
    let model = model.to_str().expect("utf-8 path");
    let db = dir.path().join("x.db");
    let db = db.to_str().expect("utf-8 path");
    let cases: [Vec<&str>; 4] = [
        vec!["op", "matmul", "--shape", "64x64x64", "--device", "cuda:0", "--db", db],
        vec![model, "--device", "cuda:0"],
        vec!["run", model, "--device", "cuda:0"],
        vec!["best", "--op", "matmul", "--shape", "8x8x8", "--device", "cuda:1", "--db", db],
    ];
    for args in cases {
        let out = autotune(&args);
        fails_with_one_line(
            &out,
            "no CUDA driver (libcuda.so) on this machine: install the NVIDIA driver, or use --device cpu",
        );
        let device = args[args.iter().position(|a| *a == "--device").expect("device") + 1];
        fails_with_one_line(&out, &format!("autotune: --device {device}: no CUDA driver"));
    }
    assert!(
        !dir.path().join("x.db").exists() && !dir.path().join("small.tuning.db").exists(),
        "nothing written"
    );
}
