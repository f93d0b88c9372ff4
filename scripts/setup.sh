#!/usr/bin/env bash
# Create .venv and install ase-proxima with everything it needs (idempotent).
#   scripts/setup.sh        the package with its plots and quantum-chemistry (PySCF) extras, and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ase-proxima needs Python >= 3.11")'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[plots,qc,test]"
