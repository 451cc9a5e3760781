#!/usr/bin/env bash
# The demo: verify one example change to the bundled shop app, in real VMs, with the embedded
# defaults (SQLite + embedded broker). Prints the verdict and the path of the HTML report.
# Usage: scripts/demo.sh [CHANGE_ID]   (ids: examples/shop/changes/manifest.yml)
set -euo pipefail
cd "$(dirname "$0")/.."
change=${1:-layout-shift-banner}
scripts/bootstrap.sh
# The run store Diffie uses from any directory (DIFFIE_DATA_DIR, default ~/.local/share/diffie),
# so `diffie runs show ID` finds the demo's run afterwards.
data_dir=$(.venv/bin/diffie status --field data_dir)
echo "[demo] building (or reusing) the shop VM image" >&2
.venv/bin/diffie image build shop
repo="$data_dir/demo/$change"
echo "[demo] materialising example change '$change' as a git repository in $repo" >&2
read -r base head < <(.venv/bin/python -m examples.corpus materialize "$change" "$repo")
echo "[demo] verifying $base..$head in VMs" >&2
set +e
.venv/bin/diffie verify --repo "$repo" --base "$base" --head "$head" --wait
code=$?
set -e
echo "[demo] diffie verify exited $code (0 pass, 1 fail, 3 changed, 2 error)" >&2
# A changed or failed verdict is the demo working: only an error is a demo failure.
[ "$code" -ne 2 ]
