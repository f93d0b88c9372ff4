"""Psi4 worker process for :class:`ase_proxima.targets.psi4_bridge.Psi4Bridge`.

Runs under an interpreter where ``import psi4`` works (Debian's Python with its
psi4 package) and depends only on ASE there, not on ase_proxima.  Protocol:
one JSON object per line on stdin, one JSON reply per line on the original
stdout; everything Psi4 itself prints is sent to stderr so it cannot corrupt
the replies.

Request: ``{"numbers": [...], "positions": [[x, y, z], ...], "properties": [...],
"settings": {"method", "basis", "charge", "multiplicity", "memory", "num_threads"}}``
Reply:   ``{"energy": eV, "forces": [[...]]}`` or ``{"error": message, "type": name}``.
"""

import json
import os
import sys
import tempfile

DEBIAN_PSI4 = "/usr/lib/x86_64-linux-gnu"


def main():
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # Psi4's own printing goes to stderr, never into the protocol stream
    sys.stdout = sys.stderr
    if DEBIAN_PSI4 not in sys.path and os.path.isdir(os.path.join(DEBIAN_PSI4, "psi4")):
        sys.path.append(DEBIAN_PSI4)
    from ase import Atoms
    from ase.calculators.psi4 import Psi4

    scratch = tempfile.mkdtemp(prefix="proxima-psi4-")
    calc = None
    key = None
    proto.write(json.dumps({"ready": True}) + "\n")
    proto.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            s = req["settings"]
            new_key = json.dumps(s, sort_keys=True)
            if calc is None or new_key != key:
                calc = Psi4(
                    method=s["method"],
                    basis=s["basis"],
                    charge=s["charge"],
                    multiplicity=s["multiplicity"],
                    memory=s["memory"],
                    num_threads=s["num_threads"],
                    label=os.path.join(scratch, "psi4"),
                )
                key = new_key
            atoms = Atoms(numbers=req["numbers"], positions=req["positions"])
            reply = {"energy": float(calc.get_potential_energy(atoms))}
            if "forces" in req["properties"]:
                reply["forces"] = calc.get_forces(atoms).tolist()
        except Exception as err:  # reported to the parent, which raises it there
            reply = {"error": str(err), "type": type(err).__name__}
        proto.write(json.dumps(reply) + "\n")
        proto.flush()


if __name__ == "__main__":
    main()
