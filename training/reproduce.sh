#!/usr/bin/env bash
# Reproduces the shipped models and the evaluation report from scratch:
#   bash training/reproduce.sh            (DEVICE=cuda by default; DEVICE=cpu works, slowly)
# Stages: data -> MixSTE -> DiffHPE-2D and DiffHPE-Wrapper (in parallel) and the occlusion matrix
# (one MixSTE + one Wrapper per training pattern, patterns in parallel) -> evaluation -> export.
# The shipped checkpoints in models/ were made by the `train` and `matrix` stages on one H100
# box (16 cores); the report and the export by the `evaluate` and `export` stages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
DEVICE=${DEVICE:-cuda}
MATRIX_EPOCHS=${MATRIX_EPOCHS:-10}
STAGES=${STAGES:-"data train matrix evaluate export"}
PATTERNS="none random random_left_arm_right_leg structured_joint structured_frame noisy"

has() { [[ " $STAGES " == *" $1 "* ]]; }

if has data; then
  $PY training/prepare_data.py --out data/mocap_h36m17_full.npz   # needs the Bandai Namco archives (--bandai-namco DIR)
fi
mkdir -p runs
pids=()
if has matrix; then  # no progress bars; one log per pattern
  for p in $PATTERNS; do
    $PY training/occlusion_matrix.py --runs runs/occlusion --patterns "$p" --device "$DEVICE" \
      --epochs "$MATRIX_EPOCHS" > "runs/occlusion_$p.log" 2>&1 &
    pids+=($!)
  done
fi
if has train; then
  $PY training/train.py --config training/configs/mixste.yaml --out runs/mixste --device "$DEVICE" --no-progress
  $PY training/train.py --config training/configs/diffhpe_2d.yaml --out runs/diffhpe_2d --device "$DEVICE" --no-progress &
  pids+=($!)
  $PY training/train.py --config training/configs/diffhpe_wrapper.yaml --out runs/diffhpe_wrapper --device "$DEVICE" --no-progress &
  pids+=($!)
fi
for pid in "${pids[@]}"; do wait "$pid"; done
if has evaluate; then
  $PY training/evaluate.py --device "$DEVICE" --out docs --occlusion-runs runs/occlusion \
    --checkpoints mixste=runs/mixste/best.pt diffhpe_2d=runs/diffhpe_2d/best.pt \
                  diffhpe_wrapper=runs/diffhpe_wrapper/best.pt --matrix-stride 16 --sampler-stride 16
fi
# To ship (what models/ holds): a run's best.pt, without its optimizer state, with the run-time
# sampler defaults of its config (training/release.py also overrides them), then the ONNX graphs.
if has export; then
  $PY training/release.py runs/mixste/best.pt models/mixste.pt
  $PY training/release.py runs/diffhpe_wrapper/best.pt models/diffhpe_wrapper.pt
  $PY training/calibrate_spread.py models/diffhpe_wrapper.pt      # fitted on the validation split
  $PY training/export.py --checkpoint models/mixste.pt --out models/mixste_lifter
  $PY training/export.py --checkpoint models/diffhpe_wrapper.pt --out models/diffhpe_lifter
fi
