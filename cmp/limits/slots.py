"""Render slots: how many renders run at once, which waiting render goes next, and for how long
one may run (docs/reliability.md, "Fair render slots").

At most TAGPIN_MAX_PARALLEL_RENDERS renders of a sidecar run at once, in `tagpin generate`
itself or in a render server's worker alike (memory: docs/reliability.md, "Memory"). Every
tenant shares them, so one tenant's slow renders must not make the others' fail:

- Fair share. A free slot goes to the waiting render whose repository holds the fewest slots,
  then whose Application holds the fewest, then to the one that came first. A tenant may use
  every slot while nobody else waits, but gets no new one while someone else waits.
- A lease. A render keeps its slot for at most TAGPIN_MAX_RENDER_SECONDS: then it fails with
  an error naming the setting (SIGALRM). One that cannot stop (stuck in C code, or stopped) is
  SIGKILLed KILL_AFTER_SECONDS later by a render waiting for its slot.
- A bounded wait. After TAGPIN_SLOT_WAIT_SECONDS a waiting render fails with exit 75 saying
  which Applications hold the slots and for how long. The wait is longer than the lease, so a
  render only fails when the slots were taken by others waiting before it.

Everything is files in one directory, so unrelated processes agree without a server, and a
SIGKILLed render leaks nothing: every claim is a flock on an open file, which the kernel drops
with the process.

    admission.lock    flock'ed while a render looks and decides (a few milliseconds)
    slot-N            flock'ed by the render holding slot N; its record says whose and since when
    wait-T-PID        a waiting render's ticket, flock'ed by it; T orders the arrivals

A record is one line, `PID SINCE UNTIL REPO APP`, written under the admission lock: monotonic
times (one clock for the whole machine), the repository as a hash (its URL is never written
down), the Application's name as Argo CD gives it (`<namespace>_<name>` outside Argo CD's own
namespace: unique in one Argo CD).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import math
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import NamedTuple

from cmp.errors import BusyError, TemplateError
from cmp.settings import Settings

KILL_AFTER_SECONDS = 5  # past its lease, a render that did not stop is killed
MAX_WAITERS_SEEN = 1000  # tickets read per look, the earliest; later ones wait unseen
MAX_HOLDERS_SHOWN = 8  # in the busy error; the others are counted
_MAX_RECORD = 512
_MAX_APP_NAME = 253 + 1 + 63  # an Application name, `_`, its namespace
_POLL_NEXT = 0.05  # seconds between looks for the renders next in line
_POLL_LATER = 0.2  # ... and for the others, which cannot be admitted before them
_MUTEX_POLL = 0.005


class RenderTimeout(TemplateError):
    """The render kept its slot past TAGPIN_MAX_RENDER_SECONDS."""


class Tenant(NamedTuple):
    """Whose render it is: the unit of fair share. `repo` is a hash of the normalised
    repository URL, so one repository with many Applications (an ApplicationSet, a monorepo)
    gets one share, not one per Application."""

    app: str
    repo: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Tenant:
        """ARGOCD_APP_NAME and ARGOCD_APP_SOURCE_REPO_URL, as Argo CD sets them for a render.
        (ARGOCD_APP_NAMESPACE is the destination namespace: many tenants may share one.)"""
        app = _one_word(environ.get("ARGOCD_APP_NAME", ""))[:_MAX_APP_NAME] or "-"
        url = environ.get("ARGOCD_APP_SOURCE_REPO_URL", "")
        key = repository_key(url) if url.strip() else "app:" + app
        return cls(app=app, repo=hashlib.sha256(key.encode()).hexdigest()[:16])


def repository_key(url: str) -> str:
    """One spelling per repository, so a tenant cannot look like several by writing its URL
    differently: no scheme, credentials, `.git` or trailing slash; `git@host:path` as
    `host/path`; lower case (a few hosts tell case apart: two such repositories would share
    a share, which costs them little)."""
    text = url.strip().lower()
    _scheme, separator, rest = text.partition("://")
    if not separator:
        rest = text.replace(":", "/", 1)  # scp-like: git@host:org/repo
    authority, _, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    host = host.partition("]")[0] + "]" if host.startswith("[") else host.partition(":")[0]
    path = path.strip("/").removesuffix(".git").strip("/")
    return f"{host}/{path}"


class Claim(NamedTuple):
    """A slot's holder or a waiting render, from its record."""

    pid: int
    since: float  # monotonic seconds: admitted (a holder) or arrived (a waiter)
    until: float  # monotonic seconds: the end of a holder's lease; 0: none
    repo: str
    app: str

    def line(self) -> bytes:
        return f"{self.pid} {self.since:.6f} {self.until:.6f} {self.repo} {self.app}\n".encode()

    @classmethod
    def parse(cls, data: bytes) -> Claim | None:
        fields = data.decode("utf-8", "replace").split(" ", 4)
        try:
            pid, since, until = int(fields[0]), float(fields[1]), float(fields[2])
            claim = cls(pid, since, until, fields[3], fields[4].strip())
        except (ValueError, IndexError):
            return None  # a claim being written by a render that died: no one's
        return claim if math.isfinite(since) and math.isfinite(until) else None


