#!/usr/bin/env bash
# Train one recipe on a GPU machine and bring the artifact back (run from the repo root):
#   bash scripts/device_train.sh training/recipes/mt10_gpu_relative.yaml [OUTDIR]
# Uses the machine's own python3/torch. PyAV (the LeRobot videos) and flash-linear-attention come from
# .whl/ when present: pip download --no-deps av==18.1.0 flash-linear-attention==0.6.0 fla-core==0.6.0
# (for the machine's Python) -d .whl. The recipe's datasets must be on the machine (a GPU lease
# carries runs/<dataset folder>; nothing is collected there without MuJoCo). OUTDIR receives one tar
# of the artifact, metrics.json, the stage's losses.json and the training log, split into 15 MiB
# parts (run.tar.part.*: `cat OUTDIR/run.tar.part.* | tar x` rebuilds <out>/; the sha256 printed
# here checks the joined tar): a lease brings back at most 8 files of 16 MiB each.
# Two recipes at once on one GPU (an ablation pair in one lease): install the wheels once
# (DEVICE_SITE_READY=1 then skips it) and start two of these with different OUTDIRs; torchrun runs
# --standalone, so each picks its own free port.
# Checked end to end on a CPU (2026-11-26, and again 2026-11-27 with the tar) with a 3-step recipe, a
# stand-in nvidia-smi and python3 on PATH running the venv: the parts rejoin to the printed sha256.
# Ran on an H200 (2026-11-27): 453 s for the whole command, carry [.whl, runs/mt10_cpu/data,
# runs/mt10_gpu_relative/data]; then twice as a pair (mt10_gpu_ws_aux.yaml beside mt10_gpu_ws.yaml,
# 372 s and 285 s, carry [.whl_av (PyAV alone: with fla the carry was over 64 MiB), runs/mt10_ws/demos,
# runs/mt10_ws/scenes, runs/mt10_gpu_ws_aux/data]; README "On a GPU").
set -u
RECIPE=$1
OUT=${2:-${OUT:-runs/device_train}}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${DEVICE_SITE_READY:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
elif [ -n "${DEVICE_SITE_READY:-}" ]; then
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi -L
python3 -c "import torch, av; print('torch', torch.__version__, 'av', av.__version__, 'cuda', torch.cuda.is_available())" || exit 1
RUN=$(python3 -c "import sys; from training.recipe import load_recipe; print(load_recipe(sys.argv[1]).out)" "$RECIPE") || exit 1
timeout "${TRAIN_TIMEOUT:-470}" python3 -m torch.distributed.run --standalone --nproc-per-node 1 -m training.trainer "$RECIPE" \
  >"$OUT/train.log" 2>&1
echo "trainer rc=$?"
tr '\r' '\n' <"$OUT/train.log" | grep -v "^train stage" | tail -8
[ -f "$RUN"/artifact/world_model.safetensors ] || exit 1
tr '\r' '\n' <"$OUT"/train.log | awk '!/^train stage/ || NR % 100 == 0' >"$RUN"/train.log   # progress thinned
tar cf "$OUT"/run.tar "$RUN"/artifact "$RUN"/metrics.json "$RUN"/*/losses.json "$RUN"/train.log || exit 1
sha256sum "$OUT"/run.tar
split -b 15M "$OUT"/run.tar "$OUT"/run.tar.part. && rm "$OUT"/run.tar && rm "$OUT"/train.log
