"""The Amazon ECR adapter of the registry port: DescribeImages in chunks of 100, via boto3.

boto3/botocore are imported only when a call is about to be made, so a render served from the cache
never pays their ~150 ms import.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NamedTuple

from cmp.errors import RegistryError
from cmp.registry.base import Lookup, RegistryUnavailable, TagInfo, epoch_seconds, is_digest
from cmp.registry.observe import SILENT, RegistryObserver

if TYPE_CHECKING:
    from cmp.registry.names import EcrRegistry, EcrRepository

IDS_PER_CALL = 100  # the most imageIds DescribeImages/BatchGetImage take; botocore does not split
PAGE_SIZE = 1000  # the maximum maxResults for DescribeImages/ListImages
# After this many ImageNotFoundException retries in one repository, one listing is cheaper.
MISSING_RETRIES_BEFORE_LISTING = 3

# The one id AWS (and moto) name in ImageNotFoundException:
# "The image with imageId {imageDigest:'null', imageTag:'latest'} does not exist within ..."
_MISSING_TAG = re.compile(r"imageTag:'([^']*)'")

# BatchGetImage converts manifests it is not allowed to return as-is; accepting every type keeps
# the stored (index) digest, the one a pull by tag resolves to.
ACCEPTED_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
)

_THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "LimitExceededException",
        "RequestLimitExceeded",
    }
)
_BAD_CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)


# The AWS error codes reported by name (cmp.registry.observe); any other is `other`, so a
# metric label stays bounded whatever an endpoint answers.
_KNOWN_CODES = (
    _THROTTLING_CODES
    | _BAD_CREDENTIAL_CODES
    | {
        "AccessDeniedException",
        "RepositoryNotFoundException",
        "ImageNotFoundException",
        "ServerException",
        "InvalidParameterException",
        "ValidationException",
        "ServiceUnavailable",
        "InternalFailure",
    }
)


class EcrSettings(NamedTuple):
    """How hard to try; the defaults are the TAGPIN_ECR_* settings' (tests/unit/registry/
    test_build.py keeps them equal).

    No attempt (first or retry) starts after `deadline`, so a whole run ends within deadline +
    one read timeout (17 s with the defaults) however many repositories: a hung endpoint gets
    3 attempts of 5 s, throttling 4 attempts with 1-2-4 s jittered backoff (<= 7 s).
    """

    max_attempts: int = 4  # per call, including the first (botocore "standard" retry mode)
    connect_timeout: float = 3.0  # seconds
    read_timeout: float = 5.0  # seconds; DescribeImages answers in well under one
    deadline: float = 12.0  # seconds from the adapter's creation after which no call starts
    concurrency: int = 8  # parallel repositories; also the HTTP pool size per region


class _RepositoryNotFound(Exception):
    pass


class _ImageNotFound(Exception):
    pass


class _DeadlinePassed(Exception):
    pass


# Whether the deadline of the adapter making the current call has passed: a client may serve
# several adapters in turn (EcrClients kept by a long-lived process), so its botocore hook
# asks whoever is calling, in the calling thread.
_DEADLINE_PASSED: ContextVar[Callable[[], bool]] = ContextVar("tagpin_ecr_deadline_passed")


def _refuse_after_deadline(**_: Any) -> None:
    """botocore `before-send` hook: also stops retries once the caller's deadline has passed."""
    passed = _DEADLINE_PASSED.get(None)
    if passed is not None and passed():
        raise _DeadlinePassed()


# botocore's parsed models and endpoint rules (the JSON files it ships): ~40 ms to read for each
# new session, and the same for every render. A process keeps them, by the search path they
# were read from (AWS_DATA_PATH); never credentials or configuration, which each session
# resolves afresh (so the next render reads a rotated key or a changed profile).
_MODEL_LOADERS: dict[object, Any] = {}
_MODEL_LOADERS_LOCK = threading.Lock()


