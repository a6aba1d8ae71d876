#!/usr/bin/env bash
# Create and fill the project's virtual environment (default .venv) on a machine that has only
# Python >= 3.11 and pip. Idempotent: re-running only installs what changed.
set -euo pipefail
VENV="${1:-.venv}"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PYTHON="$cand"; break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "bootstrap: need Python >= 3.11 on PATH (or set PYTHON=...)" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build; 2.13.0
# resolves to a local CPU build on the project's machines.
if ! "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
  echo "bootstrap: installing torch==2.13.0 (CPU)"
  "$VENV/bin/python" -m pip install -q "torch==2.13.0"
fi
echo "bootstrap: installing shopsim and its dependencies"
# strict editable mode: static analysers (mypy) can see through it. The notebooks extra runs
# notebooks/ in CI (make test-notebooks).
# scripts/constraints.txt: the exact versions of every dependency (reproducible CI and README blocks).
"$VENV/bin/python" -m pip install -q -c "$(dirname "$0")/constraints.txt" -e ".[dev,notebooks,ray,browser]" \
  --config-settings editable_mode=strict
touch "$VENV/.installed"
