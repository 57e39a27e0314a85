"""Render nginx.conf for the local gateway: Debian's nginx with its Lua module.

Everything lives under the gateway's own prefix (pid, logs, temp dirs, the Lua modules and
the site file), so this nginx never touches the system one. The proxy server runs the Lua
request path (``kongstack.proxy``: route, key-auth, ACL, rate limit, balancer); the upstream
has one placeholder server and a ``balancer_by_lua`` that picks the target from a shared
dictionary, so target changes need no reload. The status server, always on loopback, answers
``/nginx_status`` (stub_status), ``/kongstack/generation`` (how a reload is verified) and the
runtime target API ``/kongstack/targets`` (``kongstack.admin``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from tasks.gateway.nginx.site import NginxSite

LUA_SOURCE = Path(__file__).parent / "lua"
LUA_MODULES = Path("/usr/lib/nginx/modules")
LUA_SYSTEM_PATH = "/usr/share/lua/5.1/?.lua"
LUA_SYSTEM_CPATH = "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so"
# Shared memory zones keep their size across reloads (nginx refuses a resize on SIGHUP).
SHARED_DICTS = {"kongstack_targets": "1m", "kongstack_health": "1m",
                "kongstack_ratelimit": "16m"}

# One JSON object per request; status and request_time (seconds, ms resolution) are numbers.
ACCESS_LOG_FIELDS = {
    "ts": "$time_iso8601", "level": "info", "msg": "request", "method": "$request_method",
    "path": "$uri", "route": "$kongstack_route", "status": "$status",
    "request_time_s": "$request_time", "upstream_addr": "$upstream_addr",
    "upstream_status": "$upstream_status", "upstream_response_time": "$upstream_response_time",
    "correlation_id": "$kongstack_cid", "request_id": "$request_id",
    "consumer": "$kongstack_consumer", "denied": "$kongstack_denied",
    "remote_addr": "$remote_addr", "bytes_sent": "$bytes_sent",
}
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
_PATH = re.compile(r"^/[A-Za-z0-9._~/-]*$")


@dataclass(frozen=True)
class Listen:
    host: str
    port: int
    status_port: int

    @property
    def admin_host(self) -> str:
        """The status/admin server binds loopback whatever the proxy binds."""
        try:
            if ipaddress.ip_address(self.host).is_loopback:
                return self.host
        except ValueError:
            pass
        return "127.0.0.1"


def lua_fingerprint() -> str:
    """Hash of the Lua sources: a changed module is a changed configuration (a reload)."""
    digest = hashlib.sha256()
    for path in sorted(LUA_SOURCE.rglob("*.lua")):
        digest.update(path.relative_to(LUA_SOURCE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _log_format() -> str:
    numeric = {"status", "request_time_s"}
    body = ",".join(f'"{k}":{v}' if k in numeric else f'"{k}":"{v}"'
                    for k, v in ACCESS_LOG_FIELDS.items())
    return "'{" + body + "}'"


def _header(name: str) -> str:
    if not _HEADER_NAME.match(name):
        raise ValueError(f"header name {name!r}: letters, digits and '-' only")
    return name


def _json_error(status: int, message: str) -> str:
    """A fixed error answer in Kong's JSON shape (for what nginx answers before any Lua)."""
    return (f"return {status} '{{\"message\":\"{message}\","
            "\"request_id\":\"$request_id\"}';")


