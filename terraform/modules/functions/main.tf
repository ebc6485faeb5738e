/**
 * The three Cloud Functions (gen2), each from its folder in functions/ (zipped here; `make
 * functions-src` first copies the heimdex package to functions/<name>/heimdex-src, which the
 * requirements install):
 *
 * - ingest: one function per storage event type on the source bucket (a function has a single
 *   Eventarc trigger): `object.v1.finalized` ingests, `object.v1.deleted` removes. Retried on error
 *   (the code returns normally for events it decided about, so only infrastructure errors retry).
 *   Internal ingress; only the Eventarc trigger account may invoke it.
 * - drive-watch: Drive push notifications are unauthenticated HTTP POSTs (the channel token is
 *   checked in code), so it is public; /renew and /sweep are called by Cloud Scheduler with an OIDC
 *   token that the code verifies (HEIMDEX_VERIFY_TASK_TOKENS); /v1/watches and /v1/drive/* need an
 *   Identity Platform ID token, except /v1/drive/callback, where Google sends the consenting browser
 *   back (its signed `state` names the organisation).
 * - search: the public HTTPS API; it verifies Identity Platform ID tokens itself
 *   (HEIMDEX_AUTH_MODE=identity_platform: issuer https://securetoken.google.com/<project>, audience
 *   <project>, the organisation in the admin-set custom claim org_id). Its signed media URLs need
 *   one HMAC key on every instance (HEIMDEX_MEDIA_URL_KEY, modules/media_urls), and it streams Drive
 *   media with the organisation's grant, so it also reads the Drive secrets.
 */

