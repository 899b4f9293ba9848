"""What a long-running app server needs: background jobs with a server-wide registry and limit, and
hosted visitors with their uploads, clean-up and disk budget."""

from cnnlab.server.jobs import Job, JobSettings, find_job, visible_jobs

__all__ = ["Job", "JobSettings", "find_job", "visible_jobs"]
