"""A small Elasticsearch client for the request-log store (VM-LOGS), used when ELASTICSEARCH_URL
is set: install the index template, ILM retention policy and ingest pipeline from
``deployments/logging/``, ship JSON-lines log files, and search by correlation id.

Shipping is idempotent: each line's document id is a hash of the line, written with ``create``,
so re-shipping a file (a retry, a restart) never duplicates a log line.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from kongstack.core.errors import StackError
from kongstack.core.settings import REPO_ROOT

LOGGING_DIR = REPO_ROOT / "deployments" / "logging"
NAME = "kongstack-logs"  # the policy, pipeline and template share it; indices are NAME-YYYY.MM.DD
_RETRY_STATUS = {429, 502, 503, 504}
_BATCH = 500


class LogStoreError(StackError):
    """Elasticsearch refused or failed a request (the message never carries credentials)."""


class _Transient(LogStoreError):
    pass


@dataclass(frozen=True)
class ShipResult:
    created: int = 0
    already_present: int = 0
    skipped_lines: int = 0  # not JSON objects (for example a gunicorn start-up line)
    errors: list[str] = field(default_factory=list)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def index_for(record: Mapping[str, Any]) -> str:
    """Daily index from the record's ``ts`` (UTC), as Fluent Bit's Logstash_Format names it."""
    stamp = datetime.now(UTC)
    ts = record.get("ts")
    if isinstance(ts, str):
        try:
            parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
            stamp = parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return f"{NAME}-{stamp:%Y.%m.%d}"


class ElasticsearchClient:
    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"ApiKey {api_key}"
        auth = httpx.BasicAuth(username, password or "") if username else None
        self.url = _redact(url)
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, auth=auth,
                                  timeout=timeout, transport=transport)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ElasticsearchClient | None:
        """ELASTICSEARCH_URL (+ _API_KEY or _USERNAME/_PASSWORD); None when no URL is set."""
        env = os.environ if environ is None else environ
        url = env.get("ELASTICSEARCH_URL")
        if not url:
            return None
        return cls(url, api_key=env.get("ELASTICSEARCH_API_KEY"),
                   username=env.get("ELASTICSEARCH_USERNAME"),
                   password=env.get("ELASTICSEARCH_PASSWORD"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ElasticsearchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @retry(retry=retry_if_exception(lambda e: isinstance(e, _Transient)),
           wait=wait_exponential(multiplier=0.2, max=5), stop=stop_after_attempt(5),
           reraise=True)
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise _Transient(f"{method} {self.url}{path}: {type(exc).__name__}") from exc
        if response.status_code in _RETRY_STATUS:
            raise _Transient(f"{method} {self.url}{path}: HTTP {response.status_code}")
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.status_code >= 400:
            raise LogStoreError(
                f"{method} {self.url}{path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    # -- setup --------------------------------------------------------------------------
    def install(self, logging_dir: Path = LOGGING_DIR) -> None:
        """Create or update the ILM policy, ingest pipeline and index template (idempotent)."""
        def load(name: str) -> Any:
            return json.loads((logging_dir / name).read_text())

        self._json("PUT", f"/_ilm/policy/{NAME}", json=load("ilm-policy.json"))
        self._json("PUT", f"/_ingest/pipeline/{NAME}", json=load("ingest-pipeline.json"))
        self._json("PUT", f"/_index_template/{NAME}", json=load("index-template.json"))

    # -- shipping -----------------------------------------------------------------------
    def ship(self, records: Iterable[Mapping[str, Any]]) -> ShipResult:
        created = present = 0
        errors: list[str] = []
        batch: list[Mapping[str, Any]] = []

        def flush() -> None:
            nonlocal created, present
            c, p, e = self._bulk(batch)
            created, present = created + c, present + p
            errors.extend(e)
            batch.clear()

        for record in records:
            batch.append(record)
            if len(batch) >= _BATCH:
                flush()
        if batch:
            flush()
        return ShipResult(created=created, already_present=present, errors=errors)

    def _bulk(self, records: list[Mapping[str, Any]]) -> tuple[int, int, list[str]]:
        lines: list[str] = []
        for record in records:
            body = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
            doc_id = hashlib.sha256(body.encode()).hexdigest()[:32]
            lines.append(json.dumps({"create": {"_index": index_for(record), "_id": doc_id}}))
            lines.append(body)
        result = self._json("POST", "/_bulk", content="\n".join(lines) + "\n",
                            headers={"Content-Type": "application/x-ndjson"})
        created = present = 0
        errors: list[str] = []
        for item in result.get("items", []):
            outcome = item.get("create", {})
            status = outcome.get("status", 0)
            if status == 201:
                created += 1
            elif status == 409:
                present += 1
            else:
                errors.append(f"{status}: {outcome.get('error', {}).get('reason', outcome)}")
        return created, present, errors

    def ship_file(self, path: Path) -> ShipResult:
        """Ship every JSON-object line of a log file; other lines are counted and skipped."""
        skipped = 0

        def records() -> Iterator[dict[str, Any]]:
            nonlocal skipped
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        record = None
                    if isinstance(record, dict):
                        yield record
                    elif line.strip():
                        skipped += 1

        result = self.ship(records())
        return ShipResult(created=result.created, already_present=result.already_present,
                          skipped_lines=skipped, errors=result.errors)

    # -- reading ------------------------------------------------------------------------
    def refresh(self) -> None:
        self._json("POST", f"/{NAME}-*/_refresh")

    def _search(self, query: dict[str, Any], size: int) -> list[dict[str, Any]]:
        body = {"query": query, "size": size, "sort": [{"ts": {"order": "asc"}}]}
        result = self._json("POST", f"/{NAME}-*/_search", json=body,
                            params={"ignore_unavailable": "true"})
        return [hit["_source"] for hit in result.get("hits", {}).get("hits", [])]

    def search_correlation(self, correlation_id: str, size: int = 100) -> list[dict[str, Any]]:
        """Every log line of one request (gateway and backend), oldest first."""
        return self._search({"term": {"correlation_id": correlation_id}}, size)

    def recent_errors(self, minutes: int = 15, size: int = 100) -> list[dict[str, Any]]:
        """What the Kibana saved search shows: level error or HTTP 5xx, newest window only."""
        return self._search({"bool": {
            "filter": [{"range": {"ts": {"gte": f"now-{minutes}m"}}}],
            "should": [{"term": {"level": "error"}}, {"range": {"status": {"gte": 500}}}],
            "minimum_should_match": 1,
        }}, size)
