"""One app process of the sharing test: a session of the whole app (`streamlit_app.py` in AppTest, its
per-run housekeeping and clean-up included) in a process of its own, on the models and cache folders
its environment names, as one `streamlit run` server of a team would run it.

Driven by one JSON command a line on standard input; each answer is one line on standard output
that starts with `ANSWER` (anything else there is the app's or TensorFlow's own output):

    {"op": "list"}                          -> {"runs": {id: {"name", "status"}}}, from the Runs page
    {"op": "list_until", "path": "..."}     -> the Runs page again and again until `path` exists,
                                               and once after: {"listings": n before, "seen": [ids]}
    {"op": "resume", "run": id}             -> {"started": bool, "errors": [...], "refused": "..."}
    {"op": "wait"}                          -> the resumed job once it ended: {"status", "error", "epochs"}
    {"op": "rename", "run": id, "name": s}  -> {"errors": [...], "refused": "..."}

Every page run runs the app's clean-up (`hosting.tidy` on the shared folders), not only the
first one in a minute as in a server, so that it runs as often as possible while others write.

    PYTHONPATH=. python tests/app_process.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from cnnlab_ui.shell import _last_cleanup
from helpers import open_page, start_app, wait_for_job

ANSWER = "ANSWER "


def tidy_on_every_run() -> None:
    """Forget when the clean-up last ran, so the next page run runs it again."""
    _last_cleanup.clear()


def runs_page(at) -> Any:
    tidy_on_every_run()
    return open_page(at, "pages/runs.py")


def listed(at) -> dict[str, dict[str, str]]:
    table = runs_page(at).dataframe[0].value
    return {row["id"]: {"name": row["name"], "status": row["status"]} for row in table.to_dict("records")}


def manage(at, run_id: str) -> Any:
    at = runs_page(at)
    at.selectbox(key="manage-run").set_value(run_id).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def resume(at, run_id: str) -> dict[str, Any]:
    at = manage(at, run_id)
    offered = [b for b in at.button if b.label == "Resume"]
    if not offered:  # another process trains it already: the page says so instead
        said = [c.value for c in at.caption if "another process" in c.value] or [c.value for c in at.caption]
        return {"started": False, "errors": [], "refused": " ".join(said)}
    offered[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    return {"started": "job" in at.session_state, "errors": [e.value for e in at.error], "refused": ""}


def rename(at, run_id: str, name: str) -> dict[str, Any]:
    at = manage(at, run_id)
    box = next(t for t in at.text_input if t.label == "New name")
    if box.disabled:  # training in this or another process: the page offers no rename
        return {"errors": [], "refused": " ".join(c.value for c in at.caption if "cannot be renamed" in c.value)}
    box.set_value(name).run()
    next(b for b in at.button if b.label == "Rename").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return {"errors": [e.value for e in at.error], "refused": ""}


def list_until(at, path: str) -> dict[str, Any]:
    """List until `path` exists, then once more: `listings` counts those before it existed."""
    listings, seen = 0, set()
    while not Path(path).exists():
        seen |= set(listed(at))
        listings += 1
        time.sleep(0.2)
    # A process busy starting its resume may reach this only after the others finished writing;
    # the last listing shows what it sees then.
    seen |= set(listed(at))
    return {"listings": listings, "seen": sorted(seen)}


def wait(at) -> dict[str, Any]:
    job = wait_for_job(at, "job")
    return {"status": job.status, "error": job.error, "epochs": len(job.history)}


def main() -> None:
    at = start_app()
    print(ANSWER + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "quit":
            break
        if op == "list":
            answer: dict[str, Any] = {"runs": listed(at)}
        elif op == "list_until":
            answer = list_until(at, command["path"])
        elif op == "resume":
            answer = resume(at, command["run"])
        elif op == "wait":
            answer = wait(at)
        elif op == "rename":
            answer = rename(at, command["run"], command["name"])
        else:
            answer = {"error": f"unknown op {op!r}"}
        print(ANSWER + json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
