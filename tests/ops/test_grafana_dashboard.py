"""deploy/grafana/vllm-gateway.json: every query is valid PromQL and names only metrics a
running gateway declares, so the dashboard cannot drift from the code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import yaml

from tests.conftest import BACKEND_KEY, Gateway
from tests.support.processes import start_gateway
from tests.support.servers import RunningServer

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "vllm-gateway.json"
# Grafana's own variables, as Grafana would substitute them.
ADMIN_KEY = "dashboard-admin-" + "a" * 24
VARIABLES = {"$__rate_interval": "1m", '"$instance"': '".*"'}


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append(expr)
    return found


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses PromQL in rule files: one recording rule per panel query.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": expr}
                    for n, expr in enumerate(queries())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    binary = shutil.which("promtool")
    assert binary is not None, "promtool is missing (Debian's prometheus package)"
    checked = subprocess.run([binary, "check", "rules", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert len(queries()) >= 20


def used_metrics() -> set[str]:
    return {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for expr in queries()
        for name in re.findall(r"\bvgw_[a-z_]+", expr)
    }


def declared_metrics(url: str, admin_key: str) -> set[str]:
    exported = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {admin_key}"})
    assert exported.status_code == 200, exported.text
    declared = set(re.findall(r"^# HELP (vgw_[a-z_]+)", exported.text, flags=re.M))
    return declared | {name + "_total" for name in declared}  # counters are declared without it


def test_every_metric_on_the_dashboard_is_declared(gateway: Gateway) -> None:
    used = used_metrics()
    declared = declared_metrics(gateway.url, gateway.admin_key)
    assert used <= declared, used - declared


def test_several_workers_declare_them_too(
    tmp_path: Path, simulator: RunningServer, redis_url: str
) -> None:
    # With workers, /metrics is read from the shared files, plus each worker's live collectors.
    gateway = start_gateway(
        tmp_path, "workers", backend_url=f"{simulator.url}/v1", backend_key=BACKEND_KEY,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}", admin_key=ADMIN_KEY,
        redis_url=redis_url, args=("--workers", "2"),
    )  # fmt: skip
    # Shared files hold only what has a value (a labelled metric shows after its first use);
    # the gauges of the backends and of the parts are there from the start, on every worker.
    always = {
        "vgw_backend_up",
        "vgw_backend_in_flight",
        "vgw_backend_waiting",
        "vgw_backend_kv_usage",
        "vgw_part_up",
        "vgw_usage_events_pending",
    }
    try:
        assert always <= used_metrics()
        for _ in range(4):  # either worker may answer
            declared = declared_metrics(gateway.url, ADMIN_KEY)
            assert always <= declared, always - declared
    finally:
        gateway.stop()
