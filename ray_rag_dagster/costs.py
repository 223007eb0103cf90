"""Token prices → estimated USD, from the price table in settings (USD per million tokens by model)."""

from __future__ import annotations

from collections.abc import Mapping


def usd(prices: Mapping[str, Mapping[str, float]], model: str, input_tokens: int, output_tokens: int = 0) -> float:
    """Estimated cost of one model's usage; a model missing from the table (a local one) costs nothing."""
    price = prices.get(model, {})
    return (input_tokens * price.get("input", 0.0) + output_tokens * price.get("output", 0.0)) / 1_000_000
