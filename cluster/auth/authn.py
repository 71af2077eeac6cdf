"""Authentication: bearer tokens from a kube-apiserver `--token-auth-file`, and anonymous access.

The token file is CSV, one user a line: `token,user,uid[,"group1,group2"]`, as kube-apiserver
reads it. Every user a token authenticates is also in `system:authenticated` (upstream adds the
group after authentication; doing it here means no caller can forget it). Anonymous access
applies only to requests that present no credentials at all: a wrong token is refused, never
downgraded to anonymous, as upstream does.
"""
from __future__ import annotations

import csv
import io
import os
import secrets
from typing import Iterable, Mapping, Protocol

from cluster.auth.user import (ALL_AUTHENTICATED, ALL_UNAUTHENTICATED, ANONYMOUS, SYSTEM_MASTERS,
                               UserInfo)

ADMIN_USER = "admin"


class Authenticator(Protocol):
    def authenticate(self, headers: Mapping[str, str]) -> UserInfo | None: ...


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return ""


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of `Authorization: Bearer <token>`, or "" when the header carries none."""
    parts = _header(headers, "Authorization").split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer":
        return ""
    return parts[1]


def read_token_file(path: str) -> list[tuple[str, UserInfo]]:
    """The (token, user) lines of a token file; lines with an empty token are skipped, as upstream does."""
    with open(path, newline="") as f:
        text = f.read()
    entries = []
    for record in csv.reader(io.StringIO(text)):
        if not record:
            continue
        if len(record) < 3:
            raise ValueError(f"token file '{path}' must have at least 3 columns"
                             f" (token, user name, user uid), found {len(record)}")
        if not record[0]:
            continue
        groups = tuple(record[3].split(",")) if len(record) >= 4 else ()
        entries.append((record[0], UserInfo(record[1], record[2], groups)))
    return entries


class TokenFileAuthenticator:
    """Users by bearer token, read once from a token file (upstream does not reload it either)."""

    def __init__(self, path: str):
        self.path = path
        self._users: dict[str, UserInfo] = {}
        for token, user in read_token_file(path):
            groups = user.groups
            if ALL_AUTHENTICATED not in groups and ALL_UNAUTHENTICATED not in groups:
                groups = groups + (ALL_AUTHENTICATED,)
            self._users[token] = UserInfo(user.name, user.uid, groups)

    def authenticate(self, headers: Mapping[str, str]) -> UserInfo | None:
        token = bearer_token(headers)
        return self._users.get(token) if token else None


class AnonymousAuthenticator:
    """`system:anonymous` for requests without credentials; off unless the server turns it on."""

    def authenticate(self, headers: Mapping[str, str]) -> UserInfo | None:
        if _header(headers, "Authorization"):
            return None
        return UserInfo(ANONYMOUS, groups=(ALL_UNAUTHENTICATED,))


class UnionAuthenticator:
    """The first user any of the authenticators finds, in order."""

    def __init__(self, authenticators: Iterable[Authenticator]):
        self.authenticators = list(authenticators)

    def authenticate(self, headers: Mapping[str, str]) -> UserInfo | None:
        for authenticator in self.authenticators:
            user = authenticator.authenticate(headers)
            if user is not None:
                return user
        return None


def build_authenticator(token_file: str, anonymous: bool = False) -> UnionAuthenticator:
    """The server's authenticator: tokens from `token_file`, then anonymous if enabled."""
    chain: list[Authenticator] = [TokenFileAuthenticator(token_file)]
    if anonymous:
        chain.append(AnonymousAuthenticator())
    return UnionAuthenticator(chain)


def _line(token: str, user: UserInfo) -> str:
    out = io.StringIO()
    row = [token, user.name, user.uid]
    if user.groups:
        row.append(",".join(user.groups))
    csv.writer(out, lineterminator="\n").writerow(row)
    return out.getvalue()


def generate_token_file(path: str, users: Iterable[UserInfo]) -> dict[str, str]:
    """Write a new token file (mode 0600) with a random token per user; returns {user name: token}."""
    by_name = {user.name: user for user in users}
    tokens = {name: secrets.token_urlsafe(32) for name in by_name}
    text = "".join(_line(tokens[name], by_name[name]) for name in tokens)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return tokens


def ensure_admin_token(path: str, name: str = ADMIN_USER) -> str:
    """The token of user `name` (in system:masters) from `path`, creating the file if it is missing.

    An existing file without that user gets a line appended, so tokens already handed out stay valid.
    """
    if not os.path.exists(path):
        return generate_token_file(path, [UserInfo(name, name, (SYSTEM_MASTERS,))])[name]
    for token, user in read_token_file(path):
        if user.name == name:
            return token
    token = secrets.token_urlsafe(32)
    with open(path, "a+") as f:
        f.seek(0)
        ends_open = (text := f.read()) and not text.endswith("\n")
        f.write(("\n" if ends_open else "") + _line(token, UserInfo(name, name, (SYSTEM_MASTERS,))))
    return token
