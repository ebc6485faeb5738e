"""Offline checks of terraform/ (what CI runs: no terraform binary, no providers, no network).

- The HEIMDEX_* contract: every setting marked `cloud` in heimdex.config.Settings is set by
  Terraform for each function and stage service that needs it, nothing sets an unknown HEIMDEX_
  variable, and local-only knobs (emulators, fault injection, HS256 secrets) are never set.
- Every folder in functions/ and every stage of heimdex.core.graph.PIPELINE has its resources
  (function, Cloud Run service, queue, service account), and the queues follow the graph.
- One root module (terraform/*.tf) that every environment runs: envs/<env>/ holds only
  terraform.tfvars and the state location (backend.hcl).
- checkov over terraform/ reports no failed check, and every skip carries a reason.

The .tf files are parsed with python-hcl2; expressions are kept as text, so the tests read the
literal maps the modules build their environment from (locals common_env, component_env,
secret_env) and check that the resources use them.
"""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import hcl2
import pytest

from heimdex.config import DRIVE_READERS, Settings
from heimdex.core.graph import PIPELINE

ROOT = Path(__file__).resolve().parents[1]
TF = ROOT / "terraform"
MODULES = TF / "modules"
ENVS = ("dev", "prod")
CHECKOV = ROOT / ".venv-iac" / "bin" / "checkov"

FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/main.py"))
STAGES = sorted(s.name for s in PIPELINE)
# Never set in the cloud: emulator endpoints, test-only knobs and the HS256 secret of the embedded
# default (the cloud verifies Google ID tokens).
LOCAL_ONLY = {
    "tasks_emulator_host",
    "drive_api_root",
    "drive_sa_key_file",  # the cloud's accounts use their own identity, never a key file
    "fail_first_attempts",
    "vision_random_init",
    "jwt_secret",
    "jwt_audience",
}
HEIMDEX_VAR = re.compile(r"\bHEIMDEX_[A-Z0-9_]+\b")


