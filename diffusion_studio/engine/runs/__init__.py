"""Training runs: one folder per run under a runs directory, listed, compared, managed.

A run folder (``RUNS_DIR/<name>/``) holds what the Trainer writes there
(``best.pt``, ``last.pt``, ``history.json``), evaluation reports
(``reports/<name>/report.json``) and two small files of this module:

    run.json      who the run is for the user: name, tags, notes, created time,
                  a short description of its settings (written atomically)
    run.lock      the OS file lock a training process holds for its whole life
                  (``mark_running``); the operating system drops it with the process
    running.pid   who holds the lock, for display: JSON {"pid", "host", "started"}

``list_runs`` never raises for a bad run: a run whose files cannot be read is
listed with status "damaged" and the reason. Statuses (``STATUSES``):

    running        a process holds run.lock
    completed      trained all its epochs
    early stopped  the validation loss stopped improving for ``patience`` epochs
    stopped        stopped by the user, or interrupted (crash, killed process);
                   resumable from last.pt
    diverged       the loss became NaN/inf
    empty          no epoch finished yet (and nothing is training)
    damaged        history.json, a checkpoint or run.json cannot be read
    old version    made by an older app (no history.json, or one without the
                   fields this version writes); shown with what could be read

A folder is a run only when its run.json says so (``is_run``); a name means the run of
exactly that name in the runs folder, and a folder of elsewhere is reached only by a path
given as one (``resolve_run``). A new run never goes into a folder that holds a run file
(``check_new_run_folder``), and a deletion never removes a file the app did not write
(``check_deletable``).

No Qt here: the CLI (``diffusion-studio runs``) and the GUI's Runs panel share it.

The package is split by concern: ``naming`` (folder names and descriptions),
``liveness`` (the run lock, interrupted writes), ``catalogue`` (reading and listing runs,
name lookup), ``folders`` (what a folder is before the app writes or deletes: new run,
resume, delete), ``editing`` (rename, tags, notes, delete), ``verify`` (a run's files
checked in full) and ``curves`` (losses for plots); everything is importable from
``engine.runs`` itself.
"""

from __future__ import annotations

from ..text import format_duration
from ._common import (  # noqa: F401
    RUN_FILE,
    RUNNING_FILE,
    LOCK_FILE,
    HISTORY_FILE,
    REPORTS_DIR,
    CHECKPOINT_FILES,
    RUN_FILES,
    RUN_FORMAT,
    RUN_FORMAT_VERSION,
    STATUSES,
    PALETTE,
    RunError,
    default_runs_dir,
    color_for,
    format_number,
)
from .naming import (  # noqa: F401
    describe_differences,
    suggest_run_name,
    new_run_dir,
    init_run,
)
from .liveness import (  # noqa: F401
    running_info,
    leftover_temp_files,
    recover_interrupted_writes,
    mark_running,
)
from .catalogue import (  # noqa: F401
    RunInfo,
    read_run,
    list_runs,
    given_as_path,
    resolve_run,
)
from .folders import (  # noqa: F401
    is_run,
    run_files_in,
    check_new_run_folder,
    prepare_resume,
    check_deletable,
)
from .editing import (  # noqa: F401
    rename_run,
    set_tags,
    set_notes,
    deletable_runs,
    delete_run,
)
from .verify import (  # noqa: F401
    FileCheck,
    verify_run,
)
from .curves import (  # noqa: F401
    load_curves,
    X_AXES,
    smooth,
)

__all__ = [
    "format_duration",
    "RUN_FILE",
    "RUNNING_FILE",
    "LOCK_FILE",
    "HISTORY_FILE",
    "REPORTS_DIR",
    "CHECKPOINT_FILES",
    "RUN_FILES",
    "RUN_FORMAT",
    "RUN_FORMAT_VERSION",
    "STATUSES",
    "PALETTE",
    "RunError",
    "default_runs_dir",
    "color_for",
    "format_number",
    "describe_differences",
    "suggest_run_name",
    "new_run_dir",
    "init_run",
    "running_info",
    "leftover_temp_files",
    "recover_interrupted_writes",
    "mark_running",
    "RunInfo",
    "read_run",
    "list_runs",
    "given_as_path",
    "resolve_run",
    "is_run",
    "run_files_in",
    "check_new_run_folder",
    "prepare_resume",
    "check_deletable",
    "rename_run",
    "set_tags",
    "set_notes",
    "deletable_runs",
    "delete_run",
    "FileCheck",
    "verify_run",
    "load_curves",
    "X_AXES",
    "smooth",
]
