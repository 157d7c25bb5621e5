#!/bin/bash
# Submits the shard array (tune-array.sbatch), then the merge (merge.sbatch), which starts only
# once every array task has succeeded. Run it from the folder that holds model.onnx:
#
#   bash /path/to/autotune/deploy/slurm/submit.sh
#
# Extra arguments go to both sbatch calls (e.g. --partition=icelake --account=me).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Slurm opens the --output files under logs/ before a job starts: the folder must exist.
mkdir -p logs

# --parsable prints "JOBID" or "JOBID;CLUSTER".
array_job="$(sbatch --parsable "$@" "${here}/tune-array.sbatch")"
array_job="${array_job%%;*}"
merge_job="$(sbatch --parsable "$@" --dependency="afterok:${array_job}" "${here}/merge.sbatch")"
merge_job="${merge_job%%;*}"

echo "shard array: job ${array_job}; merge: job ${merge_job} (after the array succeeds)"