# -- parsing -----------------------------------------------------------------------------------------


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of keys and literal strings ('"x"'); drop them and its metadata."""
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@cache
def parse(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        parsed: dict[str, Any] = _unquote(hcl2.load(fh))
    return parsed


def tf_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.tf"))


def blocks(folder: Path, kind: str) -> list[Any]:
    return [b for f in tf_files(folder) for b in parse(f).get(kind, [])]


def resources(folder: Path, rtype: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in blocks(folder, "resource"):
        for name, body in block.get(rtype, {}).items():
            found[name] = body
    return found


def locals_of(folder: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in blocks(folder, "locals"):
        merged.update(block)
    return merged


def variables_of(folder: Path) -> dict[str, dict[str, Any]]:
    return {name: body for block in blocks(folder, "variable") for name, body in block.items()}


def module_calls() -> dict[str, dict[str, Any]]:
    """The module calls of the root module, which every environment runs."""
    return {name: body for block in blocks(TF, "module") for name, body in block.items()}


def dynamic(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [d[name] for d in body.get("dynamic", []) if name in d]


def literal(value: Any) -> bool:
    return isinstance(value, str) and "${" not in value


# -- the HEIMDEX_* contract --------------------------------------------------------------------------


def env_name(field: str) -> str:
    return f"HEIMDEX_{field.upper()}"


def required_env(component: str) -> set[str]:
    """HEIMDEX_* variables a component needs in the cloud, from the `cloud` marks in Settings."""
    group = "functions" if component in FUNCTIONS else "stages"
    needed = set()
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra
        marks = extra.get("cloud", []) if isinstance(extra, dict) else []
        assert isinstance(marks, list)
        unknown = set(marks) - {"functions", "stages", *FUNCTIONS, *STAGES}
        assert not unknown, f"Settings.{name} is marked for unknown cloud components {unknown}"
        if group in marks or component in marks:
            needed.add(env_name(name))
    return needed


def module_env(module: str, component: str) -> dict[str, Any]:
    """Plain and secret HEIMDEX_* variables a module sets for one component (function or stage)."""
    loc = locals_of(MODULES / module)
    if module == "functions":  # each function sets its own; a stage without additions has no entry
        assert component in loc["component_env"], f"modules/{module}: no component_env for {component!r}"
    return {**loc["common_env"], **loc["component_env"].get(component, {}), **loc["secret_env"]}


def names_in(loc: dict[str, Any], value: Any) -> dict[str, Any]:
    """The HEIMDEX_* variables of a map local, or of an expression naming one (`${local.x}`) or
    building one (`${merge({HEIMDEX_X = ...}, cond ? {} : {...})}`): name => value or "${computed}"."""
    if isinstance(value, dict):
        return value
    ref = re.fullmatch(r"\$\{local\.([a-z_]+)\}", value)
    if ref:
        return names_in(loc, loc[ref.group(1)])
    found = dict.fromkeys(HEIMDEX_VAR.findall(value), "${computed}")
    for name in re.findall(r"\blocal\.([a-z_]+)\b", value):  # `${merge(local.a, local.b)}`
        found.update(names_in(loc, loc[name]))
    return found


def secret_names(module: str, component: str) -> set[str]:
    """The secret environment variables (Secret Manager references) a component gets."""
    loc = locals_of(MODULES / module)
    names = set(loc["secret_env"])
    if module == "functions":
        names |= set(names_in(loc, loc["component_secret_env"][component]))
    elif component in SOURCE_STAGES:
        names |= set(names_in(loc, loc["drive_secret_env"]))
    return names


# stage_services' var.source_stages default and env's local
SOURCE_STAGES = ("probe", "asr", "shots", "faces")


def function_env(function: str) -> dict[str, Any]:
    fn = resources(MODULES / "functions", "google_cloudfunctions2_function")["this"]
    service = fn["service_config"][0]
    # The resource must build its environment from exactly these locals.
    assert service["environment_variables"] == (
        "${merge(local.common_env, local.component_env[each.value.source])}"
    )
    [secrets] = dynamic(service, "secret_environment_variables")
    assert secrets["for_each"] == "${merge(local.secret_env, local.component_secret_env[each.value.source])}"
    env = module_env("functions", function)
    env.update(dict.fromkeys(secret_names("functions", function), "${secret}"))
    return env


def stage_env(stage: str) -> dict[str, Any]:
    svc = resources(MODULES / "stage_services", "google_cloud_run_v2_service")["stage"]
    [container] = svc["template"][0]["containers"]
    plain, secret = dynamic(container, "env")
    assert plain["for_each"].startswith("${merge(local.common_env, lookup(local.component_env, each.key, {})")
    assert "contains(var.source_stages, each.key) ? local.drive_env : {}" in plain["for_each"]
    assert secret["for_each"] == (
        "${merge(local.secret_env, contains(var.source_stages, each.key) ? local.drive_secret_env : {})}"
    )
    env = module_env("stage_services", stage)
    # Literal additions inside the for_each expression (e.g. HEIMDEX_TORCH_THREADS = cpu).
    env.update(dict.fromkeys(HEIMDEX_VAR.findall(plain["for_each"]), "${computed}"))
    if stage in SOURCE_STAGES:
        env.update(locals_of(MODULES / "stage_services")["drive_env"])
    env.update(dict.fromkeys(secret_names("stage_services", stage), "${secret}"))
    return env


def settings_fields() -> set[str]:
    return {env_name(name) for name in Settings.model_fields}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_gets_the_settings_it_needs(function: str) -> None:
    env = function_env(function)
    missing = required_env(function) - set(env)
    assert not missing, f"function {function}: Terraform does not set {sorted(missing)}"


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_service_gets_the_settings_it_needs(stage: str) -> None:
    env = stage_env(stage)
    missing = required_env(stage) - set(env)
    assert not missing, f"stage {stage}: Terraform does not set {sorted(missing)}"


def test_no_unknown_or_local_only_heimdex_variable_is_set() -> None:
    known = settings_fields()
    for path in sorted(TF.rglob("*.tf")):
        text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        for name in HEIMDEX_VAR.findall(text):
            assert name in known, f"{path.relative_to(ROOT)} sets {name}, which heimdex.config does not read"
    components = [function_env(f) for f in FUNCTIONS] + [stage_env(s) for s in STAGES]
    for env in components:
        for name in LOCAL_ONLY:
            assert env_name(name) not in env, f"{env_name(name)} must not be set in the cloud"


def test_literal_values_are_valid_settings() -> None:
    """Literal values (modes, flags, paths) must parse as the Settings field types."""
    by_env = {env_name(name): name for name in Settings.model_fields}
    components = [function_env(f) for f in FUNCTIONS] + [stage_env(s) for s in STAGES]
    for env in components:
        values = {by_env[k]: v for k, v in env.items() if literal(v)}
        Settings(**values)  # raises on a bad value
    assert function_env("search")["HEIMDEX_AUTH_MODE"] == "identity_platform"
    assert function_env("drive_watch")["HEIMDEX_AUTH_MODE"] == "identity_platform"
    assert stage_env("probe")["HEIMDEX_JOB_STORE"] == "firestore"
    assert stage_env("probe")["HEIMDEX_VERIFY_TASK_TOKENS"] == "true"
    assert stage_env("asr")["HEIMDEX_ASR_COMPUTE_TYPE"] == "float16"


def test_database_uses_iam_authentication_and_no_password() -> None:
    """Cloud SQL IAM database authentication for every user; no password, no database URL secret.
    The services connect with the Cloud SQL Python Connector (HEIMDEX_CLOUDSQL_INSTANCE) as their own
    service accounts; heimdex.vectorstore.connect picks that path from the setting."""
    sql_instance = resources(MODULES / "cloudsql", "google_sql_database_instance")["this"]
    settings = sql_instance["settings"][0]
    flags = {f["name"]: f["value"] for f in settings["database_flags"]}
    assert flags["cloudsql.iam_authentication"] == "on"
    ip = settings["ip_configuration"][0]
    assert ip["ipv4_enabled"] is False, "Cloud SQL must have no public IP"
    assert ip["ssl_mode"] == "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"  # the connector's client certificates
    users = resources(MODULES / "cloudsql", "google_sql_user")
    assert set(users) == {"app", "owner"}
    for name, user in users.items():
        assert user["type"] == "CLOUD_IAM_SERVICE_ACCOUNT", name
        assert not {"password", "password_wo", "password_wo_version"} & set(user), name
    # Cloud SQL names a service account's user by its email without ".gserviceaccount.com".
    loc = locals_of(MODULES / "cloudsql")
    assert users["app"]["name"] == "${each.value}" and users["owner"]["name"] == "${local.owner_user}"
    for names in (loc["app_users"], loc["owner_user"]):
        assert "trimsuffix(" in names and '".gserviceaccount.com"' in names, names
    for path in sorted(TF.rglob("*.tf")):
        text = path.read_text()
        assert "random_password" not in text, f"{path.relative_to(ROOT)}: a generated password"
        assert "HEIMDEX_DATABASE_URL" not in text and "HEIMDEX_DATABASE_APP_URL" not in text, path
        assert "BUILT_IN" not in text, path
    assert not resources(MODULES / "cloudsql", "google_secret_manager_secret")
    for module in ("functions", "stage_services"):
        loc = locals_of(MODULES / module)
        assert loc["secret_env"] == {}
        assert loc["common_env"]["HEIMDEX_CLOUDSQL_INSTANCE"] == "${var.cloudsql_instance}"
        assert "HEIMDEX_CLOUDSQL_OWNER" not in loc["common_env"]
        for comp in loc["component_env"].values():
            assert "HEIMDEX_CLOUDSQL_OWNER" not in comp and "HEIMDEX_CLOUDSQL_USER" not in comp
    # Connect and log in, on this instance only.
    grants = resources(MODULES / "cloudsql", "google_project_iam_member")
    assert {g["role"] for g in grants.values()} == {"roles/cloudsql.client", "roles/cloudsql.instanceUser"}
    for grant in grants.values():
        assert grant["for_each"] == "${local.connecting}"
        assert grant["condition"][0]["expression"] == "${local.instance_condition.expression}"
    condition = locals_of(MODULES / "cloudsql")["instance_condition"]["expression"]
    assert "sqladmin.googleapis.com/Instance" in condition and "instances/${var.instance_name}" in condition
    # Every function and stage is an application user; the owner is the maintenance job's account.
    call = module_calls()["cloudsql"]
    assert (
        "local.functions" in call["app_service_accounts"] and "local.stages" in call["app_service_accounts"]
    )
    assert "db-owner" not in call["app_service_accounts"]
    assert call["owner_service_account"] == '${module.service_accounts.emails["db-owner"]}'


def test_only_the_maintenance_job_is_the_database_owner() -> None:
    job = resources(MODULES / "db_maintenance", "google_cloud_run_v2_job")["maintenance"]
    task = job["template"][0]["template"][0]
    assert task["service_account"] == "${var.service_account}"
    [container] = task["containers"]
    assert container["command"] == ["python", "-m", "heimdex.vectorstore.orgindex"]
    assert container["image"] == "${var.image_repository}/index:${var.image_tag}"
    [env] = dynamic(container, "env")
    assert env["for_each"] == "${local.env}"
    job_env = locals_of(MODULES / "db_maintenance")["env"]
    assert job_env["HEIMDEX_CLOUDSQL_OWNER"] == "true"
    assert job_env["HEIMDEX_CLOUDSQL_INSTANCE"] == "${var.cloudsql_instance}"
    assert job_env["HEIMDEX_DATABASE_APP_USERS"] == "${jsonencode(var.app_database_users)}"
    by_env = {env_name(name): name for name in Settings.model_fields}
    Settings(**{by_env[k]: v for k, v in job_env.items() if literal(v)})
    call = module_calls()["db_maintenance"]
    assert call["service_account"] == '${module.service_accounts.emails["db-owner"]}'
    assert call["app_database_users"] == "${module.cloudsql.app_users}"
    # No function or stage runs as the owner.
    assert module_calls()["functions"]["service_accounts"] == "${module.service_accounts.function_emails}"
    assert module_calls()["stage_services"]["service_accounts"] == "${module.service_accounts.stage_emails}"
    scheduler = resources(MODULES / "db_maintenance", "google_cloud_scheduler_job")["maintenance"]
    assert scheduler["http_target"][0]["uri"].rstrip('"').endswith(":run")
    invoker = resources(MODULES / "db_maintenance", "google_cloud_run_v2_job_iam_member")["scheduler"]
    assert invoker["role"] == "roles/run.invoker"


def test_users_sign_in_with_identity_platform() -> None:
    services = variables_of(MODULES / "project_services")["services"]["default"]
    assert "identitytoolkit.googleapis.com" in services
    config = resources(MODULES / "identity_platform", "google_identity_platform_config")["this"]
    email = config["sign_in"][0]["email"][0]
    assert email["enabled"] is True and email["password_required"] is True
    assert module_calls()["identity_platform"]["project_id"] == "${var.project_id}"
    for env in ENVS:
        # The tokens' audience is the project (dev and prod tfvars).
        tfvars = parse(TF / "envs" / env / "terraform.tfvars")
        assert tfvars["google_audience"] == tfvars["project_id"]


# -- nothing lost: database backups and derived-object versions ---------------------------------------


def test_cloudsql_automated_backups_with_point_in_time_recovery() -> None:
    """The cloud counterpart of `heimdex backup`: daily backups kept `retained_backups`, and
    write-ahead logs for `transaction_log_retention_days` so the index can be restored to any second."""
    sql = resources(MODULES / "cloudsql", "google_sql_database_instance")["this"]
    settings = sql["settings"][0]
    assert settings["edition"] == "ENTERPRISE"  # the 1-7 day log limit below is this edition's
    [backups] = settings["backup_configuration"]
    assert backups["enabled"] is True
    assert backups["point_in_time_recovery_enabled"] is True
    assert backups["transaction_log_retention_days"] == "${var.transaction_log_retention_days}"
    assert backups["start_time"] == "${var.backup_start_time}"
    [retention] = backups["backup_retention_settings"]
    assert retention == {"retained_backups": "${var.retained_backups}", "retention_unit": "COUNT"}
    assert sql["deletion_protection"] == "${var.deletion_protection}"
    variables = variables_of(MODULES / "cloudsql")
    for name, low, high in (("retained_backups", 1, 365), ("transaction_log_retention_days", 1, 7)):
        assert low <= variables[name]["default"] <= high, name
        [check] = variables[name]["validation"]
        assert f"var.{name} >= {low}" in check["condition"] and f"var.{name} <= {high}" in check["condition"]
    call = module_calls()["cloudsql"]
    assert call["retained_backups"] == "${var.sql_retained_backups}"
    assert call["transaction_log_retention_days"] == "${var.sql_transaction_log_days}"
    for env in ENVS:
        tfvars = parse(TF / "envs" / env / "terraform.tfvars")
        assert 1 <= tfvars["sql_retained_backups"] <= 365, env
        assert 1 <= tfvars["sql_transaction_log_days"] <= 7, env
    prod = parse(TF / "envs" / "prod" / "terraform.tfvars")
    assert prod["sql_retained_backups"] >= 7 and prod["sql_transaction_log_days"] == 7
    assert prod["deletion_protection"] is True


def test_derived_bucket_is_versioned_and_old_versions_expire() -> None:
    """Sidecars, thumbnails and stage outputs overwritten or deleted (a bad deploy, a re-index) can be
    brought back for `derived_noncurrent_days`; after that the noncurrent versions are deleted."""
    derived = resources(MODULES / "storage", "google_storage_bucket")["derived"]
    assert derived["versioning"] == [{"enabled": True}]
    expiry = [
        rule
        for rule in derived["lifecycle_rule"]
        if rule["action"] == [{"type": "Delete"}]
        and rule["condition"][0].get("days_since_noncurrent_time") == "${var.derived_noncurrent_days}"
    ]
    assert len(expiry) == 1, derived["lifecycle_rule"]
    # Only noncurrent versions: a Delete rule on age or on the live version would lose the index's files.
    assert expiry[0]["condition"] == [
        {"days_since_noncurrent_time": "${var.derived_noncurrent_days}", "with_state": "ARCHIVED"}
    ]
    for rule in derived["lifecycle_rule"]:
        if rule["action"] == [{"type": "Delete"}]:
            assert rule["condition"][0].get("with_state") == "ARCHIVED", rule
    assert derived["force_destroy"] == "${var.force_destroy}"
    variable = variables_of(MODULES / "storage")["derived_noncurrent_days"]
    assert variable["default"] >= 1
    assert "var.derived_noncurrent_days >= 1" in variable["validation"][0]["condition"]
    assert module_calls()["storage"]["derived_noncurrent_days"] == "${var.derived_noncurrent_days}"
    for env in ENVS:
        assert parse(TF / "envs" / env / "terraform.tfvars")["derived_noncurrent_days"] >= 1, env
    assert parse(TF / "envs" / "prod" / "terraform.tfvars")["derived_noncurrent_days"] >= 7


def test_env_defaults_match_the_code() -> None:
    """Names Terraform gives resources and the code also derives itself must agree."""
    variables = variables_of(TF)
    for var, field in (
        ("queue_prefix", "tasks_queue_prefix"),
        ("jobs_collection", "jobs_collection"),
        ("events_collection", "events_collection"),
        ("watches_collection", "watches_collection"),
        ("drive_grants_collection", "drive_grants_collection"),
        ("firestore_database", "firestore_database"),
        ("job_ttl_days", "job_ttl_days"),
        ("max_attempts", "max_attempts"),
    ):
        assert variables[var]["default"] == Settings.model_fields[field].default, var


def test_drive_secrets_only_where_drive_is_read() -> None:
    """Organisations' Drive grants are sealed with HEIMDEX_DRIVE_TOKEN_KEY and refreshed with the
    OAuth client secret: both come from Secret Manager (never a plain variable), and only drive_watch
    and the stages that read the video from its source get them, or may read the secrets."""
    drive_secrets = {"HEIMDEX_DRIVE_TOKEN_KEY", "HEIMDEX_DRIVE_OAUTH_CLIENT_SECRET"}
    # drive_watch (changes) and search (streams Drive media with the organisation's grant).
    assert {f for f in FUNCTIONS if f in DRIVE_READERS} == {"drive_watch", "search"}
    assert {s for s in STAGES if s in DRIVE_READERS} == set(SOURCE_STAGES)
    for function in FUNCTIONS:
        expected = drive_secrets if function in DRIVE_READERS else set()
        assert secret_names("functions", function) & drive_secrets == expected, function
        drive_plain = {
            "HEIMDEX_DRIVE_SA_FOLDERS",
            "HEIMDEX_DRIVE_GRANTS_COLLECTION",
            "HEIMDEX_DRIVE_OAUTH_CLIENT_ID",
        }
        assert (drive_plain <= set(function_env(function))) == (function in DRIVE_READERS), function
    for stage in STAGES:
        expected = drive_secrets if stage in SOURCE_STAGES else set()
        assert secret_names("stage_services", stage) & drive_secrets == expected, stage
        assert ("HEIMDEX_DRIVE_SA_FOLDERS" in stage_env(stage)) == (stage in SOURCE_STAGES)
    for module in ("functions", "stage_services"):
        loc = locals_of(MODULES / module)
        plain = [loc["common_env"], *loc["component_env"].values(), loc.get("drive_env", {})]
        assert not drive_secrets & {name for env in plain for name in env}, module
        # The client secret only once a client is configured: there is nothing to read before.
        assert 'var.drive_oauth_client_id == "" ? {} :' in loc["drive_secret_env"]
    stage_vars = variables_of(MODULES / "stage_services")
    assert tuple(stage_vars["source_stages"]["default"]) == SOURCE_STAGES
    env_locals = locals_of(TF)
    assert env_locals["source_stages"] == list(SOURCE_STAGES)
    assert env_locals["drive_functions"] == [f for f in FUNCTIONS if f in DRIVE_READERS]
    call = module_calls()["drive_auth"]
    assert call["accessors"] == (
        '${merge({for f in local.drive_functions : "fn-${f}" => module.service_accounts.members["fn-${f}"]}, '
        '{for s in local.source_stages : "stage-${s}" => module.service_accounts.members["stage-${s}"]})}'
    )
    assert module_calls()["stage_services"]["source_stages"] == "${local.source_stages}"
    # The key: 32 random bytes, base64, as HEIMDEX_DRIVE_TOKEN_KEY expects.
    key = resources(MODULES / "drive_auth", "random_bytes")["token_key"]
    assert key["length"] == 32
    version = resources(MODULES / "drive_auth", "google_secret_manager_secret_version")["token_key"]
    assert version["secret_data"] == "${random_bytes.token_key.base64}"
    accessors = resources(MODULES / "drive_auth", "google_secret_manager_secret_iam_member")
    assert {a["role"] for a in accessors.values()} == {"roles/secretmanager.secretAccessor"}
    assert {a["for_each"] for a in accessors.values()} == {"${var.accessors}"}


def test_one_media_url_key_for_every_search_instance() -> None:
    """Signed media URLs (heimdex.api.signing) open on any instance only if all share the HMAC key:
    Terraform generates it (32 random bytes, base64) into Secret Manager and gives it to search, and
    only search, as the secret HEIMDEX_MEDIA_URL_KEY; only search's account may read it."""
    import base64
    import os

    from heimdex.api.signing import MediaSigner, media_key

    module = MODULES / "media_urls"
    key = resources(module, "random_bytes")["key"]
    assert key["length"] == 32
    version = resources(module, "google_secret_manager_secret_version")["key"]
    assert version["secret_data"] == "${random_bytes.key.base64}"
    assert version["secret"] == "${google_secret_manager_secret.key.id}"
    [accessor] = resources(module, "google_secret_manager_secret_iam_member").values()
    assert accessor["role"] == "roles/secretmanager.secretAccessor"
    assert accessor["for_each"] == "${var.accessors}"
    assert accessor["secret_id"] == "${google_secret_manager_secret.key.secret_id}"
    call = module_calls()["media_urls"]
    assert call["accessors"] == {"fn-search": '${module.service_accounts.members["fn-search"]}'}
    # The secret reaches search's environment (and no other function's), never as a plain variable.
    for function in FUNCTIONS:
        has_key = "HEIMDEX_MEDIA_URL_KEY" in secret_names("functions", function)
        assert has_key == (function == "search"), function
    for module_name in ("functions", "stage_services"):
        loc = locals_of(MODULES / module_name)
        plain = [loc["common_env"], *loc["component_env"].values()]
        assert not any("HEIMDEX_MEDIA_URL_KEY" in env for env in plain), module_name
    secret = locals_of(MODULES / "functions")["media_secret_env"]["HEIMDEX_MEDIA_URL_KEY"]
    assert secret == {
        "secret": "${var.media_url_key_secret_id}",
        "version": "${var.media_url_key_secret_version}",
    }
    functions = module_calls()["functions"]
    assert functions["media_url_key_secret_id"] == "${module.media_urls.key_secret_id}"
    assert functions["media_url_key_secret_version"] == "${module.media_urls.key_secret_version}"
    # What Terraform generates is a key the code takes as it is: two instances given the same value
    # accept each other's URLs (the HS256 fallback is not used when the key is set).
    generated = base64.b64encode(os.urandom(32)).decode()
    settings = Settings(media_url_key=generated, home=Path("/nonexistent-heimdex-home"))
    one = MediaSigner(media_key(settings, "a" * 32), 3600)
    other = MediaSigner(media_key(settings, "b" * 32), 3600)
    path = one.path("acme", "a1", "video", now=1000.0)
    exp, sig = re.search(r"exp=(\d+)&sig=([\w-]+)", path).groups()  # type: ignore[union-attr]
    assert other.verify("acme", "a1", "video", int(exp), sig, now=1000.0)
    assert not other.verify("acme", "a1", "thumbnails/0.jpg", int(exp), sig, now=1000.0)


