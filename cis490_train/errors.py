"""One error tree: every failure a user can cause or fix is a `Cis490Error`.

Only the CLI prints these and picks exit codes; library code raises them with a
message that says what is wrong and what would be valid.
"""

from __future__ import annotations


class Cis490Error(Exception):
    """Root of every error the project raises on purpose."""

    exit_code = 1


class ConfigError(Cis490Error):
    """An environment variable or setting has an unusable value."""

    exit_code = 2


class UsageError(Cis490Error):
    """A command was called with arguments that do not fit together."""

    exit_code = 2


class ManifestError(Cis490Error):
    """A manifest cannot be used; `problems` lists every reason at once."""

    exit_code = 2

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        lines = [f"{source}: {len(self.problems)} {noun}"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class HyperparameterError(Cis490Error):
    """A model's hyperparameters do not fit its schema."""

    exit_code = 2


class UnknownModelError(HyperparameterError):
    """A model name that is not one of the registered models."""


class BrokerUnavailable(Cis490Error):
    """Redis (broker, registry) cannot be reached."""

    exit_code = 3

    def __init__(self, url: str, reason: str):
        self.url = url
        super().__init__(f"cannot reach Redis at {url}: {reason}")


class BadRequest(Cis490Error):
    """A message, a request or a task argument from outside that is not well-formed: refused, never acted on."""

    exit_code = 2


class BadRecord(Cis490Error):
    """A record in Redis that cannot be parsed: reported with its key and skipped, never a crash."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


class CoordinatorUnavailable(Cis490Error):
    """The coordinator did not answer a worker's request in time (it is down, or Redis is)."""

    exit_code = 3


class JobNotFound(Cis490Error):
    exit_code = 2

    def __init__(self, job: str):
        super().__init__(f"no job {job!r} in the registry (give a job id, a unique id prefix or a job name)")


class TierUnavailable(Cis490Error):
    """A worker was asked to serve a tier its hardware cannot serve."""

    exit_code = 2


class CapabilityFileError(Cis490Error):
    """CIS490_CAPABILITY_FILE points at something that is not a capability JSON."""

    exit_code = 2


class DataError(Cis490Error):
    """A dataset is missing or does not follow the data contract."""

    exit_code = 2


class SourceError(DataError):
    """A file given to `data import` is not what its format promises: the message names the file and
    (in a text format) the line, says what is wrong there and what would be valid."""

    def __init__(self, file: object, problem: str, line: int | None = None):
        self.file = str(file)
        self.line = line
        super().__init__(f"{file}{f':{line}' if line is not None else ''}: {problem}")


class TrainerError(Cis490Error):
    """Training itself failed (bad spec for the data, a model that cannot fit)."""


class SpecError(Cis490Error):
    """The trainer's spec file is missing, not JSON, or lacks or mistypes a field."""

    exit_code = 2


class ModelNotImplemented(TrainerError):
    """A registered model this trainer cannot train yet: the job, not the host, has to change."""

    exit_code = 2


class DeviceUnavailable(Cis490Error):
    """CUDA was asked for on a host (or a torch build) that cannot provide it."""

    exit_code = 2


class StoreError(Cis490Error):
    """The artifact store refused or failed an upload or download."""


class StoreAuthError(StoreError):
    exit_code = 2


class DigestMismatch(StoreError):
    """The bytes received do not hash to the artifact id they were sent under."""


class ArtifactNotFound(StoreError):
    exit_code = 2


class AmbiguousArtifact(ArtifactNotFound):
    """An id prefix that more than one stored artifact starts with."""


class EmbeddedRunError(Cis490Error):
    """`cis490-train run` could not start or keep one of its services."""


class RedisVersionError(EmbeddedRunError):
    """The redis-server at hand is too old for what was asked of it (ACL users need 7.0)."""

    exit_code = 2


class PermissionDenied(Cis490Error):
    """Redis refused the credential for this action (a worker user attempting an operator action)."""

    exit_code = 4
