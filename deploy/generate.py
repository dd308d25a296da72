"""Regenerate the Helm chart's copies of the deploy artifacts from their one source.

    python deploy/generate.py

- deploy/grafana/dashboard.py  -> helm/schedule-reconciler/dashboards/schedule-reconciler.json
- deploy/prometheus/alerts.yaml -> helm/schedule-reconciler/files/alerts.yaml (a byte copy:
  Helm's .Files only reaches files inside the chart)

tests/deploy/test_generated.py fails when a committed copy differs from this output.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yaml"
CHART_ALERTS = REPO / "helm" / "schedule-reconciler" / "files" / "alerts.yaml"


def main() -> int:
    dashboard = runpy.run_path(str(REPO / "deploy" / "grafana" / "dashboard.py"))
    dashboard["main"]()
    CHART_ALERTS.parent.mkdir(parents=True, exist_ok=True)
    CHART_ALERTS.write_bytes(ALERTS.read_bytes())
    print(f"wrote {CHART_ALERTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
