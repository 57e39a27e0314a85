"""One exception tree for the whole project, caught by meaning (DESIGN.md)."""

from __future__ import annotations


class StackError(Exception):
    """Base of every error kongstack raises on purpose."""


class ConfigError(StackError, ValueError):
    """Configuration is invalid; the message names the field and value."""


class GatewayError(StackError):
    """The gateway (Kong or nginx) refused or failed an operation."""


class ProviderError(StackError):
    """Provisioning hosts (Azure or local) failed."""


class InstallError(StackError):
    """Installing a role on a host failed."""


class InstanceError(StackError):
    """Starting, stopping or inspecting a backend instance failed."""


class MetricsError(StackError):
    """Metrics could not be read (Prometheus or engine stats)."""


class SetupError(StackError):
    """A local service could not be installed or started."""


class UnreachableError(StackError):
    """A dependency (container engine, gateway admin API, Prefect server...) did not answer."""