locals {
  # The code's functions and their deployment; ingest is deployed once per event type.
  deployments = merge(
    var.source_bucket == null ? {} : {
      "ingest-finalized" = { source = "ingest", event_type = "google.cloud.storage.object.v1.finalized", public = false }
      "ingest-deleted"   = { source = "ingest", event_type = "google.cloud.storage.object.v1.deleted", public = false }
    },
    {
      "drive-watch" = { source = "drive_watch", event_type = null, public = true }
      "search"      = { source = "search", event_type = null, public = true }
    },
  )
  sources = toset([for d in values(local.deployments) : d.source])

  cpu_function = { memory = "2Gi", cpu = "1", timeout_s = 60, concurrency = 8, min_instances = 0, max_instances = 10 }
  base_settings = {
    ingest      = merge(local.cpu_function, { timeout_s = 120, max_instances = 20 })
    drive_watch = merge(local.cpu_function, { timeout_s = 540, concurrency = 1, max_instances = 5 })
    # No torch on the query path (ONNX Runtime): ~240 MB resident after the first query (BENCHMARKS.md).
    search = merge(local.cpu_function, { memory = "1Gi", timeout_s = 60, max_instances = 20 })
  }
  settings = {
    for s in local.sources : s => merge(
      lookup(local.base_settings, s, local.cpu_function),
      { for k, v in try(var.function_settings[s], {}) : k => v if v != null },
    )
  }

  # Gen2 functions also answer on https://<region>-<project>.cloudfunctions.net/<name>, known before
  # the function exists: Drive is told to push there.
  drive_watch_url = "https://${var.region}-${var.project_id}.cloudfunctions.net/${var.name_prefix}drive-watch"

  # The HEIMDEX_* contract of the functions (tests/test_terraform.py checks it against
  # heimdex.config.Settings). HEIMDEX_HOME: only /tmp is writable.
  common_env = {
    HEIMDEX_HOME               = "/tmp/heimdex"
    HEIMDEX_PROJECT            = var.project_id
    HEIMDEX_REGION             = var.region
    HEIMDEX_DERIVED_BUCKET     = var.derived_bucket
    HEIMDEX_JOB_STORE          = "firestore"
    HEIMDEX_FIRESTORE_DATABASE = var.firestore_database
    HEIMDEX_JOBS_COLLECTION    = var.jobs_collection
    HEIMDEX_JOB_TTL_DAYS       = tostring(var.job_ttl_days)
    HEIMDEX_DB_POOL_SIZE       = tostring(var.db_pool_size)
    HEIMDEX_CLOUDSQL_INSTANCE  = var.cloudsql_instance
    HEIMDEX_CLOUDSQL_DATABASE  = var.cloudsql_database
  }
  # Literal maps (no merge), so that the contract reads at a glance and the test can parse it.
  component_env = {
    ingest = {
      HEIMDEX_EVENTS_COLLECTION   = var.events_collection
      HEIMDEX_SOURCE_BUCKETS      = jsonencode(var.source_bucket == null ? [] : [var.source_bucket])
      HEIMDEX_DISPATCH            = "cloud_tasks"
      HEIMDEX_TASKS_LOCATION      = var.region
      HEIMDEX_TASKS_QUEUE_PREFIX  = var.queue_prefix
      HEIMDEX_TASKS_INVOKER_EMAIL = var.tasks_invoker_email
      HEIMDEX_STAGE_URLS          = jsonencode(var.stage_urls)
    }
    drive_watch = {
      HEIMDEX_WATCHES_COLLECTION  = var.watches_collection
      HEIMDEX_DRIVE_WEBHOOK_URL   = "${local.drive_watch_url}/notifications"
      HEIMDEX_VERIFY_TASK_TOKENS  = "true"
      HEIMDEX_AUTH_MODE           = "identity_platform"
      HEIMDEX_GOOGLE_AUDIENCE     = var.google_audience
      HEIMDEX_DISPATCH            = "cloud_tasks"
      HEIMDEX_TASKS_LOCATION      = var.region
      HEIMDEX_TASKS_QUEUE_PREFIX  = var.queue_prefix
      HEIMDEX_TASKS_INVOKER_EMAIL = var.tasks_invoker_email
      HEIMDEX_STAGE_URLS          = jsonencode(var.stage_urls)
      # /sweep: a task idle longer than its stage's request timeout plus its queue's longest retry
      # backoff (times its attempts) is stuck; a task Cloud Tasks will still retry never is.
      HEIMDEX_STAGE_DEADLINES_S = jsonencode({ for s, t in var.stage_timeouts_s : s => t + var.queue_max_backoff_s[s] })
      # Who may watch what: organisations' own grants (OAuth client below), or folders the operator
      # mapped to one organisation for the function's own account.
      HEIMDEX_DRIVE_SA_FOLDERS        = jsonencode(var.drive_sa_folders)
      HEIMDEX_DRIVE_OAUTH_CLIENT_ID   = var.drive_oauth_client_id
      HEIMDEX_DRIVE_GRANTS_COLLECTION = var.drive_grants_collection
    }
    search = {
      HEIMDEX_AUTH_MODE       = "identity_platform"
      HEIMDEX_GOOGLE_AUDIENCE = var.google_audience
      # Drive media (signed media URLs) are streamed with the organisation's own grant, or with the
      # function's account for mapped folders, like drive_watch and the source stages read them.
      HEIMDEX_DRIVE_SA_FOLDERS        = jsonencode(var.drive_sa_folders)
      HEIMDEX_DRIVE_OAUTH_CLIENT_ID   = var.drive_oauth_client_id
      HEIMDEX_DRIVE_GRANTS_COLLECTION = var.drive_grants_collection
      # Uploads are signed into the source bucket (gs://<bucket>/<org>/uploads/...); "": none.
      HEIMDEX_UPLOAD_BUCKET = var.source_bucket == null ? "" : var.source_bucket
    }
  }
  # Secret environment variables (none: the database takes IAM authentication, no password).
  secret_env = {}
  # The Drive secrets, for the functions that read Drive (drive_watch, search); the client secret once
  # an OAuth client is configured.
  drive_secret_env = merge(
    { HEIMDEX_DRIVE_TOKEN_KEY = { secret = var.drive_token_key_secret_id, version = var.drive_token_key_secret_version } },
    var.drive_oauth_client_id == "" ? {} : {
      HEIMDEX_DRIVE_OAUTH_CLIENT_SECRET = { secret = var.drive_oauth_client_secret_id, version = var.drive_oauth_client_secret_version }
    },
  )
  # The HMAC key of signed media URLs: one for every instance of search (modules/media_urls).
  media_secret_env = {
    HEIMDEX_MEDIA_URL_KEY = { secret = var.media_url_key_secret_id, version = var.media_url_key_secret_version }
  }
  component_secret_env = {
    ingest      = {}
    drive_watch = local.drive_secret_env
    search      = merge(local.drive_secret_env, local.media_secret_env)
  }
}

data "archive_file" "source" {
  for_each = local.sources

  type        = "zip"
  source_dir  = "${var.source_root}/${each.key}"
  output_path = "${var.build_dir}/${each.key}.zip"
  excludes    = ["__pycache__", "heimdex-src/build", "heimdex-src/shared/heimdex.egg-info"]
}

resource "google_storage_bucket_object" "source" {
  for_each = local.sources

  bucket = var.functions_bucket
  # Named by content, so a change of code (or of heimdex-src) deploys a new revision.
  name   = "${each.key}-${data.archive_file.source[each.key].output_md5}.zip"
  source = data.archive_file.source[each.key].output_path
}

