"""Token costs from the settings' price table (USD per million tokens, by model; absent models are free)."""

from __future__ import annotations


def cost_usd(prices: dict[str, dict[str, float]], model: str | None, input_tokens: int, output_tokens: int = 0) -> float:
    price = prices.get(model or "", {})
    return (input_tokens * price.get("input", 0.0) + output_tokens * price.get("output", 0.0)) / 1e6