def test_search_signs_bucket_urls_as_itself_and_can_read_what_it_signs() -> None:
    """A gs:// video answers with a V4 signed URL, signed through IAM signBlob as the function's own
    account (heimdex.adapters.gcs.signed_url): that account holds serviceAccountTokenCreator on
    itself only, the IAM Credentials API is on, and, since a signed URL can do only what its signer
    may, search reads the source and derived buckets and creates objects only under <org>/uploads/."""
    module = MODULES / "media_urls"
    [grant] = resources(module, "google_service_account_iam_member").values()
    assert grant["role"] == "roles/iam.serviceAccountTokenCreator"
    assert grant["for_each"] == "${var.signers}"
    assert grant["service_account_id"] == "${each.value.id}" and grant["member"] == "${each.value.member}"
    [check] = variables_of(module)["signers"]["validation"]
    itself = 'endswith(s.id, "/serviceAccounts/${trimprefix(s.member, "serviceAccount:")}")'
    assert itself in check["condition"]
    assert module_calls()["media_urls"]["signers"] == {
        "fn-search": {
            "id": '${module.service_accounts.ids["fn-search"]}',
            "member": '${module.service_accounts.members["fn-search"]}',
        }
    }
    code = (ROOT / "shared" / "heimdex" / "adapters" / "gcs.py").read_text()
    assert 'kwargs["service_account_email"] = creds.service_account_email' in code  # signBlob as itself
    services = variables_of(MODULES / "project_services")["services"]["default"]
    assert {"iamcredentials.googleapis.com", "secretmanager.googleapis.com"} <= set(services)
    # Bucket grants of search's account: read sources and derived files, create uploads.
    storage = module_calls()["storage"]
    member = 'module.service_accounts.members["fn-search"]'
    assert f'"fn-search" = {member}' in storage["source_readers"]
    assert storage["derived_readers"] == storage["upload_creators"] == {"fn-search": f"${{{member}}}"}
    creators = resources(MODULES / "storage", "google_storage_bucket_iam_member")["upload_creators"]
    assert creators["role"] == "roles/storage.objectCreator"
    assert creators["bucket"] == "${google_storage_bucket.source[0].name}"
    [condition] = creators["condition"]
    assert "/objects/{org}/uploads/" in condition["expression"] and ".extract(" in condition["expression"]
    readers = resources(MODULES / "storage", "google_storage_bucket_iam_member")
    assert readers["source_readers"]["role"] == "roles/storage.objectViewer"
    assert readers["derived_readers"]["role"] == "roles/storage.objectViewer"
    assert readers["derived_readers"]["for_each"] == "${var.derived_readers}"
    # The upload bucket is that same source bucket, and the code writes uploads where the grant allows.
    assert module_calls()["functions"]["source_bucket"] == "${module.storage.source_bucket}"
    env = function_env("search")
    assert env["HEIMDEX_UPLOAD_BUCKET"] == '${var.source_bucket == null ? "" : var.source_bucket}'
    uploads = (ROOT / "shared" / "heimdex" / "api" / "uploads.py").read_text()
    assert 'f"gs://{cloud_bucket}/{org()}/uploads/{upload_id}/{filename}"' in uploads
    assert Settings(upload_bucket="").upload_bucket == ""  # "" (no source bucket): no cloud uploads


