"""The one place sqlaudit asks what time it is, and which zone it lives in.

Every timestamp sqlaudit writes comes from :func:`utc_now`, so a test can freeze
time with freezegun without patching anything inside sqlaudit.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["local_zone", "utc_now"]


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def local_zone() -> tzinfo:
    """Return the system's local time zone, as a ``ZoneInfo`` when its name can be found.

    The name comes from ``$TZ``, then the ``/etc/localtime`` link, then
    ``/etc/timezone``. When none names a known zone, the fixed offset the system
    uses right now is returned (correct today, blind to daylight-saving changes).
    """
    for name in _local_zone_names():
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return datetime.now().astimezone().tzinfo or UTC


def _local_zone_names() -> list[str]:
    names: list[str] = []
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        names.append(tz)
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            names.append(target.split("zoneinfo/", 1)[1])
    timezone_file = Path("/etc/timezone")
    if timezone_file.is_file():
        names.append(timezone_file.read_text().strip())
    return names