def new_session() -> Any:
    """A boto3 session with its own credentials and configuration (the standard chain, read
    now), sharing this process's parsed botocore models."""
    import boto3.session  # type: ignore[import-untyped,unused-ignore]
    import botocore.session  # type: ignore[import-untyped,unused-ignore]

    core = botocore.session.Session()
    data_path = core.get_config_variable("data_path")
    with _MODEL_LOADERS_LOCK:
        kept = _MODEL_LOADERS.get(data_path)
        if kept is None:
            kept = _MODEL_LOADERS[data_path] = core.get_component("data_loader")
        else:
            core.register_component("data_loader", kept)
        session = boto3.session.Session(botocore_session=core)
        # boto3 appends its data directory to the loader's path for each session: once is enough.
        kept.search_paths[:] = dict.fromkeys(kept.search_paths)
    return session


def preload_models() -> None:
    """Read ECR's models and endpoint rules into this process's kept loader: a render server
    does it once, before it forks workers. Explicit dummy keys: no credential is looked up."""
    from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped,unused-ignore]

    try:
        client = new_session().client(
            "ecr", region_name="us-east-1", aws_access_key_id="-", aws_secret_access_key="-"
        )
        client.get_paginator("describe_images")
    except BotoCoreError:
        pass  # this process's AWS configuration is broken: a render reads it and says so


class EcrClients:
    """botocore ECR clients, one per Region and endpoint kind (FIPS, dual-stack), made on first
    use from one boto3 session (the standard credential chain: environment, profile, IRSA,
    Pod Identity). Thread-safe. A render makes its own (`EcrRegistryClient`'s default); a
    process rendering many times may keep one and pass it to each render's adapter: the
    clients hold no render's state (the deadline is the adapter's)."""

    def __init__(self, settings: EcrSettings) -> None:
        self.settings = settings  # the clients' timeouts, retries and connection pool
        self._lock = threading.Lock()
        self._session: Any = None  # boto3 sessions are not thread-safe: used only under _lock
        self._clients: dict[tuple[str, bool, bool], Any] = {}

    def client(self, registry: EcrRegistry) -> Any:
        key = (registry.region, registry.fips, registry.dualstack)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._new_client(registry)
            return client

    def _new_client(self, registry: EcrRegistry) -> Any:
        from botocore.config import Config  # type: ignore[import-untyped,unused-ignore]
        from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped,unused-ignore]

        settings = self.settings
        # An endpoint set by AWS_ENDPOINT_URL_ECR (honoured by botocore) wins over FIPS/dual-stack.
        config = Config(
            retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_pool_connections=max(1, settings.concurrency),
            user_agent_appid="tagpin",
            use_fips_endpoint=registry.fips,
            use_dualstack_endpoint=registry.dualstack,
        )
        try:
            if self._session is None:
                self._session = new_session()
            client = self._session.client("ecr", region_name=registry.region, config=config)
        except BotoCoreError as error:
            raise RegistryError(
                f"cannot create an ECR client for {registry.region}: {error}; check the "
                "sidecar's AWS configuration (AWS_PROFILE, AWS_CONFIG_FILE, AWS_REGION)"
            ) from error
        client.meta.events.register("before-send.ecr", _refuse_after_deadline)
        return client


