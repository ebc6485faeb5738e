"""Where database connections come from: two roles, two endpoints.

- the schema **owner** runs migrations and index maintenance (heimdex.vectorstore.orgindex) only;
- the **application** role (`heimdex_app`, or a login role that is a member of it) serves every
  request path. It is not the owner, not a superuser, has no BYPASSRLS and cannot become the owner, so
  row-level security holds whatever SQL reaches its connection (db.Database checks this at start).

An endpoint is a libpq URL (the embedded server, or HEIMDEX_DATABASE_URL / HEIMDEX_DATABASE_APP_URL),
or Cloud SQL through the Cloud SQL Python Connector with IAM database authentication when
HEIMDEX_CLOUDSQL_INSTANCE is set: the connector signs in as the process's own service account with a
short-lived OAuth token, so no database password exists anywhere. Each service account is one
database user; only the maintenance job's is the owner (HEIMDEX_CLOUDSQL_OWNER), every service's is an
application user. The Cloud SQL path cannot run without Cloud SQL; tests check which endpoint
settings choose (tests/test_rls_role.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from heimdex.config import Settings

APP_ROLE = "heimdex_app"
SA_SUFFIX = ".gserviceaccount.com"

_connector: Any = None
_connector_lock = threading.Lock()


def cloudsql_connector() -> Any:
    """One Cloud SQL Python Connector per process (it keeps certificates and a background loop)."""
    global _connector
    with _connector_lock:
        if _connector is None:
            from google.cloud.sql.connector import Connector

            # Lazy refresh: Cloud Run throttles CPU between requests, so background refreshes stall.
            _connector = Connector(refresh_strategy="lazy")
        return _connector


@dataclass(frozen=True)
class CloudSql:
    """An IAM database user on a Cloud SQL instance, reached through the connector."""

    instance: str  # project:region:instance
    database: str
    user: str  # the service account's email without ".gserviceaccount.com"
    ip_type: str = "PRIVATE"

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] = cloudsql_connector().connect(
            self.instance,
            "psycopg",
            user=self.user,
            db=self.database,
            enable_iam_auth=True,
            ip_type=self.ip_type,
            **kwargs,
        )
        return conn


@dataclass(frozen=True)
class Endpoint:
    """How to open a connection as one role: a libpq URL, or Cloud SQL through the connector."""

    conninfo: str = ""
    cloudsql: CloudSql | None = None

    @property
    def user(self) -> str:
        if self.cloudsql is not None:
            return self.cloudsql.user
        return str(conninfo_to_dict(self.conninfo).get("user") or "")

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        if self.cloudsql is not None:
            return self.cloudsql.connect(**kwargs)
        return psycopg.connect(self.conninfo, **kwargs)

    def pool_args(self) -> dict[str, Any]:
        """conninfo and connection_class for psycopg_pool.ConnectionPool."""
        if self.cloudsql is None:
            return {"conninfo": self.conninfo}
        target = self.cloudsql

        class CloudSqlConnection(psycopg.Connection[Any]):
            @classmethod
            def connect(  # type: ignore[override]
                cls, conninfo: str = "", **kwargs: Any
            ) -> psycopg.Connection[Any]:
                return target.connect(**kwargs)

        return {"conninfo": "", "connection_class": CloudSqlConnection}


def with_user(url: str, user: str) -> str:
    """The same server and database as `url`, as another role, without a password."""
    params = {k: v for k, v in conninfo_to_dict(url).items() if k != "password"}
    params["user"] = user
    return make_conninfo("", **params)


def iam_user_name(email: str) -> str:
    """Cloud SQL's database user of a service account: its email without ".gserviceaccount.com"."""
    if not email.endswith(SA_SUFFIX) or "@" not in email:
        raise ValueError(f"not a service account email: {email!r}")
    return email.removesuffix(SA_SUFFIX)


def runtime_service_account() -> str:
    """The email of the service account this process runs as (Cloud Run's metadata server)."""
    import google.auth
    from google.auth.transport.requests import Request

    credentials, _ = google.auth.default()
    credentials.refresh(Request())  # compute-engine credentials learn their email on refresh
    email = getattr(credentials, "service_account_email", None)
    if not isinstance(email, str) or "@" not in email:
        raise RuntimeError(
            "cannot tell this process's service account; set HEIMDEX_CLOUDSQL_USER to its database user"
        )
    return email


def endpoints(settings: Settings, owner_url: str | None) -> tuple[Endpoint | None, Endpoint | None]:
    """(owner, application) endpoints for these settings; either may be None.

    - HEIMDEX_CLOUDSQL_INSTANCE: one Cloud SQL IAM user (this process's service account), the owner
      if HEIMDEX_CLOUDSQL_OWNER is set (the maintenance job), else the application.
    - otherwise the owner is `owner_url` (HEIMDEX_DATABASE_URL, or the embedded server) and the
      application HEIMDEX_DATABASE_APP_URL, by default the owner's server and database as `heimdex_app`
      without a password (the embedded server trusts its unix socket). A process given only
      HEIMDEX_DATABASE_APP_URL has no owner: it neither migrates nor builds indexes.
    """
    if settings.cloudsql_instance:
        user = settings.cloudsql_user or iam_user_name(runtime_service_account())
        ep = Endpoint(
            cloudsql=CloudSql(
                instance=settings.cloudsql_instance,
                database=settings.cloudsql_database,
                user=user,
                ip_type=settings.cloudsql_ip_type,
            )
        )
        return (ep, None) if settings.cloudsql_owner else (None, ep)
    owner = Endpoint(owner_url) if owner_url else None
    app_url = settings.database_app_url or (with_user(owner_url, APP_ROLE) if owner_url else None)
    return owner, (Endpoint(app_url) if app_url else None)
