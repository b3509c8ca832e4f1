#!/usr/bin/env bash
# Install the launcher extras' requirements (read from pyproject.toml) into fresh virtual
# environments in several orders and run `pip check` after each step: the pins must keep it
# clean whatever the order (hydra-ray-launcher 1.2.2 needs cloudpickle<3, joblib 1.6 needs >=3).
#   bench/clients/check_launcher_extras.sh [ORDER ...]    # ORDER like joblib-ray-submitit
set -euo pipefail
cd "$(dirname "$0")/../.."
orders=("$@")
[[ ${#orders[@]} -gt 0 ]] || orders=(joblib-ray-submitit submitit-ray-joblib ray-submitit-joblib)
for order in "${orders[@]}"; do
    dir=$(mktemp -d)/venv
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install -q --upgrade pip
    for extra in ${order//-/ }; do
        mapfile -t reqs < <(python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['$extra']))")
        "$dir/bin/python" -m pip install -q "hydra-core>=1.3,<1.4" "${reqs[@]}"
        echo -n "$order, after $extra: "
        "$dir/bin/python" -m pip check || { echo "FAILED: pip check after $extra ($order)"; exit 1; }
    done
    rm -rf "$(dirname "$dir")"
done
