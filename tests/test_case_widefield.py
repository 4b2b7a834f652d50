"""The widefield case study in its quick form (slow; skipped without ../shared/data)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_widefield_case_study_quick(shared_data, tmp_path):
    script = Path(__file__).resolve().parents[1] / "case_studies" / "widefield_states.py"
    cmd = [sys.executable, str(script), "--data", str(shared_data), "--out", str(tmp_path)]
    subprocess.run([*cmd, "--quick"], check=True, timeout=1200)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) >= {"protocol", "baselines_K3", "fits", "summary_K3_D6", "wall_seconds"}
    fit = metrics["fits"]["srnn_K3_D6_s0"]
    for key in ("state_accuracy", "state_balanced_error"):
        assert 0.0 <= fit[key] <= 1.0
        assert 0.0 <= metrics["baselines_K3"]["kmeans_pca"][key] <= 1.0
    assert fit["recon_r2"] > 0.5  # 48 parcels through D = 6 latents, even after few steps
    assert sum(fit["test_state_occupancy"]) == 1000  # 10 test windows of 100 frames
    for name in metrics["figures"]:
        assert (tmp_path / name).stat().st_size > 0
