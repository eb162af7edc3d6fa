"""SageMaker serving entry point: ``python -m functions.sagemaker.serve [--host H] [--port P]``.

Wiring only: the model and its data plane are the API function's (``functions.api.handler``:
the model loaded and verified once, the shared observability), served by the runtime's
SageMaker container transport (:mod:`layers.http.sagemaker`: ``GET /ping``,
``POST /invocations`` with the custom-attribute routes of :mod:`layers.sagemaker_wire`, the
``route=POST /batch`` asynchronous batch path). SIGTERM/SIGINT stop the server cleanly.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from layers import names, sagemaker_wire
from layers.http.sagemaker import BatchInvocationContext, InvocationContext  # noqa: F401 (re-exported)

CUSTOM_ATTRIBUTES = sagemaker_wire.HEADER
BATCH_ROUTE = names.SAGEMAKER_BATCH_ROUTE


def parse_custom_attributes(value: str | None) -> tuple[str | None, str | None, str | None]:
    """``route=<METHOD> <PATH>;inference-header-content-length=<n>`` → (method, path, n)."""
    return tuple(sagemaker_wire.parse(value))


def make_server(host: str = "0.0.0.0", port: int = 8080) -> ThreadingHTTPServer:
    """Load the model (through the API handler module) and bind; call ``serve_forever()``."""
    os.environ.setdefault(names.ENV_MODEL_DIR, names.SAGEMAKER_MODEL_DIR)
    from functions.api import handler as api  # loads and verifies the model
    from layers.http import sagemaker

    services: list[Any] = []

    def batch_service():
        """The batch job over the same model, built on the first batch invocation."""
        if not services:
            from layers.batch.service import BatchService

            services.append(BatchService(api.model))
        return services[0]

    return sagemaker.make_server(api.binding, api.obs, host=host, port=port, batch_service=batch_service)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m functions.sagemaker.serve",
                                     description="Serve one model with the SageMaker container contract.")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"],
                        help="SageMaker starts containers with 'serve'")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port)

    def stop(signum: int, _frame: Any) -> None:
        # shutdown() waits for serve_forever() to return, so it must not run on this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    from functions.api.handler import model

    # a generative model says where its decoding loop runs (MODELFN_EXECUTION_PROVIDER: cpu or cuda)
    where = getattr(model, "execution_provider", None)
    print(f"modelfn serving on http://{host}:{port} (GET /ping, POST /invocations)"
          + (f"; {model.name} generates on {where}" if where else ""), flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
