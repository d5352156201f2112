"""What ``perception vehicle install`` writes besides engines: the node's parameters, the DDS environment and
the systemd unit (pure text generation from a :class:`~perception.vehicle.config.RigConfig`).

The unit (``<service.name>.service``):
  Type=notify + NotifyAccess=main  READY=1 once the model is loaded and a warm-up inference answered
  WatchdogSec                      the node pings only while its inference worker answers
  Restart=on-failure, RestartSec   + StartLimitIntervalSec / StartLimitBurst: a node that keeps failing
                                   stops being restarted (the unit enters failed: visible, not a restart loop)
  TimeoutStartSec                  model load + warm-up; TimeoutStopSec: SIGTERM, then SIGKILL after it
  CPUQuota / CPUAffinity, MemoryMax, Nice   resource limits (cgroup v2)
  Environment=                     the DDS choice (dds.profile), ROS_DOMAIN_ID, the engine cache
  StandardOutput/StandardError=journal, SyslogIdentifier   logs in journald (`journalctl -u <name>`)

DDS (``dds.profile``): ``localhost`` is the project's loopback-only Fast DDS profile (SHM with a 32 MB
segment + UDP on ``lo``): right for a single-computer vehicle where every ROS process runs on this ECU, and
what the tests use. ``default`` leaves Fast DDS's defaults (multicast discovery on every interface; beware:
its default 512 KB SHM segment drops large images between processes). A path uses that XML profile: the
choice for a multi-ECU vehicle, whose profile must name the vehicle network's interfaces.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from perception.vehicle.config import RigConfig, ServiceConfig


@dataclass(frozen=True)
class InstallLayout:
    """Where an install under ``prefix`` puts things."""

    prefix: Path

    @property
    def etc(self) -> Path:
        return self.prefix / "etc" / "perception"

    @property
    def cache(self) -> Path:
        return self.prefix / "var" / "cache" / "perception"

    @property
    def units(self) -> Path:
        return self.prefix / "lib" / "systemd" / "system"

    @property
    def params(self) -> Path:
        return self.etc / "perception_node.params.yaml"

    @property
    def rig(self) -> Path:
        return self.etc / "vehicle.yaml"

    @property
    def manifest(self) -> Path:
        return self.etc / "install.json"

    @property
    def recorder_params(self) -> Path:
        return self.etc / "incident_recorder.params.yaml"

    def unit(self, name: str) -> Path:
        return self.units / f"{name}.service"


def node_parameters(rig: RigConfig, onnx: str, checkpoint: str, cache_dir: str) -> dict[str, Any]:
    """The perception_node parameters of this rig (``perception/ros/nodes/params.py`` names)."""
    cams = rig.cameras
    params: dict[str, Any] = {
        "autostart": True,
        "cameras": [c.name for c in cams],
        "input.topic": cams[0].topic,
        "input.transport": cams[0].transport,
        "input.camera_info": any(c.camera_info for c in cams),
        "model.checkpoint": checkpoint,
        "model.onnx": onnx,
        "model.cache_dir": cache_dir,
        "model.backend": rig.backend.name,
        "model.device": rig.backend.device,
        "model.precision": rig.model.precision,
        "model.threads": rig.backend.threads,
        "model.input_height": rig.model.input_height,
        "model.input_width": rig.model.input_width,
        "max_batch": rig.model.max_batch,
        "runtime.warmup": "enabled",
        "objects.base_frame": rig.frames.base,
    }
    if rig.lidar.topic:
        params["objects.lidar_topic"] = rig.lidar.topic
    return params


def params_yaml(node_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """A ``--params-file`` document: nested keys under ``/<node>: ros__parameters``."""
    tree: dict[str, Any] = {}
    for key, value in params.items():
        node = tree
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return {f"/{node_name}": {"ros__parameters": tree}}


def dds_environment(rig: RigConfig, localhost_profile: Path) -> dict[str, str]:
    """The DDS variables for ``dds.profile`` (see the module doc)."""
    env = {"RMW_IMPLEMENTATION": rig.dds.rmw, "ROS_DOMAIN_ID": str(rig.dds.domain_id)}
    if rig.dds.profile == "localhost":
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(localhost_profile)
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SYSTEM_DEFAULT"  # LOCALHOST would add rmw's own 512 KB SHM
    elif rig.dds.profile != "default":
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(Path(rig.dds.profile).expanduser().resolve())
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SYSTEM_DEFAULT"
    return env


def exec_start(python: str, node_name: str, params_file: Path,
               module: str = "perception.ros.nodes.perception_node") -> list[str]:
    return [python, "-m", module, "--ros-args", "-r", f"__node:={node_name}", "--params-file", str(params_file)]


RECORDER_NODE = "incident_recorder"  # its snapshot service: /incident_recorder/snapshot


def recorder_parameters(rig: RigConfig) -> dict[str, Any]:
    """The incident_recorder parameters of this rig (the keys of ``perception.vehicle.recorder.RECORDER_KEYS``)."""
    from dataclasses import asdict

    params = asdict(rig.recording.recorder)
    params["topics"] = list(params["topics"])
    return params


def recorder_service(rig: RigConfig) -> ServiceConfig:
    """The recorder's unit settings: the rig's service (watchdog, restart limits, user) with the recording
    section's resource limits; a stop timeout long enough to write the snapshots still collecting."""
    rec = rig.recording
    return replace(rig.service, name=f"{rig.service.name}-recorder", memory_max_mb=rec.memory_limit_mb,
                   cpu_quota_percent=rec.cpu_quota_percent, cpu_affinity=(), nice=rec.nice,
                   stop_timeout_sec=max(rig.service.stop_timeout_sec, 60.0), start_timeout_sec=30.0)