def render(site: NginxSite, *, prefix: Path, listen: Listen, generation: int,
           site_file: Path, targets_file: Path) -> str:
    for path in site.paths:
        if not _PATH.match(path):
            raise ValueError(f"route path {path!r}: plain URL path characters only")
    cid_header = _header(site.correlation_header)
    cid = cid_header.lower().replace("-", "_")
    grace = max(site.read_timeout_ms // 1000 + 5, 10)
    lines = [
        "# Rendered by kongstack (tasks/gateway/nginx); changes are overwritten.",
        f"# lua {lua_fingerprint()}",
        # The site file's content (keys, limits) is part of the configuration: a change of
        # it is a changed render, hence a reload. (The file itself is 0600.)
        f"# site {hashlib.sha256(site.lua_document().encode()).hexdigest()[:16]}",
        f"load_module {LUA_MODULES}/ndk_http_module.so;",
        f"load_module {LUA_MODULES}/ngx_http_lua_module.so;",
        # One worker: the smooth weighted round robin is exact and the health checker single.
        "worker_processes 1;",
        f"pid {prefix}/nginx.pid;",
        f"error_log {prefix}/logs/error.log warn;",
        "daemon off;",
        "master_process on;",
        # Old workers finish in-flight requests after a reload, bounded by this.
        f"worker_shutdown_timeout {grace}s;",
        "events { worker_connections 4096; }",
        "http {",
        f"  client_body_temp_path {prefix}/tmp/body;",
        f"  proxy_temp_path {prefix}/tmp/proxy;",
        f"  fastcgi_temp_path {prefix}/tmp/fastcgi;",
        f"  uwsgi_temp_path {prefix}/tmp/uwsgi;",
        f"  scgi_temp_path {prefix}/tmp/scgi;",
        "  server_tokens off;",
        # Kong's defaults: a header line longer than 8k is 400 "Request header or cookie
        # too large".
        "  large_client_header_buffers 4 8k;",
        "  uninitialized_variable_warn off;",
        f'  lua_package_path "{prefix}/lua/?.lua;{LUA_SYSTEM_PATH};;";',
        f'  lua_package_cpath "{LUA_SYSTEM_CPATH};;";',
        *[f"  lua_shared_dict {name} {size};" for name, size in SHARED_DICTS.items()],
        "  init_by_lua_block {",
        '    require("kongstack.proxy"); require("kongstack.admin"); require("kongstack.checks")',
        f'    require("kongstack.site").init("{site_file}", "{targets_file}")',
        "  }",
        '  init_worker_by_lua_block { require("kongstack.checks").start() }',
        f"  log_format kongstack_json escape=json {_log_format()};",
        # Correlation id: the client's X-Correlation-ID or Kong header, else nginx's own id.
        "  map $http_x_correlation_id $kongstack_cid_in {",
        f"    \"\" $http_{cid};",
        "    default $http_x_correlation_id;",
        "  }",
        "  map $kongstack_cid_in $kongstack_cid { \"\" $request_id; default $kongstack_cid_in; }",
        f"  upstream {site.upstream} {{",
        "    server 0.0.0.1;  # never used: balancer_by_lua picks every peer",
        '    balancer_by_lua_block { require("kongstack.proxy").balance() }',
        "    keepalive 64;",
        "  }",
        "  server {",
        f"    listen {listen.host}:{listen.port};",
        f"    access_log {prefix}/logs/access.log kongstack_json;",
        "    default_type application/json;",
        '    set $kongstack_consumer "";',
        '    set $kongstack_route "";',
        '    set $kongstack_denied "";',
        "    error_page 494 =400 @kongstack_header_too_large;",
        "    error_page 400 @kongstack_bad_request;",
    ]
    for path in site.paths:
        lines += [
            f"    location {path} {{",
            f'      access_by_lua_block {{ require("kongstack.proxy").access("{path}") }}',
            '      header_filter_by_lua_block { require("kongstack.proxy").header_filter() }',
            '      log_by_lua_block { require("kongstack.proxy").log() }',
            f"      proxy_pass http://{site.upstream};",
            "      proxy_http_version 1.1;",
            "      proxy_set_header Connection \"\";",
            "      proxy_set_header Host $host;",
            "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "      proxy_set_header X-Correlation-ID $kongstack_cid;",
            f"      proxy_set_header {cid_header} $kongstack_cid;",
            "      proxy_hide_header X-Correlation-ID;",
            f"      proxy_hide_header {cid_header};",
            "      add_header X-Correlation-ID $kongstack_cid always;",
            f"      add_header {cid_header} $kongstack_cid always;",
            f"      proxy_connect_timeout {site.connect_timeout_ms}ms;",
            f"      proxy_read_timeout {site.read_timeout_ms}ms;",
            f"      proxy_send_timeout {site.write_timeout_ms}ms;",
            # Kong retries on connection errors and timeouts; nginx never re-sends a
            # non-idempotent request once it was sent.
            "      proxy_next_upstream error timeout;",
            f"      proxy_next_upstream_tries {site.retries + 1};",
            "    }",
        ]
    lines += [
        "    location @kongstack_header_too_large { "
        + _json_error(400, "Request header or cookie too large") + " }",
        "    location @kongstack_bad_request { " + _json_error(400, "Bad request") + " }",
        "    location / { add_header X-Correlation-ID $kongstack_cid always; "
        '      set $kongstack_denied "no_route"; '
        + _json_error(404, "no Route matched with those values") + " }",
        "  }",
        "  server {",
        f"    listen {listen.admin_host}:{listen.status_port};",
        "    access_log off;",
        "    allow 127.0.0.0/8;",
        "    allow ::1;",
        "    deny all;",
        "    client_max_body_size 1m;",
        "    client_body_buffer_size 1m;  # the target list stays in memory for Lua",
        "    location = /nginx_status { stub_status; }",
        "    location = /kongstack/generation { default_type text/plain; "
        f"return 200 \"{generation}\"; }}",
        '    location = /kongstack/targets { content_by_lua_block { '
        'require("kongstack.admin").targets() } }',
        "    location ~ ^/kongstack/targets/(?<kongstack_target>[^/]+)/"
        "(?<kongstack_state>healthy|unhealthy)$ {",
        '      content_by_lua_block { require("kongstack.admin").set_health('
        "ngx.var.kongstack_target, ngx.var.kongstack_state) }",
        "    }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"
