#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one script for a GPU machine (run from the repo root):
#   bash scripts/device_check.sh [OUTDIR]          # default runs/device
# Uses the machine's own python3/torch; flash-linear-attention comes from .whl/ when present
# (pip download --no-deps flash-linear-attention==0.6.0 fla-core==0.6.0 -d .whl). Each step has its own
# time limit so one slow step cannot eat the others; results: env.txt, pytest.{log,xml},
# gpu_check.{log,json}, trainer.log, trainer_metrics.json.
set -u
OUT=${1:-${OUT:-runs/device}}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{
  date -u; nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import sys, torch, triton; print(sys.version.split()[0], torch.__version__, torch.version.cuda, triton.__version__)"
  python3 -c "import fla; print('fla', fla.__version__)" 2>&1 | tail -1
  python3 -c "import tensorrt" 2>&1 | tail -1
  python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" 2>&1 | tail -1
  echo "libnvinfer: $(timeout 20 find /usr /opt -name 'libnvinfer*.so*' 2>/dev/null | head -3 | tr '\n' ' ')"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
timeout 120 python3 -m pytest -q -p no:cacheprovider -o addopts="-ra" \
  test/kairos_model/test_gated_delta_rule.py test/kairos_model/test_hybrid_memory.py \
  test/kairos_model/test_cuda_training.py test/kairos_model/test_cuda_graph.py \
  --junitxml="$OUT/pytest.xml" 2>&1 | tail -25 | tee "$OUT/pytest.log"
timeout 240 python3 bench/gpu_check.py --out "$OUT/gpu_check.json" 2>&1 | cut -c1-3000 | tee "$OUT/gpu_check.log"
timeout 100 python3 -m torch.distributed.run --nproc-per-node 1 -m training.trainer training/recipes/gpu_smoke.yaml --out /tmp/gpu_smoke \
  >"$OUT/trainer.log" 2>&1; echo "trainer rc=$?"; tail -c 1500 "$OUT/trainer.log"
cp /tmp/gpu_smoke/metrics.json "$OUT/trainer_metrics.json" 2>/dev/null || true
