"""librdkafka's own log lines go through Python logging in every client the project builds: no raw `%N|` lines.

Each case builds one kind of client in a fresh process pointed at a closed port, so librdkafka has errors to
report (connection refused), with the project's JSON logging; stderr must hold JSON lines only, librdkafka's among
them. On a client without confluent-kafka's `logger` setting librdkafka writes `%3|...|FAIL|...` itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

CLOSED = "127.0.0.1:1"
PRELUDE = "from scheduler.logs import configure_logging; configure_logging(json=True, level='INFO')\n"
CASES = {
    "client": (  # no target check: that would end in a DeliveryError before the producer has anything to log
        "from scheduler.client import SchedulerClient\n"
        "from scheduler.config import ClientSettings\n"
        f"c = SchedulerClient({CLOSED!r}, settings=ClientSettings(check_targets=False))\n"
        "c.schedule('a', topic='t', value=b'v', at=0)\n"
        "c.flush(3)\n"
    ),
    "service": (
        "from scheduler.kafka.clients import build_consumer\n"
        "from scheduler.settings import ServiceSettings\n"
        f"build_consumer(ServiceSettings(bootstrap_servers={CLOSED!r})).poll(3)\n"
    ),
    "consumers": (
        "from consumers.kafka_config import new_consumer\n"
        "from consumers.settings import ConsumerSettings\n"
        f"new_consumer(ConsumerSettings(bootstrap_servers={CLOSED!r}), 'g', None).poll(3)\n"
    ),
    "ops": (
        "from scheduler.ops.reader import _consumer\n"
        "from scheduler.settings import ServiceSettings\n"
        f"_consumer(ServiceSettings(bootstrap_servers={CLOSED!r})).poll(3)\n"
    ),
    "demo": (f"from scheduler.dev import demo\ndemo._watcher({CLOSED!r}).poll(3)\n"),
}
RAW = re.compile(r"^%\d\|", re.MULTILINE)


@pytest.mark.parametrize("case", sorted(CASES))
def test_librdkafka_lines_come_through_python_logging(case: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + CASES[case]], capture_output=True, text=True, timeout=60, check=False
    )
    assert not RAW.search(done.stderr), done.stderr[:2000]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    docs = [json.loads(line) for line in lines]  # every line is ours: one JSON object
    assert any(d["logger"] == "librdkafka" for d in docs), done.stderr[:2000]
