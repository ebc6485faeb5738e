/**
 * Cloud SQL for PostgreSQL with pgvector: private IP only (private service access), TLS required,
 * backups with point-in-time recovery, query logging flags. The application connects as a built-in
 * user whose URL lives in Secret Manager (HEIMDEX_DATABASE_URL, mounted as a secret environment
 * variable); only the accounts in `secret_accessors` may read it. The schema migration of the first
 * process to start runs `CREATE EXTENSION IF NOT EXISTS vector` (Cloud SQL ships pgvector; users made
 * here belong to cloudsqlsuperuser, which may create it).
 */

resource "google_sql_database_instance" "this" {
  #checkov:skip=CKV_GCP_6:TLS is required (ssl_mode ENCRYPTED_ONLY) on a private IP only; client certificates would need the Cloud SQL connector, which psycopg with a plain DATABASE_URL does not use.
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
      ssl_mode                                      = "ENCRYPTED_ONLY"
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

resource "random_password" "app" {
  length  = 40
  special = false
}

resource "google_sql_user" "app" {
  project  = var.project_id
  name     = var.user_name
  instance = google_sql_database_instance.this.name
  password = random_password.app.result
}

resource "google_secret_manager_secret" "database_url" {
  project   = var.project_id
  secret_id = var.secret_id
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "database_url" {
  secret = google_secret_manager_secret.database_url.id
  secret_data = format(
    "postgresql://%s:%s@%s:5432/%s?sslmode=require",
    google_sql_user.app.name,
    random_password.app.result,
    google_sql_database_instance.this.private_ip_address,
    google_sql_database.heimdex.name,
  )
}

resource "google_secret_manager_secret_iam_member" "accessors" {
  for_each = var.secret_accessors

  project   = var.project_id
  secret_id = google_secret_manager_secret.database_url.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value
}