def test_the_drive_oauth_redirect_uri_is_the_callback_the_code_serves() -> None:
    from heimdex.cloud.drive_consent import CALLBACK_PATH, public_url

    out = blocks(MODULES / "functions", "output")
    [redirect] = [o["drive_oauth_redirect_uri"] for o in out if "drive_oauth_redirect_uri" in o]
    url = "https://us-central1-proj.cloudfunctions.net/heimdex-drive-watch"
    webhook = function_env("drive_watch")["HEIMDEX_DRIVE_WEBHOOK_URL"].replace(
        "${local.drive_watch_url}", url
    )
    expected = public_url(Settings(drive_webhook_url=webhook), CALLBACK_PATH)
    assert redirect["value"].replace("${local.drive_watch_url}", url) == expected


# -- every folder has its resources ------------------------------------------------------------------


def test_folders_found() -> None:
    assert FUNCTIONS == ["drive_watch", "ingest", "search"]
    assert set(STAGES) == {"probe", "asr", "shots", "ocr", "vision", "faces", "index"}
    # One image definition for every stage: adding a stage adds no file under containers/.
    assert sorted(p.name for p in (ROOT / "containers").iterdir()) == ["Dockerfile", "main.py"]


def test_root_module_discovers_functions_and_takes_stages_from_the_graph() -> None:
    loc = locals_of(TF)
    assert 'fileset("${local.repo_root}/functions", "*/main.py")' in loc["functions"]
    assert loc["stages"] == "${sort(keys(local.pipeline))}"
    calls = module_calls()
    assert calls["service_accounts"]["functions"] == "${local.functions}"
    assert calls["service_accounts"]["stages"] == "${local.stages}"
    assert calls["stage_services"]["stages"] == "${local.stages}"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_folder_has_a_function_and_an_account(function: str) -> None:
    loc = locals_of(MODULES / "functions")
    # The deployments map is an expression (ingest depends on the source bucket): read its sources.
    sources = re.findall(r'source = "([a-z_]+)"', loc["deployments"])
    assert function in sources, f"modules/functions deploys no function from functions/{function}"
    assert function in loc["base_settings"]
    assert sorted(set(sources)) == FUNCTIONS
    accounts = locals_of(MODULES / "service_accounts")["accounts"]
    assert '"fn-${f}"' in accounts and "var.functions" in accounts
    assert (ROOT / "functions" / function / "requirements.txt").read_text().count("./heimdex-src") == 1


