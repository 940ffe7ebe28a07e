"""Soak run: thousands of camera frames at full speed into a real segment_node process.

    seg-perception soak --frames 5000 --camera 480x640 --model deeplabv3plus_mobilenetv2 \\
        --weights none --resolution 64x128 --json soak_out/soak.json

What it does:

1. starts ``segment_node`` in another process (reliable QoS, its own namespace ``/seg_soak`` and,
   unless ``--domain-id`` is given, a random ROS domain so it never talks to a live robot);
2. publishes ``frames`` camera frames (synthetic street scenes, rgb8) as fast as it can (or at
   ``rate`` Hz), reliable QoS, each stamped with its wall-clock publish time;
3. every ``sample_period`` seconds samples the node's resident memory (``VmRSS`` in
   ``/proc/<pid>/status``) and its latest ``/diagnostics`` (received/processed/dropped, queue
   depth, per-stage latency), and records when each answer on ``~/semantic`` arrives (end-to-end
   latency = arrival - stamp, same clock since both run on this machine);
4. reports RSS after warm-up and at the end (growth %), frame counts, the maximum queue depth and
   latency percentiles per time window.

Pass/fail (:func:`judge`): RSS growth after warm-up below ``max_rss_growth_pct`` (5 %), the node's
queue depth bounded by 1, the node alive, and at least one answer after warm-up.
"""
from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .node_driver import NodeDriver, node_command
from ..core.latency import latency_stats
from ..core.stamp_match import stamp_ns

NODE_NS = "/seg_soak"
NODE_NAME = "segment_node"
MAX_QUEUE_DEPTH = 1  # the node's newest-frame slot


@dataclass
class SoakConfig:
    """Everything a soak run depends on (see the module docstring)."""

    frames: int = 5000
    camera: tuple[int, int] = (480, 640)
    model: str = "deeplabv3plus_mobilenetv2"
    weights: str = "default"
    resolution: str = ""
    backend: str = "torch"
    native_heads: bool = False  # node parameter native_heads (heads at their own stride, one upsampling)
    device: str = "cpu"
    rate: float = 0.0  # Hz; 0 = as fast as possible
    warmup_frames: int = 200  # published frames before the RSS baseline ...
    warmup_processed: int = 20  # ... and frames the node must have processed by then
    sample_period: float = 1.0
    windows: int = 10
    max_rss_growth_pct: float = 5.0
    startup_timeout: float = 120.0
    drain_timeout: float = 30.0
    domain_id: Optional[int] = None
    log_path: Optional[Path] = None
    extra_params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames={self.frames} must be >= 1")
        if len(self.camera) != 2 or min(self.camera) < 1:
            raise ValueError(f"camera={self.camera!r} must be (height, width) with positive sizes, e.g. (480, 640)")
        if self.rate < 0:
            raise ValueError(f"rate={self.rate} must be >= 0 (0 = as fast as possible)")
        if self.sample_period <= 0 or self.windows < 1:
            raise ValueError("sample_period must be > 0 and windows >= 1")
        if self.domain_id is not None and not 0 <= self.domain_id <= 232:
            raise ValueError(f"domain_id={self.domain_id} must be in 0..232 (ROS_DOMAIN_ID)")


class SoakError(RuntimeError):
    """The soak run could not be carried out (node did not start, died, ...)."""


