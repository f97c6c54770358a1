from napdms_ops.cli import app

app(prog_name="napdms-ops")