def test_ingest_triggers_and_public_endpoints() -> None:
    text = (MODULES / "functions" / "main.tf").read_text()
    assert "google.cloud.storage.object.v1.finalized" in text
    assert "google.cloud.storage.object.v1.deleted" in text
    fn = resources(MODULES / "functions", "google_cloudfunctions2_function")["this"]
    [trigger] = dynamic(fn, "event_trigger")
    content = trigger["content"][0]
    assert content["retry_policy"] == "RETRY_POLICY_RETRY"
    assert content["event_filters"][0]["attribute"] == "bucket"
    assert fn["build_config"][0]["service_account"] == "${var.build_service_account_id}"
    public = resources(MODULES / "functions", "google_cloud_run_v2_service_iam_member")["public"]
    assert public["member"] == "allUsers"
    assert public["for_each"] == "${{for k, d in local.deployments : k => d if d.public}}"
    deployments = locals_of(MODULES / "functions")["deployments"]
    public_ones = re.findall(
        r'"([a-z-]+)" = \{source = "[a-z_]+", event_type = [^,]+, public = true\}', deployments
    )
    assert sorted(public_ones) == ["drive-watch", "search"], deployments
    job = resources(MODULES / "functions", "google_cloud_scheduler_job")["drive_renew"]
    target = job["http_target"][0]
    assert target["uri"].endswith('/renew"') or target["uri"].endswith("/renew")
    assert "oidc_token" in target


