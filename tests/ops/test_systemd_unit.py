"""deploy/systemd/vllm-gateway@.service: systemd accepts it, and the gateway its command line."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from vllm_gateway.cli import cli
from vllm_gateway.settings import Settings

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "vllm-gateway@.service"
SHIPPED_BINARY = "/opt/vllm-gateway/.venv/bin/vllm-gateway"


def service_section() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_systemd_verifies_the_unit(tmp_path: Path) -> None:
    # The shipped path is where an operator installs it; here, this checkout's command.
    binary = Path(sys.executable).parent / "vllm-gateway"
    assert binary.exists()
    instance = tmp_path / "vllm-gateway@8001.service"
    instance.write_text(UNIT.read_text().replace(SHIPPED_BINARY, str(binary)))
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing (Debian's systemd package)"
    checked = subprocess.run([analyze, "verify", str(instance)], capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr


def test_the_unit_runs_a_command_and_settings_the_gateway_has() -> None:
    service = service_section()
    command = shlex.split(service["ExecStart"].replace("%i", "8001"))
    assert command[0] == SHIPPED_BINARY
    group = cli.make_context("vllm-gateway", command[1:])
    name, serve, arguments = cli.resolve_command(group, command[1:])  # refuses unknown commands
    assert name is not None and serve is not None
    parsed = serve.make_context(name, arguments, parent=group)  # refuses unknown flags
    assert (name, parsed.params["port"]) == ("serve", 8001)
    fields = set(Settings.model_fields)
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            name = line.removeprefix("Environment=").split("=", 1)[0]
            assert name.lower() in fields, name
    # systemd waits longer than the gateway's drain before it kills.
    grace = Settings.model_fields["gateway_shutdown_grace"].default
    assert int(service["TimeoutStopSec"]) > grace