def _quote(arg: str) -> str:
    """systemd's command-line quoting (double quotes, backslash escapes; % doubled: specifiers)."""
    arg = arg.replace("%", "%%")
    if arg and not any(c in arg for c in " \t\"'\\;$"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _seconds(value: float) -> str:
    return f"{value:g}s"


def service_unit(rig: RigConfig, argv: list[str], env: dict[str, str], working_dir: Path,
                 service: ServiceConfig | None = None, description: str = "") -> str:
    """The ``.service`` text (see the module doc); ``service``: other unit settings than the rig's perception
    service (the recorder's: :func:`recorder_service`)."""
    s = service or rig.service
    cams = ", ".join(c.name for c in rig.cameras)
    lines = [
        f"# Generated by `perception vehicle install` from {rig.source or 'a rig config'}: edit that file and run the",
        "# install again rather than editing this unit. Logs: journalctl -u " + f"{s.name}.service",
        "[Unit]",
        f"Description={description or f'Perception for rig {rig.name} (cameras: {cams})'}",
        "Wants=network-online.target",
        "After=network-online.target",
        f"StartLimitIntervalSec={_seconds(s.start_limit_interval_sec)}",
        f"StartLimitBurst={s.start_limit_burst}",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=" + " ".join(_quote(a) for a in argv),
        f"WorkingDirectory={_quote(str(working_dir))}",
    ]
    if s.user:
        lines.append(f"User={s.user}")
    lines += [f"Environment={_quote(f'{k}={v}')}" for k, v in sorted(env.items())]
    lines += [
        f"WatchdogSec={_seconds(s.watchdog_sec)}",
        f"TimeoutStartSec={_seconds(s.start_timeout_sec)}",
        f"TimeoutStopSec={_seconds(s.stop_timeout_sec)}",
        "KillSignal=SIGTERM",
        "KillMode=mixed",
        "Restart=on-failure",
        f"RestartSec={_seconds(s.restart_sec)}",
    ]
    if s.cpu_quota_percent:
        lines.append(f"CPUQuota={s.cpu_quota_percent}%")
    if s.cpu_affinity:
        lines.append("CPUAffinity=" + " ".join(str(c) for c in s.cpu_affinity))
    lines += [
        f"MemoryMax={s.memory_max_mb}M",
        f"Nice={s.nice}",
        "StandardOutput=journal",
        "StandardError=journal",
        f"SyslogIdentifier={s.name}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def unit_command(unit_text: str) -> list[str]:
    """The ExecStart= argv of a unit written by :func:`service_unit` (to run it by hand, or in a test)."""
    for line in unit_text.splitlines():
        if line.startswith("ExecStart="):
            return [a.replace("%%", "%") for a in shlex.split(line.removeprefix("ExecStart="))]
    raise ValueError("no ExecStart= line")


def unit_environment(unit_text: str) -> dict[str, str]:
    """The Environment= variables of a unit written by :func:`service_unit`."""
    env = {}
    for line in unit_text.splitlines():
        if line.startswith("Environment="):
            for item in shlex.split(line.removeprefix("Environment=")):
                k, _, v = item.partition("=")
                env[k] = v
    return env
