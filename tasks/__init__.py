"""I/O adapters and use cases: everything that touches the world (engines, gateways, clouds,
Prometheus, files, Prefect blocks) lives here, one subpackage per concern. A module here may
import ``autoscaler`` and ``kongstack.core`` (and ``stock_api.config``), never ``flows`` or
``kongstack.cli`` (tests/test_layers.py). See ARCHITECTURE.md for where new code goes."""
