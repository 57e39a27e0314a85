"""The local provider: every role of the topology on this machine, on loopback (stack.py
starts what is missing, provider.py puts it behind the Provider protocol, verify.py checks
it, monitoring.py runs Prometheus and Alertmanager)."""