resource "google_cloudfunctions2_function" "this" {
  #checkov:skip=CKV_GCP_124:Ingest is internal-only; search (the public API, Identity Platform ID tokens checked in code) and drive-watch (Drive push comes from the internet) must accept all ingress.
  for_each = local.deployments

  project     = var.project_id
  name        = "${var.name_prefix}${each.key}"
  location    = var.region
  description = "Heimdex ${each.value.source}"
  labels      = merge(var.labels, { function = replace(each.value.source, "_", "-") })

  build_config {
    runtime         = var.runtime
    entry_point     = each.value.source
    service_account = var.build_service_account_id

    source {
      storage_source {
        bucket = var.functions_bucket
        object = google_storage_bucket_object.source[each.value.source].name
      }
    }
  }

  service_config {
    service_account_email            = var.service_accounts[each.value.source]
    available_memory                 = local.settings[each.value.source].memory
    available_cpu                    = local.settings[each.value.source].cpu
    timeout_seconds                  = local.settings[each.value.source].timeout_s
    max_instance_request_concurrency = local.settings[each.value.source].concurrency
    min_instance_count               = local.settings[each.value.source].min_instances
    max_instance_count               = local.settings[each.value.source].max_instances
    ingress_settings                 = each.value.public ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    vpc_connector                    = var.vpc_connector
    vpc_connector_egress_settings    = "PRIVATE_RANGES_ONLY"

    environment_variables = merge(local.common_env, local.component_env[each.value.source])

    dynamic "secret_environment_variables" {
      for_each = merge(local.secret_env, local.component_secret_env[each.value.source])
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value.secret
        version    = secret_environment_variables.value.version
      }
    }
  }

  dynamic "event_trigger" {
    for_each = each.value.event_type == null ? [] : [each.value.event_type]
    content {
      trigger_region        = var.region
      event_type            = event_trigger.value
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = var.eventarc_service_account
      event_filters {
        attribute = "bucket"
        value     = var.source_bucket
      }
    }
  }
}

# Cloud Storage publishes its events through Pub/Sub: its service agent needs to publish.
data "google_storage_project_service_account" "gcs" {
  count   = var.source_bucket == null ? 0 : 1
  project = var.project_id
}

resource "google_project_iam_member" "gcs_pubsub_publisher" {
  count   = var.source_bucket == null ? 0 : 1
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs[0].email_address}"
}

# Invokers of the functions' Cloud Run services: the Eventarc account for ingest; everyone for the
# two HTTP endpoints that authenticate requests themselves.
resource "google_cloud_run_v2_service_iam_member" "eventarc" {
  for_each = { for k, d in local.deployments : k => d if d.event_type != null }

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.eventarc_service_account}"
}

resource "google_cloud_run_v2_service_iam_member" "public" {
  #checkov:skip=CKV_GCP_102:Only search (verifies Identity Platform ID tokens) and drive-watch (Drive push carries no credentials; the channel token is checked in code) are public, by design.
  for_each = { for k, d in local.deployments : k => d if d.public }

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this[each.key].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Drive channels last at most a week: renew them a few times a day.
resource "google_cloud_scheduler_job" "drive_renew" {
  project          = var.project_id
  name             = "${var.name_prefix}drive-renew"
  region           = var.region
  description      = "Renew Drive push channels before they expire"
  schedule         = var.renew_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "540s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
    max_backoff_duration = "600s"
  }

  http_target {
    http_method = "POST"
    # The same deterministic URL the code derives its expected audience from (HEIMDEX_DRIVE_WEBHOOK_URL
    # with /notifications replaced by /renew).
    uri = "${local.drive_watch_url}/renew"

    oidc_token {
      service_account_email = var.scheduler_service_account
      audience              = "${local.drive_watch_url}/renew"
    }
  }
}

# A job whose queue gave up on a task (retries exhausted, a task lost) would stay running: /sweep
# fails the jobs stalled past their stage's deadline (heimdex.sweep).
resource "google_cloud_scheduler_job" "sweep" {
  project          = var.project_id
  name             = "${var.name_prefix}sweep"
  region           = var.region
  description      = "Fail Heimdex jobs stalled past their stage's deadline"
  schedule         = var.sweep_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "300s"

  retry_config {
    retry_count          = 1
    min_backoff_duration = "30s"
    max_backoff_duration = "300s"
  }

  http_target {
    http_method = "POST"
    # As for /renew: the URL the code derives its expected audience from.
    uri = "${local.drive_watch_url}/sweep"

    oidc_token {
      service_account_email = var.scheduler_service_account
      audience              = "${local.drive_watch_url}/sweep"
    }
  }
}
