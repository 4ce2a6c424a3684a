"""One worker of a multi-worker unit: `python -m scheduler.cli.worker K FD`, started by `WorkerUnit`.

The unit writes the worker's settings (pickled) on stdin and keeps that pipe open: end of file means the unit is
gone (SIGKILLed too), and the worker then drains and exits as after SIGTERM, so no worker outlives its unit. The
worker says where it serves metrics and health on fd FD (`port N`), and why it failed (`failed <line>`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
import threading

from confluent_kafka import KafkaException

from scheduler.cli.failures import exit_for
from scheduler.errors import SchedulerError
from scheduler.logs import configure_logging
from scheduler.service.app import SchedulerService
from scheduler.settings import ServiceSettings

__all__ = ["main"]

log = logging.getLogger(__name__)


class _WorkerTag(logging.Filter):
    """Every log line of worker K carries `worker=K`: the unit's workers share one stderr."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


def main(argv: list[str]) -> int:
    worker, report_fd = int(argv[0]), int(argv[1])
    settings = pickle.load(sys.stdin.buffer)  # from the unit that started us, over a pipe only it holds
    if not isinstance(settings, ServiceSettings):
        raise TypeError(f"worker {worker}: expected ServiceSettings on stdin, got {type(settings).__name__}")
    configure_logging(json=settings.log_json, level=settings.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerTag(worker))
    with open(report_fd, "w", buffering=1, encoding="ascii") as report:
        service = SchedulerService(settings)
        service.on_http_port = lambda port: print(f"port {port}", file=report)
        service.install_signal_handlers()
        watch = threading.Thread(target=_stop_when_unit_gone, args=(service,), name="unit-watch", daemon=True)
        watch.start()
        try:
            service.run()
        except (SchedulerError, KafkaException) as exc:
            code, line = exit_for(exc)
            print("failed " + line.replace("\n", " "), file=report)  # the unit prints it, once
            return code
    return 0


def _stop_when_unit_gone(service: SchedulerService) -> None:
    """Blocks on stdin until end of file (the unit exited or closed it), then stops the worker gracefully."""
    # os.read, not sys.stdin: a daemon thread blocked in a buffered read aborts the interpreter's exit.
    with contextlib.suppress(OSError):
        while os.read(sys.stdin.fileno(), 4096):
            pass
    if not service.stopping.is_set():
        log.warning("the unit that started this worker is gone: draining and exiting")
        service.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
