"""Holding: the messages the worker has received and not yet settled, and their claims.

Every message held is kept invisible, and every claim renewed, until the message is settled:
a charged order's lease cannot run out while its paid-mark is retried. Visibility extension
and lease renewal are two loops, each on its own deadline, and neither waits on the other:
a hung DynamoDB call never lets a message reappear, and a slow SQS call never lets a lease
lapse. (This is "renewal"; the "heartbeat" is only the liveness file the container health
check reads, services/worker/liveness.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from services.common.logging import get_logger
from services.common.retry import Backoff, sleep_unless
from services.domain.errors import StateUnavailable
from services.domain.messages import OrderMessage
from services.domain.orders import OrderStore
from services.domain.payment import LEASE_MARGIN_SECONDS

from .queue import OrderQueue, QueueConfig, QueueUnavailable, Received
from .settings import WorkerSettings
from .stats import WorkerStats

log = get_logger()

# SQS's ceiling for a message's visibility timeout: how long a charged but unrecorded order's
# message is hidden at shutdown, and how far its lease gets a last renewal.
MAX_VISIBILITY = 43_200
# After the grace period, how long best-effort calls at shutdown get before giving up.
SETTLE_SECONDS = 2.0
# Backoff of state writes and SQS settles retried in process: retry()'s own (short, so work
# resumes soon after an outage ends), named for the waits outside retry().
STATE_BACKOFF = Backoff()


@dataclass
class Job:
    """A received message on its way to being settled."""

    message: Received
    visible_until: float
    """Monotonic time at which SQS would make the message visible again."""
    order: OrderMessage | None = None
    claim_token: str | None = None
    lease_until: float = 0.0
    """Epoch time at which our claim's lease runs out: the `lease_until` we last wrote."""
    lease_lapsed: bool = False
    """The lease ran out before a renewal landed (logged once, as `lease_expired`)."""
    claim_lost: bool = False
    """A renewal found the claim taken over."""
    started: float = 0.0
    charged: bool = False


