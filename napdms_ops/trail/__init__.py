"""The tamper-evident audit trail: one hash-chained JSON line per state-changing command in
`<state dir>/audit/<stack>.jsonl`, copied to a mirror the operator cannot quietly edit.

    from napdms_ops.trail import record, records
    record("prod", "restore", "ok", service="postgres", changes={"snapshot": "4f1c"})
"""

from napdms_ops.trail.chain import TrailRecord
from napdms_ops.trail.store import TrailError, record, records

__all__ = ["TrailError", "TrailRecord", "record", "records"]
