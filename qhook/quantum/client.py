# SPDX-License-Identifier: GPL-2.0-or-later
"""A small client for the Quantum v2.0 / Neutron API: networks, subnets and ports.

One `requests` session (connections reused), explicit connect and read timeouts on
every call, retries with back-off only where that is safe (connection failures and
502/503/504, on idempotent methods), TLS verified by default, paging through long
lists, and Neutron's error body turned into one clear line. Tokens never appear in an
error. Used by the engine-side commands; the hooks' hot path never imports it.
"""

import re
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol, Tuple, Union
from urllib.parse import urlsplit

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


Send = Callable[..., "requests.Response"]


class Authenticator(Protocol):
    """Where tokens (and, with Keystone, the endpoint) come from."""

    def token(self, send: Send) -> Optional[str]: ...

    def forget(self) -> bool: ...

    def endpoint(self, send: Send) -> Optional[str]: ...


class StaticToken:
    """No token (noauth), or one given by the operator; it cannot be renewed."""

    def __init__(self, token: Optional[str] = None):
        self._token = token

    def __repr__(self) -> str:
        return "StaticToken(***)" if self._token else "StaticToken(None)"

    def token(self, send: Send) -> Optional[str]:
        return self._token

    def forget(self) -> bool:
        return False

    def endpoint(self, send: Send) -> Optional[str]:
        return None


class QuantumClient:
    """Calls to one Quantum/Neutron endpoint, e.g. http://controller:9696.

    Without a url, the endpoint comes from the authenticator (Keystone's catalog). A 401
    answer makes a renewable token be renewed once and the call made again.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        verify: Union[bool, str] = True,
        timeout: Tuple[float, float] = (5.0, 30.0),
        retries: int = 3,
        auth: Optional[Authenticator] = None,
        trace: Optional[Callable[[str], None]] = None,
        budget: Optional[float] = None,
    ):
        self.url = url.rstrip("/") if url else None
        # At most this many seconds for every call together (a hook's bound), if given.
        self.budget = budget
        self.deadline = None if budget is None else time.monotonic() + budget
        self.auth: Authenticator = auth or StaticToken(token)
        self.timeout = timeout
        self.trace = trace
        self.session = requests.Session()
        # Given with every request: a session's own verify loses to REQUESTS_CA_BUNDLE.
        self.verify = verify
        self.session.headers.update({"Accept": "application/json"})
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

    def __enter__(self) -> "QuantumClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one call ------------------------------------------------------------------
    def send(self, method: str, url: str, **options: Any) -> "requests.Response":
        """One HTTP exchange, bounded by the timeouts; failures become one line."""
        where = _server(url)
        began = time.monotonic()
        timeout = self.timeout
        if self.deadline is not None:
            left = self.deadline - began
            if left <= 0:
                raise QuantumError(
                    f"{where}: no answer within the {self.budget:g} s allowed", kind="ReadTimeout"
                )
            timeout = (min(timeout[0], left), min(timeout[1], left))
        try:
            response = self.session.request(
                method, url, timeout=timeout, verify=self.verify, **options
            )
        except requests.exceptions.SSLError as error:
            raise QuantumError(
                f"TLS with {where} failed: {_tls_reason(error)}", kind="TLSError"
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise self._no_connection(where, timeout[0]) from None
        except requests.exceptions.ReadTimeout:
            raise self._no_answer(where, timeout[1]) from None
        except requests.exceptions.RequestException as error:
            raise self._unreachable(where, error, timeout) from None
        if self.trace:
            elapsed = (time.monotonic() - began) * 1000
            self.trace(f"{method} {response.url} -> {response.status_code} ({elapsed:.0f} ms)")
        return response

    def base_url(self) -> str:
        """The API's root: the configured url, else the catalog's network endpoint."""
        if self.url is None:
            endpoint = self.auth.endpoint(self.send)
            if not endpoint:
                raise QuantumError("no Quantum url configured", kind="NoEndpoint")
            self.url = endpoint.rstrip("/")
        return self.url

    def request(
        self,
        method: str,
        path: str,
        body: Optional[Dict[str, Any]] = None,
        params: Optional[Dict[str, Any]] = None,
    ) -> Optional[Dict[str, Any]]:
        url = f"{self.base_url()}/v2.0/{path}"
        for attempt in (1, 2):
            headers = {}
            token = self.auth.token(self.send)
            if token:
                headers["X-Auth-Token"] = token
            response = self.send(method, url, json=body, params=params, headers=headers)
            if response.status_code == 401 and attempt == 1 and self.auth.forget():
                if self.trace:
                    self.trace("the token was refused: authenticating again")
                continue
            break
        if response.status_code >= 400:
            raise _error(method, path, response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise QuantumError(f"{method} {path}: the answer is not JSON") from None

    @staticmethod
    def _no_connection(where: str, seconds: float) -> QuantumError:
        return QuantumError(
            f"cannot reach {where}: no connection within {seconds:.3g} s", kind="ConnectTimeout"
        )

    @staticmethod
    def _no_answer(where: str, seconds: float) -> QuantumError:
        return QuantumError(f"{where} gave no answer within {seconds:.3g} s", kind="ReadTimeout")

    def _unreachable(
        self, where: str, error: Exception, timeout: Tuple[float, float]
    ) -> QuantumError:
        """One line for a failed connection; urllib3 wraps timeouts once it retries."""
        reason = getattr(error.args[0], "reason", None) if error.args else None
        if isinstance(reason, ReadTimeoutError):
            return self._no_answer(where, timeout[1])
        if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
            return self._no_connection(where, timeout[0])
        text = one_line(str(reason or error))
        return QuantumError(
            f"cannot reach {where}: {text.rsplit(': ', 1)[-1][:200]}", kind="Unreachable"
        )

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
    elif isinstance(body, dict) and isinstance(body.get("error"), dict):  # keystonemiddleware
        kind = body["error"].get("title")
        message = body["error"].get("message") or message
    return QuantumError(
        f"{method} {path}: {response.status_code} {one_line(str(message))[:400]}",
        kind=kind,
        status=response.status_code,
    )


def _server(url: str) -> str:
    """'Quantum at http://host:9696' or 'Keystone at https://host:5000' for an error."""
    parts = urlsplit(url)
    service = "Keystone" if "/v3" in parts.path.split("/v2.0")[0] else "Quantum"
    return f"{service} at {parts.scheme}://{parts.netloc}"


def _tls_reason(error: Exception) -> str:
    """The certificate verifier's words, without urllib3's wrapping."""
    text = one_line(str(error))
    for marker in ("certificate verify failed: ", "SSLError("):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    text = re.sub(r"\s*\(_ssl\.c:\d+\)?.*$", "", text)
    return text.rstrip(")'\" ")[:200]
