"""Render nginx.conf for the local gateway from an ``NginxSite`` and the target weights.

Everything lives under the gateway's own prefix (pid, logs, temp dirs), so this nginx never
touches the system one. The status server answers ``/nginx_status`` (stub_status) and
``/kongstack/generation``, which is how a reload is verified to have taken effect.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tasks.gateway.nginx.site import NginxSite

# One JSON object per request; status and request_time (seconds, ms resolution) are numbers.
ACCESS_LOG_FIELDS = {
    "ts": "$time_iso8601", "level": "info", "msg": "request", "method": "$request_method",
    "path": "$uri", "route": "$kongstack_route", "status": "$status",
    "request_time_s": "$request_time", "upstream_addr": "$upstream_addr",
    "upstream_status": "$upstream_status", "upstream_response_time": "$upstream_response_time",
    "correlation_id": "$kongstack_cid", "consumer": "$kongstack_consumer",
    "remote_addr": "$remote_addr", "bytes_sent": "$bytes_sent",
}
_SAFE_KEY = re.compile(r"^[\x21-\x7e]+$")


@dataclass(frozen=True)
class Listen:
    host: str
    port: int
    status_port: int


def _quote(value: str) -> str:
    """A literal nginx map key or value (printable ASCII, no spaces; never interpolated
    on the left side of a map)."""
    if not _SAFE_KEY.match(value):
        raise ValueError("nginx values must be printable ASCII without spaces")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _log_format() -> str:
    numeric = {"status", "request_time_s"}
    body = ",".join(f'"{k}":{v}' if k in numeric else f'"{k}":"{v}"'
                    for k, v in ACCESS_LOG_FIELDS.items())
    return "'{" + body + "}'"


def render(site: NginxSite, targets: dict[str, int], *, prefix: Path, listen: Listen,
           generation: int) -> str:
    servers = [(addr, w) for addr, w in sorted(targets.items()) if w > 0]
    # Kong's key-auth reads the key from a header or the query string (key_in_query).
    key_vars = "".join(f"$http_{k.lower().replace('-', '_')}" for k in site.key_names or ())
    arg_vars = "".join(f"$arg_{k}" for k in site.key_names or ())
    cid = site.correlation_header.lower().replace("-", "_")
    grace = max(site.read_timeout_ms // 1000 + 5, 10)
    lines = [
        "# Rendered by kongstack (tasks/nginx); changes are overwritten.",
        "worker_processes 1;",
        f"pid {prefix}/nginx.pid;",
        f"error_log {prefix}/logs/error.log warn;",
        "daemon off;",
        "master_process on;",
        # Old workers finish in-flight requests after a reload, bounded by this.
        f"worker_shutdown_timeout {grace}s;",
        "events { worker_connections 1024; }",
        "http {",
        f"  client_body_temp_path {prefix}/tmp/body;",
        f"  proxy_temp_path {prefix}/tmp/proxy;",
        f"  fastcgi_temp_path {prefix}/tmp/fastcgi;",
        f"  uwsgi_temp_path {prefix}/tmp/uwsgi;",
        f"  scgi_temp_path {prefix}/tmp/scgi;",
        "  server_tokens off;",
        f"  log_format kongstack_json escape=json {_log_format()};",
        # Correlation id: the client's X-Correlation-ID or Kong header, else nginx's own id.
        "  map $http_x_correlation_id $kongstack_cid_in {",
        f"    \"\" $http_{cid};",
        "    default $http_x_correlation_id;",
        "  }",
        "  map $kongstack_cid_in $kongstack_cid { \"\" $request_id; default $kongstack_cid_in; }",
    ]
    if site.key_names is not None:
        lines += [
            f"  map \"{key_vars}\" $kongstack_key {{",
            f"    \"\" \"{arg_vars}\";",
            f"    default \"{key_vars}\";",
            "  }",
            "  map $kongstack_key $kongstack_consumer {",
            "    default \"\";",
            *[f"    {_quote(key.get_secret_value())} {_quote(user)};"
              for user, key in sorted(site.consumers.items())],
            "  }",
        ]
    else:
        lines += ["  map $uri $kongstack_consumer { default \"\"; }"]
    lines += [
        "  map $uri $kongstack_route { default \"\"; "
        + " ".join(f"~^{re.escape(p)} {_quote(p)};" for p in site.paths) + " }",
    ]
    if site.rate_per_minute is not None:
        # Kong's limit_by=consumer falls back to the client IP when there is no consumer.
        by_consumer = site.rate_by == "consumer" and site.key_names is not None
        key = "$kongstack_consumer" if by_consumer else "$binary_remote_addr"
        lines += [f"  limit_req_zone {key} zone=kongstack_rl:1m rate={site.rate_per_minute}r/m;",
                  "  limit_req_status 429;"]
    if servers:
        fail = f" max_fails={site.max_fails} fail_timeout={site.fail_timeout_s}s"
        lines += [f"  upstream {site.upstream} {{",
                  *[f"    server {addr} weight={w}{fail};" for addr, w in servers],
                  "    keepalive 16;", "  }"]
    lines += ["  server {", f"    listen {listen.host}:{listen.port};",
              f"    access_log {prefix}/logs/access.log kongstack_json;",
              "    default_type application/json;"]
    for path in site.paths:
        lines += [f"    location {path} {{"]
        if site.key_names is not None:
            lines += ["      if ($kongstack_key = \"\") { return 401 "
                      "'{\"message\":\"No API key found in request\"}'; }",
                      "      if ($kongstack_consumer = \"\") { return 401 "
                      "'{\"message\":\"Unauthorized\"}'; }"]
        if site.rate_per_minute is not None:
            # nginx admits burst+1 at once; Kong admits exactly the limit per window.
            burst = site.rate_per_minute - 1
            lines += [f"      limit_req zone=kongstack_rl burst={burst} nodelay;",
                      "      error_page 429 = @kongstack_rate_limited;"]
        if site.strip_path:
            lines += [f"      rewrite ^{re.escape(path)}/?(.*)$ /$1 break;"]
        if not servers:
            lines += ["      return 503 '{\"message\":\"failure to get a peer from the "
                      "ring-balancer\"}';", "    }"]
            continue
        lines += [
            f"      proxy_pass http://{site.upstream};",
            "      proxy_http_version 1.1;",
            "      proxy_set_header Connection \"\";",
            "      proxy_set_header Host $host;",
            "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "      proxy_set_header X-Correlation-ID $kongstack_cid;",
            "      proxy_set_header Kong-Request-ID $kongstack_cid;",
            "      proxy_set_header X-Consumer-Username $kongstack_consumer;",
            *[f"      proxy_set_header {k} \"\";" for k in (site.key_names or ())
              if site.hide_credentials],
            "      proxy_hide_header X-Correlation-ID;",
            "      add_header X-Correlation-ID $kongstack_cid always;",
            f"      proxy_connect_timeout {site.connect_timeout_ms}ms;",
            f"      proxy_read_timeout {site.read_timeout_ms}ms;",
            f"      proxy_send_timeout {site.write_timeout_ms}ms;",
            "      proxy_next_upstream error timeout http_502 http_503;",
            f"      proxy_next_upstream_tries {site.retries + 1};",
            "    }",
        ]
    lines += [
        "    location @kongstack_rate_limited { add_header X-Correlation-ID $kongstack_cid always;"
        " return 429 '{\"message\":\"API rate limit exceeded\"}'; }",
        "    location / { return 404 '{\"message\":\"no Route matched with those values\"}'; }",
        "  }",
        "  server {",
        f"    listen {listen.host}:{listen.status_port};",
        "    access_log off;",
        "    location = /nginx_status { stub_status; }",
        "    location = /kongstack/generation { default_type text/plain; "
        f"return 200 \"{generation}\"; }}",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def describe_targets(targets: dict[str, int]) -> str:
    return json.dumps(dict(sorted(targets.items())))
