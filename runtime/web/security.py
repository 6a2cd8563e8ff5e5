"""Who may use the dashboard, and which POSTs are the user's own.

Without a token (the default, only on a loopback address) every request is allowed. With
a token, the JSON API and `/metrics` want `Authorization: Bearer <token>`, and pages want
the session cookie the login form sets: a random session id, its issue time and their
HMAC keyed by the token, valid for `SESSION_MAX_AGE_S`. Tokens and signatures are
compared with `hmac.compare_digest`.

Every state-changing request is a POST carrying a CSRF token: a random value in a cookie
that the page repeats in a hidden form field (double submit). Another site can make a
browser send the cookie, but cannot read it to fill in the field.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "rsx_session"
CSRF_COOKIE = "rsx_csrf"
CSRF_FIELD = "csrf"
SESSION_MAX_AGE_S = 12 * 3600


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class Guard:
    """The dashboard's access rules for one token (or none)."""

    def __init__(self, token: str | None) -> None:
        self.token = token or None

    @property
    def required(self) -> bool:
        """Whether requests must prove they know the token."""
        return self.token is not None

    def api_allowed(self, request: Request) -> bool:
        """Whether a JSON API or metrics request carries the token as a bearer token."""
        if self.token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and _same(given.strip(), self.token)

    def page_allowed(self, request: Request) -> bool:
        """Whether a page request carries a valid, unexpired session cookie."""
        if self.token is None:
            return True
        issued, _, rest = request.cookies.get(SESSION_COOKIE, "").partition(".")
        session, _, signature = rest.partition(".")
        if not (issued.isdigit() and session and signature):
            return False
        if not _same(signature, self._sign(f"{issued}.{session}")):
            return False
        return 0 <= time.time() - int(issued) <= SESSION_MAX_AGE_S

    def login(self, given: str, response: Response, secure: bool) -> bool:
        """Set the session cookie on `response` if `given` is the token."""
        if self.token is None or not _same(given, self.token):
            return False
        value = f"{int(time.time())}.{secrets.token_urlsafe(18)}"
        response.set_cookie(
            SESSION_COOKIE,
            f"{value}.{self._sign(value)}",
            max_age=SESSION_MAX_AGE_S,
            httponly=True,
            samesite="strict",
            secure=secure,
        )
        return True

    def _sign(self, value: str) -> str:
        assert self.token is not None
        key = self.token.encode("utf-8")
        return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The request's CSRF token: its cookie's, or a new one `remember_csrf` must set."""
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)


def remember_csrf(request: Request, response: Response, token: str) -> None:
    """Set the CSRF cookie on `response` unless the request already carried `token`."""
    if request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(
            CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )


def csrf_valid(request: Request, submitted: str | None) -> bool:
    """Whether a POST's form field repeats the CSRF cookie."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return bool(cookie) and submitted is not None and _same(submitted, cookie)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this site, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