class Holding:
    """The held jobs, by receipt handle, and the renewal that keeps them held."""

    def __init__(
        self,
        settings: WorkerSettings,
        queue: OrderQueue,
        config: QueueConfig,
        stats: WorkerStats,
        store: OrderStore,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self._queue = queue
        self._config = config
        self._store = store
        # Renewals travel on their own group commit: never queued behind paid-marks or claims.
        self.lease_store = store.batched(0.0)
        self.jobs: dict[str, Job] = {}

    @property
    def receive_visibility(self) -> int:
        """The visibility timeout a receive asks for: the queue's, or a whole lease if longer.

        A message hidden as long as its claim's lease needs no extension while its payment
        runs (one ChangeMessageVisibility less per order when payments are long), and shows
        again no later than its lease lets another delivery take the order over.
        """
        return max(self._config.visibility_timeout, math.ceil(self.settings.lease_seconds))

    def hold(self, message: Received) -> Job:
        """Start keeping `message` invisible (renewal extends it) until it is settled."""
        # Counted from now, a little after the receive: extensions come a little early.
        job = Job(message, time.monotonic() + message.visibility)
        self.jobs[message.receipt_handle] = job
        return job

    def drop(self, job: Job) -> None:
        """Settled: no longer kept invisible nor leased."""
        self.jobs.pop(job.message.receipt_handle, None)

    def renewal_interval(self) -> float:
        return max(0.5, min(self._config.visibility_timeout, self.settings.lease_seconds) / 4)

    # -- renewal: visibility and leases, each on its own deadline -----------------------------

    async def keep_invisible(self) -> None:
        """Keep every held message invisible until it is settled; never waits on DynamoDB."""
        timeout = self._config.visibility_timeout
        interval = self.renewal_interval()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            due = [j for j in self.jobs.values() if j.visible_until - now < timeout / 2]
            if due:
                # Due with at least timeout/2 left: a call cut off after one interval leaves
                # the next round time to try again before any of them reappears.
                await self.extend_visibility(due, timeout, now, deadline=interval)

    async def keep_leased(self) -> None:
        """Renew every claim held until it is settled; never holds up visibility extension."""
        store = self.lease_store
        lease = self.settings.lease_seconds
        interval = self.renewal_interval()
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            renew = [
                j for j in self.jobs.values() if j.claim_token and j.lease_until - now < lease / 2
            ]
            for job in renew:
                if job.lease_until < now and not job.lease_lapsed:
                    # Past the lease we wrote: the claim may be taken over by our own message
                    # (if it reappeared). The slot does nothing that needs the lease now: it
                    # charges only after a renewal lands (see lease_for_charge).
                    job.lease_lapsed = True
                    log.error(
                        "lease_expired",
                        order_id=job.order.order_id if job.order else None,
                        charged=job.charged,
                        expired_s_ago=round(now - job.lease_until, 3),
                    )
            if renew:
                # Due with lease/2 left; a renewal that has not landed after one interval is
                # given up (the next round tries again) rather than queued behind a hung call.
                await self.renew_leases(renew, store, lease, deadline=interval)

    async def extend_visibility(
        self, due: list[Job], seconds: int, now: float, *, deadline: float
    ) -> None:
        try:
            async with asyncio.timeout(deadline):
                extended = await self._queue.change_visibility_each(
                    [j.message.receipt_handle for j in due], seconds
                )
        except (QueueUnavailable, TimeoutError) as exc:
            # Not fatal yet: the next round tries again while the messages are still hidden.
            log.warning("visibility_change_failed", count=len(due), detail=str(exc) or "timeout")
            return
        for job in due:
            # Only the entries SQS accepted: a failed entry is tried again next round.
            if job.message.receipt_handle in extended:
                job.visible_until = now + seconds
        if len(extended) < len(due):
            log.warning("visibility_change_failed", count=len(due) - len(extended))
        self.stats.visibility_extensions += len(extended)

    async def renew_leases(
        self, jobs: list[Job], store: OrderStore, lease: float, *, deadline: float
    ) -> int:
        """Renew the claims of `jobs` within `deadline` s; how many were renewed."""
        jobs = [j for j in jobs if j.order is not None and j.claim_token is not None]
        claims = [(j.order.order_id, j.claim_token) for j in jobs if j.order and j.claim_token]
        until = time.time() + lease
        try:
            async with asyncio.timeout(deadline):
                renewed = await store.renew_until(claims, until)
        except (StateUnavailable, TimeoutError) as exc:
            log.warning("lease_renewal_failed", count=len(claims), detail=str(exc) or "timeout")
            return 0
        count = 0
        for job, (order_id, token), still_ours in zip(jobs, claims, renewed, strict=True):
            if still_ours:
                # The lease end we wrote, not when the answer came back.
                job.lease_until = until
                job.lease_lapsed = False
                self.stats.lease_renewals += 1
                count += 1
            elif job.claim_token == token:
                # Not merely settled meanwhile (a paid-mark that landed first): really lost.
                job.claim_lost = True
                log.error("claim_lost", order_id=order_id)
        return count

    async def lease_for_charge(self, job: Job, stopping: asyncio.Event) -> bool:
        """Make sure the claim's lease outlasts a whole charge; False if that cannot be had."""
        store = self.lease_store
        if job.claim_token is None:
            return True
        # The charge itself, with half the lease's margin to spare: a fresh claim (its lease is
        # the timeout plus the whole margin) needs no renewal first. The paid-mark after the
        # charge is covered by keep_leased, which renews once half a lease is left.
        needed = self.settings.payment.timeout + LEASE_MARGIN_SECONDS / 2
        lease = self.settings.lease_seconds
        failures = 0
        while job.lease_until - time.time() < needed:
            if stopping.is_set():
                return False
            if await self.renew_leases([job], store, lease, deadline=self.renewal_interval()):
                return True
            if job.claim_token is None or job.claim_lost:
                return False
            failures += 1
            if await sleep_unless(stopping, STATE_BACKOFF.delay(failures)):
                return False
        return True

    # -- the DynamoDB side of letting go (settling does the SQS side) -------------------------

    async def release_claims(self, jobs: Sequence[Job]) -> None:
        """Give back the claims of jobs being handed back (once, not retried)."""
        for job in jobs:
            if job.order is not None and job.claim_token is not None:
                token, job.claim_token = job.claim_token, None
                with contextlib.suppress(StateUnavailable):
                    await self._store.release(job.order.order_id, token, "handed back")

    async def keep_claim_unrecorded(self, job: Job) -> None:
        """A charge never recorded keeps its claim: one last renewal, best effort, briefly."""
        if job.claim_token is None or job.order is None:
            return
        with contextlib.suppress(StateUnavailable, TimeoutError):
            async with asyncio.timeout(SETTLE_SECONDS):
                await self.lease_store.renew_until(
                    [(job.order.order_id, job.claim_token)], time.time() + MAX_VISIBILITY
                )
