"""What a long-running app server needs: background jobs with a server-wide registry and limit, hosted
visitors with their uploads, clean-up and disk budget, and the start-up warm-up of the first Train page."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
    from cnnlab.server.jobs import Job, JobSettings, find_job, visible_jobs

__all__ = ["Job", "JobSettings", "find_job", "visible_jobs"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Job": "jobs",
        "JobSettings": "jobs",
        "find_job": "jobs",
        "visible_jobs": "jobs",
    },
)
