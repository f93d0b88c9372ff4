"""Worker of :class:`~ase_proxima.surrogates.deepmd.DeePMDEnsemble`: train every member in one process.

``python -m ase_proxima.surrogates._deepmd_train STATUS_FD`` serves trainings: it reads the
path of a ``jobs.json`` per line on stdin and, once every member in it is trained, writes one
JSON line (``{"ok": true}`` or ``{"ok": false, "error": traceback}``) to the file descriptor
``STATUS_FD`` (deepmd-kit's own output goes to stdout and stderr, never mixed with it).  The
worker stays up between trainings, so torch and deepmd-kit are imported once per process, not
once per refit.  ``jobs.json`` lists ``{"dir": member directory holding input.json,
"init_model": checkpoint to warm-start from or null}``; deepmd-kit writes its checkpoint
(``model.ckpt.pt``) and learning curve into the working directory, so each member trains with
that directory as the working directory.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def train_jobs(jobs_file: str) -> None:
    from deepmd.pt.entrypoints.main import train

    with open(jobs_file) as f:
        jobs = json.load(f)
    for job in jobs:
        os.chdir(job["dir"])
        train(input_file="input.json", init_model=job["init_model"], restart=None, finetune=None,
              init_frz_model=None, model_branch="", skip_neighbor_stat=True, output="out.json")


def serve(status_fd: int) -> None:
    status = os.fdopen(status_fd, "w", buffering=1)
    home = os.getcwd()
    for line in sys.stdin:
        jobs_file = line.strip()
        if not jobs_file:
            continue
        try:
            train_jobs(jobs_file)
            reply = {"ok": True}
        except Exception:  # reported to the caller, which raises it there; the worker stays up
            reply = {"ok": False, "error": traceback.format_exc()[-3000:]}
        finally:
            os.chdir(home)
        status.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    serve(int(sys.argv[1]))
