"""The deployed control backend: training runs are the model's Step Functions executions;
versions are its functions' published Lambda versions behind the ``live`` alias.

``POST …/train`` starts an execution of the model's training state machine
(infra/cdk/constructs/training_pipeline.py) named after the run id, with input
``{"run_id", "origin": "api", "hyperparameters": {...}}``: the catalog's hyperparameters with
the request's over them, as the strings SageMaker takes; the state machine passes them to
CreateTrainingJob (without them, as for retraining, it uses the catalog's). A run's status
is its execution's (RUNNING → running, SUCCEEDED → succeeded, FAILED/TIMED_OUT/ABORTED →
failed), with the execution's output (the training job, the artifact, the build) and its
error. The job trains on the model's training channel, so a per-request ``data`` other than
it is refused (upload there instead); a hyperparameter the catalog does not declare is
refused too (the job's hyperparameters are fixed per name at deploy time).

``GET …/versions``, ``POST …/versions/{v}/promote`` and ``POST …/rollback`` run
:mod:`layers.aliases` on the model's api and batch functions: the ``live`` alias moves
through the model's CodeDeploy groups (canary, alarms, automatic rollback), exactly what
``modelfn versions|promote|rollback --deployed`` ask this function for. Promoting the live
version answers ``"changed": false``; an unknown version is a 404, nothing to roll back to a 409.

A model without ``training:`` has no state machine: its train routes answer 400 saying so.
A SageMaker-target model has no alias to move: its versions routes answer 400 saying so.

Runtime code: boto3 only. Configuration: env ``MODELFN_CONTROL`` (JSON ``{"model",
"state_machine_arn" (or null), "hyperparameters", "data", "deployment": {kind: {"function",
"application", "group"}} (or null)}``), set by infra/cdk/constructs/control_api.py.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from layers import aliases, names
from layers.errors import BadRequest, NotFound
from layers.protocols.control import Conflict

STATUS = {"RUNNING": "running", "PENDING_REDRIVE": "running", "SUCCEEDED": "succeeded",
          "FAILED": "failed", "TIMED_OUT": "failed", "ABORTED": "failed"}


def _string(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _time(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(value, "strftime") else None


class StepFunctionsControl:
    """One model's control backend on AWS (the function serves one model's routes)."""

    def __init__(self, config: dict[str, Any], client: Any = None, clients: dict[str, Any] | None = None) -> None:
        self.model: str = config["model"]
        self.state_machine_arn: str | None = config.get("state_machine_arn")
        self.hyperparameters: dict[str, str] = dict(config.get("hyperparameters") or {})
        self.data: str | None = config.get("data")
        self.deployment = aliases.targets_from(config.get("deployment") or {})
        self._clients: dict[str, Any] = dict(clients or {})
        if client is not None:
            self._clients["stepfunctions"] = client

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.client(service)
        return self._clients[service]

    @property
    def sfn(self) -> Any:
        return self._client("stepfunctions")

    @classmethod
    def from_env(cls) -> StepFunctionsControl:
        return cls(json.loads(os.environ[names.ENV_CONTROL]))

    def _check(self, model: str) -> None:
        if model != self.model:
            raise NotFound(f"no model named {model!r} here; this control route serves {self.model!r}")

    def _trained(self, model: str) -> str:
        self._check(model)
        if not self.state_machine_arn:
            raise BadRequest(f"{model!r} has no training: entry in its catalog, so it has no training runs; "
                             "add training: {entry_point: …} to the model and deploy it")
        return self.state_machine_arn

    def _execution_arn(self, run_id: str) -> str:
        head, _, name = self.state_machine_arn.rpartition(":stateMachine:")
        return f"{head}:execution:{name}:{run_id}"

    def start_training(self, model: str, hyperparameters: dict[str, Any], data: str | None) -> dict[str, Any]:
        self._trained(model)
        if unknown := sorted(set(hyperparameters) - set(self.hyperparameters)):
            raise BadRequest(f"unknown hyperparameter(s) {unknown} for {model!r}; the deployed training job "
                             f"takes {sorted(self.hyperparameters)} (training.hyperparameters in the catalog: "
                             "declare a name there and deploy to set it per run)")
        if data is not None and data.rstrip("/") != (self.data or "").rstrip("/"):
            raise BadRequest(f"data {data!r}: the deployed job trains on {self.data}; upload the training "
                             "files there (or omit \"data\")")
        running = self.sfn.list_executions(stateMachineArn=self.state_machine_arn, statusFilter="RUNNING",
                                           maxResults=1).get("executions", [])
        if running:
            active = running[0]["name"]
            raise Conflict(f"a training run of {model!r} is already in progress ({active}); wait for it "
                           f"(GET /v2/models/{model}/train/{active}) and start the next one then")
        run_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        merged = {**self.hyperparameters, **{k: _string(v) for k, v in hyperparameters.items()}}
        out = self.sfn.start_execution(stateMachineArn=self.state_machine_arn, name=run_id, input=json.dumps(
            {"run_id": run_id, "origin": "api", "hyperparameters": merged}))
        return {"model": model, "run_id": run_id, "status": "queued", "created_at": _time(out.get("startDate")),
                "started_at": None, "finished_at": None, "hyperparameters": merged, "data": self.data,
                "version": None, "promoted": None, "reason": None, "metrics": {}, "error": None,
                "execution_arn": out["executionArn"]}

    def training_run(self, model: str, run_id: str) -> dict[str, Any]:
        self._trained(model)
        try:
            ex = self.sfn.describe_execution(executionArn=self._execution_arn(run_id))
        except self.sfn.exceptions.ExecutionDoesNotExist:
            raise NotFound(f"no training run {run_id!r} of {model!r}; GET /v2/models/{model}/train "
                           "lists its runs") from None
        return self._run(ex)

    def _run(self, ex: dict[str, Any]) -> dict[str, Any]:
        status = STATUS.get(ex["status"], "running")
        try:
            given = json.loads(ex.get("input") or "{}")
        except ValueError:
            given = {}
        try:
            output = json.loads(ex["output"]) if ex.get("output") else {}
        except ValueError:
            output = {}
        error = None
        if status == "failed":
            error = ": ".join(filter(None, [ex.get("error"), ex.get("cause")])) or ex["status"]
        return {"model": self.model, "run_id": ex["name"], "status": status,
                "created_at": _time(ex.get("startDate")), "started_at": _time(ex.get("startDate")),
                "finished_at": _time(ex.get("stopDate")), "hyperparameters": given.get("hyperparameters"),
                "data": self.data, "version": output.get("version"), "promoted": output.get("promoted"),
                "reason": output.get("reason") or error, "metrics": output.get("metrics") or {},
                "error": error, "execution_arn": ex["executionArn"],
                **{k: output[k] for k in ("training_job", "artifact", "build") if k in output}}

    def training_runs(self, model: str) -> list[dict[str, Any]]:
        self._trained(model)
        runs = []
        for page in self.sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine_arn):
            for item in page.get("executions", []):
                runs.append({"model": model, "run_id": item["name"], "status": STATUS.get(item["status"], "running"),
                             "created_at": _time(item.get("startDate")), "finished_at": _time(item.get("stopDate")),
                             "execution_arn": item["executionArn"]})
        return sorted(runs, key=lambda r: r["created_at"] or "", reverse=True)

    def _targets(self, model: str) -> dict[str, aliases.Target]:
        self._check(model)
        if not self.deployment:
            raise BadRequest(f"{model!r} is served from SageMaker, which has no Lambda versions to list or "
                             "move; deploy another version with `modelfn deploy`")
        return self.deployment

    def _answer(self, call):
        try:
            return call()
        except aliases.UnknownVersion as exc:
            raise NotFound(str(exc)) from None
        except aliases.DeployedError as exc:  # nothing to roll back to, no live alias
            raise Conflict(str(exc)) from None

    def versions(self, model: str) -> dict[str, Any]:
        found = self._targets(model)
        return self._answer(lambda: aliases.versions_doc(self._client("lambda"), found, model))

    def promote(self, model: str, version: str) -> dict[str, Any]:
        found = self._targets(model)
        return self._answer(lambda: aliases.move_live(
            self._client("lambda"), self._client("codedeploy"), found, model, version,
            f"promoted over HTTPS: POST /v2/models/{model}/versions/{version}/promote"))

    def rollback(self, model: str) -> dict[str, Any]:
        found = self._targets(model)
        return self._answer(lambda: aliases.move_live(
            self._client("lambda"), self._client("codedeploy"), found, model, None,
            f"rolled back over HTTPS: POST /v2/models/{model}/rollback"))