@pytest.mark.parametrize(("job", "path"), [("drive_renew", "/renew"), ("sweep", "/sweep")])
def test_scheduler_jobs_call_the_audience_the_code_expects(job: str, path: str) -> None:
    """Cloud Scheduler POSTs with an OIDC token for exactly the audience drive_watch verifies, which
    the code derives from HEIMDEX_DRIVE_WEBHOOK_URL (Terraform's `local.drive_watch_url` stands in
    for the deployed URL on both sides)."""
    from heimdex.cloud.drive_watch import create_drive_app, scheduler_audience

    body = resources(MODULES / "functions", "google_cloud_scheduler_job")[job]
    target = body["http_target"][0]
    [oidc] = target["oidc_token"]
    assert target["http_method"] == "POST"
    assert oidc["service_account_email"] == "${var.scheduler_service_account}"
    assert oidc["audience"] == target["uri"]
    url = "https://us-central1-proj.cloudfunctions.net/heimdex-drive-watch"
    env = function_env("drive_watch")
    webhook = env["HEIMDEX_DRIVE_WEBHOOK_URL"].replace("${local.drive_watch_url}", url)
    expected = scheduler_audience(Settings(drive_webhook_url=webhook), path)
    assert target["uri"].replace("${local.drive_watch_url}", url) == expected
    assert env["HEIMDEX_VERIFY_TASK_TOKENS"] == "true"
    app = create_drive_app(SimpleNamespace(settings=Settings(jwt_secret="x" * 32)), None, None)  # type: ignore[arg-type]
    assert any(r.rule == path and "POST" in (r.methods or ()) for r in app.url_map.iter_rules())