# ----------------------------------------------------------------------------- measurements
def read_rss_kb(pid: int) -> Optional[int]:
    """Resident set size of process ``pid`` in kB (``VmRSS``), None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def judge(*, rss_start_kb: Optional[int], rss_end_kb: Optional[int], max_queue_depth: int, node_alive: bool,
          answered_after_warmup: int, max_rss_growth_pct: float = 5.0) -> dict[str, Any]:
    """The pass/fail checks of a soak run; ``passed`` is True only when all hold.

    ``rss_start_kb`` None means warm-up never ended (the node processed too few frames): no RSS
    baseline, so the run cannot pass.
    """
    growth = None
    warmup_reached = bool(rss_start_kb)
    if rss_start_kb and rss_end_kb:
        growth = 100.0 * (rss_end_kb - rss_start_kb) / rss_start_kb
    checks = {
        "warmup_reached": warmup_reached,
        "rss_growth_pct": None if growth is None else round(growth, 2),
        "rss_growth_ok": growth is not None and growth < max_rss_growth_pct,
        "queue_bounded": 0 <= max_queue_depth <= MAX_QUEUE_DEPTH,
        "node_alive": bool(node_alive),
        "answered_after_warmup": answered_after_warmup > 0,
    }
    checks["passed"] = all(v for k, v in checks.items() if k != "rss_growth_pct")
    return checks


# ----------------------------------------------------------------------------- node process
def node_params(cfg: SoakConfig) -> dict[str, Any]:
    """Parameters of the node under test (its command line: :func:`.node_driver.node_command`)."""
    params = {"model": cfg.model, "weights": cfg.weights, "backend": cfg.backend, "device": cfg.device,
              "qos_reliability": "reliable", "diagnostics_period": min(1.0, cfg.sample_period / 2),
              **cfg.extra_params}
    if cfg.native_heads:
        params["native_heads"] = True
    if cfg.resolution:
        params["resolution"] = cfg.resolution
    return params


def _frames(camera: tuple[int, int], n: int = 4) -> list[Any]:
    """A few distinct rgb8 Image messages at camera size (reused, restamped per publish)."""
    from ..core.conversions import numpy_to_image
    from ..datasets.synthetic import make_scene

    return [numpy_to_image(make_scene(seed=900 + i, hw=camera).image, "rgb8") for i in range(n)]


@dataclass
class _Sample:
    t: float
    published: int
    rss_kb: Optional[int]
    diag: dict


class _Answers:
    """Arrival wall time and stamp (ns) of each answer on ``~/semantic``; filled on the spin thread."""

    def __init__(self) -> None:
        self._items: list[tuple[float, int]] = []
        self._lock = threading.Lock()

    def __call__(self, msg: Any) -> None:
        t = time.time()
        with self._lock:
            self._items.append((t, stamp_ns(msg.header.stamp)))

    def snapshot(self) -> list[tuple[float, int]]:
        with self._lock:
            return list(self._items)

    def last(self, n: int) -> list[tuple[float, int]]:
        with self._lock:
            return self._items[-n:]


def _publish(pub: Any, msg: Any, errors: list[str], give_up_s: float = 10.0) -> bool:
    """Publish ``msg``, retrying while the reliable writer refuses (its history is full of
    unacknowledged samples: FastDDS gives up after its max blocking time). That back-pressure is
    what limits the "maximum rate"; each refusal is recorded in ``errors``."""
    end = time.monotonic() + give_up_s
    while True:
        try:
            pub.publish(msg)
            return True
        except Exception as e:  # noqa: BLE001 - rclpy raises RCLError (its module path varies by distro)
            errors.append(str(e).split(",")[0])
            if time.monotonic() > end:
                return False
            time.sleep(0.01)


def _int(d: dict, key: str) -> int:
    try:
        return int(float(d.get(key, 0)))
    except (TypeError, ValueError):
        return 0


# ----------------------------------------------------------------------------- the run
def run_soak(cfg: SoakConfig, progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Run the soak described by ``cfg``; returns the JSON-ready report (see :func:`format_report`).

    Raises:
        SoakError: the node did not start within ``cfg.startup_timeout`` or exited early.
    """
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    domain = cfg.domain_id if cfg.domain_id is not None else random.Random().randint(1, 100)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # read by the rmw at init
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
    log_path = Path(cfg.log_path) if cfg.log_path else Path(tempfile.mkstemp(prefix="seg_soak_", suffix=".log")[1])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1")
    frames = _frames(tuple(cfg.camera))
    samples: list[_Sample] = []
    publish_t: list[float] = []
    with NodeDriver(node_command(node_params(cfg), namespace=NODE_NS, name=NODE_NAME), log_path, name="seg_soak_driver", env=env, domain_id=domain,
                    error=SoakError, stop_timeout=20) as driver:
        proc, prefix = driver.proc, f"{NODE_NS}/{NODE_NAME}"
        pub = driver.node.create_publisher(Image, f"{NODE_NS}/image", qos)
        received = _Answers()
        driver.node.create_subscription(Image, f"{prefix}/semantic", received, qos)
        diag = driver.diagnostics(prefix, qos)
        driver.spin_in_background()
        progress(f"starting segment_node (pid {proc.pid}, ROS domain {domain}, log {log_path}) ...")
        if not driver.wait_connected(pub, f"{prefix}/semantic", cfg.startup_timeout):
            raise SoakError(f"segment_node did not subscribe within {cfg.startup_timeout:.0f} s; see {log_path}")
        progress(f"publishing {cfg.frames} frames {cfg.camera[0]}x{cfg.camera[1]} rgb8 "
                 f"({'max rate' if cfg.rate <= 0 else f'{cfg.rate:g} Hz'}) ...")
        t0 = time.time()
        published = [0]
        publish_errors: list[str] = []
        stop_sampling = threading.Event()

        def sample() -> None:
            samples.append(_Sample(time.time() - t0, published[0], read_rss_kb(proc.pid), diag.latest()))

        def sampler() -> None:
            while not stop_sampling.wait(cfg.sample_period):
                sample()

        sample()
        sampler_thread = threading.Thread(target=sampler, name="soak_sampler", daemon=True)
        sampler_thread.start()
        try:
            for i in range(cfg.frames):
                if cfg.rate > 0:
                    due = t0 + i / cfg.rate
                    while time.time() < due:
                        time.sleep(min(0.005, max(0.0, due - time.time())))
                msg = frames[i % len(frames)]
                now = time.time()
                ns = int(now * 1e9)
                msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
                msg.header.frame_id = f"soak_{i}"
                if not _publish(pub, msg, publish_errors):
                    raise SoakError(f"could not publish frame {i} for 10 s (transport refuses: "
                                    f"{publish_errors[-1] if publish_errors else '?'})")
                publish_t.append(now)
                published[0] = i + 1
                if i % 100 == 0 and proc.poll() is not None:
                    raise SoakError(f"segment_node died (exit code {proc.returncode}) after {i + 1} frames; "
                                    f"see {log_path}")
            t_pub_end = time.time()
            progress(f"published {cfg.frames} frames in {t_pub_end - t0:.1f} s; draining ...")
            last_stamp = int(publish_t[-1] * 1e9)
            end = time.time() + cfg.drain_timeout
            while time.time() < end and proc.poll() is None:
                d = diag.latest()
                handled = _int(d, "frames_processed") + _int(d, "frames_dropped") + _int(d, "frames_rejected")
                idle = _int(d, "frames_received") > 0 and handled >= _int(d, "frames_received")
                got_last = any(s == last_stamp for _t, s in received.last(3))
                if got_last or (idle and time.time() - t_pub_end > 2.0):
                    break
                time.sleep(0.1)
            time.sleep(1.5 * min(1.0, cfg.sample_period / 2))  # one more diagnostics period
        finally:
            stop_sampling.set()
            sampler_thread.join(timeout=5)
        sample()
        alive = proc.poll() is None
        answers = received.snapshot()
    report = build_report(cfg, samples, publish_t, answers, t0=t0, node_alive=alive, pid=proc.pid,
                          exit_code=proc.returncode, log_path=log_path, domain_id=domain)
    report["frames"]["publish_retries"] = len(publish_errors)
    return report


