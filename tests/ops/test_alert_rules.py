"""deploy/prometheus: the alert rules are valid, do what their unit tests say, and name only
metrics a running gateway exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import yaml

from tests.conftest import Gateway

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary is not None, "promtool is missing (Debian's prometheus package)"
    return subprocess.run([binary, *args], cwd=RULES, capture_output=True, text=True)


def test_the_rules_are_valid_and_pass_their_unit_tests() -> None:
    checked = promtool("check", "rules", "vllm-gateway-alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "vllm-gateway-alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_metric_the_rules_use_is_exported(gateway: Gateway) -> None:
    rules = yaml.safe_load((RULES / "vllm-gateway-alerts.yml").read_text())
    used = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\bvgw_[a-z_]+", rule["expr"])
    }
    _, key = gateway.create_key(models=["sim-model"])
    for model, status in (("sim-model", 200), ("other-model", 403)):  # a served, a refused
        answer = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert answer.status_code == status
    exported = httpx.get(
        f"{gateway.url}/metrics", headers={"authorization": f"Bearer {gateway.admin_key}"}
    ).text
    names = set(re.findall(r"^(vgw_[a-z_]+)", exported, flags=re.M))
    assert used and used <= names, used - names