class _Ticket:
    """A waiting render: its ticket file's name ("" for this render before it has one).
    Compared by identity: this render's is found among the others by being itself."""

    __slots__ = ("claim", "name")

    def __init__(self, name: str, claim: Claim) -> None:
        self.name = name
        self.claim = claim


class _View(NamedTuple):
    """What one look under the admission lock found."""

    slot: int | None  # the slot this render takes (locked), if it is its turn
    holders: list[Claim]
    waiters: list[_Ticket]
    soon: bool  # among the next TAGPIN_MAX_PARALLEL_RENDERS in line


@contextlib.contextmanager
def render_slot(settings: Settings, directory: Path | None, tenant: Tenant) -> Iterator[None]:
    """Hold one of TAGPIN_MAX_PARALLEL_RENDERS slots in `directory` (shared by every render of
    the sidecar) while rendering, under the lease; wait for one fairly, up to
    TAGPIN_SLOT_WAIT_SECONDS. Without a usable directory the render goes ahead (a laptop
    without a cache directory)."""
    slots = None
    if directory is not None:
        slots = _Slots.open(directory / "render-slots", settings.max_parallel_renders)
    if slots is None:
        yield
        return
    try:
        slots.admit(tenant, settings)
        with _lease(settings.max_render_seconds):
            yield
    finally:
        slots.close()


