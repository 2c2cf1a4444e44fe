"""The sensor function's live configuration: following its shadow and its component configuration.

Names: the *live configuration* (:class:`LiveConfig`, ``SensorService.live_config``)
follows the shadow and the configuration; the *layers* (:class:`LiveSettings`,
``LiveConfig.layers``) are the values each source gives, in precedence order;
their snapshot is saved in the sensor's state file (key ``live``).

How a change travels:

1. The shadow service's answers reach :meth:`LiveConfig.on_message`: on a V1
   core and the local core through the function's handler (the group's
   subscriptions from ``GGShadowService``), on V2 through local pub/sub,
   where ``aws.greengrass.ShadowManager`` publishes them. A V2 deployment's
   new configuration reaches :meth:`LiveConfig.on_configuration_change`.
2. The change is decided at once, on that thread, by
   :class:`agent.live_settings.LiveSettings` (the functions' own validation);
   a rejection is logged with its reason.
3. Accepted settings go to the sensor service's pending slot
   (:meth:`SensorService.offer_settings`); its loop swaps them in before the
   next reading, on the sensor's clock, and saves them in its state file.
4. Then ``reported`` is sent with the values in force and every rejection
   with its reason, so ``desired`` and ``reported`` converge and the delta
   empties (a refused value stays in the delta, and is not decided again).

Requests to the shadow service (the ``get`` at start, the reports) run on a
worker thread that retries with backoff (the core may be busy or restarting),
or, in virtual time (``simulate --fast``, tests: the local core, whose shadow
service is in this process and never blocks), inline, so runs stay
deterministic; a request that failed there is made again at the next reading.
"""

from __future__ import annotations

import collections
import collections.abc  # Mapping for isinstance: typing is not loaded at run time
import logging
import threading

from .errors import GreengrassError, ShadowError
from .greengrass.base import Runtime
from .greengrass.shadow_document import parse_topic, topic_prefix
from .live_settings import (
    CONFIGURATION,
    REJECTED_SECTION,
    SHADOW,
    SHADOW_SECTION,
    Change,
    Decision,
    LiveSettings,
)

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Set, Tuple

    from .config import SensorSettings

    class SettingsTarget(Protocol):
        """What the live configuration needs of the sensor service: a one-way hook."""

        on_settings: List[Callable[[SensorSettings], None]]
        on_reading: List[Callable[[Any], None]]

        def offer_settings(
            self, settings: SensorSettings, layers: Optional[Dict[str, Any]] = None
        ) -> None: ...


log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0
# (kind, change): kind is "rejected" or "applied" (in force from this reading on)
if TYPE_CHECKING:
    ChangeObserver = Callable[[str, Change], None]
else:  # only annotations use it
    ChangeObserver = "Callable[[str, Change], None]"


