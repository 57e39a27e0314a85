"""Point Prometheus at the pool's ready and degraded instances (its file_sd list of stock API
targets): a degraded instance is still scraped, so its stock_api_dependency_up gauge raises
the StockApiDependencyDown alert."""

from __future__ import annotations

from tasks.instances.base import InstanceState
from tasks.monitoring.file_sd import write_stock_api_targets
from tasks.tick.pool import PoolConfig, pool_clients

SCRAPED = (InstanceState.READY, InstanceState.DEGRADED)


def publish_scrape_targets(pool: PoolConfig, addresses: list[str] | None = None) -> bool:
    """Write the scraped instances' addresses (listed now when ``addresses`` is None) to the
    pool's file_sd file; True when the file changed (usually it has not: a cheap compare)."""
    if addresses is None:
        with pool_clients(pool) as clients:
            addresses = [i.address for i in clients.driver.list() if i.state in SCRAPED]
    return write_stock_api_targets(pool.scrape_file(), addresses,
                                   {"job": "stock_api", "stack": pool.stack})
