#!/usr/bin/env bash
# Run on an H100/H200 machine (driver ≥ 12.4, Debian/Ubuntu with Rust and Python 3): builds
# autotune, runs the GPU tests, tunes fp32 GEMM 4096³ for 256 trials and compares with torch's
# cuBLAS (TF32 off), and checks ResNet-50 on the GPU against onnxruntime on the CPU.
# Acceptance: every device test ran (none skipped for want of a GPU); tuned GEMM ≥ 0.8× cuBLAS;
# ResNet-50 outputs within the model tolerance. Prepared without a GPU: the GPU measurement and
# runtime are tested in CI on the host device (HostGpuDevice); this is their first real run.
# Tasks without a GPU schedule space and the plain ops run on the host, with copies around them;
# `autotune run` prints how many tasks ran on the GPU and the copies per run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT="${OUT:-$(mktemp -d)}"
say() { printf '==> %s\n' "$*"; }

say "1. setup (apt, pinned wheels incl. NVRTC/ptxas) and release build"
./setup.sh
python3 -m pip install --quiet "torch==2.5.1" onnx onnxruntime
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv

say "2. GPU tests (the device ones run here instead of skipping; a skip fails this step)"
{
    cargo test --release -p autotune-codegen --test cuda_offline -- --nocapture
    cargo test --release -p autotune-codegen --lib cuda -- --nocapture
    cargo test --release -p autotune-codegen --lib gpu_device -- --nocapture
    cargo test --release -p autotune-measure --lib gpu_ -- --nocapture
    cargo test --release -p autotune-runtime --test gpu_plan -- --nocapture
    cargo test --release -p autotune-cli --test e2e_gpu_measure --test e2e_cuda -- --nocapture
} 2>&1 | tee "$OUT/gpu_tests.log"
if grep -q "skipped: no GPU to run on\|skipped: no CUDA device" "$OUT/gpu_tests.log"; then
    say "a device test skipped on a GPU machine: see $OUT/gpu_tests.log"; exit 1
fi

say "3. tune fp32 GEMM 4096³ on cuda:0 (256 trials)"
DB="$OUT/gemm4096.tuning.db"
./target/release/autotune op matmul --shape 4096x4096x4096 --device cuda:0 --trials 256 --db "$DB" --json \
    | tee "$OUT/tune.json"
./target/release/autotune best --db "$DB" --device cuda:0 --min-time-s 2 --json | tee "$OUT/best.json"

say "4. cuBLAS baseline (torch, TF32 off) and the ratio"
python3 - "$OUT/best.json" <<'PY'
import json, sys, torch
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
n = 4096
a = torch.randn(n, n, device="cuda"); b = torch.randn(n, n, device="cuda")
for _ in range(10):
    a @ b
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
times = []
for _ in range(50):
    start.record(); a @ b; end.record(); torch.cuda.synchronize()
    times.append(start.elapsed_time(end) / 1e3)
times.sort()
cublas_gflops = 2 * n**3 / times[len(times) // 2] / 1e9
ours = json.load(open(sys.argv[1]))["gflops"]
ratio = ours / cublas_gflops
print(f"autotune {ours:.0f} GFLOP/s, cuBLAS {cublas_gflops:.0f} GFLOP/s: {ratio:.2f}x (acceptance >= 0.80)")
sys.exit(0 if ratio >= 0.8 else 1)
PY

say "5. ResNet-50 on the GPU against onnxruntime (CPU), same seeded input"
MODEL="${RESNET50:-$(python3 -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/light/light_resnet50.onnx"))')}"
./target/release/autotune "$MODEL" --device cuda:0 --trials-per-task 16 --db "$OUT/resnet.tuning.db"
python3 - "$MODEL" "$OUT" <<'PY'
import sys, numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper
model, out = sys.argv[1], sys.argv[2]
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
shape = [d if isinstance(d, int) else 1 for d in inp.shape]
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
open(f"{out}/x.pb", "wb").write(numpy_helper.from_array(x, inp.name).SerializeToString())
np.save(f"{out}/expected.npy", sess.run(None, {inp.name: x})[0])
PY
./target/release/autotune run "$MODEL" --device cuda:0 --db "$OUT/resnet.tuning.db" \
    --input "$OUT/x.pb" --output "$OUT/y.pb" --threads "$(nproc)" | tee "$OUT/resnet_run.txt"
python3 - "$OUT" <<'PY'
import sys, numpy as np, onnx
from onnx import numpy_helper
out = sys.argv[1]
y = numpy_helper.to_array(onnx.load_tensor(f"{out}/y.pb"))
expected = np.load(f"{out}/expected.npy")
err = float(np.max(np.abs(y - expected) / (1e-4 + np.abs(expected))))
print(f"ResNet-50 on cuda:0: max relative error {err:.2e} (acceptance <= 1e-3)")
sys.exit(0 if err <= 1e-3 else 1)
PY
say "results in $OUT"
