#!/usr/bin/env bash
# Stage 2 of sweep 3 (issue 12; docs/benchmarks.md section 5a): the auxiliary photos (.gpu3/aux.zip from bench.device.pack_photos, carried), prep.py
# --auxiliary, then seed ensembles, a train+validation refit and 10-epoch schedules side by side; every model's served
# test probabilities come back for `bench.ensemble score`. Run as: STAGE=/tmp/gstage bash bench/device/sweep3.sh
# (round 2, after rm -rf /tmp/prep_refit /tmp/sweep3 /tmp/sweep3_refit: MAIN_RUNS=E@1,...,E@6 REFIT_RECIPE=E REFIT_SEEDS=42,7,1,2 REFIT_PARALLEL=4 with E = the 10-epoch recipe).
set -uo pipefail
export PYTHONUNBUFFERED=1
S=${STAGE:-/tmp/gstage}
test -d $S/site -a -d $S/abid/bin-images || { echo "stage 1 is missing: run bench/device/sweep3_stage1.sh first"; exit 3; }
export PYTHONPATH=$S/site:$PWD/training_code
start=$(date +%s)
python3 - <<PY || exit 1
import json, os, zipfile
zipfile.ZipFile("${AUX_ZIP:-.gpu3/aux.zip}").extractall("$S/abid"); os.makedirs("$S/abid/metadata", exist_ok=True)
for name in ("counts.csv", "counts_aux.csv"):
    for line in open(f"$S/abid/{name}"):
        i, q = line.strip().split(","); json.dump({"EXPECTED_QUANTITY": int(q)}, open(f"$S/abid/metadata/{i}.json", "w"))
PY
(cd training_code && python3 prep.py --source $S/abid --output /tmp/prep --workers 16 --auxiliary 2>&1 | tail -3)
cp /tmp/prep/summary.json $OUT/prep_summary.json
python3 - <<'PY' || exit 1
# train + validation as one train channel (the refit); validation and test unchanged (links)
import json, os, numpy as np
P, R = "/tmp/prep", "/tmp/prep_refit"
os.makedirs(f"{R}/train", exist_ok=True)
a, b = (np.load(f"{P}/{s}/images.npy", mmap_mode="r") for s in ("train", "validation"))
np.save(f"{R}/train/images.npy", np.concatenate([a, b]))
la, lb = (json.load(open(f"{P}/{s}/labels.json")) for s in ("train", "validation"))
json.dump({**la, "ids": la["ids"] + lb["ids"], "counts": la["counts"] + lb["counts"]}, open(f"{R}/train/labels.json", "w"))
for src, dst in (("train/auxiliary", "train/auxiliary"), ("validation", "validation"), ("test", "test")):
    os.symlink(f"{P}/{src}", f"{R}/{dst}")
print("refit train", len(a) + len(b))
PY
echo "data ready after $(( $(date +%s) - start )) s"
D=lite0-im-160-e4-cl0.5-aux-flip4
timeout ${SWEEP_SECONDS:-370} python3 -m bench.recipe_sweep --prepared /tmp/prep --out /tmp/sweep3 --parallel ${PARALLEL:-10} --threads 1 --extra "--workers 2" \
  --recipes ${MAIN_RUNS:-$D@42,$D@7,$D@1,$D@2,$D@3,$D@4,lite0-im-160-e10-cl0.5-aux-flip4@42,lite0-im-160-e10-cl0.5-aux-flip4@7,lite0-im-192-e10-bb0.3-cl0.5-aux-flip4@42,lite0-im-192-e10-bb0.3-cl0.5-aux-flip4@7} > /tmp/sweep3.log 2>&1 &
timeout ${SWEEP_SECONDS:-370} python3 -m bench.recipe_sweep --prepared /tmp/prep_refit --out /tmp/sweep3_refit --parallel ${REFIT_PARALLEL:-3} --threads 1 \
  --extra "--workers 2 --keep last" --recipes ${REFIT_RECIPE:-$D} --seeds ${REFIT_SEEDS:-42,7,1} > /tmp/sweep3_refit.log 2>&1 &
wait
echo "sweeps done after $(( $(date +%s) - start )) s"; tail -n 12 /tmp/sweep3.log /tmp/sweep3_refit.log
cp /tmp/sweep3/sweep.json $OUT/sweep3.json; cp /tmp/sweep3_refit/sweep.json $OUT/sweep3_refit.json
for s in sweep3 sweep3_refit; do
  models=$(for f in /tmp/$s/*/output/evaluation.json; do [ -f "$f" ] && echo $(dirname $(dirname $f))/model; done)
  prefix=""; [ $s = sweep3_refit ] && prefix=refit-
  [ -n "$models" ] && python3 -m bench.ensemble dump --test /tmp/prep/test --models $models --out $OUT/probs_$s.npz --prefix "$prefix" 2>&1 | tail -15
done
tail -c 3000 /tmp/sweep3/*192*s42/train.log > $OUT/train_192_s42.log 2>/dev/null
echo "all done after $(( $(date +%s) - start )) s"
