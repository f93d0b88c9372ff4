#!/usr/bin/env bash
# Create .venv and install ase-proxima with everything it needs (idempotent).
#   .venv        the package with its plots, quantum-chemistry (PySCF), xTB (tblite), asap3 and deepmd-kit
#                extras,
#                and the test tools
#   .venv-psi4   Debian's Python with Debian's psi4 and ASE: the interpreter of the Psi4 bridge
#                (Psi4 is not on PyPI; Debian's build imports only under Debian's Python and numpy 1.x)
#   postgresql   Debian's PostgreSQL server binaries, for the shared-store tests (the tests start
#                and stop their own throw-away server)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ase-proxima needs Python >= 3.11")'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# deepmd-kit's PyPI wheel is compiled for another torch and refuses to load beside the CPU
# torch 2.13.0 these machines carry: install that torch first, then build deepmd-kit against it
# (about 4 minutes the first time; pip caches the wheel)
.venv/bin/python -m pip install --quiet "torch==2.13.0"
DP_ENABLE_TENSORFLOW=0 DP_ENABLE_PYTORCH=1 DP_VARIANT=cpu \
    .venv/bin/python -m pip install --quiet --no-binary deepmd-kit -e ".[plots,qc,xtb,test,asap,nn,deepmd,cluster]"

debian_psi4() {  # in a scratch directory: psi4 leaves timer.dat in its working directory on exit
    (cd "$(mktemp -d)" && /usr/bin/python3 -c "import sys; sys.path.append('/usr/lib/x86_64-linux-gnu'); import psi4, scipy") 2>/dev/null
}
if [ ! -x .venv-psi4/bin/python ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        if ! debian_psi4; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                psi4 python3-scipy python3-venv >/dev/null
        fi
        ase_version=$(.venv/bin/python -c 'import ase; print(ase.__version__)')
        /usr/bin/python3 -m venv --system-site-packages .venv-psi4
        # --no-deps: ASE must run on Debian's numpy/scipy, the ones psi4 was built against
        .venv-psi4/bin/python -m pip install --quiet --no-deps "ase==$ase_version"
    else
        echo "note: no Psi4 bridge (it needs Debian's apt-get as root); Psi4 tests will be skipped" >&2
    fi
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    else
        echo "note: no PostgreSQL server binaries (they need Debian's apt-get as root); its tests will be skipped" >&2
    fi
fi