class EcrRegistryClient:
    """`Registry` backed by ECR, for one render: no call starts after its deadline (counted
    from its creation). Thread-safe. `clients` may be kept by the process between renders; by
    default the adapter makes its own."""

    def __init__(
        self,
        settings: EcrSettings | None = None,
        *,
        clients: EcrClients | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        observer: RegistryObserver = SILENT,
    ) -> None:
        self._settings = settings or EcrSettings()
        self._clients = clients if clients is not None else EcrClients(self._settings)
        self._observer = observer
        self._monotonic = monotonic
        self._deadline_at = monotonic() + self._settings.deadline

    # -- the port ---------------------------------------------------------------------------

    def describe_tags(self, repo: EcrRepository, tags: Collection[str]) -> Lookup:
        wanted = sorted(set(tags))
        if not wanted:
            return Lookup()
        client = self._client(repo.registry)
        found: dict[str, TagInfo] = {}
        missing: set[str] = set()
        tagged: frozenset[str] | None = None  # every tag of the repository, once listed
        retries_left = MISSING_RETRIES_BEFORE_LISTING
        try:
            for chunk in _chunks(wanted, IDS_PER_CALL):
                pending = list(chunk) if tagged is None else [t for t in chunk if t in tagged]
                missing.update(t for t in chunk if t not in pending)
                while pending:
                    try:
                        response = self._call(
                            client,
                            "DescribeImages",
                            repo,
                            imageIds=[{"imageTag": tag} for tag in pending],
                        )
                    except _ImageNotFound as error:
                        # One missing tag fails the whole call: drop it and ask again.
                        named = _missing_tag(str(error))
                        if named in pending and (retries_left > 0 or tagged is not None):
                            retries_left -= 1
                            pending.remove(named)
                            missing.add(named)
                            continue
                        if tagged is not None:
                            raise RegistryError(
                                f"ECR keeps reporting a missing image in {repo.uri} that "
                                f"its tag listing contains ({error}); retry the render"
                            ) from error
                        tagged = self._tagged(client, repo)
                        missing.update(t for t in pending if t not in tagged)
                        pending = [t for t in pending if t in tagged]
                        continue
                    for detail in response.get("imageDetails", []):
                        info = _tag_infos(detail, pending)
                        found.update(info)
                    # Defensive: a tag neither returned nor reported missing is still missing.
                    missing.update(t for t in pending if t not in found)
                    pending = []
        except _RepositoryNotFound:
            self._observer.answered("ecr", "tags", "fresh")
            if repo.pull_through_prefix is not None:
                return self._pull_through(client, repo, wanted, repository_missing=True)
            return Lookup(found={}, missing=frozenset(wanted), repository_missing=True)
        self._observer.answered("ecr", "tags", "fresh")
        if missing and repo.pull_through_prefix is not None:
            pulled = self._pull_through(client, repo, sorted(missing), repository_missing=False)
            found.update(pulled.found)
            missing = set(pulled.missing)
        return Lookup(found=found, missing=frozenset(missing))

    def describe_cached(self, repo: EcrRepository, tags: Collection[str]) -> Lookup | None:
        return None  # every answer is a call

    def prefetch(
        self, requests: Mapping[EcrRepository, Collection[str]]
    ) -> Collection[EcrRepository]:
        return ()  # each repository is its own call

    def list_tags(self, repo: EcrRepository) -> Lookup:
        client = self._client(repo.registry)
        found: dict[str, TagInfo] = {}
        pages = self._tagged_pages(client, "DescribeImages", repo)
        try:
            for page in pages:
                for detail in page.get("imageDetails", []):
                    found.update(_tag_infos(detail, detail.get("imageTags", [])))
        except _RepositoryNotFound:
            self._observer.answered("ecr", "listing", "fresh")
            return Lookup(repository_missing=True)
        self._observer.answered("ecr", "listing", "fresh")
        return Lookup(found=found)

    # -- ECR calls --------------------------------------------------------------------------

    def _tagged(self, client: Any, repo: EcrRepository) -> frozenset[str]:
        """Every tag in the repository, via ListImages (light: ids only)."""
        tags: set[str] = set()
        for page in self._tagged_pages(client, "ListImages", repo):
            tags.update(i["imageTag"] for i in page.get("imageIds", []) if "imageTag" in i)
        return frozenset(tags)

    def _pull_through(
        self, client: Any, repo: EcrRepository, tags: Sequence[str], *, repository_missing: bool
    ) -> Lookup:
        """Pull-through-cache repositories only hold what was pulled before, so DescribeImages
        misses images that exist upstream. BatchGetImage is a pull: ECR fetches them from upstream
        (creating the repository if needed) and answers with the digest it now caches."""
        found: dict[str, TagInfo] = {}
        missing: set[str] = set()
        problems: list[str] = []
        try:
            for chunk in _chunks(tags, IDS_PER_CALL):
                response = self._call(
                    client,
                    "BatchGetImage",
                    repo,
                    imageIds=[{"imageTag": tag} for tag in chunk],
                    acceptedMediaTypes=list(ACCEPTED_MEDIA_TYPES),
                )
                for image in response.get("images", []):
                    image_id = image.get("imageId", {})
                    tag, digest = image_id.get("imageTag"), image_id.get("imageDigest")
                    if tag in chunk and is_digest(digest):
                        found[tag] = TagInfo(tag, digest, None, image.get("imageManifestMediaType"))
                for failure in response.get("failures", []):
                    tag = failure.get("imageId", {}).get("imageTag")
                    code = failure.get("failureCode", "")
                    if tag in chunk and code.startswith("Upstream"):
                        problems.append(
                            f"ECR pull-through cache could not fetch {repo.uri}:{tag} from "
                            f"upstream ({code}: {failure.get('failureReason', '')}); check the "
                            "pull-through rule's upstream credentials or retry later"
                        )
                missing.update(t for t in chunk if t not in found)
        except _RepositoryNotFound:
            return Lookup(found={}, missing=frozenset(tags), repository_missing=True)
        if problems:
            raise RegistryError(*problems)
        return Lookup(
            found=found,
            missing=frozenset(missing),
            repository_missing=repository_missing and not found,
        )

    def _call(self, client: Any, operation: str, repo: EcrRepository, **params: Any) -> Any:
        """One ECR call about `repo` (its name and registryId are added here)."""
        self._check_deadline(operation, repo)
        method = getattr(client, _snake(operation))
        with self._translated_errors(client, operation, repo):
            response = method(repositoryName=repo.name, registryId=repo.registry.account, **params)
        self._called(operation, None, response)
        return response

    def _tagged_pages(self, client: Any, operation: str, repo: EcrRepository) -> Iterator[Any]:
        """Every page of `operation` over the repository's tagged images."""
        self._check_deadline(operation, repo)
        pages = client.get_paginator(_snake(operation)).paginate(
            repositoryName=repo.name,
            registryId=repo.registry.account,
            filter={"tagStatus": "TAGGED"},
            PaginationConfig={"PageSize": PAGE_SIZE},
        )
        with self._translated_errors(client, operation, repo):
            for page in pages:
                self._called(operation, None, page)
                yield page
                self._check_deadline(operation, repo)  # before the next page is requested

    @contextmanager
    def _translated_errors(
        self, client: Any, operation: str, repo: EcrRepository
    ) -> Iterator[None]:
        """botocore's errors (and a deadline passed mid-call) as tagpin's RegistryErrors."""
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped,unused-ignore]

        passing = _DEADLINE_PASSED.set(self._deadline_passed)
        try:
            yield
        except _DeadlinePassed:
            self._called(operation, "deadline", None)
            raise self._deadline_error(operation, repo) from None
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            self._called(operation, code if code in _KNOWN_CODES else "other", error.response)
            raise self._translate_client_error(error, operation, repo) from error
        except BotoCoreError as error:
            self._called(operation, type(error).__name__, None)
            raise self._translate_transport_error(error, client, repo) from error
        finally:
            _DEADLINE_PASSED.reset(passing)

    def _called(self, operation: str, error: str | None, response: Any) -> None:
        """Report one call, with the retries botocore made within it."""
        metadata = response.get("ResponseMetadata", {}) if isinstance(response, dict) else {}
        self._observer.ecr_called(operation, error, int(metadata.get("RetryAttempts", 0) or 0))

    def _check_deadline(self, operation: str, repo: EcrRepository) -> None:
        if self._monotonic() >= self._deadline_at:
            raise self._deadline_error(operation, repo)

    def _deadline_passed(self) -> bool:
        return self._monotonic() >= self._deadline_at

    def _deadline_error(self, operation: str, repo: EcrRepository) -> RegistryError:
        return RegistryUnavailable(
            f"ECR lookups did not finish within {self._settings.deadline:g} s, so {operation} "
            f"on {repo.uri} was not (re)tried; check that ECR is reachable and not "
            "throttling, or raise the deadline (TAGPIN_ECR_DEADLINE)"
        )

    def _client(self, registry: EcrRegistry) -> Any:
        return self._clients.client(registry)

    # -- errors -----------------------------------------------------------------------------

    def _translate_client_error(self, error: Any, operation: str, repo: EcrRepository) -> Exception:
        response = error.response
        code = str(response.get("Error", {}).get("Code", ""))
        message = _clip(str(response.get("Error", {}).get("Message", "")))
        metadata = response.get("ResponseMetadata", {})
        attempts = int(metadata.get("RetryAttempts", 0)) + 1
        status = int(metadata.get("HTTPStatusCode", 0) or 0)
        where = repo.uri
        if code == "RepositoryNotFoundException":
            return _RepositoryNotFound(message)
        if code == "ImageNotFoundException":
            return _ImageNotFound(message)
        if code in _THROTTLING_CODES:
            return RegistryUnavailable(
                f"ECR throttled {operation} on {where} after {attempts} attempts ({code}: "
                f"{message}); retry later, lower the concurrency (TAGPIN_ECR_CONCURRENCY) or ask "
                f"AWS to raise the ECR {operation} rate quota"
            )
        if code == "AccessDeniedException":
            policy = (
                f"and the repository policy in account {repo.registry.account} must allow it"
                if "resource-based policy" in message
                else "grant it to the sidecar's role"
            )
            return RegistryError(
                f"missing permission ecr:{operation} on {_arn(repo)}: {policy} "
                f"(AWS said: {message})"
            )
        if code in _BAD_CREDENTIAL_CODES:
            return RegistryError(
                f"AWS rejected the sidecar's credentials calling {operation} on {where} "
                f"({code}: {message}); check the IRSA/Pod Identity role or refresh the credentials"
            )
        if status >= 500 or code == "ServerException":
            return RegistryUnavailable(
                f"ECR failed {operation} on {where} with a server error (HTTP {status}) after "
                f"{attempts} attempts; retry later"
            )
        return RegistryError(f"ECR rejected {operation} on {where}: {code}: {message}")

    def _translate_transport_error(
        self, error: Exception, client: Any, repo: EcrRepository
    ) -> RegistryError:
        from botocore import exceptions as boto  # type: ignore[import-untyped,unused-ignore]

        region = repo.registry.region
        if isinstance(error, boto.NoCredentialsError):
            return RegistryError(
                f"no AWS credentials found to ask ECR about {repo.uri}: configure IRSA "
                "(eks.amazonaws.com/role-arn on the repo-server's service account), EKS Pod "
                "Identity, or AWS_PROFILE/AWS_ACCESS_KEY_ID for the tagpin sidecar",
                "outside the sidecar (a laptop, CI) no AWS access is needed when digests come "
                "from git: commit the app's tagpin.lock (`tagpin lock`, run once with AWS "
                "access) and render with TAGPIN_LOCK=strict, or render offline from any lock "
                "file with `tagpin render --digests FILE`",
            )
        if isinstance(error, boto.ParamValidationError):
            return RegistryError(f"invalid ECR request for {repo.uri}: {error}")
        if isinstance(error, boto.ConnectionError | boto.HTTPClientError):
            what = "timed out" if isinstance(error, boto.ReadTimeoutError) else "failed"
            if isinstance(error, boto.ConnectTimeoutError):
                what = "connection timed out"
            return RegistryUnavailable(
                f"cannot reach ECR at {client.meta.endpoint_url} in {region} ({what} after up to "
                f"{self._settings.max_attempts} attempts) while resolving {repo.uri}: check "
                "the network path (VPC endpoint, proxy, NetworkPolicy) from the repo-server pod"
            )
        # Credential providers (SSO, web identity, container) and configuration errors; their
        # messages name files, roles and profiles, never secrets.
        return RegistryError(
            f"cannot load AWS credentials to ask ECR about {repo.uri}: {_clip(str(error))}"
        )


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _tag_infos(detail: dict[str, Any], tags: Collection[str]) -> dict[str, TagInfo]:
    """The requested tags this image carries; an image lists all its tags, in no fixed order."""
    digest = detail.get("imageDigest")
    # Archived images cannot be pulled until restored: pinning one would break the deployment.
    if not is_digest(digest) or detail.get("imageStatus", "ACTIVE") != "ACTIVE":
        return {}
    pushed_at = epoch_seconds(detail.get("imagePushedAt"))
    media_type = detail.get("imageManifestMediaType")
    wanted = set(tags)
    return {
        tag: TagInfo(tag, digest, pushed_at, media_type)
        for tag in detail.get("imageTags", [])
        if tag in wanted
    }


def _missing_tag(message: str) -> str | None:
    match = _MISSING_TAG.search(message)
    return match.group(1) if match else None


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _arn(repo: EcrRepository) -> str:
    region = repo.registry.region
    partition = "aws"
    if region.startswith("cn-"):
        partition = "aws-cn"
    elif region.startswith("us-gov-"):
        partition = "aws-us-gov"
    return f"arn:{partition}:ecr:{region}:{repo.registry.account}:repository/{repo.name}"


def _clip(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
