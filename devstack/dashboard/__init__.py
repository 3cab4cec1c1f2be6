"""`make run`'s live dashboard: the CloudWatch dashboard's panels, fed by the local stack."""

from __future__ import annotations

from .aggregator import Aggregator
from .runner import Dashboard
from .settings import DashboardSettings

__all__ = ["Aggregator", "Dashboard", "DashboardSettings"]
