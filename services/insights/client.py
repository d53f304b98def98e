"""insights' HTTP API as other services call it, on the kit's `ServiceClient`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from shared.client import ServiceClient


class InsightsClient:
    def __init__(self, base_url: str, token: str, timeout_s: float, *, retries: int = 0) -> None:
        self.http = ServiceClient("insights", base_url, token, timeout_s, retries=retries)

    async def close(self) -> None:
        await self.http.close()

    async def recommendations(
        self, user_id: str, limit: int, min_price: int | None = None, max_price: int | None = None
    ) -> dict[str, Any]:
        """The user's recommended items (the recommender their experiment arm chose), priced
        in [min_price, max_price] when given (raises `Unavailable` without a definite answer,
        and the service's refusal as its `DomainError`)."""
        return await self.http.fetch(
            f"/v1/users/{quote(user_id, safe='')}/recommendations",
            limit=limit,
            min_price=min_price,
            max_price=max_price,
        )
