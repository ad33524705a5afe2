"""Table-refresh jobs."""

from __future__ import annotations

from pydantic import BaseModel, Field

from census_mcp.untrusted import quote


class RefreshJobStatus(BaseModel):
    source_id: int
    refresh_key: int = Field(description="Pass to get_refresh_tables_status.")
    status: str = Field(description="processing or completed.")


def refresh_text(job: RefreshJobStatus, *, started: bool, waited: bool = False) -> str:
    job_ref = f"source #{job.source_id} (refresh_key {job.refresh_key})"
    arguments = f"source_id={job.source_id}, refresh_key={job.refresh_key}"
    check = f"Check on it with get_refresh_tables_status({arguments})"
    if started and waited:
        return f"The table refresh of {job_ref} is still processing after the wait. {check}."
    if started:
        return f"Started refreshing the tables of {job_ref}. {check}."
    if job.status == "completed":
        return f"The table refresh of {job_ref} has completed. list_source_tables shows the tables."
    return f"The table refresh of {job_ref} is still {quote(job.status, 20)}. {check} again in a few seconds."