def test_sweep_deadlines_follow_the_deployed_timeouts() -> None:
    """The sweep never fails a task Cloud Tasks may still retry: Terraform sets drive_watch's
    HEIMDEX_STAGE_DEADLINES_S to each stage's request timeout plus its queue's longest backoff, and
    the code's defaults (the embedded mode, `heimdex dev`) are the same sums for the modules' defaults."""
    from heimdex.config import STAGE_DEADLINES_S

    env = function_env("drive_watch")
    assert env["HEIMDEX_STAGE_DEADLINES_S"] == (
        "${jsonencode({for s, t in var.stage_timeouts_s : s => t + var.queue_max_backoff_s[s]})}"
    )
    call = module_calls()["functions"]
    assert call["stage_timeouts_s"] == "${module.stage_services.timeouts_s}"
    assert call["queue_max_backoff_s"] == "${module.task_queues.max_backoff_s}"
    stage_loc = locals_of(MODULES / "stage_services")
    queue_loc = locals_of(MODULES / "task_queues")
    for stage in STAGES:
        base = stage_loc["base_settings"][stage]
        override = re.search(r"timeout_s = (\d+)", base)
        parent = "gpu_stage" if "local.gpu_stage" in base else "cpu_stage"
        timeout = int(override.group(1)) if override else int(stage_loc[parent]["timeout_s"])
        queue = queue_loc["base_queue"].get(stage, "")
        assert "max_backoff" not in queue, "a queue with its own backoff: update STAGE_DEADLINES_S"
        backoff = int(queue_loc["default_queue"]["max_backoff"].removesuffix("s"))
        assert STAGE_DEADLINES_S[stage] == timeout + backoff, stage
    assert set(STAGE_DEADLINES_S) == set(STAGES)


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_folder_has_a_service_a_queue_and_an_account(stage: str) -> None:
    loc = locals_of(MODULES / "stage_services")
    assert stage in loc["base_settings"], f"modules/stage_services has no settings for {stage}"
    svc = resources(MODULES / "stage_services", "google_cloud_run_v2_service")["stage"]
    assert svc["for_each"] == "${local.service_names}"
    assert loc["service_names"] == '${{for s in var.stages : s => "heimdex-${s}"}}'
    pipeline = locals_of(TF)["pipeline"]
    assert stage in pipeline, f"no Cloud Tasks queue for {stage}"
    accounts = locals_of(MODULES / "service_accounts")["accounts"]
    assert '"stage-${s}"' in accounts and "var.stages" in accounts


def test_service_names_match_the_code_lookup() -> None:
    code = (ROOT / "shared" / "heimdex" / "adapters" / "cloud_tasks.py").read_text()
    assert 'f"/services/heimdex-{stage}"' in code


def test_queues_follow_the_pipeline_graph() -> None:
    pipeline = locals_of(TF)["pipeline"]
    assert pipeline == {s.name: list(s.needs) for s in PIPELINE}
    assert module_calls()["task_queues"]["pipeline"] == "${local.pipeline}"
    assert "default" not in variables_of(MODULES / "task_queues")["pipeline"], "one graph: the root's"
    assert set(pipeline) == set(STAGES)
    queue = resources(MODULES / "task_queues", "google_cloud_tasks_queue")["stage"]
    assert queue["name"] == "${var.queue_prefix}${each.key}"
    assert "retry_config" in queue and "rate_limits" in queue


def test_stage_urls_are_computed_without_a_cycle() -> None:
    loc = locals_of(MODULES / "stage_services")
    assert "google_cloud_run_v2_service" not in loc["urls"]
    assert loc["urls"] == (
        '${{for s, name in local.service_names : s => "https://${name}-'
        '${data.google_project.this.number}.${var.region}.run.app"}}'
    )
    assert loc["common_env"]["HEIMDEX_STAGE_URLS"] == "${jsonencode(local.urls)}"
    assert module_calls()["functions"]["stage_urls"] == "${module.stage_services.urls}"


