"""A real Apache Kafka broker on loopback, from the official jars on Maven Central (no Docker needed).

Design notes: ../shared/design/local-kafka.md. One KRaft combined broker+controller, single-node settings that
transactions and compaction need, jars cached outside the work tree and keyed by version, a completion marker
written only after Maven succeeds, stop by process group (SIGTERM, then SIGKILL after a deadline).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from scheduler.errors import LocalBrokerError
from scheduler.logs import LIBRDKAFKA_LOG

__all__ = [
    "KAFKA_VERSION",
    "BrokerHandle",
    "ensure_jars",
    "make_ca",
    "read_state",
    "start",
    "status",
    "stop",
    "wait_ready",
]

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.kafka-runtime</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>1.7.36</version></dependency>
  </dependencies>
</project>
"""

_SERVER_PROPERTIES = """process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners={listeners}
advertised.listeners={advertised}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL
log.dirs={data}
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
default.replication.factor=1
min.insync.replicas=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
num.partitions=1
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
auto.create.topics.enable=false
log.cleaner.enable=true
log.cleaner.dedupe.buffer.size=33554432
log.cleaner.backoff.ms=1000
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
transaction.remove.expired.transaction.cleanup.interval.ms=3600000
{extra}
"""

_SASL_PROPERTIES = """sasl.enabled.mechanisms=SCRAM-SHA-256
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required;
"""

# Kafka reads an unencrypted PKCS#8 key and its certificate chain from one PEM file (no keystore password).
_SSL_PROPERTIES = """listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location={keystore}
listener.name.ssl.ssl.client.auth=none
"""

_LOG4J2 = """status = warn
name = kafka-local
property.logdir = ${sys:kafka.logs.dir:-.}
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${logdir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


@dataclass(frozen=True)
class BrokerHandle:
    """What a running local broker is: enough to find it again from another process."""

    pid: int
    bootstrap: str
    run_dir: str
    sasl_bootstrap: str | None = None
    ssl_bootstrap: str | None = None
    ssl_ca: str | None = None  # the PEM file a client passes as ssl.ca.location

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> BrokerHandle:
        return cls(**json.loads(text))


def read_state(path: Path) -> BrokerHandle | None:
    """The broker recorded in `path`: None if the file is missing or empty (as `mktemp` leaves it),
    LocalBrokerError naming the file if it holds anything else (it is not overwritten: it may not be ours)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise LocalBrokerError(f"cannot read the broker state file {path}: {exc}") from None
    if not text.strip():
        return None
    try:
        handle = BrokerHandle.from_json(text)
    except (ValueError, TypeError) as exc:
        raise LocalBrokerError(
            f"{path} is not a broker state file ({type(exc).__name__}: {exc}): remove it or pass another --state"
        ) from None
    if not isinstance(handle.pid, int) or not isinstance(handle.bootstrap, str):
        raise LocalBrokerError(f"{path} is not a broker state file (no pid and bootstrap): remove it")
    return handle


def cache_dir() -> Path:
    """Jars live outside the work tree so every clone and CI run reuses them."""
    root = os.environ.get("KAFKA_SCHEDULER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "kafka-scheduler"
    )
    return Path(root)


def check_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise LocalBrokerError(
            "java not found: install OpenJDK 17 or newer (apt-get install openjdk-17-jre-headless)"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)', out)
    if match is None or int(match.group(1)) < 17:
        raise LocalBrokerError(
            f"Kafka {KAFKA_VERSION} needs Java 17 or newer; `java -version` says: {out.strip()}"
        )
    return java