class _Slots:
    """The directory's files, open for one render."""

    def __init__(self, directory: Path, mutex: int, handles: list[int]) -> None:
        self.directory, self.mutex, self.handles = directory, mutex, handles
        self.ticket: tuple[str, int] | None = None  # this render's ticket: name, descriptor
        self.seen: dict[str, Claim] = {}  # tickets read so far (a ticket never changes)
        self.dead: set[str] = set()  # tickets of renders that died, even if still listed

    @classmethod
    def open(cls, directory: Path, parallel: int) -> _Slots | None:
        handles: list[int] = []
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.stat(directory, follow_symlinks=False)
            if info.st_uid != os.getuid() or info.st_mode & 0o022:
                return None  # others could plant claims: whoever can, could have us kill a pid
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            for name in ("admission.lock", *(f"slot-{n}" for n in range(parallel))):
                handles.append(os.open(directory / name, flags, 0o600))
        except OSError:
            for handle in handles:
                os.close(handle)
            return None
        return cls(directory, handles[0], handles[1:])

    def close(self) -> None:
        self._drop_ticket()
        for handle in (self.mutex, *self.handles):
            os.close(handle)  # releases the slot held, if any

    def admit(self, tenant: Tenant, settings: Settings) -> None:
        wait = settings.slot_wait_seconds
        deadline = time.monotonic() + wait
        me: _Ticket | None = None  # arrived: first looked under the admission lock
        view = _View(None, [], [], False)
        while True:
            if self._lock_admission(deadline):
                try:
                    now = time.monotonic()
                    if me is None:
                        me = _Ticket("", Claim(os.getpid(), now, 0.0, tenant.repo, tenant.app))
                    view = self._look(me, now)
                    if view.slot is not None:
                        lease = settings.max_render_seconds
                        claim = me.claim._replace(since=now, until=now + lease if lease else 0.0)
                        _write(view.slot, claim)
                        self._drop_ticket()
                        return
                    if self.ticket is None:
                        self._take_ticket(me.claim)
                finally:
                    _unlock(self.mutex)
            now = time.monotonic()
            if now >= deadline:
                raise BusyError(_busy_message(settings, wait, view, me, now))
            time.sleep(_POLL_NEXT if view.soon else _POLL_LATER)

    def _lock_admission(self, deadline: float) -> bool:
        """The admission lock, polled: a render stopped while holding it must not keep the
        others past their deadline. False when it stayed busy that long."""
        while not _try_lock(self.mutex):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_MUTEX_POLL)
        return True

    def _look(self, me: _Ticket, now: float) -> _View:
        """Under the admission lock: the slots, the waiters, and whether it is our turn."""
        free: list[int] = []
        holders: list[Claim] = []
        for handle in self.handles:
            if _try_lock(handle):
                free.append(handle)
            elif (holder := _read(handle)) is not None:
                holders.append(holder)
        while True:
            waiters = [me, *self._waiters()]
            order = _admission_order(holders, waiters, len(free))
            dead = [w for w in order if w is not me and not self._alive(w)]
            if not dead:
                break
        chosen = free[order.index(me)] if me in order else None
        for handle in free:
            if handle != chosen:
                _unlock(handle)
        if chosen is None and not free:
            for holder in holders:  # past its lease and still there: it cannot stop itself
                if holder.until and now > holder.until + KILL_AFTER_SECONDS:
                    _end(holder.pid)
        soon = me in _admission_order(holders, waiters, len(self.handles))
        return _View(chosen, holders, waiters, soon)

    def _waiters(self) -> list[_Ticket]:
        """The other waiting renders, from their tickets (each read once)."""
        ours = self.ticket[0] if self.ticket else None
        try:
            names = [
                n
                for n in os.listdir(self.directory)
                if n.startswith("wait-") and n != ours and n not in self.dead
            ]
        except OSError:
            return []
        names.sort()  # arrival order: keep the first MAX_WAITERS_SEEN
        self.seen = {name: self.seen[name] for name in names if name in self.seen}
        for name in names[:MAX_WAITERS_SEEN]:
            if name not in self.seen:
                claim = self._read_ticket(name)
                if claim is not None:
                    self.seen[name] = claim
        return [_Ticket(name, claim) for name, claim in self.seen.items()]

    def _read_ticket(self, name: str) -> Claim | None:
        try:
            handle = os.open(self.directory / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None  # gone meanwhile
        try:
            return _read(handle)
        finally:
            os.close(handle)

    def _alive(self, waiter: _Ticket) -> bool:
        """Whether the render of a ticket still waits; if not, the ticket goes. Checked only
        for a waiter a slot would go to, so a dead one never holds up the queue."""
        try:
            handle = os.open(
                self.directory / waiter.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            )
        except OSError:
            self.seen.pop(waiter.name, None)
            self.dead.add(waiter.name)
            return False  # admitted or gone since
        try:
            if not _try_lock(handle):
                return True
            with contextlib.suppress(OSError):  # nobody holds it: its render died
                os.unlink(self.directory / waiter.name)
            self.seen.pop(waiter.name, None)
            self.dead.add(waiter.name)
            return False
        finally:
            os.close(handle)

    def _take_ticket(self, me: Claim) -> None:
        """Under the admission lock, so no one sees it unlocked and takes it for a dead one."""
        name = f"wait-{int(me.since * 1e9):020d}-{me.pid}"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            handle = os.open(self.directory / name, flags, 0o600)
        except OSError:
            return  # cannot queue: it looks again as a newcomer
        fcntl.flock(handle, fcntl.LOCK_EX)
        _write(handle, me)
        self.ticket = (name, handle)

    def _drop_ticket(self) -> None:
        if self.ticket is None:
            return
        name, handle = self.ticket
        with contextlib.suppress(OSError):
            os.unlink(self.directory / name)
        os.close(handle)
        self.ticket = None


def occupancy(directory: Path) -> tuple[list[Claim], list[Claim]]:
    """Who holds the render slots in `directory` (a cache directory) now, and who waits for
    one: what an operator (or the bench) looks at when renders queue."""
    slots = _Slots.open(directory / "render-slots", 0)
    if slots is None:
        return [], []
    try:
        if not slots._lock_admission(time.monotonic() + 5):
            return [], []
        try:
            held = []
            for name in sorted(os.listdir(slots.directory)):
                if not name.startswith("slot-"):
                    continue
                try:
                    handle = os.open(slots.directory / name, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    if _try_lock(handle):
                        _unlock(handle)
                    elif (claim := _read(handle)) is not None:
                        held.append(claim)
                finally:
                    os.close(handle)
            return held, [waiter.claim for waiter in slots._waiters()]
        finally:
            _unlock(slots.mutex)
    finally:
        slots.close()


def _admission_order(holders: list[Claim], waiters: list[_Ticket], free: int) -> list[_Ticket]:
    """The waiters the next `free` slots go to, in order: fewest slots held by the repository,
    then by the Application, then first come. Each pick counts for the next."""
    by_repo = Counter(h.repo for h in holders)
    by_app = Counter(h.app for h in holders)
    pending = sorted(waiters, key=lambda w: (w.claim.since, w.claim.pid))
    order: list[_Ticket] = []
    for _ in range(min(free, len(pending))):
        # min() keeps the first of equals: first come among equal shares.
        best = min(pending, key=lambda w: (by_repo[w.claim.repo], by_app[w.claim.app]))
        pending.remove(best)
        order.append(best)
        by_repo[best.claim.repo] += 1
        by_app[best.claim.app] += 1
    return order


def _busy_message(
    settings: Settings, wait: float, view: _View, me: _Ticket | None, now: float
) -> str:
    parallel = settings.max_parallel_renders
    holders = sorted(view.holders, key=lambda h: h.since)
    busy = ", ".join(
        f"Application {h.app!r} (for {max(now - h.since, 0.0):.1f} s)"
        for h in holders[:MAX_HOLDERS_SHOWN]
    )
    if len(holders) > MAX_HOLDERS_SHOWN:
        busy += f" and {len(holders) - MAX_HOLDERS_SHOWN} more"
    order = _admission_order(view.holders, view.waiters, len(view.waiters))
    ahead = order.index(me) if me in order else 0
    return (
        f"no render slot came free in {wait:g} s (TAGPIN_SLOT_WAIT_SECONDS): the sidecar's "
        f"{parallel} slots (TAGPIN_MAX_PARALLEL_RENDERS) were rendering "
        f"{busy or 'renders that just ended'}"
        + (f", and {ahead} waiting renders came before this one" if ahead else "")
        + "; if this happens often, raise TAGPIN_MAX_PARALLEL_RENDERS with the container's "
        "memory limit"
    )


class _LeaseOver(BaseException):
    """What the lease's alarm raises: a BaseException, which nothing meant for a template's own
    errors catches (Jinja wraps any Exception from template code, and one failing template does
    not stop the next from rendering); _lease() turns it into RenderTimeout."""


@contextlib.contextmanager
def _lease(seconds: int) -> Iterator[None]:
    """Fail the render with RenderTimeout once it has held its slot `seconds` (0: never)."""
    if seconds <= 0:
        yield
        return

    def expired(_signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        raise _LeaseOver

    try:
        previous = signal.signal(signal.SIGALRM, expired)
    except ValueError:  # not the main thread (only in tests): the hard end still applies
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _LeaseOver:
        raise RenderTimeout(
            f"the render ran for more than {seconds} s (TAGPIN_MAX_RENDER_SECONDS) and was "
            "stopped; is a template looping, or kustomize or ECR very slow?"
        ) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _end(pid: int) -> None:
    """SIGKILL a render past its lease: its process group if it leads one (the render and what
    it started: kustomize, git), else the process. Its slot is still locked, so the pid is still
    that render's (a dead render's lock is gone, and its pid with it)."""
    if pid <= 1 or pid == os.getpid():
        return  # not a render's: 0, -1 and 1 would signal far more than one render
    try:
        group = os.getpgid(pid)
        if group == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _write(handle: int, claim: Claim) -> None:
    os.ftruncate(handle, 0)
    os.pwrite(handle, claim.line(), 0)


def _read(handle: int) -> Claim | None:
    try:
        return Claim.parse(os.pread(handle, _MAX_RECORD, 0))
    except OSError:
        return None


def _try_lock(handle: int) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as error:
        # Busy: no. Any other error (a file system without flock): yes, never stuck on it.
        return error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN)


def _unlock(handle: int) -> None:
    with contextlib.suppress(OSError):  # a file system without flock: nothing was locked
        fcntl.flock(handle, fcntl.LOCK_UN)


def _one_word(text: str) -> str:
    """A name as it goes into a record: no spaces or line breaks (Argo CD's never have any)."""
    return "".join(c if c.isprintable() and not c.isspace() else "?" for c in text)