def test_gpu_stages_scale_to_zero_on_l4() -> None:
    loc = locals_of(MODULES / "stage_services")
    assert loc["gpu_stage"]["gpu"] is True and loc["gpu_stage"]["min_instances"] == 0
    assert loc["cpu_stage"]["min_instances"] == 0
    # The GPU stages are those declared `gpu=True` in heimdex.core.graph (their images use the CUDA base).
    gpu = {name for name, base in loc["base_settings"].items() if base == "${local.gpu_stage}"}
    assert gpu == {s.name for s in PIPELINE if s.gpu} == {"asr", "vision"}
    template = resources(MODULES / "stage_services", "google_cloud_run_v2_service")["stage"]["template"][0]
    assert template["gpu_zonal_redundancy_disabled"] == "${local.settings[each.key].gpu ? true : null}"
    [selector] = dynamic(template, "node_selector")
    assert '["nvidia-l4"]' in selector["for_each"]
    resources_ = template["containers"][0]["resources"][0]
    assert "nvidia.com/gpu" in resources_["limits"]
    svc = resources(MODULES / "stage_services", "google_cloud_run_v2_service")["stage"]
    assert svc["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    invoker = resources(MODULES / "stage_services", "google_cloud_run_v2_service_iam_member")["invoker"]
    assert invoker["role"] == "roles/run.invoker"
    assert invoker["member"] == "serviceAccount:${var.tasks_invoker_email}"


def test_firestore_ttl_on_jobs_and_events() -> None:
    field = resources(MODULES / "firestore", "google_firestore_field")["ttl"]
    assert "ttl_config" in field
    assert variables_of(MODULES / "firestore")["ttl_field"]["default"] == "expire_at"
    call = module_calls()["firestore"]
    assert call["ttl_collections"] == ["${var.jobs_collection}", "${var.events_collection}"]
    code = (ROOT / "shared" / "heimdex" / "adapters" / "firestore_jobs.py").read_text()
    assert '"expire_at"' in code


# -- least privilege ---------------------------------------------------------------------------------


def test_no_broad_roles_no_public_buckets_no_default_compute_account() -> None:
    broad = re.compile(r'"roles/(owner|editor|viewer|[a-z]+\.admin)"')
    token_creator = MODULES / "media_urls" / "main.tf"  # each signer on itself only: see below
    for path in sorted(TF.rglob("*.tf")):
        text = path.read_text()
        assert not broad.search(text), f"{path.relative_to(ROOT)} grants a broad role"
        if path != token_creator:
            assert "serviceAccountTokenCreator" not in text, f"{path.relative_to(ROOT)}: token creator"
        assert "compute@developer.gserviceaccount.com" not in text
        assert "allAuthenticatedUsers" not in text
        if path.parent.name != "functions":
            assert "allUsers" not in text, f"{path.relative_to(ROOT)}: only the two HTTP functions are public"
    for name, bucket in resources(MODULES / "storage", "google_storage_bucket").items():
        assert bucket["uniform_bucket_level_access"] is True, name
        assert bucket["public_access_prevention"] == "enforced", name
        assert "lifecycle_rule" in bucket or "dynamic" in bucket, name
    project_roles = {
        body["role"]
        for module in ("service_accounts", "functions", "cloudsql")
        for body in resources(MODULES / module, "google_project_iam_member").values()
    }
    allowed = {
        "roles/datastore.user",
        "roles/datastore.viewer",
        "roles/eventarc.eventReceiver",
        "${each.value}",  # the build account's two roles, listed below
        "roles/pubsub.publisher",
        "roles/cloudsql.client",  # both limited to the instance by a condition
        "roles/cloudsql.instanceUser",
    }
    assert project_roles <= allowed, project_roles - allowed
    build = resources(MODULES / "service_accounts", "google_project_iam_member")["build"]
    assert build["for_each"] == '${toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])}'
    for module in MODULES.iterdir():
        for path in tf_files(module):
            assert "google_project_iam_binding" not in path.read_text()
            assert "google_project_iam_policy" not in path.read_text()


def test_every_workload_runs_as_its_own_account() -> None:
    fn = resources(MODULES / "functions", "google_cloudfunctions2_function")["this"]
    assert fn["service_config"][0]["service_account_email"] == "${var.service_accounts[each.value.source]}"
    svc = resources(MODULES / "stage_services", "google_cloud_run_v2_service")["stage"]
    assert svc["template"][0]["service_account"] == "${var.service_accounts[each.key]}"
    calls = module_calls()
    assert calls["functions"]["service_accounts"] == "${module.service_accounts.function_emails}"
    assert calls["stage_services"]["service_accounts"] == "${module.service_accounts.stage_emails}"


# -- layout: modules, and environments that differ only in tfvars ------------------------------------


@pytest.mark.parametrize("module", sorted(p.name for p in MODULES.iterdir() if p.is_dir()))
def test_module_layout(module: str) -> None:
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
        assert (MODULES / module / name).is_file(), f"modules/{module}/{name} is missing"
    for name, body in variables_of(MODULES / module).items():
        assert body.get("description"), f"modules/{module}: variable {name} has no description"


@pytest.mark.parametrize("env", ENVS)
def test_env_layout(env: str) -> None:
    """An environment is its values and its state location, nothing else: the root module is shared."""
    folder = TF / "envs" / env
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "backend.hcl",
        "terraform.tfvars",
    ]
    assert not tf_files(folder), "environments hold no Terraform code: the root module is terraform/*.tf"
    tfvars = parse(folder / "terraform.tfvars")
    variables = variables_of(TF)
    required = {n for n, b in variables.items() if "default" not in b}
    assert required <= set(tfvars), f"envs/{env}/terraform.tfvars lacks {required - set(tfvars)}"
    assert set(tfvars) <= set(variables), "terraform.tfvars sets undeclared variables"
    assert tfvars["environment"] == env
    assert set(parse(folder / "backend.hcl")) == {"bucket", "prefix"}


def test_root_module_layout() -> None:
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
        assert (TF / name).is_file(), f"terraform/{name} is missing"
    assert not blocks(TF, "resource"), "the root module only calls modules: resources live in modules"
    assert not blocks(TF, "data")
    [backend] = parse(TF / "versions.tf")["terraform"][0]["backend"]
    assert backend == {"gcs": {}}, "a partial backend: each environment's backend.hcl completes it"
    for call in module_calls().values():
        assert call["source"].startswith("./modules/")


def test_dev_and_prod_have_separate_state_and_projects() -> None:
    dev, prod = TF / "envs" / "dev", TF / "envs" / "prod"
    backends = [parse(p / "backend.hcl") for p in (dev, prod)]
    assert backends[0] != backends[1], "dev and prod must not share a state location"
    assert parse(dev / "terraform.tfvars")["project_id"] != parse(prod / "terraform.tfvars")["project_id"]


# -- checkov -----------------------------------------------------------------------------------------


def test_every_checkov_skip_has_a_reason() -> None:
    skip = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")
    count = 0
    for path in sorted(TF.rglob("*.tf")):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                match = skip.search(line)
                assert match, f"{path.relative_to(ROOT)}: malformed skip: {line.strip()}"
                assert match.group(2) and len(match.group(2).strip()) > 20, (
                    f"{path.relative_to(ROOT)}: {match.group(1)} is skipped without a reason"
                )
                count += 1
    assert count > 0


def test_checkov_reports_no_failed_check() -> None:
    if not CHECKOV.exists():
        pytest.fail(
            f"{CHECKOV.relative_to(ROOT)} is missing: run ./scripts/setup.sh (or "
            "`python3 -m venv .venv-iac && .venv-iac/bin/pip install checkov`); "
            "checkov lives in a virtualenv of its own"
        )
    proc = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            "terraform",
            "--framework",
            "terraform",
            "--quiet",
            "--compact",
            "-o",
            "json",
            "--skip-download",  # no network: no guideline links from Prisma Cloud
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.stdout.strip(), f"checkov printed nothing (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    [tf_report] = [r for r in reports if r.get("check_type") == "terraform"]
    summary = tf_report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in tf_report["results"].get("failed_checks", [])
    ]
    assert summary["parsing_errors"] == 0, summary
    assert summary["failed"] == 0, "checkov failed checks:\n" + "\n".join(failed)
    assert summary["passed"] > 0, summary
    assert summary["resource_count"] > 0, summary
