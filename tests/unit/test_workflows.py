"""The GitHub workflow runs the policy pack on a staging preview and scans prod's images."""

import yaml

from tests.program import ROOT


def _runs(job: str) -> str:
    jobs = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())["jobs"]
    return "\n".join(step.get("run", "") for step in jobs[job]["steps"])


def test_policy_preview_runs_pulumi_preview_with_the_staging_policy_config():
    preview = next(
        line for line in _runs("policy-preview").splitlines() if "pulumi preview" in line
    )
    assert "--policy-pack policies" in preview
    assert "--policy-pack-config policies/config/staging.json" in preview


def test_image_scan_runs_trivy_over_the_prod_image_list():
    runs = _runs("image-scan")
    assert "napdms_ops images --stack prod" in runs and "trivy image" in runs
