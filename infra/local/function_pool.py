"""Function instances: one OS process per Lambda execution environment, warm and reused.

Each instance runs ``python -m awslambdaric <handler>`` — the entry point the container image
runs — against its own :class:`~.runtime_api.RuntimeApi`, with the environment Lambda and the
CDK app set. Init once, invoke many; an instance handles one invocation at a time. A process
that exits mid-invoke fails that invoke with ``Runtime.ExitError`` and is restarted; an
instance that outlives its timeout is killed (``Sandbox.Timedout``) and restarted.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from infra.local import processes
from infra.local.fair_queue import FairQueue
from infra.local.runtime_api import Invocation, Outcome, RuntimeApi
from layers import names

REGION = "us-east-1"
ACCOUNT = "123456789012"


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function as the CDK app defines it."""

    name: str
    handler: str
    env: dict[str, str]
    cwd: str
    memory_mb: int = 2048
    timeout_s: int = 30
    init_timeout_s: float = 60.0  # Lambda allows 10 s; a loaded laptop gets more headroom
    snapstart: bool = False
    """Start like a SnapStart environment: init, before-snapshot hooks, restore, after-restore."""

    @property
    def arn(self) -> str:
        """The invoked ARN: the deployed API and queue invoke the ``live`` alias."""
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.name}:live"

    def lambda_env(self, runtime_api: str, index: int) -> dict[str, str]:
        """What the Lambda service sets in every execution environment, plus ours."""
        stream = time.strftime("%Y/%m/%d", time.gmtime()) + f"/[$LATEST]local{index:04d}"
        return {
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": self.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            names.ENV_LAMBDA_INIT_TYPE: (names.INIT_TYPE_SNAPSTART if self.snapstart
                                         else names.INIT_TYPE_ON_DEMAND),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
            "LAMBDA_TASK_ROOT": self.cwd,
            "LAMBDA_RUNTIME_DIR": self.cwd,
            "_HANDLER": self.handler,
            "TZ": ":UTC",
            "PYTHONPATH": self.cwd,
            "PYTHONUNBUFFERED": "1",
            # every local function shares this host: onnxruntime's workers sleep (layers/model.py)
            names.ENV_ORT_SPINNING: os.environ.get(names.ENV_ORT_SPINNING, "0"),
            **self.env,
        }


class InitFailed(RuntimeError):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(init_reason(outcome))
        self.outcome = outcome


def init_reason(outcome: Outcome) -> str:
    """Why an init failed, in the model's words: awslambdaric wraps an exception raised while
    importing the handler as ``Runtime.ImportModuleError: Unable to import module
    'functions.api.handler': <the exception>``; the exception (``onnxruntime cannot load
    …/model.onnx: … Rebuild it with `modelfn build`.``) is what the user needs."""
    message = outcome.error_message.strip()
    if outcome.error_type == "Runtime.ImportModuleError" and message.startswith("Unable to import module"):
        _, _, cause = message.partition("': ")
        return cause.strip().rstrip(".") or message
    return f"{outcome.error_type}: {message}".rstrip(".")


