#!/bin/bash
# Distil the light HR decoder and a 2-step student from the default model's training checkpoints
# (teacher bundle assembled by bench/teacher_bundle.py), both at nice 5 with one thread each, in parallel.
#   AE=runs/dec/ae.pt DIFF=runs/diffusion/best.pt MINUTES=10 bash bench/distill_default.sh
#   TEACHER=models/default bash bench/distill_default.sh      (distil from a finished bundle instead)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/distill}
AE=${AE:-runs/dec/ae.pt}
DIFF=${DIFF:-runs/diffusion/best.pt}
MINUTES=${MINUTES:-10}
mkdir -p "$OUT"
TEACHER=${TEACHER:-}
if [ -z "$TEACHER" ]; then
  for f in "$AE" "$DIFF"; do until [ -f "$f" ]; do sleep 10; done; done
  nice -n 5 .venv/bin/python bench/teacher_bundle.py --ae "$AE" --diffusion "$DIFF" --out "$OUT/teacher"
  TEACHER=$OUT/teacher
fi
export OMP_NUM_THREADS=1
nice -n 5 .venv/bin/python -c "
import json, torch; torch.set_num_threads(1)
from pathlib import Path
from edge.train.distill import distill_decoder_cmd
print(json.dumps(distill_decoder_cmd(Path('$TEACHER'), Path('$OUT'), $MINUTES, 16, 1024, 0), indent=2))
" > "$OUT/decoder.log" 2>&1 &
nice -n 5 .venv/bin/python -c "
import json, torch; torch.set_num_threads(1)
from pathlib import Path
from edge.train.distill import distill_student_cmd
print(json.dumps(distill_student_cmd(Path('$TEACHER'), Path('$OUT'), $MINUTES, 2, 512, 50, 0), indent=2))
" > "$OUT/student.log" 2>&1 &
wait
echo "distilled into $OUT: $(ls "$OUT")"
