"""Job ids: deterministic, so a re-delivered event maps to the same result prefix."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def job_id_for(bucket: str, key: str, version: str, effective: Mapping[str, Any]) -> str:
    """Deterministic id from bucket, key, object version (or ETag) and the effective parameters.

    Unset optional parameters (None) are left out: None means "not set" for each of them, so
    adding an optional parameter (as the SDXL refiner's were) does not change the id of a job
    that leaves it unset, and a re-run batch still finds those jobs' complete results.
    """
    given = {name: value for name, value in effective.items() if value is not None}
    canonical = json.dumps(
        {"bucket": bucket, "key": key, "version": version, "params": given},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def fallback_job_id(raw_input: Any) -> str:
    """An id for inputs that never became a job (Prepare failed): a hash of the raw input."""
    canonical = json.dumps(raw_input, sort_keys=True, default=str, separators=(",", ":"))
    return "invalid-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
