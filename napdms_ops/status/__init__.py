"""`napdms-ops status`: every environment at a glance.

Per stack a lifecycle (provisioning, ready, degraded, recovering, retired; `lifecycle.py`),
derived from the health of its services (`health.py`, fed by Docker and by the stack's own
Prometheus, `prometheus.py`) and from its latest drift report (`drift_input.py`); `report.py`
puts them together, `view.py` prints them and `commands.py` is the command line.
"""
