"""gunicorn settings for one instance: ``gunicorn -c python:stock_api.gunicorn_conf
'stock_api.app:create_app()'``.

One worker process (so one Prometheus registry per instance) with threads; the
environment is validated by StockApiConfig before gunicorn binds anything.
"""

from __future__ import annotations

from stock_api.config import StockApiConfig

_config = StockApiConfig()

bind = [f"{_config.host}:{_config.port}"]
workers = 1
worker_class = "stock_api.worker.DrainingThreadWorker"  # gthread + refuse-while-draining
threads = _config.threads
graceful_timeout = _config.graceful_timeout
timeout = 30
keepalive = 5
backlog = 256
proc_name = f"stock-api-{_config.port}"
# The app writes its own JSON request log; gunicorn's access log would duplicate it.
accesslog = None
errorlog = "-"
loglevel = "info"
# Several instances run side by side; a shared default control socket would collide.
control_socket_disable = True
