"""Runtime parameter changes: validating a change, and rebuilding the Segmenter in the background.

:func:`parameter_changes` is the cheap check the node's set-parameters callback runs (types,
ranges, choices; for ``weights`` existence, file type, size limit and container magic): a bad value
is refused at once. A change that needs a new model (:data:`~seg_perception.ros.params.RELOAD_KEYS`)
is then handed to the :class:`Reloader`, which builds the new Segmenter on its own thread while the
old one keeps answering frames, and swaps it in when ready; a failed build sets the reload
parameters back to the values the node runs with. Its state (``idle`` / ``running`` / ``ok`` /
``failed``, error, generation requested and settled) is what /diagnostics shows as ``reload.*``.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from rclpy.parameter import Parameter

from ..core.segmenter import Segmenter
from .params import RELOAD_KEYS, SPECS, STARTUP_ONLY_KEYS, NodeConfig, ParameterError, precheck_weights, validate
from .startup import one_line


def parameter_changes(params: list, cfg: NodeConfig) -> dict[str, Any]:
    """The validated ``{name: value}`` of ours among ``params`` (rclpy ``Parameter`` s); others ignored.

    Raises:
        ParameterError: a start-up-only parameter would change (restart to change it), a value is
            invalid, or new ``weights`` fail the cheap file checks.
    """
    changes: dict[str, Any] = {}
    for p in params:
        if p.name in STARTUP_ONLY_KEYS and p.value != cfg[p.name]:
            raise ParameterError(f"parameter '{p.name}' only takes effect at start-up; restart the node to change it")
        if p.name in SPECS:
            changes[p.name] = validate(p.name, p.value)
    if "weights" in changes:
        precheck_weights(changes["weights"])
    return changes


def needs_reload(requested: NodeConfig, cfg: NodeConfig) -> bool:
    """Whether ``requested`` differs from the running ``cfg`` in a parameter that needs a new model."""
    return any(requested[k] != cfg[k] for k in RELOAD_KEYS)


def set_back_parameters(good: NodeConfig, current: Callable[[str], Any]) -> list[Parameter]:
    """The reload parameters whose current value (``current(name)``) differs from ``good``'s, as
    parameters holding ``good``'s values (sorted by name)."""
    return [Parameter(k, value=good[k]) for k in sorted(RELOAD_KEYS) if current(k) != good[k]]


class Reloader:
    """The reload state machine and its thread (started by the first reload).

    Callers hold :attr:`cond` while they read or change :attr:`requested` together with the node's
    running configuration. The node supplies what touches it:

    Args:
        build: a warmed Segmenter for a configuration (raises when it cannot be built).
        install: puts a built Segmenter in place (closing the one it replaces).
        current: the node's running configuration.
        apply: makes a built configuration the running one (called holding :attr:`cond`).
        set_back: sets the node's parameters back to a configuration (called holding :attr:`cond`).
        logger: returns the node's logger.
    """

    def __init__(self, *, build: Callable[[NodeConfig], Segmenter], install: Callable[[Segmenter], None],
                 current: Callable[[], NodeConfig], apply: Callable[[NodeConfig], None],
                 set_back: Callable[[NodeConfig], None], logger: Callable[[], Any]) -> None:
        self._build, self._install, self._current = build, install, current
        self._apply, self._set_back, self._logger = apply, set_back, logger
        self.cond = threading.Condition()
        self.requested: Optional[NodeConfig] = None  # what the parameters ask for
        self.pending = False
        self.generation = 0  # reloads requested
        self.settled = 0     # the generation the last finished build (or failure) answered
        self.state = "idle"
        self.error = ""
        self._reverting: Optional[int] = None  # thread ident while the reload thread sets values back
        self._stopped = False
        self._thread: Optional[threading.Thread] = None

    def reverting(self) -> bool:
        """True inside the reload thread's own set-back (the node accepts those parameters as they are)."""
        return self._reverting == threading.get_ident()

    def start(self) -> None:
        """Request a build of :attr:`requested` (caller holds :attr:`cond`); a newer request
        supersedes one not yet taken."""
        self.generation += 1
        self.pending = True
        self.state = "running"
        self.cond.notify_all()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="seg_reload", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Make the thread return (it leaves a build in progress behind: a daemon thread)."""
        self._stopped = True
        with self.cond:
            self.cond.notify_all()

    def join(self, timeout: float) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self._stopped:
            with self.cond:
                while not self._stopped and not self.pending:
                    self.cond.wait(0.5)
                if self._stopped:
                    return
                target, generation = self.requested, self.generation
                self.pending = False
            try:
                new_seg = self._build(target)
            except Exception as e:  # noqa: BLE001 - refuse, keep the last good configuration
                if self._stopped:
                    return
                self._failed(e)
                continue
            if self._stopped:
                return
            self._install(new_seg)
            with self.cond:
                self._apply(target)
                self.error = ""
                self.settled = generation
                if not self.pending:
                    self.state = "ok"
            self._logger().info(f"reloaded segmenter: {new_seg.describe()}")

    def _failed(self, e: BaseException) -> None:
        reason = one_line(e)
        self._logger().error(f"reload refused, keeping the current configuration (parameters set back): {reason}")
        with self.cond:
            good = self._current()
            self.requested = good
            self.pending = False
            self.error = reason
            self.state = "failed"
            self.settled = self.generation
            self._reverting = threading.get_ident()
            try:
                self._set_back(good)
            finally:
                self._reverting = None