class Instance:
    """One execution environment: a Runtime API endpoint and the process that polls it."""

    def __init__(self, spec: FunctionSpec, index: int, log: processes.LogSink | None) -> None:
        self.spec, self.index, self._log = spec, index, log
        self.api: RuntimeApi | None = None
        self.proc = None

    def start(self) -> None:
        """Start the process and wait for its init; raise :class:`InitFailed` like Lambda."""
        self.api = RuntimeApi().start()
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **self.spec.lambda_env(self.api.address, self.index)}
        self.proc = self._spawn(env)
        threading.Thread(target=self._watch, args=(self.proc, self.api), daemon=True).start()
        if not self.api.initialized.wait(self.spec.init_timeout_s):
            self.stop()
            raise InitFailed(Outcome.error(
                "Runtime.InitTimeout", f"init did not finish within {self.spec.init_timeout_s:.0f} s"))
        if self.api.init_error is not None:
            err = self.api.init_error
            self.stop()
            raise InitFailed(err)

    def _spawn(self, env: dict[str, str]):
        """The process of this environment (a container in infra/local/containers.py)."""
        return processes.spawn([sys.executable, "-m", "awslambdaric", self.spec.handler],
                               env=env, cwd=self.spec.cwd, log=self._log)

    @staticmethod
    def _watch(proc, api: RuntimeApi) -> None:
        code = proc.wait()
        how = f"signal {-code}" if code < 0 else f"exit status {code}"
        api.fail(Outcome.error("Runtime.ExitError", f"Runtime exited with error: {how}"))

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def invoke(self, payload: bytes, timeout_s: float) -> Outcome:
        outcome = self.wait(self.submit(payload, timeout_s), timeout_s)
        assert outcome is not None
        return outcome

    def submit(self, payload: bytes, timeout_s: float) -> Invocation:
        assert self.api is not None
        deadline = time.time() + timeout_s
        inv = Invocation(payload=payload, deadline_ms=int(deadline * 1000), function_arn=self.spec.arn)
        self.api.submit(inv)
        return inv

    def wait(self, inv: Invocation, timeout_s: float, until: float | None = None) -> Outcome | None:
        """The outcome of ``inv``; None if ``until`` (a ``time.time()``) passes first, the
        invocation still running (call again to keep waiting)."""
        deadline = inv.deadline_ms / 1000
        stop = deadline if until is None else min(deadline, until)
        while not inv.done.wait(min(0.5, max(0.0, stop - time.time()))):
            if time.time() >= deadline:
                break
            if until is not None and time.time() >= until:
                return None
            if not self.alive:  # died before taking the event: the watcher had nothing to fail
                inv.finish(Outcome.error("Runtime.ExitError", "Runtime exited before the invoke"))
        if not inv.done.is_set():
            # Lambda stops the environment when an invoke outlives the function timeout
            inv.finish(Outcome.error("Sandbox.Timedout",
                                     f"RequestId: {inv.request_id} Error: Task timed out after {timeout_s:.2f} seconds"))
            self.stop()
        assert inv.outcome is not None
        if inv.outcome.error_type == "Runtime.ExitError":
            inv.outcome = Outcome.error("Runtime.ExitError",
                                        f"RequestId: {inv.request_id} Error: {inv.outcome.error_message}")
        return inv.outcome

    def stop(self) -> None:
        if self.proc is not None:
            processes.stop_group(self.proc)
        if self.api is not None:
            self.api.stop()


class NoCapacity(RuntimeError):
    """No instance became free in time (every warm instance busy)."""


