# SPDX-License-Identifier: GPL-2.0-or-later
"""A small client for the Quantum v2.0 / Neutron API: networks, subnets and ports.

One `requests` session (connections reused), explicit connect and read timeouts on
every call, retries with back-off only where that is safe (connection failures and
502/503/504, on idempotent methods), TLS verified by default, paging through long
lists, and Neutron's error body turned into one clear line. Tokens never appear in an
error. Used by the engine-side commands; the hooks' hot path never imports it.
"""

from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from qhook.errors import QhookError, one_line

RETRIED_STATUSES = (502, 503, 504)
SAFE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class QuantumError(QhookError):
    """The API refused a call (kind is Neutron's error type) or could not be reached."""

    def __init__(self, message: str, kind: Optional[str] = None, status: Optional[int] = None):
        super().__init__(message)
        self.kind = kind
        self.status = status


class QuantumClient:
    """Calls to one Quantum/Neutron endpoint, e.g. http://controller:9696."""

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        verify: Union[bool, str] = True,
        timeout: Tuple[float, float] = (5.0, 30.0),
        retries: int = 3,
    ):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.verify = verify
        self.session.headers.update({"Accept": "application/json"})
        if token:
            self.session.headers["X-Auth-Token"] = token
        retry = Retry(
            total=retries,
            connect=retries,
            read=0,
            status=retries,
            backoff_factor=0.2,
            status_forcelist=RETRIED_STATUSES,
            allowed_methods=SAFE_METHODS,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    # -- one call ------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: Optional[Dict[str, Any]] = None,
        params: Optional[Dict[str, Any]] = None,
    ) -> Optional[Dict[str, Any]]:
        try:
            response = self.session.request(
                method,
                f"{self.url}/v2.0/{path}",
                json=body,
                params=params,
                timeout=self.timeout,
            )
        except requests.exceptions.SSLError as error:
            raise QuantumError(
                f"TLS with {self.url} failed: {one_line(str(error))[:300]}"
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise QuantumError(
                f"cannot reach Quantum at {self.url}: no connection within {self.timeout[0]:g} s"
            ) from None
        except requests.exceptions.ReadTimeout:
            raise QuantumError(
                f"Quantum at {self.url} gave no answer within {self.timeout[1]:g} s"
            ) from None
        except requests.exceptions.RequestException as error:
            raise self._unreachable(error) from None
        if response.status_code >= 400:
            raise _error(method, path, response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise QuantumError(f"{method} {path}: the answer is not JSON") from None

    def _unreachable(self, error: Exception) -> QuantumError:
        """One line for a failed connection; urllib3 wraps timeouts once it retries."""
        reason = getattr(error.args[0], "reason", None) if error.args else None
        if isinstance(reason, ReadTimeoutError):
            return QuantumError(
                f"Quantum at {self.url} gave no answer within {self.timeout[1]:g} s"
            )
        if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
            return QuantumError(
                f"cannot reach Quantum at {self.url}: no connection within {self.timeout[0]:g} s"
            )
        text = one_line(str(reason or error))
        return QuantumError(f"cannot reach Quantum at {self.url}: {text.rsplit(': ', 1)[-1][:200]}")

    # -- collections -----------------------------------------------------------------
    def list(self, collection: str, page_size: int = 500, **filters: Any) -> Iterator[Dict]:
        """Every item of a collection matching the filters, page after page."""
        params: Dict[str, Any] = {**filters, "limit": page_size}
        while True:
            page = self.request("GET", collection, params=params) or {}
            items = page.get(collection, [])
            yield from items
            following = [
                link for link in page.get(f"{collection}_links", []) if link.get("rel") == "next"
            ]
            if not following or not items:
                return
            params = {**filters, "limit": page_size, "marker": items[-1]["id"]}

    def create(self, collection: str, **attributes: Any) -> Dict[str, Any]:
        singular = collection[:-1]
        answer = self.request("POST", collection, {singular: attributes}) or {}
        return answer[singular]

    def create_many(self, collection: str, items: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Bulk create: one request, all or nothing."""
        answer = self.request("POST", collection, {collection: items}) or {}
        return answer[collection]

    def show(self, collection: str, item_id: str) -> Dict[str, Any]:
        return (self.request("GET", f"{collection}/{item_id}") or {})[collection[:-1]]

    def update(self, collection: str, item_id: str, **attributes: Any) -> Dict[str, Any]:
        singular = collection[:-1]
        answer = self.request("PUT", f"{collection}/{item_id}", {singular: attributes}) or {}
        return answer[singular]

    def delete(self, collection: str, item_id: str) -> bool:
        """Delete; False when it was already gone."""
        try:
            self.request("DELETE", f"{collection}/{item_id}")
        except QuantumError as error:
            if error.status == 404:
                return False
            raise
        return True

    # -- idempotent helpers ------------------------------------------------------------
    def ensure_network(self, name: str, **attributes: Any) -> Tuple[Dict[str, Any], bool]:
        """The network of this name, made if there is none; (network, created)."""
        found = list(self.list("networks", name=name))
        if len(found) > 1:
            raise QuantumError(f"{len(found)} networks are named {name}: which one is meant?")
        if found:
            return found[0], False
        return self.create("networks", name=name, **attributes), True


def _error(method: str, path: str, response: "requests.Response") -> QuantumError:
    kind = None
    message = response.reason or ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("NeutronError"), dict):
        kind = body["NeutronError"].get("type")
        message = body["NeutronError"].get("message") or message
    return QuantumError(
        f"{method} {path}: {response.status_code} {one_line(str(message))[:400]}",
        kind=kind,
        status=response.status_code,
    )
