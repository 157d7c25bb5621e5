#!/usr/bin/env bash
# Seeds each fuzz target's corpus with real inputs: the ONNX backend test models and tensors
# (from the `onnx` package the README's setup installs) and the checked-in fixture logs.
set -euo pipefail
cd "$(dirname "$0")"
data="$(python3 -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "backend/test/data"))')"
mkdir -p corpus/onnx_model corpus/tensor_proto corpus/tuning_log
n=0
for model in "$data"/*/*/model.onnx; do
    dir="$(dirname "$model")"
    name="$(basename "$dir")"
    # The light models' weights are megabytes: the fuzzer mutates small inputs better.
    [ "$(stat -c %s "$model")" -le 200000 ] && cp "$model" "corpus/onnx_model/$name.onnx"
    for pb in "$dir"/test_data_set_0/*.pb; do
        [ -e "$pb" ] && cp "$pb" "corpus/tensor_proto/${name}_$(basename "$pb")"
    done
    n=$((n + 1))
done
cp ../db/tests/fixtures/*.tuning.db corpus/tuning_log/
echo "seeded from $n ONNX backend test models and $(ls corpus/tuning_log | wc -l) fixture logs"
