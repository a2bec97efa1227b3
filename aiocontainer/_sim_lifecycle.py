"""The simulator's instances: the seed example, generated instances and lifecycle schedules.

Rule 1: nothing here does I/O or reads a clock of its own; simulated time arrives as seconds
since the simulator started (negative for moments before).
Rule 2: every random draw comes from a ``random.Random`` handed in or seeded from
``(seed, instance id, run)``, never from the global generator, so a schedule does not depend on
the order in which requests arrive.
Rule 3: a generated instance has the seed example's 32 keys, in the seed example's order.
Rule 4: the displayed clock ticks in whole seconds: timestamps and durations are computed from
floored times, so the rendering of an instance only changes when its phase or that second does.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

SEED_INSTANCE_ID = "4c1f43ddb030483e89b55413bee6c004"

# The `data` of the documented example response, verbatim (key order included).
SEED_DETAIL: Mapping[str, Any] = {
    "id": SEED_INSTANCE_ID,
    "headerNotebookId": "1a07f501dc89459686996a26ef521abb",
    "instanceServiceName": "Instances_2205113837",
    "currentIndex": 2,
    "gpuNumber": 1,
    "cpuNumber": 3,
    "ramSize": 15360,
    "acceleratorType": "gpu",
    "resourceGroup": "TeslaM40",
    "resourceSpec": "3 核心; 1 加速器; 15.0G 内存",
    "taskNumber": 1,
    "timeoutLimit": "unlimited",
    "userName": "magic2",
    "version": "jupyter:4.4-py3.7-cpu",
    "imagePath": "10.0.35.26:5000/gpu/admin/base/jupyter:4.4-py3.7-cpu",
    "status": "Waiting",
    "taskType": "ssh",
    "description": "",
    "createTime": "2022-05-11 19:30:34",
    "startTime": None,
    "endTime": None,
    "duration": "--",
    "remainingTime": "--",
    "tensorboardId": None,
    "tensorboardPath": None,
    "mountInfoList": [],
    "containerPortInfoList": [],
    "useStartScript": False,
    "startScriptContent": "",
    "startScriptPath": None,
    "startScriptActionScope": "all",
    "headerNotebookIp": None,
}

INSTANCE_KEYS: tuple[str, ...] = tuple(SEED_DETAIL)

WAITING, DEPLOYING, RUNNING = "Waiting", "Deploying", "Running"
TERMINATED, FAILED, COMPLETED = "Terminated", "Failed", "Completed"
STATUSES: tuple[str, ...] = (WAITING, DEPLOYING, RUNNING, TERMINATED, FAILED, COMPLETED)
TERMINAL: frozenset[str] = frozenset({TERMINATED, FAILED, COMPLETED})
TASK_TYPES: tuple[str, ...] = ("ssh", "jupyter", "codeserver", "rstudio")

# Simulated time zero; the seed instance was created at this moment.
EPOCH = datetime(2022, 5, 11, 19, 30, 34)

# Phase lengths in simulated seconds, (low, high) of a uniform draw.
WAITING_SECONDS = (3.0, 20.0)
DEPLOYING_SECONDS = (5.0, 40.0)
RUNNING_SECONDS = (30.0, 420.0)
# How a run ends when no timeout cuts it short.
OUTCOME_WEIGHTS: Mapping[str, float] = {COMPLETED: 0.6, FAILED: 0.2, TERMINATED: 0.2}

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
NO_TIME = "--"


def format_timestamp(epoch: datetime, seconds: float) -> str:
    """The platform's zone-less timestamp for a simulated moment."""
    return (epoch + timedelta(seconds=math.floor(seconds))).strftime(TIMESTAMP_FORMAT)


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` like ``0:05:12``; hours grow past 24 rather than wrapping into days."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def parse_duration(text: object) -> float | None:
    """Seconds in an ``H:MM:SS`` string, or None for ``unlimited`` and anything unreadable."""
    if not isinstance(text, str):
        return None
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    hours, minutes, secs = (int(p) for p in parts)
    return float(hours * 3600 + minutes * 60 + secs)


@dataclass(frozen=True, slots=True)
class Phases:
    """The drawn lengths of one run of an instance, in simulated seconds."""

    waiting: float
    deploying: float
    running: float
    outcome: str


def draw_phases(seed: int, instance_id: str, run: int, *, timeout: float | None) -> Phases:
    """Phase lengths and outcome of run ``run`` of an instance, reproducible from the seed."""
    rng = random.Random(f"{seed}:{instance_id}:{run}")
    waiting = rng.uniform(*WAITING_SECONDS)
    deploying = rng.uniform(*DEPLOYING_SECONDS)
    running = rng.uniform(*RUNNING_SECONDS)
    outcome = rng.choices(list(OUTCOME_WEIGHTS), weights=list(OUTCOME_WEIGHTS.values()))[0]
    if timeout is not None and running > timeout:
        # The platform stops an instance at its time limit.
        running, outcome = timeout, TERMINATED
    return Phases(waiting, deploying, running, outcome)


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of an instance's life: statuses in order and the simulated times they end at."""

    born: float
    path: tuple[str, ...]
    ends: tuple[float, ...]
    start_at: float | None = None
    end_at: float | None = None
    verbatim: bool = False

    def index_at(self, now: float) -> int:
        """Position in ``path`` of the status at simulated time ``now``."""
        return bisect_right(self.ends, now)

    def status_at(self, now: float) -> str:
        """The status at simulated time ``now``."""
        return self.path[bisect_right(self.ends, now)]

    def schedule(self) -> list[tuple[str, float]]:
        """Each status of the segment with the simulated time it begins."""
        return list(zip(self.path, (self.born, *self.ends), strict=True))


def lifecycle_segment(
    begin: str, now: float, phases: Phases, *, start_at: float | None = None
) -> Segment:
    """A segment that runs on from ``begin`` along Waiting -> Deploying -> Running -> outcome.

    A status off that path (say ``Stopped``) lasts one deploying phase and then runs.
    ``start_at`` keeps an earlier start when an instance that is already running runs on.
    A terminal status has nothing to run on to: use :func:`held_segment` for it.
    """
    if begin in TERMINAL:
        raise ValueError(f"a lifecycle cannot run on from terminal status {begin!r}")
    if begin == WAITING:
        steps = [(WAITING, phases.waiting), (DEPLOYING, phases.deploying)]
    elif begin == RUNNING:
        steps = []
    else:
        steps = [(begin, phases.deploying)]
    at = now
    path: list[str] = []
    ends: list[float] = []
    for status, length in steps:
        path.append(status)
        at += length
        ends.append(at)
    run_start = at if start_at is None or begin != RUNNING else start_at
    at += phases.running
    path += [RUNNING, phases.outcome]
    ends.append(at)
    return Segment(now, tuple(path), tuple(ends), run_start, at)


def held_segment(
    status: str, now: float, *, start_at: float | None, end_at: float | None
) -> Segment:
    """A segment that stays at ``status`` until told otherwise, with start and end as they stand.

    Waiting and Deploying clear both times (a fresh attempt), Running starts the clock now unless
    it is already running, a terminal status ends it now, and any other status leaves them alone.
    """
    if status in (WAITING, DEPLOYING):
        return Segment(now, (status,), ())
    if status == RUNNING:
        already = start_at is not None and end_at is None
        return Segment(now, (status,), (), start_at if already else now, None)
    if status in TERMINAL and start_at is not None and end_at is None:
        return Segment(now, (status,), (), start_at, now)
    return Segment(now, (status,), (), start_at, end_at)


def shown_times(segment: Segment, now: float) -> tuple[float | None, float | None]:
    """The start and end of the run as visible at ``now`` (None when not reached yet)."""
    start = segment.start_at
    end = segment.end_at
    return (
        start if start is not None and start <= now else None,
        end if end is not None and end <= now else None,
    )


def lifecycle_fields(
    segment: Segment,
    now: float,
    *,
    epoch: datetime,
    timeout: float | None,
    ip: str | None,
) -> dict[str, Any]:
    """The keys of an instance that move with its lifecycle, as seen at ``now``."""
    start, end = shown_times(segment, now)
    fields: dict[str, Any] = {
        "status": segment.status_at(now),
        "startTime": None if start is None else format_timestamp(epoch, start),
        "endTime": None if end is None else format_timestamp(epoch, end),
        "duration": NO_TIME,
        "remainingTime": NO_TIME,
        "headerNotebookIp": ip if start is not None else None,
    }
    ran = 0
    if start is not None:
        ran = math.floor(now if end is None else end) - math.floor(start)
        fields["duration"] = format_duration(ran)
    if timeout is not None:
        fields["remainingTime"] = format_duration(timeout - ran)
    return fields


def random_hex(rng: random.Random) -> str:
    """32 lowercase hex digits, the shape of every id on the platform."""
    return f"{rng.getrandbits(128):032x}"


_ACCELERATORS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # accelerator type -> (resource groups, image versions)
    "gpu": (
        ("TeslaM40", "TeslaV100", "A800", "RTX4090"),
        (
            "jupyter:4.4-py3.7-cpu",
            "pytorch:2.1.0-py3.10-cuda12.1",
            "tensorflow:2.13.0-py3.10-cuda11.8",
            "vllm:0.4.2-py3.10-cuda12.1",
        ),
    ),
    "dcu": (
        ("K100", "K100_AI", "Z100L"),
        (
            "pytorch:2.1.0-py3.10-dtk24.04",
            "tensorflow:2.13.1-py3.10-dtk24.04",
            "paddlepaddle:2.5.1-py3.10-dtk24.04",
        ),
    ),
    "cpu": (
        ("CpuNormal", "CpuLarge"),
        ("jupyter:4.4-py3.7-cpu", "ubuntu:22.04-py3.10", "rstudio:4.3.1-cpu"),
    ),
}
_ACCELERATOR_WEIGHTS = (0.55, 0.3, 0.15)
_SERVICE_PORTS: Mapping[str, tuple[str, str]] = {
    # task type -> (container port, protocol)
    "ssh": ("22", "tcp"),
    "jupyter": ("8888", "http"),
    "codeserver": ("8080", "http"),
    "rstudio": ("8787", "http"),
}
_NAMES = (
    "bert-finetune",
    "llama-sft",
    "yolo-train",
    "sd-webui",
    "notebook",
    "stats-r",
    "dcu-bench",
    "whisper-eval",
)
_DESCRIPTIONS = ("", "", "", "nightly training run", "调试用", "benchmark on 1 node")
_TIMEOUTS = ("unlimited",) * 6 + ("1:00:00", "2:00:00", "0:05:00", "12:00:00")


def _resources(rng: random.Random, accelerator: str) -> dict[str, Any]:
    groups, versions = _ACCELERATORS[accelerator]
    cards = 0 if accelerator == "cpu" else rng.choice((1, 1, 1, 2, 4, 8))
    cpus = rng.choice((4, 8, 16, 32)) if cards == 0 else cards * rng.choice((3, 4, 8))
    ram_gb = float(cpus * rng.choice((2, 4, 5)))
    spec = (
        f"{cpus} 核心; {ram_gb:.1f}G 内存"
        if cards == 0
        else f"{cpus} 核心; {cards} 加速器; {ram_gb:.1f}G 内存"
    )
    version = rng.choice(versions)
    return {
        "gpuNumber": cards,
        "cpuNumber": cpus,
        "ramSize": int(ram_gb * 1024),
        "acceleratorType": accelerator,
        "resourceGroup": rng.choice(groups),
        "resourceSpec": spec,
        "version": version,
        "imagePath": f"10.0.35.26:5000/{accelerator}/admin/base/{version}",
    }


def _ports(rng: random.Random, task_type: str, instance_id: str) -> list[dict[str, str]]:
    port, protocol = _SERVICE_PORTS[task_type]
    node_port = rng.randint(30000, 32767)
    if protocol == "tcp":
        url = f"ssh://root@10.0.{rng.randint(1, 60)}.{rng.randint(2, 254)}:{node_port}"
    else:
        url = f"http://10.0.{rng.randint(1, 60)}.{rng.randint(2, 254)}:{node_port}/{instance_id}/"
    ports = [{"accessUrl": url, "containerPort": port, "protocolType": protocol}]
    if task_type == "jupyter" and rng.random() < 0.3:
        extra = rng.randint(30000, 32767)
        ports.append(
            {
                "accessUrl": f"http://10.0.0.9:{extra}/",
                "containerPort": "6006",
                "protocolType": "http",
            }
        )
    return ports


def _mounts(rng: random.Random, user: str) -> list[dict[str, str]]:
    choices = (
        {"sourcePath": f"/public/home/{user}", "type": "user"},
        {"sourcePath": f"/work/home/{user}/data", "type": "user"},
        {"sourcePath": "/public/share/datasets/imagenet", "type": "public"},
        {"sourcePath": "/public/share/models/llama-2-7b", "type": "public"},
    )
    return [dict(m) for m in rng.sample(choices, rng.randint(0, 3))]


def generate_instance(
    rng: random.Random, *, created: datetime, user: str, number: int
) -> dict[str, Any]:
    """A plausible instance in Waiting, keyed like the seed example, drawn from ``rng``."""
    instance_id = random_hex(rng)
    task_type = rng.choice(TASK_TYPES)
    accelerator = rng.choices(list(_ACCELERATORS), weights=_ACCELERATOR_WEIGHTS)[0]
    if rng.random() < 0.5:
        name = f"Instances_{created:%y%m%d}{rng.randint(0, 9999):04d}"
    else:
        name = f"{rng.choice(_NAMES)}-{number:02d}"
    with_script = rng.random() < 0.25
    with_board = task_type == "jupyter" and rng.random() < 0.3
    values: dict[str, Any] = {
        "id": instance_id,
        "headerNotebookId": random_hex(rng),
        "instanceServiceName": name,
        "currentIndex": rng.randint(1, 3),
        **_resources(rng, accelerator),
        "taskNumber": 1,
        "timeoutLimit": rng.choice(_TIMEOUTS),
        "userName": user,
        "status": WAITING,
        "taskType": task_type,
        "description": rng.choice(_DESCRIPTIONS),
        "createTime": created.strftime(TIMESTAMP_FORMAT),
        "startTime": None,
        "endTime": None,
        "duration": NO_TIME,
        "remainingTime": NO_TIME,
        "tensorboardId": random_hex(rng) if with_board else None,
        "tensorboardPath": f"/public/home/{user}/runs" if with_board else None,
        "mountInfoList": _mounts(rng, user),
        "containerPortInfoList": _ports(rng, task_type, instance_id),
        "useStartScript": with_script,
        "startScriptContent": "pip install -r requirements.txt" if with_script else "",
        "startScriptPath": f"/public/home/{user}/start.sh" if with_script else None,
        "startScriptActionScope": "all",
        "headerNotebookIp": None,
    }
    return {key: values[key] for key in INSTANCE_KEYS}


def generate_ip(rng: random.Random) -> str:
    """The address a started instance's first notebook gets."""
    return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