@dataclass
class FunctionPool:
    """``size`` warm instances of one function; requests queue for a free one."""

    spec: FunctionSpec
    size: int = 1
    log: processes.LogSink | None = None
    failure: str | None = None  # why the function cannot serve (init failed), else None
    instance_factory: Callable[..., Instance] = Instance  # (spec, index, log) -> Instance
    _idle: FairQueue = field(default_factory=FairQueue)  # first come, first served
    _all: list[Instance] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False
    # hot swap (a new model version): invokes go to the successor once retired, and the pool
    # stops when the invocations it already took have finished
    _inflight: int = 0
    _successor: FunctionPool | None = None
    _drained: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        """Start every instance in parallel and wait for their init. Never raises: a failed
        init leaves :attr:`failure` set with the cause; the instances that did start serve."""
        self._all = [self.instance_factory(self.spec, i, self.log) for i in range(self.size)]
        errors: list[str] = []
        threads = [threading.Thread(target=self._start_one, args=(inst, errors)) for inst in self._all]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors and self._idle.qsize() == 0:
            self.failure = errors[0]

    def _start_one(self, inst: Instance, errors: list[str], park: bool = True) -> bool:
        try:
            inst.start()
        except InitFailed as exc:
            errors.append(str(exc))
            if not park:
                self._idle.put(inst)  # keep the slot: a later request retries the init
            return False
        if self._closed:  # stopped while this one was starting
            inst.stop()
            return False
        if park:
            self._idle.put(inst)
        return True

    def invoke(self, payload: bytes, *, acquire_timeout_s: float, timeout_s: float | None = None,
               answer_within_s: float | None = None) -> Outcome | None:
        """Invoke on a free instance; raise :class:`NoCapacity` if none frees up in time.
        A retired pool hands the invocation to its successor (the new version).

        With ``answer_within_s`` (API Gateway's integration timeout, counted from now), return
        None when no outcome came in that time: the invocation runs on to its own timeout in
        the background (still counted in flight), as a Lambda function outlives the API
        request that invoked it. Only that slow case costs a thread."""
        with self._drained:
            successor = self._successor
            if successor is None:
                self._inflight += 1
        if successor is not None:
            return successor.invoke(payload, acquire_timeout_s=acquire_timeout_s, timeout_s=timeout_s,
                                    answer_within_s=answer_within_s)
        try:
            outcome = self._invoke(payload, acquire_timeout_s, timeout_s, answer_within_s)
        except BaseException:
            self._leave()
            raise
        if outcome is not None:  # None: the background thread leaves when the function ends
            self._leave()
        return outcome

    def _leave(self) -> None:
        with self._drained:
            self._inflight -= 1
            self._drained.notify_all()

    def retire(self, successor: FunctionPool, *, drain_timeout_s: float) -> bool:
        """Send every new invocation to ``successor``, let the ones in flight finish (up to
        ``drain_timeout_s``), then stop. True if nothing was cut off."""
        with self._drained:
            self._successor = successor
            drained = self._drained.wait_for(lambda: self._inflight == 0, timeout=drain_timeout_s)
        self.stop()
        return drained

    def _invoke(self, payload: bytes, acquire_timeout_s: float, timeout_s: float | None,
                answer_within_s: float | None) -> Outcome | None:
        until = time.time() + answer_within_s if answer_within_s is not None else None
        try:
            inst: Instance = self._idle.get(timeout=acquire_timeout_s)
        except queue.Empty:
            raise NoCapacity(f"all {self.size} instance(s) of {self.spec.name} stayed busy "
                             f"for {acquire_timeout_s:.0f} s") from None
        if not inst.alive:  # it died while idle: a fresh environment takes this request
            inst.stop()
            errors: list[str] = []
            if not self._start_one(inst, errors, park=False):
                return Outcome.error("Runtime.InitError", errors[0])
        timeout = timeout_s or self.spec.timeout_s
        inv = inst.submit(payload, timeout)
        outcome = inst.wait(inv, timeout, until)
        if outcome is None:
            threading.Thread(target=self._finish, args=(inst, inv, timeout), daemon=True).start()
            return None
        self._release(inst)
        return outcome

    def _finish(self, inst: Instance, inv: Invocation, timeout_s: float) -> None:
        try:
            inst.wait(inv, timeout_s)
            self._release(inst)
        finally:
            self._leave()

    def _release(self, inst: Instance) -> None:
        if inst.alive:
            self._idle.put(inst)
        else:
            threading.Thread(target=self._restart, args=(inst,), daemon=True).start()

    def _restart(self, inst: Instance) -> None:
        """Replace a dead instance with a fresh process (a new cold start)."""
        inst.stop()
        if self._closed:
            return
        errors: list[str] = []
        if self._start_one(inst, errors):
            self.failure = None
            return
        self._idle.put(inst)  # keep the slot: the next request that takes it retries the init
        if not any(i.alive for i in self._all):
            self.failure = errors[0]

    def stop(self) -> None:
        self._closed = True
        for inst in self._all:
            inst.stop()
