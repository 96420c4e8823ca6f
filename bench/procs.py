"""Child processes of the benchmark: free ports, start-up waits, graceful stops, RSS and CPU."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    """Whether something accepts connections on a loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait until `process` listens on `port`; fail fast if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} on start")
        if port_open(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{process.args!r} did not listen on port {port} in {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """Stop a child the way an operator would (SIGTERM), killing it only if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces or parentheses: fields start after the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (uvicorn forks workers only when asked for several)."""
    tree, index = [pid], 0
    while index < len(tree):
        tree.extend(_children(tree[index]))
        index += 1
    return tree


def _status_mb(pid: int, field: str) -> float:
    return _sum_status_mb(process_tree(pid), field)


def _sum_status_mb(pids: list[int], field: str) -> float:
    total_kb = 0
    for member in pids:
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith(field):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants now, in MiB (VmRSS)."""
    return _status_mb(pid, "VmRSS:")


def rss_mb_of(pids: list[int]) -> float:
    """Resident memory of these processes now, in MiB: for sampling a tree found once."""
    return _sum_status_mb(pids, "VmRSS:")


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process and its descendants, in MiB (VmHWM)."""
    return _status_mb(pid, "VmHWM:")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process and its descendants have used so far."""
    ticks = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / _CLOCK_TICKS


def preemptions(pid: int) -> int:
    """Times the threads of a process and its descendants were taken off a core while they
    could still run (involuntary context switches, /proc/*/task/*/status), so far."""
    count = 0
    for member in process_tree(pid):
        try:
            tasks = list(Path(f"/proc/{member}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                status = (task / "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("nonvoluntary_ctxt_switches:"):
                    count += int(line.split()[1])
    return count