def _warmup_index(cfg: SoakConfig, samples: list[_Sample]) -> Optional[int]:
    """Index of the first sample after warm-up; None if warm-up never ended (too few frames processed)."""
    for k, s in enumerate(samples):
        if s.published >= min(cfg.warmup_frames, cfg.frames) and \
                _int(s.diag, "frames_processed") >= cfg.warmup_processed and s.rss_kb:
            return k
    return None


def build_report(cfg: SoakConfig, samples: list[_Sample], publish_t: list[float], answers: list[tuple[float, int]],
                 *, t0: float, node_alive: bool, pid: int, exit_code: Optional[int], log_path: Path,
                 domain_id: int) -> dict[str, Any]:
    """Assemble the JSON report from the raw measurements (pure; unit-tested)."""
    final = samples[-1].diag if samples else {}
    sent_ns = {int(t * 1e9): t for t in publish_t}
    lat = [(arr - t0, (arr - sent_ns[s]) * 1e3) for arr, s in answers if s in sent_ns]
    rss = [s.rss_kb for s in samples if s.rss_kb]
    w = _warmup_index(cfg, samples)
    warm = samples[w] if w is not None else None
    rss_start = warm.rss_kb if warm else None
    rss_end = samples[-1].rss_kb if samples else None
    t_warm = warm.t if warm else float("inf")
    post = [s for s in samples[w:] if s.rss_kb] if w is not None else []
    slope = None
    if len(post) >= 3 and post[-1].published > post[0].published:
        x = np.array([s.published for s in post], dtype=np.float64)
        y = np.array([s.rss_kb for s in post], dtype=np.float64) / 1024.0
        if np.ptp(x) > 0:
            slope = round(float(np.polyfit(x, y, 1)[0]) * 1000.0, 3)  # MB per 1000 published frames
    max_depth = max((_int(s.diag, "max_queue_depth") for s in samples), default=0)
    duration = samples[-1].t if samples else 0.0
    n_win = max(1, cfg.windows)
    edges = np.linspace(0.0, max(duration, 1e-6), n_win + 1)
    windows = []
    for k in range(n_win):
        a, b = float(edges[k]), float(edges[k + 1])
        last = k == n_win - 1
        in_w = [ms for t, ms in lat if a <= t < b or (last and t >= b)]
        pub = sum(1 for t in publish_t if a <= t - t0 < b or (last and t - t0 >= b))
        snap = [s for s in samples if s.t <= b] or samples[:1]
        d = snap[-1].diag if snap else {}
        windows.append({
            "t_start_s": round(a, 2), "t_end_s": round(b, 2), "published": pub, "answered": len(in_w),
            "e2e_latency_ms": latency_stats(in_w, digits=2),
            "node_total_ms": {"median": _float(d, "node_total_ms.median_ms"), "p90": _float(d, "node_total_ms.p90_ms")},
            "node_fps": _float(d, "fps"),
            "rss_mb": round(snap[-1].rss_kb / 1024.0, 1) if snap and snap[-1].rss_kb else None,
        })
    answered_after = sum(1 for t, _ms in lat if t >= t_warm)
    checks = judge(rss_start_kb=rss_start, rss_end_kb=rss_end, max_queue_depth=max_depth, node_alive=node_alive,
                   answered_after_warmup=answered_after, max_rss_growth_pct=cfg.max_rss_growth_pct)
    cfg_dict = asdict(cfg)
    cfg_dict["camera"] = f"{cfg.camera[0]}x{cfg.camera[1]}"
    cfg_dict["log_path"] = str(log_path)
    return {
        "config": cfg_dict,
        "node": {"pid": pid, "exit_code": exit_code, "alive_at_end": node_alive, "ros_domain_id": domain_id,
                 "describe": {k[len("config."):]: v for k, v in final.items() if k.startswith("config.")}},
        "duration_s": round(duration, 2),
        "publish_rate_hz": round(len(publish_t) / max(publish_t[-1] - publish_t[0], 1e-6), 1) if len(publish_t) > 1 else None,
        "frames": {
            "published": len(publish_t),
            "received_by_node": _int(final, "frames_received"),
            "processed": _int(final, "frames_processed"),
            "dropped": _int(final, "frames_dropped"),
            "rejected": _int(final, "frames_rejected"),
            "errors": sum(_int(final, k) for k in final if k.startswith("error.")),
            "answered": len(lat),
            "not_delivered": max(0, len(publish_t) - _int(final, "frames_received")),
        },
        "rss_mb": {
            "warmup_at_published": warm.published if warm else None,
            "warmup_at_processed": _int(warm.diag, "frames_processed") if warm else None,
            "start": _mb(rss_start), "end": _mb(rss_end), "peak": _mb(max(rss, default=None)),
            "growth_pct": checks["rss_growth_pct"], "slope_mb_per_1000_frames": slope,
        },
        "queue": {"max_depth": max_depth, "bound": MAX_QUEUE_DEPTH},
        "e2e_latency_ms": latency_stats([ms for _t, ms in lat], digits=2),
        "node_stage_ms": {k: _float(final, k) for k in sorted(final) if k.endswith(("median_ms", "p90_ms"))},
        "windows": windows,
        "samples": [{"t_s": round(s.t, 2), "published": s.published, "rss_mb": _mb(s.rss_kb),
                     "processed": _int(s.diag, "frames_processed"), "dropped": _int(s.diag, "frames_dropped"),
                     "max_queue_depth": _int(s.diag, "max_queue_depth")} for s in samples],
        "checks": checks,
        "passed": checks["passed"],
    }