class LiveConfig:
    """Decides shadow and configuration changes for one sensor service and reports them."""

    def __init__(
        self,
        service: SettingsTarget,
        runtime: Runtime,
        layers: LiveSettings,
        thing: str,
        background: bool,
    ) -> None:
        self.service = service
        self.runtime = runtime
        self.layers = layers
        self.thing = thing
        self.background = background
        self.counts = collections.Counter()  # type: collections.Counter[str]
        self.on_change: List[ChangeObserver] = []
        self._lock = threading.Lock()
        self._work_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._need_get = False
        self._need_config = False
        self._report: Optional[Dict[str, Any]] = None  # the next document to send
        self._offers: List[Tuple[Any, List[Change], Dict[str, Any]]] = []  # not yet in force
        self._in_force = layers.reported()  # reported.sensor of the settings the loop uses
        self._version = 0  # the newest shadow version seen: older messages are stale
        self._rejected_names: Set[str] = set()
        self._failures = 0
        service.on_settings.append(self._applied)
        if not background:
            # No worker waits to try again in virtual time: a request that failed (a
            # throttled report) is made again at the next reading, not only at a change.
            service.on_reading.append(self._retry)

    # -- start and stop ------------------------------------------------------------------
    def restore(self, saved: Optional[Mapping[str, Any]]) -> None:
        """Put the shadow values saved before a restart back in force (at the first reading)."""
        layer = (saved or {}).get(SHADOW)
        if not isinstance(layer, dict):
            return
        with self._lock:
            decision = self.layers.propose(SHADOW, layer)  # the shadow layer is empty yet
            self._decided(decision, "the state file")

    def start(self) -> None:
        """Subscribe, read the shadow (and the configuration), report; retried until done."""
        self.runtime.bind_thing(self.thing)
        try:
            self.runtime.subscribe_shadow(self.thing, self.on_message)
        except GreengrassError as exc:
            log.error("cannot subscribe to the shadow of %s: %s", self.thing, exc)
        if self.runtime.watch_component_configuration(self.on_configuration_change):
            self._need_config = True  # changes between the first read and the subscription
        self._need_get = True
        if self.background:
            self._wake.set()  # the first pass straight away
            self._thread = threading.Thread(target=self._loop, name="live-config", daemon=True)
            self._thread.start()
        else:
            self._drain()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- what arrives ----------------------------------------------------------------------
    def on_message(self, message: Mapping[str, Any], topic: str) -> None:
        """An answer or change from the shadow service (any thread). Never raises."""
        try:
            self._on_message(message, topic)
        except Exception:  # a malformed document must not stop the function
            log.exception("ignoring a shadow message on %s", topic)

    def on_configuration_change(self) -> None:
        """The component's configuration changed (V2): read it again (on the worker)."""
        self._need_config = True
        self._kick()

    def _on_message(self, message: Mapping[str, Any], topic: str) -> None:
        parsed = parse_topic(topic)
        if (
            parsed is None
            or parsed[0] != self.thing
            or not isinstance(message, collections.abc.Mapping)
        ):
            return
        _, operation, answer = parsed
        if answer == "rejected":
            self._refused(operation, message)
            return
        state: Mapping[str, Any] = {}
        if (operation, answer) == ("update", "delta"):
            # the desired values that differ from reported (changes and new ones)
            section, replace, version = (
                _section(message.get("state")),
                False,
                message.get("version"),
            )
        elif (operation, answer) == ("update", "documents"):
            # what changed in desired from the previous document to the current one: the
            # one place a removed override shows (a delta never carries a removal)
            current = message.get("current") or {}
            state = current.get("state") or {}
            before = _section(((message.get("previous") or {}).get("state") or {}).get("desired"))
            after = _section(state.get("desired"))
            section = _difference(before or {}, after or {}) if before or after else None
            replace, version = False, current.get("version")
        elif (operation, answer) == ("get", "accepted"):
            # the whole document: desired is the whole shadow layer
            state = message.get("state") or {}
            section, replace, version = (
                _section(state.get("desired")) or {},
                True,
                message.get("version"),
            )
        else:
            return
        reported = (state.get("reported") or {}).get(REJECTED_SECTION) if state else None
        if isinstance(reported, collections.abc.Mapping):
            with self._lock:  # rejections reported before a restart, to clear if stale
                self._rejected_names |= set(reported)
        if section is None:
            return  # about other parts of the shadow
        with self._lock:
            if isinstance(version, int):
                if version < self._version:  # older than what was seen: stale
                    log.debug("ignoring shadow version %s (seen %s)", version, self._version)
                    return
                self._version = version
            if not isinstance(section, collections.abc.Mapping):
                log.warning(
                    "desired.%s of %s must be an object of variables, got %r; ignored",
                    SHADOW_SECTION,
                    self.thing,
                    section,
                )
                return
            decision = self.layers.propose(SHADOW, section, replace=replace)
            self._decided(decision, "the shadow")
        if self._report is not None:
            self._kick()

    def _refused(self, operation: str, message: Mapping[str, Any]) -> None:
        code, text = message.get("code"), message.get("message")
        if operation == "get" and code == 404:
            return  # no shadow yet: the first report creates it
        log.warning(
            "the shadow service refused a %s for %s: %s %s", operation, self.thing, code, text
        )

    # -- deciding and applying -------------------------------------------------------------
    def _decided(self, decision: Decision, where: str) -> None:
        """Log and hand over a decision (inside the lock)."""
        for change in decision.rejected:
            self.counts["rejected"] += 1
            log.warning(
                "sensor variable from %s rejected: %s; %s stays %s",
                where,
                change.describe(),
                change.name,
                change.old if change.old is not None else "unset",
                extra={"observed": bool(self.on_change)},  # a console shows it its own way
            )
            self._notify("rejected", change)
        for change in decision.applied:
            log.info(
                "sensor variable from %s: %s; in force from the next reading",
                where,
                change.describe(),
            )
        if decision.settings is not None:
            snapshot = {"sensor": self.layers.reported(), "layers": self.layers.snapshot()}
            self._offers.append((decision.settings, list(decision.applied), snapshot))
            self.service.offer_settings(decision.settings, snapshot["layers"])
        elif decision.changes_report:
            self._report = self._reported_document()  # the caller kicks, outside the lock

    def _applied(self, settings: Any) -> None:
        """The sensor service swapped ``settings`` in (its thread, before a reading)."""
        with self._lock:
            done: List[Tuple[Any, List[Change], Dict[str, Any]]] = []
            for i, offer in enumerate(self._offers):
                if offer[0] is settings:
                    done, self._offers = self._offers[: i + 1], self._offers[i + 1 :]
                    break
            if not done:
                return
            for _, changes, _ in done:
                for change in changes:
                    self.counts["applied"] += 1
                    self._notify("applied", change)
            self._in_force = done[-1][2]["sensor"]
            self._report = self._reported_document()
        self._kick()

    def _notify(self, kind: str, change: Change) -> None:
        for observer in self.on_change:
            try:
                observer(kind, change)
            except Exception:
                log.exception("a configuration observer failed")

    def _reported_document(self) -> Dict[str, Any]:
        rejections = self.layers.rejections()
        # null deletes a rejection no longer true (also one reported before a restart)
        section: Dict[str, Any] = {n: None for n in sorted(self._rejected_names)}
        section.update(rejections)
        self._rejected_names |= set(rejections)
        reported: Dict[str, Any] = {SHADOW_SECTION: dict(self._in_force)}
        if section:
            reported[REJECTED_SECTION] = section
        return {"state": {"reported": reported}}

    # -- talking to the shadow service -----------------------------------------------------
    def _kick(self) -> None:
        if self.background:
            self._wake.set()
        else:
            self._drain()

    def _drain(self) -> None:
        """Inline mode: do what is due now; the one caller that gets the work lock does it."""
        if not self._work_lock.acquire(blocking=False):
            return  # this thread (re-entered through the core) or another one is at it
        try:
            for _ in range(10):  # each pass may queue a little more (an answer, a report)
                if not self._has_work() or not self._work():
                    break
        finally:
            self._work_lock.release()

    def _retry(self, _reading: Any) -> None:
        self._drain()

    def _has_work(self) -> bool:
        return self._need_config or self._need_get or self._report is not None

    def _loop(self) -> None:
        delay: Optional[float] = None
        while not self._stop.is_set():
            self._wake.wait(delay)
            self._wake.clear()
            if self._stop.is_set():
                return
            if self._work():
                self._failures = 0
                delay = None
            else:
                self._failures += 1
                delay = min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** (self._failures - 1))

    def _work(self) -> bool:
        """One pass over what is due; False when something failed and must be retried."""
        ok = True
        if self._need_config:
            ok = self._read_configuration() and ok
        if self._need_get:
            ok = self._read_shadow() and ok
        if self._report is not None:
            ok = self._send_report() and ok
        return ok

    def _read_configuration(self) -> bool:
        # Cleared before reading: a change announced while this read is under way sets it
        # again, and is read on the next pass instead of being lost.
        self._need_config = False
        try:
            configuration = self.runtime.component_configuration()
        except GreengrassError as exc:
            self._need_config = True
            self._failed("read the component configuration", exc)
            return False
        if configuration is not None:
            with self._lock:
                decision = self.layers.propose(CONFIGURATION, configuration, replace=True)
                self._decided(decision, "the component configuration")
        return True

    def _read_shadow(self) -> bool:
        self._need_get = False
        try:
            document = self.runtime.get_thing_shadow(self.thing)
        except ShadowError as exc:
            if exc.code != 404:
                self._need_get = True
                self._failed("read the shadow", exc)
                return False
            document = None  # no shadow yet: the report below creates it
        except GreengrassError as exc:
            self._need_get = True
            self._failed("read the shadow", exc)
            return False
        if document is not None:
            self._on_message(document, topic_prefix(self.thing) + "/get/accepted")
        with self._lock:
            if self._report is None and not self._offers:
                self._report = self._reported_document()  # tell the cloud what is in force
        return True

    def _send_report(self) -> bool:
        with self._lock:
            document = self._report
        if document is None:
            return True
        try:
            self.runtime.update_thing_shadow(self.thing, document)
        except ShadowError as exc:
            if 400 <= exc.code < 500 and exc.code != 429:
                log.error("the shadow service refused the report for %s: %s", self.thing, exc)
                self._sent(document)
                return True  # sending it again would be refused again
            self._failed("report the values in force", exc)
            return False
        except GreengrassError as exc:
            self._failed("report the values in force", exc)
            return False
        self._sent(document)
        if self._failures:
            log.info("reported the values in force to the shadow of %s again", self.thing)
        return True

    def _sent(self, document: Dict[str, Any]) -> None:
        with self._lock:
            if self._report is document:
                self._report = None

    def _failed(self, what: str, exc: Exception) -> None:
        level = logging.WARNING if self._failures == 0 else logging.DEBUG
        log.log(level, "could not %s of %s: %s; trying again", what, self.thing, exc)


def _section(desired: Any) -> Any:
    """``desired.sensor`` (None when absent; anything else is checked by the caller)."""
    if not isinstance(desired, collections.abc.Mapping):
        return None
    return desired.get(SHADOW_SECTION)


def _difference(before: Any, after: Any) -> Any:
    """The changes from ``before`` to ``after``: new or changed values, None for removals."""
    if not isinstance(before, collections.abc.Mapping) or not isinstance(
        after, collections.abc.Mapping
    ):
        return after
    changes: Dict[str, Any] = {k: v for k, v in after.items() if k not in before or before[k] != v}
    changes.update({k: None for k in before if k not in after})
    return changes or None


def thing_name(environ: Mapping[str, str], device_id: str) -> str:
    """The thing whose shadow configures this sensor: the core's ``AWS_IOT_THING_NAME``,
    else the device id (the local core)."""
    return environ.get("AWS_IOT_THING_NAME") or device_id
