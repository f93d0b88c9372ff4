"""Worker of :class:`~ase_proxima.surrogates.deepmd.DeePMDEnsemble`: train every member in one process.

``python -m ase_proxima.surrogates._deepmd_train jobs.json`` where ``jobs.json``
lists ``{"dir": member directory holding input.json, "init_model": checkpoint
to warm-start from or null}``.  deepmd-kit writes its checkpoint
(``model.ckpt.pt``) and learning curve into the working directory, so each
member trains with that directory as the working directory.
"""

from __future__ import annotations

import json
import os
import sys


def main(jobs_file: str) -> None:
    from deepmd.pt.entrypoints.main import train

    jobs = json.loads(open(jobs_file).read())
    for job in jobs:
        os.chdir(job["dir"])
        train(input_file="input.json", init_model=job["init_model"], restart=None, finetune=None,
              init_frz_model=None, model_branch="", skip_neighbor_stat=True, output="out.json")


if __name__ == "__main__":
    main(sys.argv[1])