def _mb(kb: Optional[int]) -> Optional[float]:
    return None if not kb else round(kb / 1024.0, 1)


def _float(d: dict, key: str) -> Optional[float]:
    try:
        return float(d[key])
    except (KeyError, TypeError, ValueError):
        return None


def format_report(r: dict[str, Any]) -> str:
    """Human-readable summary of a :func:`run_soak` report."""
    f, m, c = r["frames"], r["rss_mb"], r["checks"]
    lines = [
        "==== seg_perception soak ====",
        f"node        : {r['node']['describe'].get('model', '?')} {r['node']['describe'].get('resolution', '')} "
        f"{r['node']['describe'].get('backend', '')}, camera {r['config']['camera']}, {r['duration_s']} s",
        f"frames      : published {f['published']} ({r['publish_rate_hz']} Hz), node received {f['received_by_node']}, "
        f"processed {f['processed']}, dropped {f['dropped']}, rejected {f['rejected']}, errors {f['errors']}, "
        f"answers {f['answered']}",
        f"memory (RSS): {m['start']} MB after warm-up ({m['warmup_at_published']} published / "
        f"{m['warmup_at_processed']} processed) -> {m['end']} MB at end ({m['growth_pct']} %), peak {m['peak']} MB, "
        f"slope {m['slope_mb_per_1000_frames']} MB/1000 frames",
        f"queue depth : max {r['queue']['max_depth']} (bound {r['queue']['bound']})",
        f"latency e2e : {_fmt_pct(r['e2e_latency_ms'])}",
        "windows     :  t[s]          pub   ans   median  p90     p99     max  ms   node fps  RSS MB",
    ]
    for w in r["windows"]:
        e = w["e2e_latency_ms"]
        lines.append(f"              {w['t_start_s']:6.1f}-{w['t_end_s']:<6.1f} {w['published']:5d} {w['answered']:5d} "
                     f"{_n(e['median_ms'])} {_n(e['p90_ms'])} {_n(e['p99_ms'])} {_n(e['max_ms'])}   {_n(w['node_fps'], 5)}  {_n(w['rss_mb'], 6)}")
    verdict = "PASS" if r["passed"] else "FAIL"
    failed = [k for k, v in c.items() if v is False and k != "passed"]
    if not c.get("warmup_reached"):
        lines.append(f"note        : warm-up not reached (the node processed {f['processed']} frames, needs "
                     f"{r['config']['warmup_processed']}): publish more frames or lower --warmup-processed")
    lines.append(f"result      : {verdict}" + (f" ({', '.join(failed)})" if failed else ""))
    return "\n".join(lines)


def _n(v: Optional[float], width: int = 7) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:{width}.1f}"


def _fmt_pct(p: dict) -> str:
    if not p.get("count"):
        return "no answers"
    return (f"median {p['median_ms']} ms, p90 {p['p90_ms']} ms, p99 {p['p99_ms']} ms, max {p['max_ms']} ms "
            f"(n={p['count']})")
