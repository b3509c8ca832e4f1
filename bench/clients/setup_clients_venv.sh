#!/usr/bin/env bash
# Build .venv-clients: the project (editable, with its three Hydra launcher extras) plus the RL
# libraries users train our environments with -- Stable-Baselines3, Tianshou and RLlib -- beside
# the same torch 2.13.0 CPU wheel as .venv. The clients never go into the project's own .venv.
#
#   bench/clients/setup_clients_venv.sh          # idempotent: does nothing when up to date
#   VENV_CLIENTS=/path bench/clients/setup_clients_venv.sh
#
# ray[rllib] pins gymnasium (1.2.2 for ray 2.x): our gymnasium requirement is a range, so
# pip picks the version every client accepts. Checks at the end that torch is still 2.13.0.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV_CLIENTS="${VENV_CLIENTS:-.venv-clients}"
PY="$VENV_CLIENTS/bin/python"
STAMP="$VENV_CLIENTS/.installed"
TORCH_VERSION="2.13.0"
CLIENTS=("stable-baselines3==2.9.2" "tianshou==2.0.1" "ray[rllib]==2.60.0")

if [[ -f "$STAMP" && "$STAMP" -nt pyproject.toml && "$STAMP" -nt constraints-dev.txt && -x "$PY" ]]; then
    echo "$VENV_CLIENTS is up to date ($(cat "$STAMP"))"
    exit 0
fi

test -x "$PY" || python3 -m venv "$VENV_CLIENTS"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q -c constraints-dev.txt "torch==$TORCH_VERSION"
"$PY" -m pip install -q -c constraints-dev.txt "${CLIENTS[@]}" -e '.[joblib,submitit,ray]' pytest hypothesis
"$PY" -m pip check

versions="$("$PY" - <<PYEOF
import gymnasium, pettingzoo, ray, stable_baselines3, tianshou, torch
assert torch.__version__.split("+")[0] == "$TORCH_VERSION", f"torch changed to {torch.__version__}"
print(f"torch {torch.__version__}, sb3 {stable_baselines3.__version__}, tianshou {tianshou.__version__}, "
      f"ray {ray.__version__}, gymnasium {gymnasium.__version__}, pettingzoo {pettingzoo.__version__}")
PYEOF
)"
echo "$versions" > "$STAMP"
echo "$VENV_CLIENTS ready: $versions"
