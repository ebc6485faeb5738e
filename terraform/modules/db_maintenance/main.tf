/**
 * The database owner's only workload: a Cloud Run job, `heimdex-db-maintenance`, that runs as the
 * owner's service account (the IAM database user that owns the schema) from the index image:
 *
 *     python -m heimdex.vectorstore.orgindex
 *
 * It applies the schema migrations, grants the application role (`heimdex_app`) to the services'
 * IAM database users (HEIMDEX_DATABASE_APP_USERS), and gives every organisation above the
 * exact-search size its own HNSW and GIN indexes (dropping those of organisations that shrank).
 * The services connect as application users and can do none of this. `make migrate` runs it after
 * each deploy (before the services need the new schema); Cloud Scheduler runs it on a schedule so
 * that organisations that grew get their indexes.
 */

locals {
  job_name = "heimdex-db-maintenance"
  # The HEIMDEX_* contract of the job (tests/test_terraform.py).
  env = {
    HEIMDEX_HOME               = "/tmp/heimdex"
    HEIMDEX_CLOUDSQL_INSTANCE  = var.cloudsql_instance
    HEIMDEX_CLOUDSQL_DATABASE  = var.cloudsql_database
    HEIMDEX_CLOUDSQL_OWNER     = "true"
    HEIMDEX_DATABASE_APP_USERS = jsonencode(var.app_database_users)
    HEIMDEX_DB_INDEX_BUILD_MEM = var.index_build_mem
  }
}

resource "google_cloud_run_v2_job" "maintenance" {
  project             = var.project_id
  name                = local.job_name
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = var.labels

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account       = var.service_account
      timeout               = "${var.timeout_s}s"
      max_retries           = 1
      execution_environment = "EXECUTION_ENVIRONMENT_GEN2"

      vpc_access {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = var.network_name
          subnetwork = var.subnet_name
        }
      }

      containers {
        image   = "${var.image_repository}/index:${var.image_tag}"
        command = ["python", "-m", "heimdex.vectorstore.orgindex"]

        resources {
          limits = { cpu = var.cpu, memory = var.memory }
        }

        dynamic "env" {
          for_each = local.env
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }
}

# Cloud Scheduler starts an execution through the Cloud Run Admin API, as the scheduler account,
# which may run this job and nothing else.
resource "google_cloud_run_v2_job_iam_member" "scheduler" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.maintenance.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.scheduler_service_account}"
}

resource "google_cloud_scheduler_job" "maintenance" {
  project          = var.project_id
  name             = local.job_name
  region           = var.region
  description      = "Heimdex index maintenance: organisation indexes (and any pending migration)"
  schedule         = var.schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "320s"

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.maintenance.name}:run"

    oauth_token {
      service_account_email = var.scheduler_service_account
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.scheduler]
}
