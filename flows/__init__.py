"""The four Prefect flows (autoscale, deploy-stack, maintenance, cleanup). A flow only
sequences task calls: no I/O and no decisions of its own (tests/test_layers.py); the work
lives in tasks/, the decision in autoscaler/."""