def ensure_jars(version: str = KAFKA_VERSION, log4j: str = LOG4J_VERSION) -> Path:
    """Resolve the broker's jars once; later calls use the cache and need no network."""
    home = cache_dir() / f"kafka-{version}"
    libs, marker = home / "libs", home / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalBrokerError(
            "mvn not found: install Apache Maven (apt-get install maven) to fetch the broker jars"
        )
    home.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(libs, ignore_errors=True)
    (home / "pom.xml").write_text(_POM.format(kafka=version, log4j=log4j))
    print(
        f"resolving Apache Kafka {version} broker jars from Maven Central into {libs} (once, ~50 MB)",
        flush=True,
    )
    proc = subprocess.run(
        [mvn, "-B", "-ntp", "-q", DEPENDENCY_PLUGIN, "-DincludeScope=runtime", f"-DoutputDirectory={libs}"],
        cwd=home,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise LocalBrokerError(
            f"mvn could not resolve the Kafka jars:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
        )
    marker.write_text("\n".join(sorted(p.name for p in libs.glob("*.jar"))))
    return libs


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class _ExtraListeners(NamedTuple):
    """The optional SASL and SSL listeners: their URLs, their broker properties, what the handle records."""

    urls: list[str]
    properties: str
    sasl_bootstrap: str | None
    ssl_bootstrap: str | None
    ssl_ca: str | None


def _extra_listeners(run: Path, *, sasl: bool, ssl: bool) -> _ExtraListeners:
    urls: list[str] = []
    properties = ""
    sasl_bootstrap = ssl_bootstrap = ssl_ca = None
    if sasl:
        sasl_bootstrap = f"127.0.0.1:{_free_port()}"
        urls.append(f"SASL_PLAINTEXT://{sasl_bootstrap}")
        properties += _SASL_PROPERTIES
    if ssl:
        ca = make_ca(run / "tls")
        ssl_ca, ssl_bootstrap = str(ca), f"127.0.0.1:{_free_port()}"
        urls.append(f"SSL://{ssl_bootstrap}")
        properties += _SSL_PROPERTIES.format(keystore=_server_keystore(run / "tls", ca))
    return _ExtraListeners(urls, properties, sasl_bootstrap, ssl_bootstrap, ssl_ca)


def start(
    port: int | None = None,
    *,
    run_dir: Path | None = None,
    sasl: bool = False,
    ssl: bool = False,
    deadline_s: float = 90.0,
) -> BrokerHandle:
    """Format storage, start the JVM in its own process group, wait until it serves transactions.

    `sasl` adds a SASL_PLAINTEXT SCRAM-SHA-256 listener, `ssl` an SSL listener whose certificate a throwaway CA
    in <run_dir>/tls signed; the handle records both addresses and the CA file.
    """
    java = check_java()
    libs = ensure_jars()
    if port is not None and _port_taken(port):
        raise LocalBrokerError(
            f"port {port} on 127.0.0.1 is taken: stop what holds it or pick another --port"
        )
    run = run_dir or Path(tempfile.mkdtemp(prefix="kafka-local-"))
    for sub in ("logs", "data"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    cport = _free_port()
    extra = _extra_listeners(run, sasl=sasl, ssl=ssl)
    plain = f"PLAINTEXT://127.0.0.1:{port}"
    props = run / "server.properties"
    props.write_text(
        _SERVER_PROPERTIES.format(
            cport=cport,
            listeners=",".join([plain, f"CONTROLLER://127.0.0.1:{cport}", *extra.urls]),
            advertised=",".join([plain, *extra.urls]),
            data=run / "data",
            extra=extra.properties,
        )
    )
    (run / "log4j2.properties").write_text(_LOG4J2)
    jvm = [
        f"-Dlog4j2.configurationFile={run / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={run / 'logs'}",
        "-cp",
        str(libs / "*"),
    ]
    _format_storage([java, "-Xmx256m", *jvm], props, sasl=sasl)
    heap = ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError"]
    with open(run / "logs" / "stdout.log", "wb") as out:
        proc = subprocess.Popen(
            [java, *heap, "-Djava.awt.headless=true", *jvm, "kafka.Kafka", str(props)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    handle = BrokerHandle(
        proc.pid, f"127.0.0.1:{port}", str(run), extra.sasl_bootstrap, extra.ssl_bootstrap, extra.ssl_ca
    )
    (run / "broker.json").write_text(handle.to_json())
    try:
        wait_ready(handle.bootstrap, proc, deadline_s)
    except BaseException:
        stop(handle)
        raise
    return handle


def _format_storage(java: list[str], props: Path, *, sasl: bool) -> None:
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    fmt = [*java, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(props)]
    if sasl:
        fmt += ["--add-scram", "SCRAM-SHA-256=[name=scheduler,password=scheduler-secret]"]
    formatted = subprocess.run(fmt, capture_output=True, text=True, check=False)
    if formatted.returncode != 0:
        raise LocalBrokerError(f"formatting Kafka storage failed: {formatted.stdout}{formatted.stderr}")


def _openssl(command: str, *args: str, cwd: Path) -> None:
    """Run `openssl <command split on spaces> <args>` in cwd; args may contain spaces."""
    exe = shutil.which("openssl")
    if exe is None:
        raise LocalBrokerError(
            "openssl not found: install it (apt-get install openssl) to give the broker a TLS listener"
        )
    done = subprocess.run(
        [exe, *command.split(), *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise LocalBrokerError(f"openssl {command} failed: {done.stderr.strip()[-2000:]}")


_NEW_EC_KEY = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"  # -nodes: the key file is not encrypted


def make_ca(directory: Path, name: str = "ca") -> Path:
    """A throwaway certificate authority (<name>.pem, <name>.key; 7 days) for dev brokers and tests only."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_only = "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
    subject = f"/CN=kafka-scheduler throwaway {name} {uuid.uuid4().hex[:8]}"
    _openssl(
        f"req -x509 {_NEW_EC_KEY} -keyout {name}.key -out {name}.pem -days 7 {ca_only} -subj",
        subject,
        cwd=directory,
    )
    return directory / f"{name}.pem"


def _server_keystore(directory: Path, ca: Path) -> Path:
    """Key and certificate for 127.0.0.1 and localhost, signed by `ca`, in one PEM file (ssl.keystore.type=PEM)."""
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    _openssl(f"req -new {_NEW_EC_KEY} -keyout server.key -out server.csr -subj /CN=localhost", cwd=directory)
    serial = int(uuid.uuid4().hex[:15], 16)
    _openssl(
        f"x509 -req -in server.csr -CA {ca.name} -CAkey {ca.stem}.key -set_serial {serial} -days 7"
        " -extfile server.ext -out server.pem",
        cwd=directory,
    )
    keystore = directory / "server-keystore.pem"
    keystore.write_text("".join((directory / f).read_text() for f in ("server.key", "server.pem", ca.name)))
    keystore.chmod(0o600)
    return keystore


def _server_log_tail(run_dir: str) -> str:
    log = Path(run_dir) / "logs" / "server.log"
    lines = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
    return "\n".join(lines)


def wait_ready(bootstrap: str, proc: subprocess.Popen[bytes] | None, deadline_s: float = 90.0) -> None:
    """Metadata answers, then warm up the transaction and offsets topics so the first test is not slow."""
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    end = time.monotonic() + deadline_s
    admin = AdminClient({**LIBRDKAFKA_LOG, "bootstrap.servers": bootstrap, "log_level": 0})
    last: Exception | None = None
    while True:
        if proc is not None and proc.poll() is not None:
            raise LocalBrokerError(f"broker exited with code {proc.returncode}; see its server.log")
        try:
            if admin.list_topics(timeout=2.0).brokers:
                break
        except KafkaException as exc:
            last = exc
        if time.monotonic() > end:
            raise LocalBrokerError(f"broker at {bootstrap} not ready in {deadline_s:.0f}s: {last}")
        time.sleep(0.2)
    topic = "__readiness_probe"
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    try:
        futures[topic].result(timeout=30)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise
    producer = Producer(
        {
            **LIBRDKAFKA_LOG,
            "bootstrap.servers": bootstrap,
            "transactional.id": f"readiness-{uuid.uuid4()}",
            "log_level": 0,
        }
    )
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic, b"x")
    producer.commit_transaction(60)
    consumer = Consumer(
        {
            **LIBRDKAFKA_LOG,
            "bootstrap.servers": bootstrap,
            "group.id": "readiness-probe",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    consumer.close()


def stop(handle: BrokerHandle, timeout_s: float = 30.0) -> None:
    """SIGTERM the process group (clean shutdown hook), SIGKILL after the deadline."""
    try:
        os.killpg(handle.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if not _alive(handle.pid):
            return
        time.sleep(0.1)
    try:
        os.killpg(handle.pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def status(handle: BrokerHandle) -> bool:
    return _alive(handle.pid)
