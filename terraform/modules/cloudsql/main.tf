/**
 * Cloud SQL for PostgreSQL with pgvector: private IP only, TLS with Cloud SQL client certificates
 * (the Cloud SQL Python Connector), backups with point-in-time recovery, query logging flags.
 *
 * No database password exists: IAM database authentication (`cloudsql.iam_authentication`) for
 * every user. Each service's runtime service account is an IAM database user that the schema owner
 * grants the application role `heimdex_app` (not the owner, no BYPASSRLS); the owner is the
 * maintenance job's service account (migrations, index maintenance), given `cloudsqlsuperuser` once
 * by `make migrate` (`gcloud sql users assign-roles`). Each account may connect to this instance only
 * (IAM conditions on roles/cloudsql.client and roles/cloudsql.instanceUser). The owner's first
 * migration runs `CREATE EXTENSION IF NOT EXISTS vector` (Cloud SQL ships pgvector).
 */

resource "google_sql_database_instance" "this" {
  project             = var.project_id
  name                = var.instance_name
  region              = var.region
  database_version    = var.database_version
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.tier
    edition                     = "ENTERPRISE"
    availability_type           = var.high_availability ? "REGIONAL" : "ZONAL"
    disk_type                   = "PD_SSD"
    disk_size                   = var.disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = var.labels

    ip_configuration {
      ipv4_enabled                                  = false
      private_network                               = var.private_network_id
      ssl_mode                                      = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
      enable_private_path_for_google_cloud_services = false
    }

    # Automated daily backups plus write-ahead logs for point-in-time recovery (restore to any second
    # within transaction_log_retention_days): the cloud counterpart of `heimdex backup`.
    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = var.backup_start_time
      transaction_log_retention_days = var.transaction_log_retention_days

      backup_retention_settings {
        retained_backups = var.retained_backups
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7
      hour         = 4
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }

    # IAM database authentication: the services sign in as their service accounts, no passwords.
    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }

    # Logging and audit flags (static blocks so that scanners can read them).
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }

    database_flags {
      name  = "log_connections"
      value = "on"
    }

    database_flags {
      name  = "log_disconnections"
      value = "on"
    }

    database_flags {
      name  = "log_duration"
      value = "on"
    }

    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }

    database_flags {
      name  = "log_hostname"
      value = "on"
    }

    database_flags {
      name  = "log_min_messages"
      value = "error"
    }

    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }

    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }

    database_flags {
      name  = "log_temp_files"
      value = "0"
    }

    database_flags {
      name  = "log_statement"
      value = "ddl"
    }

    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }

    database_flags {
      name  = "pgaudit.log"
      value = "ddl,role"
    }

    dynamic "database_flags" {
      for_each = var.database_flags
      content {
        name  = database_flags.key
        value = database_flags.value
      }
    }
  }
}

resource "google_sql_database" "heimdex" {
  project  = var.project_id
  name     = var.database_name
  instance = google_sql_database_instance.this.name
}

locals {
  # Cloud SQL's database user of a service account: its email without ".gserviceaccount.com".
  app_users  = { for k, email in var.app_service_accounts : k => trimsuffix(email, ".gserviceaccount.com") }
  owner_user = trimsuffix(var.owner_service_account, ".gserviceaccount.com")
  # Every account that connects, limited to this instance.
  connecting = merge(
    { for k, email in var.app_service_accounts : k => "serviceAccount:${email}" },
    { "db-owner" = "serviceAccount:${var.owner_service_account}" },
  )
  instance_condition = {
    title      = "heimdex-cloudsql-instance"
    expression = "resource.type == \"sqladmin.googleapis.com/Instance\" && resource.name == \"projects/${var.project_id}/instances/${var.instance_name}\""
  }
}

# The services: application users (the owner's migration grants them heimdex_app).
resource "google_sql_user" "app" {
  for_each = local.app_users

  project  = var.project_id
  name     = each.value
  instance = google_sql_database_instance.this.name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

# The maintenance job: the schema owner.
resource "google_sql_user" "owner" {
  project  = var.project_id
  name     = local.owner_user
  instance = google_sql_database_instance.this.name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

# Connect through the connector (cloudsql.instances.connect/get) and log in with IAM
# (cloudsql.instances.login): project-level roles by nature, conditioned on this instance.
resource "google_project_iam_member" "client" {
  for_each = local.connecting

  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = each.value

  condition {
    title      = local.instance_condition.title
    expression = local.instance_condition.expression
  }
}

resource "google_project_iam_member" "instance_user" {
  for_each = local.connecting

  project = var.project_id
  role    = "roles/cloudsql.instanceUser"
  member  = each.value

  condition {
    title      = local.instance_condition.title
    expression = local.instance_condition.expression
  }
}
