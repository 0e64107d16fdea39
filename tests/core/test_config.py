"""Settings come from the environment in one place; bad values fail with the variable's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from cis490_train.config import Settings
from cis490_train.errors import ConfigError


def test_defaults_work_on_one_machine(tmp_path):
    s = Settings.from_env({"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert s.broker_url == "redis://127.0.0.1:6379/0" and s.result_backend == s.broker_url
    assert s.store_url == "http://127.0.0.1:8490"
    assert s.store_root == tmp_path / "data" / "cis490" / "store"
    assert (s.heartbeat_s, s.stale_after_s) == (5.0, 15.0)
    assert s.trainer_wrapper == ()


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"CIS490_HEARTBEAT_S": "5", "CIS490_STALE_AFTER_S": "10"}, "CIS490_STALE_AFTER_S=10 must be more than twice CIS490_HEARTBEAT_S=5"),
        ({"CIS490_HEARTBEAT_S": "often"}, "CIS490_HEARTBEAT_S='often' is not a number"),
        ({"CIS490_STORE_MAX_BYTES": "1.5"}, "CIS490_STORE_MAX_BYTES='1.5' is not an integer"),
        ({"CIS490_BROKER_URL": "amqp://x"}, "only redis://"),
        ({"CIS490_TRAINER_WRAPPER": "nice -n 'unbalanced"}, "CIS490_TRAINER_WRAPPER=\"nice -n 'unbalanced\" is not a command line"),
    ],
)
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert needle in str(err.value)


def test_trainer_wrapper_is_split_like_a_shell_would():
    s = Settings.from_env({"CIS490_TRAINER_WRAPPER": "systemd-run --scope -p 'MemoryMax=32G' nice -n 10"})
    assert s.trainer_wrapper == ("systemd-run", "--scope", "-p", "MemoryMax=32G", "nice", "-n", "10")


def test_redis_server_is_unset_unless_named():
    assert Settings.from_env({}).redis_server is None
    assert Settings.from_env({"CIS490_REDIS_SERVER": "/opt/redis/bin/redis-server"}).redis_server == Path("/opt/redis/bin/redis-server")


def test_trainer_log_settings_default_and_refuse_bad_values():
    s = Settings.from_env({})
    assert (s.log_lines, s.log_keep_s) == (10_000, 7 * 86400.0)
    assert Settings.from_env({"CIS490_LOG_LINES": "0"}).log_lines == 0
    for env, needle in (({"CIS490_LOG_LINES": "-1"}, "CIS490_LOG_LINES='-1' must be >= 0"), ({"CIS490_LOG_KEEP_S": "0"}, "CIS490_LOG_KEEP_S='0' must be >= 1")):
        with pytest.raises(ConfigError) as err:
            Settings.from_env(env)
        assert needle in str(err.value)
