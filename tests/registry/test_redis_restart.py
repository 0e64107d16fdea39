"""Redis restarts mid-run with the deployment's settings (AOF, noeviction): nothing is lost."""

from __future__ import annotations

import pytest
import redis

from cis490_train.operator.embedded import RedisServer
from cis490_train.registry import Registry
from helpers.fleet import cli, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def aof_redis(tmp_path):
    server = RedisServer(tmp_path / "aof-redis", appendonly=True).start()
    yield server
    server.stop()


def test_restart_mid_run_loses_no_job_and_no_result(fleet_env, aof_redis, store, start_worker, tmp_path):
    url = aof_redis.url
    fleet_env.update(CIS490_BROKER_URL=url, CIS490_RESULT_BACKEND=url)
    registry = Registry(url)
    jobs = "".join(
        f'[[jobs]]\nname = "j{i}"\nmodel = "{"mlp" if i % 2 else "gbt"}"\nseed = {i}\nsplit_recipe = "sample"\nn_resamples = 100\n'
        + ('hyper = { epochs = 60, batch_size = 16, early_stopping = false }\n' if i % 2 else "hyper = { n_estimators = 20 }\n")
        for i in range(6)
    )
    manifest = tmp_path / "restart.toml"
    manifest.write_text(f'schema_version = 1\nname = "restart"\n{jobs}')
    w = start_worker("box", "cpu", wait=False)
    w.start(registry)
    assert cli(fleet_env, "enqueue", str(manifest)).returncode == 0
    names = [f"j{i}" for i in range(6)]
    wait_for(lambda: any(registry.find(n).status == "completed" for n in names), 120, "a first completed job")
    wait_for(lambda: any(registry.find(n).status == "running" for n in names), 60, "a running job")
    before = {n: registry.find(n).status for n in names}

    aof_redis.restart()
    down = cli(fleet_env, "status")
    assert down.returncode == 0, down.stderr  # the CLI reconnects by itself

    wait_for(lambda: all(registry.find(n).status == "completed" for n in names), 240, "every job to complete after the restart")
    assert w.alive
    for name in names:
        if before[name] == "completed":
            assert registry.find(name).attempt == 1
    artifacts = {j.artifact_id for j in (registry.find(n) for n in names)}
    assert len(artifacts) == 6 and all(artifacts)


def test_redis_down_is_one_line_for_enqueue_and_status(fleet_env, aof_redis, tmp_path):
    url = aof_redis.url
    fleet_env.update(CIS490_BROKER_URL=url, CIS490_RESULT_BACKEND=url)
    manifest = tmp_path / "m.toml"
    manifest.write_text('schema_version = 1\nname = "m"\n[[jobs]]\nname = "a"\nmodel = "gbt"\n')
    aof_redis.stop()
    for args in (("enqueue", str(manifest)), ("status",), ("show", "a"), ("workers",)):
        out = cli(fleet_env, *args)
        assert out.returncode == 3, args
        assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"error: cannot reach Redis at {url}")
    aof_redis.start()
    assert redis.Redis.from_url(url).dbsize() == 0
