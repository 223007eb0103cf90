from ray_rag_dagster.costs import usd
from ray_rag_dagster.settings import Settings


def test_prices_from_settings() -> None:
    prices = Settings().prices
    assert usd(prices, "text-embedding-3-small", 1_000_000) == 0.02
    assert usd(prices, "gpt-4o-mini", 2_000, 1_000) == (2_000 * 0.15 + 1_000 * 0.60) / 1_000_000
    assert usd(prices, "all-MiniLM-L6-v2", 10_000) == 0.0
