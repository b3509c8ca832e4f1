#!/usr/bin/env bash
# Build the benchmark virtual environment .venv-bench: the project (editable) plus d3rlpy
# 2.8.1, beside the same torch 2.13.0 CPU wheel as .venv, and pytest for the d3rlpy interop
# tests (they skip in .venv). d3rlpy is a reference library for the side-by-side benchmarks
# and those tests only and never goes into the project's own .venv.
#
#   bench/setup_bench_venv.sh            # idempotent: does nothing when already complete
#   VENV_BENCH=/path bench/setup_bench_venv.sh
#
# Checks at the end that torch is still 2.13.0 (d3rlpy must not pull another build).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV_BENCH="${VENV_BENCH:-.venv-bench}"
PY="$VENV_BENCH/bin/python"
STAMP="$VENV_BENCH/.installed"
TORCH_VERSION="2.13.0"
D3RLPY_VERSION="2.8.1"

if [[ -f "$STAMP" && "$STAMP" -nt pyproject.toml && "$STAMP" -nt constraints-dev.txt && "$STAMP" -nt "$0"
      && -x "$PY" ]]; then
    echo "$VENV_BENCH is up to date ($(cat "$STAMP"))"
    exit 0
fi

test -x "$PY" || python3 -m venv "$VENV_BENCH"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q -c constraints-dev.txt "torch==$TORCH_VERSION"
"$PY" -m pip install -q -c constraints-dev.txt "d3rlpy==$D3RLPY_VERSION" "pytest>=7" -e .

versions="$("$PY" - <<PYEOF
import d3rlpy, pytest, torch
assert torch.__version__.split("+")[0] == "$TORCH_VERSION", f"torch changed to {torch.__version__}"
assert d3rlpy.__version__ == "$D3RLPY_VERSION", f"d3rlpy is {d3rlpy.__version__}"
print(f"torch {torch.__version__}, d3rlpy {d3rlpy.__version__}")
PYEOF
)"
echo "$versions" > "$STAMP"
echo "$VENV_BENCH ready: $versions"
